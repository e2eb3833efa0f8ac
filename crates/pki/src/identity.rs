//! IKEv2 identities (RFC 7296 §3.5): the [`Identity`] enum, its configuration string
//! form (strongSwan's conventions), its ID payload encoding, and matching against a
//! certificate ([`cert_matches`]).
//!
//! Also [`DistinguishedName`]: an X.501 Name kept as DER, parsed from and printed
//! as `C=CH, O=plexgate, CN=gw.example`, compared either byte-for-byte or as a
//! normalised RDN sequence (attribute types equal, string values equal after
//! trimming, collapsing white space and ignoring case; string type ignored) — the
//! usual approximation of RFC 5280 §7.1 name comparison.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::cert::Certificate;
pub use crate::dn::DistinguishedName;
use crate::PkiError;

/// ID Type values (RFC 7296 §3.5).
pub mod id_type {
    /// A single four-octet IPv4 address.
    pub const ID_IPV4_ADDR: u8 = 1;
    /// A fully-qualified domain name string.
    pub const ID_FQDN: u8 = 2;
    /// A fully-qualified RFC 822 email address string.
    pub const ID_RFC822_ADDR: u8 = 3;
    /// A single sixteen-octet IPv6 address.
    pub const ID_IPV6_ADDR: u8 = 5;
    /// The binary DER encoding of an ASN.1 X.500 Distinguished Name.
    pub const ID_DER_ASN1_DN: u8 = 9;
    /// An opaque octet stream (vendor-specific information).
    pub const ID_KEY_ID: u8 = 11;
}

/// An IKEv2 identity (the contents of an IDi/IDr payload).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// ID_IPV4_ADDR.
    Ipv4(Ipv4Addr),
    /// ID_FQDN, e.g. `gw.plexgate.test` (no terminator, RFC 7296 §3.5).
    Fqdn(String),
    /// ID_RFC822_ADDR, e.g. `client@plexgate.test`.
    Rfc822(String),
    /// ID_IPV6_ADDR.
    Ipv6(Ipv6Addr),
    /// ID_DER_ASN1_DN.
    Dn(DistinguishedName),
    /// ID_KEY_ID: opaque bytes.
    KeyId(Vec<u8>),
}

