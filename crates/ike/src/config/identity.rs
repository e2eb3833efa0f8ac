//! Identities as written in configs (strongSwan's rules, parsed by `plexgate-pki`)
//! and their matching against a received ID payload (RFC 7296 §3.5).

use serde::{Deserialize, Serialize};

use crate::message::{id_type, Identification};

/// An IKE identity as written in configs: `client@example` (RFC822), `gw.example`
/// (FQDN), an IPv4/IPv6 address, or `%any` (matches anything, responder only).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity(pub String);

impl Identity {
    fn pki(&self) -> Option<plexgate_pki::Identity> {
        plexgate_pki::Identity::parse(&self.0).ok()
    }

    /// The wire identification, following strongSwan's rules (as `plexgate-pki`
    /// parses them): contains `=` → ID_DER_ASN1_DN; an IP address → ID_IPV4/6_ADDR;
    /// `@name` → ID_FQDN; contains `@` → ID_RFC822_ADDR; else ID_FQDN.
    pub fn to_wire(&self) -> Identification {
        match self.pki() {
            Some(id) => Identification {
                id_type: id.id_type(),
                data: id.data(),
            },
            None => Identification {
                id_type: id_type::FQDN,
                data: self.0.as_bytes().to_vec(),
            },
        }
    }

    /// Does a received identification match this configured identity? (`%any`
    /// matches all; DNs compare by normalised RDNs.)
    pub fn matches(&self, id: &Identification) -> bool {
        if self.0 == "%any" {
            return true;
        }
        let theirs = plexgate_pki::Identity::from_type_and_data(id.id_type, &id.data);
        match (self.pki(), theirs) {
            (Some(plexgate_pki::Identity::Dn(a)), Ok(plexgate_pki::Identity::Dn(b))) => {
                a.matches(&b)
            }
            (Some(a), Ok(b)) => match (&a, &b) {
                (plexgate_pki::Identity::Fqdn(x), plexgate_pki::Identity::Fqdn(y))
                | (plexgate_pki::Identity::Rfc822(x), plexgate_pki::Identity::Rfc822(y)) => {
                    x.eq_ignore_ascii_case(y)
                }
                _ => a == b,
            },
            _ => self.to_wire() == *id,
        }
    }
}
