//! IKE and ESP proposals (RFC 7296 §3.3): one combination of transforms each, as
//! configured, offered on the wire, matched against a peer's offer and read back from
//! a peer's choice; and the ESP transforms the data plane can install.

use serde::{Deserialize, Serialize};

use crate::crypto::{dh_id, encr_id, integ_id, prf_id};
use crate::message::{protocol, transform_type, Proposal, Transform};

/// An IKE SA proposal (one combination; list several in order of preference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IkeProposal {
    /// ENCR id: 12 AES-CBC, 20 AES-GCM-16.
    pub encr: u16,
    /// Key length in bits (128, 256).
    pub encr_bits: u16,
    /// INTEG id for non-AEAD (12, 13, 14), None for GCM.
    pub integ: Option<u16>,
    /// PRF id (5, 6, 7).
    pub prf: u16,
    /// DH group (31, 19, 20, 14).
    pub dh: u16,
}

impl IkeProposal {
    /// strongSwan `aes128-sha256-x25519`.
    pub const AES128_SHA256_X25519: IkeProposal = IkeProposal {
        encr: encr_id::AES_CBC,
        encr_bits: 128,
        integ: Some(integ_id::HMAC_SHA2_256_128),
        prf: prf_id::HMAC_SHA2_256,
        dh: dh_id::CURVE25519,
    };
    /// strongSwan `aes256gcm16-prfsha384-ecp384`.
    pub const AES256GCM16_PRFSHA384_ECP384: IkeProposal = IkeProposal {
        encr: encr_id::AES_GCM_16,
        encr_bits: 256,
        integ: None,
        prf: prf_id::HMAC_SHA2_384,
        dh: dh_id::ECP_384,
    };
    /// strongSwan `aes128gcm16-prfsha256-x25519`.
    pub const AES128GCM16_PRFSHA256_X25519: IkeProposal = IkeProposal {
        encr: encr_id::AES_GCM_16,
        encr_bits: 128,
        integ: None,
        prf: prf_id::HMAC_SHA2_256,
        dh: dh_id::CURVE25519,
    };

    /// As wire transforms.
    pub fn transforms(&self) -> Vec<Transform> {
        let mut t = vec![Transform {
            kind: transform_type::ENCR,
            id: self.encr,
            key_len: Some(self.encr_bits),
        }];
        if let Some(i) = self.integ {
            t.push(Transform {
                kind: transform_type::INTEG,
                id: i,
                key_len: None,
            });
        }
        t.push(Transform {
            kind: transform_type::PRF,
            id: self.prf,
            key_len: None,
        });
        t.push(Transform {
            kind: transform_type::DH,
            id: self.dh,
            key_len: None,
        });
        t
    }

    /// Does a received proposal offer this exact combination? (§3.3.6: the
    /// responder picks one transform of each type.)
    pub fn offered_by(&self, p: &Proposal) -> bool {
        if p.protocol != protocol::IKE || p.unknown_attribute {
            return false;
        }
        let has = |kind: u8, id: u16, kl: Option<u16>| {
            p.transforms
                .iter()
                .any(|t| t.kind == kind && t.id == id && t.key_len == kl)
        };
        has(transform_type::ENCR, self.encr, Some(self.encr_bits))
            && match self.integ {
                Some(i) => has(transform_type::INTEG, i, None),
                None => !p
                    .transforms
                    .iter()
                    .any(|t| t.kind == transform_type::INTEG && t.id != 0),
            }
            && has(transform_type::PRF, self.prf, None)
            && has(transform_type::DH, self.dh, None)
    }

    /// Parse a proposal that must carry exactly one transform of each type (a
    /// response, §3.3.6).
    pub fn from_chosen(p: &Proposal) -> Option<IkeProposal> {
        if p.protocol != protocol::IKE || p.unknown_attribute {
            return None;
        }
        let one = |kind: u8| {
            let mut it = p.transforms.iter().filter(|t| t.kind == kind);
            let a = it.next();
            if it.next().is_some() {
                None
            } else {
                a.copied()
            }
        };
        let e = one(transform_type::ENCR)?;
        let integ = match p
            .transforms
            .iter()
            .filter(|t| t.kind == transform_type::INTEG)
            .count()
        {
            0 => None,
            1 => one(transform_type::INTEG).map(|t| t.id),
            _ => return None,
        };
        Some(IkeProposal {
            encr: e.id,
            encr_bits: e.key_len?,
            integ,
            prf: one(transform_type::PRF)?.id,
            dh: one(transform_type::DH)?.id,
        })
    }

