//! Names of transforms and proposals in strongSwan's spelling
//! (`ESP:AES_GCM_16_128/NO_EXT_SEQ`), for status output and for log lines that say
//! what a peer proposed and what is configured.

use crate::config::EspProposal;
use crate::message::{protocol, transform_type, Proposal, Transform};

/// One transform, e.g. `AES_CBC_256`, `HMAC_SHA2_384_192`, `CURVE_25519`.
pub(super) fn transform_name(t: &Transform) -> String {
    let bits = t.key_len.map(|b| format!("_{b}")).unwrap_or_default();
    let known = match (t.kind, t.id) {
        (transform_type::ENCR, 3) => "3DES",
        (transform_type::ENCR, 12) => "AES_CBC",
        (transform_type::ENCR, 13) => "AES_CTR",
        (transform_type::ENCR, 18) => "AES_GCM_8",
        (transform_type::ENCR, 19) => "AES_GCM_12",
        (transform_type::ENCR, 20) => "AES_GCM_16",
        (transform_type::ENCR, 28) => "CHACHA20_POLY1305",
        (transform_type::PRF, 2) => "PRF_HMAC_SHA1",
        (transform_type::PRF, 5) => "PRF_HMAC_SHA2_256",
        (transform_type::PRF, 6) => "PRF_HMAC_SHA2_384",
        (transform_type::PRF, 7) => "PRF_HMAC_SHA2_512",
        (transform_type::INTEG, 2) => "HMAC_SHA1_96",
        (transform_type::INTEG, 12) => "HMAC_SHA2_256_128",
        (transform_type::INTEG, 13) => "HMAC_SHA2_384_192",
        (transform_type::INTEG, 14) => "HMAC_SHA2_512_256",
        (transform_type::DH, 0) => "NONE",
        (transform_type::DH, 14) => "MODP_2048",
        (transform_type::DH, 15) => "MODP_3072",
        (transform_type::DH, 16) => "MODP_4096",
        (transform_type::DH, 19) => "ECP_256",
        (transform_type::DH, 20) => "ECP_384",
        (transform_type::DH, 21) => "ECP_521",
        (transform_type::DH, 31) => "CURVE_25519",
        (transform_type::DH, 32) => "CURVE_448",
        (transform_type::ESN, 0) => "NO_EXT_SEQ",
        (transform_type::ESN, 1) => "EXT_SEQ",
        _ => "",
    };
    if known.is_empty() {
        let kind = match t.kind {
            transform_type::ENCR => "ENCR",
            transform_type::PRF => "PRF",
            transform_type::INTEG => "INTEG",
            transform_type::DH => "DH",
            transform_type::ESN => "ESN",
            _ => "TRANSFORM",
        };
        format!("{kind}{}{bits}", t.id)
    } else {
        format!("{known}{bits}")
    }
}

/// One proposal, e.g. `ESP:AES_GCM_16_128/NO_EXT_SEQ`.
pub(super) fn proposal_name(p: &Proposal) -> String {
    let proto = match p.protocol {
        protocol::IKE => "IKE",
        protocol::AH => "AH",
        protocol::ESP => "ESP",
        _ => "?",
    };
    let t: Vec<String> = p.transforms.iter().map(transform_name).collect();
    format!("{proto}:{}", t.join("/"))
}

/// A peer's proposals, comma separated (`none` for an empty SA payload).
pub(super) fn describe_proposals(props: &[Proposal]) -> String {
    if props.is_empty() {
        return "none".into();
    }
    let v: Vec<String> = props.iter().map(proposal_name).collect();
    v.join(", ")
}

/// An ESP proposal of ours, e.g. `ESP:AES_CBC_256/HMAC_SHA2_384_192/NO_EXT_SEQ`.
pub(super) fn esp_name(p: &EspProposal) -> String {
    proposal_name(&Proposal {
        num: 1,
        protocol: protocol::ESP,
        spi: Vec::new(),
        transforms: p.transforms(true),
        unknown_attribute: false,
    })
}
