//! X.501 distinguished names (RFC 5280 §4.1.2.4): parsed from DER or from
//! strongSwan-style strings (`C=CH, O=Org, CN=name`), compared by normalised RDNs and
//! printed in strongSwan's spelling.

use std::fmt;
use std::str::FromStr;

use crate::der::{self, tag};
use crate::PkiError;

/// An X.501 distinguished name, stored as its DER `Name` (a SEQUENCE of RDNs).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DistinguishedName {
    der: Vec<u8>,
}

/// One attribute of an RDN: type OID contents, string tag, value bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attribute {
    oid: Vec<u8>,
    value_tag: u8,
    value: Vec<u8>,
}

/// Short names printed and parsed, in strongSwan's spelling (`E` for emailAddress).
const ATTRIBUTE_NAMES: &[(&str, &str)] = &[
    ("C", "2.5.4.6"),
    ("ST", "2.5.4.8"),
    ("L", "2.5.4.7"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("CN", "2.5.4.3"),
    ("SN", "2.5.4.4"),
    ("serialNumber", "2.5.4.5"),
    ("street", "2.5.4.9"),
    ("T", "2.5.4.12"),
    ("postalCode", "2.5.4.17"),
    ("N", "2.5.4.41"),
    ("G", "2.5.4.42"),
    ("I", "2.5.4.43"),
    ("dnQualifier", "2.5.4.46"),
    ("pseudonym", "2.5.4.65"),
    ("E", "1.2.840.113549.1.9.1"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("DC", "0.9.2342.19200300.100.1.25"),
];
/// Extra spellings accepted when parsing.
const ATTRIBUTE_ALIASES: &[(&str, &str)] = &[
    ("S", "ST"),
    ("emailAddress", "E"),
    ("Email", "E"),
    ("GN", "G"),
    ("commonName", "CN"),
    ("countryName", "C"),
    ("organizationName", "O"),
    ("organizationalUnitName", "OU"),
    ("localityName", "L"),
    ("stateOrProvinceName", "ST"),
];

impl DistinguishedName {
    /// Wraps and validates a DER `Name`.
    pub fn from_der(der_bytes: &[u8]) -> Result<Self, String> {
        let dn = DistinguishedName {
            der: der_bytes.to_vec(),
        };
        dn.rdns()?;
        Ok(dn)
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The RDN sequence; each RDN is a set of attributes.
    fn rdns(&self) -> Result<Vec<Vec<Attribute>>, String> {
        let (mut seq, trailing) =
            der::expect(&self.der, tag::SEQUENCE).ok_or("DN is not a DER SEQUENCE")?;
        if !trailing.is_empty() {
            return Err("trailing bytes after the DN".into());
        }
        let mut rdns = Vec::new();
        while !seq.is_empty() {
            let (mut set, rest) = der::expect(seq, tag::SET).ok_or("RDN is not a SET")?;
            let mut attrs = Vec::new();
            while !set.is_empty() {
                let (atv, r) =
                    der::expect(set, tag::SEQUENCE).ok_or("attribute is not a SEQUENCE")?;
                let (oid, value) = der::expect(atv, tag::OID).ok_or("attribute has no type OID")?;
                der::oid_to_string(oid).ok_or("malformed attribute OID")?;
                let (value_tag, contents, after) =
                    der::read_tlv(value).ok_or("attribute value does not parse")?;
                if !after.is_empty() {
                    return Err("trailing bytes in attribute".into());
                }
                attrs.push(Attribute {
                    oid: oid.to_vec(),
                    value_tag,
                    value: contents.to_vec(),
                });
                set = r;
            }
            if attrs.is_empty() {
                return Err("empty RDN".into());
            }
            rdns.push(attrs);
            seq = rest;
        }
        Ok(rdns)
    }

    /// Parses `C=CH, O=plexgate, CN=gw.example` (comma or `/`-separated, as
    /// strongSwan and openssl print). A value may be quoted (`O="a, b"`) or use
    /// backslash escapes. Known names: C ST L O OU CN SN serialNumber street T
    /// postalCode N G I dnQualifier pseudonym E UID DC, or a dotted OID.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (body, sep) = match s.strip_prefix('/') {
            Some(rest) => (rest, '/'),
            None => (s, ','),
        };
        let mut rdns: Vec<Vec<u8>> = Vec::new();
        for part in split_unescaped(body, sep)? {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("\"{part}\" is not TYPE=value"))?;
            let (name, dotted) = attribute_oid(key.trim())?;
            let value = unquote(value.trim())?;
            if value.is_empty() {
                return Err(format!("empty value for {name}"));
            }
            let oid = der::oid_from_string(dotted).ok_or_else(|| format!("bad OID {dotted}"))?;
            let value_tag = string_tag(name, &value);
            let atv = der::constructed(
                tag::SEQUENCE,
                &[
                    &der::tlv(tag::OID, &oid),
                    &der::tlv(value_tag, value.as_bytes()),
                ],
            );
            rdns.push(der::tlv(tag::SET, &atv));
        }
        if rdns.is_empty() {
            return Err("no attributes".into());
        }
        let refs: Vec<&[u8]> = rdns.iter().map(Vec::as_slice).collect();
        Ok(DistinguishedName {
            der: der::constructed(tag::SEQUENCE, &refs),
        })
    }

    /// Normalised comparison: same number of RDNs, and each RDN has the same
    /// attributes (types equal; values equal after trimming, collapsing white
    /// space and ASCII case folding, whatever the string type). Byte-equal DER
    /// always matches.
    pub fn matches(&self, other: &DistinguishedName) -> bool {
        if self.der == other.der {
            return true;
        }
        let (Ok(a), Ok(b)) = (self.rdns(), other.rdns()) else {
            return false;
        };
        a.len() == b.len()
            && a.iter().zip(&b).all(|(ra, rb)| {
                ra.len() == rb.len()
                    && ra.iter().all(|x| {
                        rb.iter()
                            .any(|y| x.oid == y.oid && normalise(x) == normalise(y))
                    })
            })
    }
}