impl Identity {
    /// Parses the configuration string form, following strongSwan:
    /// - contains `=` → distinguished name (`C=CH, O=plexgate, CN=gw.example`);
    /// - an IPv4 or IPv6 address → ID_IPV4_ADDR / ID_IPV6_ADDR;
    /// - `@#0a1b..` → ID_KEY_ID from hex; `@name` → ID_FQDN `name` (forced);
    /// - otherwise contains `@` → ID_RFC822_ADDR (`gw@example`);
    /// - otherwise → ID_FQDN.
    ///
    /// The explicit prefixes `fqdn:`, `email:`, `ipv4:`, `ipv6:`, `dn:` and
    /// `keyid:#hex` are accepted too.
    pub fn parse(s: &str) -> Result<Self, PkiError> {
        let bad = |reason: &str| PkiError::BadIdentity {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("empty"));
        }
        if t == "%any" || t == "*" {
            return Err(bad("a wildcard is not an identity"));
        }
        if let Some((prefix, rest)) = t.split_once(':') {
            let explicit = match prefix {
                "fqdn" => Some(check_name(rest).map(|n| Identity::Fqdn(n.to_string()))),
                "email" | "userfqdn" => {
                    Some(check_name(rest).map(|n| Identity::Rfc822(n.to_string())))
                }
                "ipv4" => Some(
                    rest.parse()
                        .map(Identity::Ipv4)
                        .map_err(|_| "not an IPv4 address"),
                ),
                "ipv6" => Some(
                    rest.parse()
                        .map(Identity::Ipv6)
                        .map_err(|_| "not an IPv6 address"),
                ),
                "keyid" => Some(
                    rest.strip_prefix('#')
                        .and_then(decode_hex)
                        .map(Identity::KeyId)
                        .ok_or("keyid: must be followed by #hex"),
                ),
                "dn" | "asn1dn" => {
                    return DistinguishedName::parse(rest)
                        .map(Identity::Dn)
                        .map_err(|e| bad(&e))
                }
                _ => None,
            };
            if let Some(r) = explicit {
                return r.map_err(bad);
            }
        }
        if t.contains('=') {
            return DistinguishedName::parse(t)
                .map(Identity::Dn)
                .map_err(|e| bad(&e));
        }
        if let Ok(ip) = t.parse::<Ipv4Addr>() {
            return Ok(Identity::Ipv4(ip));
        }
        if let Ok(ip) = t.parse::<Ipv6Addr>() {
            return Ok(Identity::Ipv6(ip));
        }
        if let Some(hex) = t.strip_prefix("@#") {
            return decode_hex(hex)
                .map(Identity::KeyId)
                .ok_or_else(|| bad("bad hex after @#"));
        }
        if let Some(name) = t.strip_prefix('@') {
            return check_name(name)
                .map(|n| Identity::Fqdn(n.to_string()))
                .map_err(bad);
        }
        let name = check_name(t).map_err(bad)?;
        if name.contains('@') {
            Ok(Identity::Rfc822(name.to_string()))
        } else {
            Ok(Identity::Fqdn(name.to_string()))
        }
    }

    /// The ID Type octet (RFC 7296 §3.5).
    pub fn id_type(&self) -> u8 {
        match self {
            Identity::Ipv4(_) => id_type::ID_IPV4_ADDR,
            Identity::Fqdn(_) => id_type::ID_FQDN,
            Identity::Rfc822(_) => id_type::ID_RFC822_ADDR,
            Identity::Ipv6(_) => id_type::ID_IPV6_ADDR,
            Identity::Dn(_) => id_type::ID_DER_ASN1_DN,
            Identity::KeyId(_) => id_type::ID_KEY_ID,
        }
    }

    /// The Identification Data field.
    pub fn data(&self) -> Vec<u8> {
        match self {
            Identity::Ipv4(a) => a.octets().to_vec(),
            Identity::Ipv6(a) => a.octets().to_vec(),
            Identity::Fqdn(s) | Identity::Rfc822(s) => s.as_bytes().to_vec(),
            Identity::Dn(dn) => dn.der().to_vec(),
            Identity::KeyId(k) => k.clone(),
        }
    }

    //= https://www.rfc-editor.org/rfc/rfc7296#section-3.5
    //# The Identification payloads, denoted IDi and IDr in this document,
    //# allow peers to assert an identity to one another.
    /// The ID payload body after the generic payload header:
    /// `ID Type (1) | RESERVED (3) | Identification Data`. This is also the `IDx'`
    /// that RFC 7296 §2.15 feeds into `prf(SK_p, IDx')`.
    pub fn to_payload_body(&self) -> Vec<u8> {
        let mut out = vec![self.id_type(), 0, 0, 0];
        out.extend_from_slice(&self.data());
        out
    }

    /// Decodes an ID payload body (as produced by [`Identity::to_payload_body`]).
    /// The RESERVED octets are ignored on receipt (RFC 7296 §3.5 "MUST be sent as
    /// zero; MUST be ignored on receipt").
    pub fn from_payload_body(body: &[u8]) -> Result<Self, PkiError> {
        match body {
            [t, _, _, _, data @ ..] => Self::from_type_and_data(*t, data),
            _ => Err(PkiError::MalformedId(format!(
                "{} bytes, need at least 4",
                body.len()
            ))),
        }
    }

    /// Builds an identity from an ID Type and Identification Data.
    pub fn from_type_and_data(t: u8, data: &[u8]) -> Result<Self, PkiError> {
        let bad = |why: &str| PkiError::MalformedId(why.to_string());
        match t {
            id_type::ID_IPV4_ADDR => <[u8; 4]>::try_from(data)
                .map(|a| Identity::Ipv4(a.into()))
                .map_err(|_| bad("ID_IPV4_ADDR is not 4 bytes")),
            id_type::ID_IPV6_ADDR => <[u8; 16]>::try_from(data)
                .map(|a| Identity::Ipv6(a.into()))
                .map_err(|_| bad("ID_IPV6_ADDR is not 16 bytes")),
            id_type::ID_FQDN | id_type::ID_RFC822_ADDR => {
                let s = std::str::from_utf8(data).map_err(|_| bad("name is not UTF-8"))?;
                check_name(s).map_err(bad)?;
                Ok(if t == id_type::ID_FQDN {
                    Identity::Fqdn(s.to_string())
                } else {
                    Identity::Rfc822(s.to_string())
                })
            }
            id_type::ID_DER_ASN1_DN => DistinguishedName::from_der(data)
                .map(Identity::Dn)
                .map_err(|e| bad(&e)),
            id_type::ID_KEY_ID if !data.is_empty() => Ok(Identity::KeyId(data.to_vec())),
            id_type::ID_KEY_ID => Err(bad("empty ID_KEY_ID")),
            other => Err(PkiError::MalformedId(format!(
                "unsupported ID Type {other}"
            ))),
        }
    }
}