    /// strongSwan-like name, e.g. `AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519`.
    pub fn name(&self) -> String {
        let e = match self.encr {
            encr_id::AES_GCM_16 => format!("AES_GCM_16_{}", self.encr_bits),
            encr_id::AES_CBC => format!("AES_CBC_{}", self.encr_bits),
            x => format!("ENCR{x}_{}", self.encr_bits),
        };
        let i = match self.integ {
            Some(12) => "/HMAC_SHA2_256_128".to_string(),
            Some(13) => "/HMAC_SHA2_384_192".to_string(),
            Some(14) => "/HMAC_SHA2_512_256".to_string(),
            Some(x) => format!("/INTEG{x}"),
            None => String::new(),
        };
        let p = match self.prf {
            5 => "PRF_HMAC_SHA2_256".to_string(),
            6 => "PRF_HMAC_SHA2_384".to_string(),
            7 => "PRF_HMAC_SHA2_512".to_string(),
            x => format!("PRF{x}"),
        };
        let d = match self.dh {
            14 => "MODP_2048".to_string(),
            19 => "ECP_256".to_string(),
            20 => "ECP_384".to_string(),
            31 => "CURVE_25519".to_string(),
            x => format!("DH{x}"),
        };
        format!("{e}{i}/{p}/{d}")
    }
}

/// An ESP proposal for a Child SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EspProposal {
    /// ENCR id: 20 AES-GCM-16, 28 ChaCha20-Poly1305, 12 AES-CBC.
    pub encr: u16,
    /// Key length in bits (ignored for ChaCha20-Poly1305: 256).
    pub encr_bits: u16,
    /// INTEG id for non-AEAD (12 HMAC-SHA2-256-128).
    pub integ: Option<u16>,
    /// Extended sequence numbers.
    pub esn: bool,
    /// PFS group for CREATE_CHILD_SA (None: no KE in rekeys).
    pub dh: Option<u16>,
}

impl EspProposal {
    /// strongSwan `aes128gcm16`.
    pub const AES128GCM16: EspProposal = EspProposal {
        encr: encr_id::AES_GCM_16,
        encr_bits: 128,
        integ: None,
        esn: false,
        dh: None,
    };
    /// strongSwan `aes256gcm16`.
    pub const AES256GCM16: EspProposal = EspProposal {
        encr: encr_id::AES_GCM_16,
        encr_bits: 256,
        integ: None,
        esn: false,
        dh: None,
    };
    /// strongSwan `aes256-sha256`.
    pub const AES256_SHA256: EspProposal = EspProposal {
        encr: encr_id::AES_CBC,
        encr_bits: 256,
        integ: Some(integ_id::HMAC_SHA2_256_128),
        esn: false,
        dh: None,
    };

    fn key_len_attr(&self) -> Option<u16> {
        if self.encr == encr_id::CHACHA20_POLY1305 {
            None
        } else {
            Some(self.encr_bits)
        }
    }

    /// Wire transforms (with `dh` when `with_dh`).
    pub fn transforms(&self, with_dh: bool) -> Vec<Transform> {
        let mut t = vec![Transform {
            kind: transform_type::ENCR,
            id: self.encr,
            key_len: self.key_len_attr(),
        }];
        if let Some(i) = self.integ {
            t.push(Transform {
                kind: transform_type::INTEG,
                id: i,
                key_len: None,
            });
        }
        if let (true, Some(g)) = (with_dh, self.dh) {
            t.push(Transform {
                kind: transform_type::DH,
                id: g,
                key_len: None,
            });
        }
        t.push(Transform {
            kind: transform_type::ESN,
            id: self.esn as u16,
            key_len: None,
        });
        t
    }

