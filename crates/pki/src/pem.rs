//! PEM armour (RFC 7468): find `-----BEGIN <label>-----` blocks and decode their
//! base64 bodies.
//!
//! Written here rather than borrowed so that the loader fully controls what it
//! accepts: legacy encrypted PEM (`Proc-Type: 4,ENCRYPTED`) is refused with a clear
//! message, text around the blocks (as `openssl x509 -text` leaves) is skipped, and
//! any garbage yields a [`PkiError`], never a panic.

use crate::PkiError;

/// One decoded PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The label between `BEGIN ` and the closing dashes, e.g. `CERTIFICATE`.
    pub label: String,
    /// The decoded DER bytes.
    pub der: Vec<u8>,
}

/// Whether `data` looks like PEM text (contains a BEGIN line).
pub fn looks_like_pem(data: &[u8]) -> bool {
    data.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Decodes every PEM block in `data`, in order.
///
/// Text outside the blocks is ignored (RFC 7468 §2: "parsers SHOULD ignore
/// explanatory text"). A block without its END line, with a mismatched END label,
/// with bad base64 or with RFC 1421 encryption headers is an error.
pub fn parse_pem(data: &[u8]) -> Result<Vec<PemBlock>, PkiError> {
    let text = String::from_utf8_lossy(data);
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = begin_label(line.trim()) else {
            continue;
        };
        let mut body = String::new();
        let mut ended = false;
        for inner in lines.by_ref() {
            let inner = inner.trim();
            if let Some(end) = inner
                .strip_prefix("-----END ")
                .and_then(|r| r.strip_suffix("-----"))
            {
                if end != label {
                    return Err(PkiError::Pem(format!(
                        "block BEGIN {label} ends with END {end}"
                    )));
                }
                ended = true;
                break;
            }
            if inner.starts_with("Proc-Type:") || inner.starts_with("DEK-Info:") {
                return Err(PkiError::Pem(format!(
                    "{label} is encrypted (legacy PEM encryption); decrypt it first, e.g. \
                     `openssl pkey -in key.pem -out key-plain.pem`"
                )));
            }
            body.push_str(inner);
        }
        if !ended {
            return Err(PkiError::Pem(format!(
                "block BEGIN {label} has no END line"
            )));
        }
        let der = base64_decode(&body)
            .ok_or_else(|| PkiError::Pem(format!("block {label}: invalid base64")))?;
        blocks.push(PemBlock {
            label: label.to_string(),
            der,
        });
    }
    Ok(blocks)
}

fn begin_label(line: &str) -> Option<&str> {
    line.strip_prefix("-----BEGIN ")?.strip_suffix("-----")
}

/// Standard base64 (RFC 4648 §4) with padding; whitespace already removed by caller.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let n_chunks = bytes.len() / 4;
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i + 1 == n_chunks;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut acc: u32 = 0;
        for &c in chunk.iter().take(4 - pad) {
            acc = (acc << 6) | val(c)?;
        }
        acc <<= 6 * pad as u32;
        let b = acc.to_be_bytes();
        out.extend_from_slice(b.get(1..4 - pad)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_rfc4648_vectors() {
        // RFC 4648 §10 test vectors
        for (enc, dec) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
        ] {
            assert_eq!(base64_decode(enc).as_deref(), Some(dec.as_bytes()), "{enc}");
        }
        assert!(base64_decode("Zg=").is_none());
        assert!(base64_decode("Zg==Zg==").is_none());
        assert!(base64_decode("Z===").is_none());
        assert!(base64_decode("Zm9*").is_none());
    }

    #[test]
    fn blocks_with_surrounding_text() {
        let text = b"Certificate:\n  blah\n-----BEGIN FOO-----\nZm9v\nYmFy\n-----END FOO-----\n\
                     junk\n-----BEGIN BAR-----\nZg==\n-----END BAR-----\n";
        let blocks = parse_pem(text).expect("parses");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "FOO");
        assert_eq!(blocks[0].der, b"foobar");
        assert_eq!(blocks[1].label, "BAR");
        assert_eq!(blocks[1].der, b"f");
    }

    #[test]
    fn broken_blocks_are_errors() {
        assert!(parse_pem(b"-----BEGIN FOO-----\nZm9v\n").is_err());
        assert!(parse_pem(b"-----BEGIN FOO-----\nZm9v\n-----END BAR-----\n").is_err());
        assert!(parse_pem(b"-----BEGIN FOO-----\nZm9\n-----END FOO-----\n").is_err());
        let enc = b"-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nZm9v\n-----END EC PRIVATE KEY-----\n";
        let err = parse_pem(enc).expect_err("encrypted");
        assert!(err.to_string().contains("encrypted"), "{err}");
        assert_eq!(parse_pem(b"no pem here").expect("ok").len(), 0);
    }
}