fn check_name(s: &str) -> Result<&str, &'static str> {
    if s.is_empty() {
        return Err("empty name");
    }
    if s.len() > 255 {
        return Err("name longer than 255 bytes");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("name contains white space or control characters");
    }
    Ok(s)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

impl FromStr for Identity {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Identity::parse(s)
    }
}

impl fmt::Display for Identity {
    /// The configuration string form; `Identity::parse` reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Ipv4(a) => write!(f, "{a}"),
            Identity::Ipv6(a) => write!(f, "{a}"),
            Identity::Fqdn(s)
                if s.contains('@') || s.contains('=') || s.parse::<std::net::IpAddr>().is_ok() =>
            {
                write!(f, "fqdn:{s}")
            }
            Identity::Fqdn(s) => write!(f, "{s}"),
            Identity::Rfc822(s) if s.contains('@') && !s.contains('=') && !s.starts_with('@') => {
                write!(f, "{s}")
            }
            Identity::Rfc822(s) => write!(f, "email:{s}"),
            Identity::Dn(dn) => write!(f, "{dn}"),
            Identity::KeyId(k) => {
                write!(f, "@#")?;
                k.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

/// Whether `identity` names the holder of `cert` (RFC 7296 §3.5 / RFC 4945 §3.1):
/// a DN must equal the subject DN (by DER or normalised RDN sequence) or a
/// directoryName subjectAltName; an FQDN must equal a dNSName, an RFC 822 address an
/// rfc822Name (both case-insensitive, a trailing dot on an FQDN ignored); an IP
/// address must equal an iPAddress subjectAltName; a KEY_ID must equal one of
/// [`Certificate::key_ids`] (subjectKeyIdentifier or a SHA-1 of the public key).
pub fn cert_matches(identity: &Identity, cert: &Certificate) -> bool {
    let sans = cert.subject_alt_names();
    match identity {
        Identity::Dn(dn) => {
            cert.subject().is_ok_and(|s| s.matches(dn))
                || sans
                    .iter()
                    .any(|n| matches!(n, Identity::Dn(d) if d.matches(dn)))
        }
        Identity::Fqdn(name) => {
            let want = name.trim_end_matches('.');
            sans.iter().any(|n| {
                matches!(n, Identity::Fqdn(s) if s.trim_end_matches('.').eq_ignore_ascii_case(want))
            })
        }
        Identity::Rfc822(addr) => sans
            .iter()
            .any(|n| matches!(n, Identity::Rfc822(s) if s.eq_ignore_ascii_case(addr))),
        Identity::Ipv4(_) | Identity::Ipv6(_) => sans.iter().any(|n| n == identity),
        Identity::KeyId(id) => cert.key_ids().contains(id),
    }
}