    /// Is this combination offered by `p`? `with_dh`: a KE is required to match.
    pub fn offered_by(&self, p: &Proposal, with_dh: bool) -> bool {
        if p.protocol != protocol::ESP || p.unknown_attribute || p.spi.len() != 4 {
            return false;
        }
        let has = |kind: u8, id: u16, kl: Option<u16>| {
            p.transforms
                .iter()
                .any(|t| t.kind == kind && t.id == id && t.key_len == kl)
        };
        let integ_ok = match self.integ {
            Some(i) => has(transform_type::INTEG, i, None),
            None => !p
                .transforms
                .iter()
                .any(|t| t.kind == transform_type::INTEG && t.id != 0),
        };
        let dh_ok = match (with_dh, self.dh) {
            (true, Some(g)) => has(transform_type::DH, g, None),
            _ => !p
                .transforms
                .iter()
                .any(|t| t.kind == transform_type::DH && t.id != 0),
        };
        let esn_ok = has(transform_type::ESN, self.esn as u16, None)
            || (!self.esn && !p.transforms.iter().any(|t| t.kind == transform_type::ESN));
        has(transform_type::ENCR, self.encr, self.key_len_attr()) && integ_ok && dh_ok && esn_ok
    }

    /// Read back a chosen (single-transform-per-type) ESP proposal.
    pub fn from_chosen(p: &Proposal) -> Option<EspProposal> {
        if p.protocol != protocol::ESP || p.spi.len() != 4 || p.unknown_attribute {
            return None;
        }
        let e = p
            .transforms
            .iter()
            .find(|t| t.kind == transform_type::ENCR)?;
        Some(EspProposal {
            encr: e.id,
            encr_bits: e.key_len.unwrap_or(256),
            integ: p
                .transforms
                .iter()
                .find(|t| t.kind == transform_type::INTEG && t.id != 0)
                .map(|t| t.id),
            esn: p
                .transforms
                .iter()
                .any(|t| t.kind == transform_type::ESN && t.id == 1),
            dh: p
                .transforms
                .iter()
                .find(|t| t.kind == transform_type::DH && t.id != 0)
                .map(|t| t.id),
        })
    }
}

/// One ESP transform combination the data plane can install: encryption id, its key
/// length in bits (256 for ChaCha20-Poly1305) and the integrity id (None for AEAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EspTransformId {
    /// ENCR id (IANA "Transform Type 1").
    pub encr: u16,
    /// Encryption key length in bits, without salt.
    pub key_bits: u16,
    /// INTEG id (IANA "Transform Type 3"), None for AEAD ciphers.
    pub integ: Option<u16>,
}

/// The ESP transforms the data plane can install. The engine never proposes (as
/// initiator) nor selects (as responder) an ESP proposal outside this set, so that
/// every Child SA it agrees to can be installed; a peer that offers only others gets
/// NO_PROPOSAL_CHOSEN. The default is what `plexgate-ipsec` implements: AES-GCM-16
/// 128/256, ChaCha20-Poly1305, and AES-CBC 128/256 with HMAC-SHA2-256-128,
/// -384-192 or -512-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EspSupport(pub Vec<EspTransformId>);

impl EspSupport {
    /// Can a Child SA with this proposal be installed? (ESN and PFS do not matter.)
    pub fn allows(&self, p: &EspProposal) -> bool {
        let bits = if p.encr == encr_id::CHACHA20_POLY1305 {
            256
        } else {
            p.encr_bits
        };
        self.0
            .iter()
            .any(|t| t.encr == p.encr && t.key_bits == bits && t.integ == p.integ)
    }
}

impl Default for EspSupport {
    fn default() -> Self {
        let t = |encr, key_bits, integ| EspTransformId {
            encr,
            key_bits,
            integ,
        };
        let mut v = vec![
            t(encr_id::AES_GCM_16, 128, None),
            t(encr_id::AES_GCM_16, 256, None),
            t(encr_id::CHACHA20_POLY1305, 256, None),
        ];
        for bits in [128, 256] {
            for integ in [
                integ_id::HMAC_SHA2_256_128,
                integ_id::HMAC_SHA2_384_192,
                integ_id::HMAC_SHA2_512_256,
            ] {
                v.push(t(encr_id::AES_CBC, bits, Some(integ)));
            }
        }
        EspSupport(v)
    }
}