fn normalise(a: &Attribute) -> String {
    attribute_text(a)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The attribute value as text: UTF-8 for the 8-bit string types, UTF-16 for
/// BMPString, `#hex` for anything else.
fn attribute_text(a: &Attribute) -> String {
    match a.value_tag {
        // UTF8String, NumericString, PrintableString, T61String, IA5String, VisibleString
        0x0c | 0x12 | 0x13 | 0x14 | 0x16 | 0x1a => {
            String::from_utf8(a.value.clone()).unwrap_or_else(|_| hex_string(&a.value))
        }
        // BMPString
        0x1e if a.value.len() % 2 == 0 => {
            let units: Vec<u16> = a
                .value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).unwrap_or_else(|_| hex_string(&a.value))
        }
        _ => hex_string(&a.value),
    }
}

fn hex_string(b: &[u8]) -> String {
    let mut s = String::from("#");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn attribute_oid(key: &str) -> Result<(&'static str, &'static str), String> {
    let canonical = ATTRIBUTE_ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(key))
        .map(|(_, c)| *c)
        .unwrap_or(key);
    if let Some(&(name, oid)) = ATTRIBUTE_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(canonical))
    {
        return Ok((name, oid));
    }
    if der::oid_from_string(key).is_some() {
        // A dotted OID is accepted when it is one of the named attributes.
        if let Some(&(name, oid)) = ATTRIBUTE_NAMES.iter().find(|(_, o)| *o == key) {
            return Ok((name, oid));
        }
        return Err(format!(
            "attribute type {key}: only the named attributes are supported"
        ));
    }
    Err(format!("unknown attribute type \"{key}\""))
}

/// PrintableString if every character allows it (X.680 §41.4), IA5String for
/// E and DC, else UTF8String.
fn string_tag(name: &str, value: &str) -> u8 {
    if name == "E" || name == "DC" {
        if value.is_ascii() {
            return tag::IA5_STRING;
        }
        return tag::UTF8_STRING;
    }
    let printable = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c));
    if printable {
        tag::PRINTABLE_STRING
    } else {
        tag::UTF8_STRING
    }
}

/// Splits on `sep` outside quotes and not escaped by a backslash.
fn split_unescaped(s: &str, sep: char) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                cur.push(chars.next().ok_or("dangling backslash")?);
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c == sep && !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    parts.push(cur);
    Ok(parts)
}

/// Removes surrounding quotes and backslash escapes.
fn unquote(v: &str) -> Result<String, String> {
    let inner = match v.strip_prefix('"') {
        Some(r) => r.strip_suffix('"').ok_or("unterminated quote")?,
        None => v,
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next().ok_or("dangling backslash")?);
        } else if c != '"' {
            out.push(c);
        }
    }
    Ok(out)
}

fn attribute_name(oid: &[u8]) -> String {
    let dotted = der::oid_to_string(oid).unwrap_or_else(|| "?".into());
    ATTRIBUTE_NAMES
        .iter()
        .find(|(_, o)| *o == dotted)
        .map(|(n, _)| (*n).to_string())
        .unwrap_or(dotted)
}

impl fmt::Display for DistinguishedName {
    /// strongSwan's style: `C=CH, O=plexgate test, CN=gw.plexgate.test`. Values
    /// containing `,` or `"` are quoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(rdns) = self.rdns() else {
            return write!(f, "<malformed DN>");
        };
        let mut first = true;
        for attr in rdns.iter().flatten() {
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            let text = attribute_text(attr);
            if text.contains(',') || text.contains('"') || text.contains('/') || text.contains('\\')
            {
                let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
                write!(f, "{}=\"{}\"", attribute_name(&attr.oid), escaped)?;
            } else {
                write!(f, "{}={}", attribute_name(&attr.oid), text)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DistinguishedName(\"{self}\")")
    }
}

impl FromStr for DistinguishedName {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DistinguishedName::parse(s).map_err(|reason| PkiError::BadIdentity {
            input: s.to_string(),
            reason,
        })
    }
}
