//! A minimal DER reader and writer for the few structures this crate builds or
//! takes apart itself (AlgorithmIdentifiers for RFC 7427, distinguished names from
//! configuration strings, SEC1 private keys).
//!
//! Only definite-length, single-byte-tag encodings are handled (X.690 §8.1.2.2,
//! §8.1.3): that is all DER needs for these structures. The reader never indexes
//! past its input; every failure is a `None`.

/// DER universal tags used here.
pub(crate) mod tag {
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const BIT_STRING: u8 = 0x03;
    pub(crate) const OCTET_STRING: u8 = 0x04;
    pub(crate) const NULL: u8 = 0x05;
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const UTF8_STRING: u8 = 0x0c;
    pub(crate) const PRINTABLE_STRING: u8 = 0x13;
    pub(crate) const IA5_STRING: u8 = 0x16;
    pub(crate) const SEQUENCE: u8 = 0x30;
    pub(crate) const SET: u8 = 0x31;
}

/// Splits one TLV off the front of `input`: `(tag, contents, rest)`.
pub(crate) fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t & 0x1f == 0x1f {
        return None; // multi-byte tags are not used by anything we read
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None; // indefinite length (BER) or absurdly long
        }
        let (bytes, r) = rest.split_at_checked(n)?;
        rest = r;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((t, contents, rest))
}

/// Reads one TLV that must have tag `want`.
pub(crate) fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (t, c, rest) = read_tlv(input)?;
    (t == want).then_some((c, rest))
}

/// Reads one TLV with tag `want` that must fill `input` exactly (DER allows no
/// trailing bytes inside an enclosing element).
pub(crate) fn expect_only(input: &[u8], want: u8) -> Option<&[u8]> {
    let (c, rest) = expect(input, want)?;
    rest.is_empty().then_some(c)
}

/// Appends a DER length.
fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
}

/// Encodes one TLV.
pub(crate) fn tlv(t: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(t);
    push_len(&mut out, contents.len());
    out.extend_from_slice(contents);
    out
}

/// Encodes a constructed TLV from already encoded parts.
pub(crate) fn constructed(t: u8, parts: &[&[u8]]) -> Vec<u8> {
    tlv(t, &parts.concat())
}

/// Decodes OID contents to dotted form ("2.5.4.3"); `None` if malformed.
pub(crate) fn oid_to_string(contents: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    let mut in_arc = false;
    for &b in contents {
        if acc > (u64::MAX >> 7) {
            return None;
        }
        acc = (acc << 7) | u64::from(b & 0x7f);
        in_arc = b & 0x80 != 0;
        if !in_arc {
            arcs.push(acc);
            acc = 0;
        }
    }
    if in_arc || arcs.is_empty() {
        return None;
    }
    let first = arcs.first().copied()?;
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut s = format!("{a}.{b}");
    for arc in arcs.iter().skip(1) {
        s.push('.');
        s.push_str(&arc.to_string());
    }
    Some(s)
}

/// Encodes a dotted OID ("2.5.4.3") to its contents bytes; `None` if malformed.
pub(crate) fn oid_from_string(dotted: &str) -> Option<Vec<u8>> {
    let arcs: Vec<u64> = dotted
        .split('.')
        .map(|a| a.parse::<u64>().ok())
        .collect::<Option<_>>()?;
    let (&a, rest) = arcs.split_first()?;
    let (&b, rest) = rest.split_first()?;
    if a > 2 || (a < 2 && b > 39) {
        return None;
    }
    let mut out = Vec::new();
    let first = a.checked_mul(40)?.checked_add(b)?;
    for arc in std::iter::once(first).chain(rest.iter().copied()) {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut v = arc >> 7;
        while v > 0 {
            groups.push(((v & 0x7f) as u8) | 0x80);
            v >>= 7;
        }
        out.extend(groups.iter().rev());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_round_trip_short_and_long() {
        let short = tlv(tag::OCTET_STRING, &[1, 2, 3]);
        assert_eq!(short, [0x04, 3, 1, 2, 3]);
        let long_contents = vec![0xab; 300];
        let long = tlv(tag::OCTET_STRING, &long_contents);
        assert_eq!(long.get(..4), Some(&[0x04, 0x82, 0x01, 0x2c][..]));
        let (t, c, rest) = read_tlv(&long).expect("parses");
        assert_eq!((t, c.len(), rest.len()), (0x04, 300, 0));
    }

    #[test]
    fn reader_rejects_truncation_and_indefinite_length() {
        assert!(read_tlv(&[0x04, 0x05, 1, 2]).is_none());
        assert!(read_tlv(&[0x30, 0x80, 0, 0]).is_none());
        assert!(read_tlv(&[0x1f, 0x01, 0x00]).is_none());
        assert!(read_tlv(&[]).is_none());
    }

    #[test]
    fn oid_round_trip() {
        // 1.2.840.10045.4.3.2 = ecdsa-with-SHA256, contents from RFC 5758 §3.2 DER
        let bytes = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        assert_eq!(
            oid_to_string(&bytes).as_deref(),
            Some("1.2.840.10045.4.3.2")
        );
        assert_eq!(
            oid_from_string("1.2.840.10045.4.3.2").as_deref(),
            Some(&bytes[..])
        );
        assert_eq!(
            oid_from_string("2.5.4.3").as_deref(),
            Some(&[0x55, 0x04, 0x03][..])
        );
        assert!(oid_from_string("3.1").is_none());
        assert!(oid_from_string("1").is_none());
        assert!(oid_to_string(&[0x86]).is_none());
    }
}
