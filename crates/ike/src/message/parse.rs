//! Parsing payload chains from untrusted bytes (RFC 7296 §3.2-§3.16): every length
//! is checked against the bytes present; unknown non-critical payloads are kept raw,
//! unknown critical ones refused (§2.5).

use std::net::IpAddr;

use super::{
    payload_type, protocol, ts_type, Delete, Identification, Notify, ParseError, Payload, Proposal,
    Reader, TrafficSelector, Transform,
};

/// Parse a chain of payloads starting with type `first`.
//= https://www.rfc-editor.org/rfc/rfc7296#section-2.5
//# If the critical flag is set and the payload type is unrecognized, the message
//# MUST be rejected and the response to the IKE request containing that payload
//# MUST include a Notify payload UNSUPPORTED_CRITICAL_PAYLOAD
pub fn parse_payloads(first: u8, data: &[u8]) -> Result<Vec<Payload>, ParseError> {
    let mut out = Vec::new();
    let mut r = Reader::new(data, "payload header");
    let mut next = first;
    while next != payload_type::NONE {
        let kind = next;
        next = r.u8()?;
        let critical = r.u8()? & 0x80 != 0;
        let len = r.u16()? as usize;
        if len < 4 {
            return Err(ParseError::BadLength {
                what: "generic payload header",
                len,
            });
        }
        let body = r.take(len - 4).map_err(|_| ParseError::BadLength {
            what: "generic payload header",
            len,
        })?;
        if kind == payload_type::SK || kind == payload_type::SKF {
            if !r.is_empty() {
                return Err(ParseError::SkNotLast);
            }
            if kind == payload_type::SKF {
                // RFC 7383 fragments are not reassembled: treat as unsupported.
                return Err(ParseError::Invalid("IKE fragment (SKF) payload"));
            }
            out.push(Payload::Sk {
                inner_first: next,
                body: body.to_vec(),
            });
            return Ok(out);
        }
        match parse_body(kind, body)? {
            Some(p) => out.push(p),
            None if critical => return Err(ParseError::UnsupportedCritical(kind)),
            None => out.push(Payload::Unknown {
                kind,
                data: body.to_vec(),
            }),
        }
    }
    if !r.is_empty() {
        // Trailing bytes after the last payload: the lengths lie.
        return Err(ParseError::BadLength {
            what: "payload chain (trailing bytes)",
            len: r.data.len(),
        });
    }
    Ok(out)
}

fn parse_body(kind: u8, body: &[u8]) -> Result<Option<Payload>, ParseError> {
    use payload_type as t;
    let mut r = Reader::new(body, "payload body");
    let p = match kind {
        t::SA => Payload::Sa(parse_sa(body)?),
        t::KE => {
            let group = r.u16()?;
            r.take(2)?;
            Payload::Ke {
                group,
                data: r.rest().to_vec(),
            }
        }
        t::NONCE => {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-3.9
            //# The size of the Nonce Data MUST be between 16 and 256 octets, inclusive.
            if body.len() < 16 || body.len() > 256 {
                return Err(ParseError::BadLength {
                    what: "nonce",
                    len: body.len(),
                });
            }
            Payload::Nonce(body.to_vec())
        }
        t::IDI => Payload::IdI(parse_id(body)?),
        t::IDR => Payload::IdR(parse_id(body)?),
        t::CERT | t::CERTREQ => {
            let encoding = r.u8()?;
            let data = r.rest().to_vec();
            if kind == t::CERT {
                Payload::Cert { encoding, data }
            } else {
                Payload::CertReq { encoding, data }
            }
        }
        t::AUTH => {
            let method = r.u8()?;
            r.take(3)?;
            Payload::Auth {
                method,
                data: r.rest().to_vec(),
            }
        }
        t::NOTIFY => Payload::Notify(parse_notify(body)?),
        t::DELETE => Payload::Delete(parse_delete(body)?),
        t::VENDOR => Payload::Vendor(body.to_vec()),
        t::TSI => Payload::TsI(parse_ts_payload(body)?),
        t::TSR => Payload::TsR(parse_ts_payload(body)?),
        t::CP => {
            let cfg_type = r.u8()?;
            r.take(3)?;
            Payload::Cp {
                cfg_type,
                attrs: r.rest().to_vec(),
            }
        }
        t::EAP => Payload::Eap(body.to_vec()),
        _ => return Ok(None),
    };
    Ok(Some(p))
}

fn parse_id(body: &[u8]) -> Result<Identification, ParseError> {
    let mut r = Reader::new(body, "payload body");
    let id_type = r.u8()?;
    r.take(3)?;
    Ok(Identification {
        id_type,
        data: r.rest().to_vec(),
    })
}

fn parse_notify(body: &[u8]) -> Result<Notify, ParseError> {
    let mut r = Reader::new(body, "payload body");
    let protocol = r.u8()?;
    let spi_size = r.u8()? as usize;
    let kind = r.u16()?;
    let spi = r.take(spi_size)?.to_vec();
    Ok(Notify {
        protocol,
        spi,
        kind,
        data: r.rest().to_vec(),
    })
}

fn parse_delete(body: &[u8]) -> Result<Delete, ParseError> {
    let mut r = Reader::new(body, "payload body");
    let protocol = r.u8()?;
    let spi_size = r.u8()? as usize;
    let n = r.u16()? as usize;
    let mut spis = Vec::new();
    match (protocol, spi_size) {
        (protocol::IKE, 0) => {}
        (protocol::ESP | protocol::AH, 4) => {
            for _ in 0..n {
                spis.push(r.u32()?);
            }
        }
        _ => return Err(ParseError::Invalid("delete payload SPI size")),
    }
    if !r.is_empty() {
        return Err(ParseError::BadLength {
            what: "delete payload",
            len: body.len(),
        });
    }
    Ok(Delete { protocol, spis })
}

fn parse_ts_payload(body: &[u8]) -> Result<Vec<TrafficSelector>, ParseError> {
    let mut r = Reader::new(body, "payload body");
    let n = r.u8()? as usize;
    r.take(3)?;
    let mut ts = Vec::with_capacity(n.min(16));
    for _ in 0..n {
        ts.push(parse_ts(&mut r)?);
    }
    if !r.is_empty() {
        return Err(ParseError::BadLength {
            what: "traffic selector payload",
            len: body.len(),
        });
    }
    Ok(ts)
}

fn parse_ts(r: &mut Reader<'_>) -> Result<TrafficSelector, ParseError> {
    let ty = r.u8()?;
    let protocol = r.u8()?;
    let len = r.u16()? as usize;
    let alen = match ty {
        ts_type::IPV4_ADDR_RANGE => 4,
        ts_type::IPV6_ADDR_RANGE => 16,
        _ => return Err(ParseError::Invalid("traffic selector type")),
    };
    if len != 8 + 2 * alen {
        return Err(ParseError::BadLength {
            what: "traffic selector",
            len,
        });
    }
    let start_port = r.u16()?;
    let end_port = r.u16()?;
    let a = r.take(alen)?;
    let b = r.take(alen)?;
    let to_ip = |s: &[u8]| -> IpAddr {
        if s.len() == 4 {
            let mut x = [0u8; 4];
            x.copy_from_slice(s);
            IpAddr::from(x)
        } else {
            let mut x = [0u8; 16];
            x.copy_from_slice(s);
            IpAddr::from(x)
        }
    };
    Ok(TrafficSelector {
        protocol,
        start_port,
        end_port,
        start: to_ip(a),
        end: to_ip(b),
    })
}

fn parse_sa(body: &[u8]) -> Result<Vec<Proposal>, ParseError> {
    let mut r = Reader::new(body, "proposal");
    let mut props = Vec::new();
    loop {
        let last = r.u8()?;
        r.u8()?;
        let len = r.u16()? as usize;
        if len < 8 {
            return Err(ParseError::BadLength {
                what: "proposal",
                len,
            });
        }
        let pb = r.take(len - 4).map_err(|_| ParseError::BadLength {
            what: "proposal",
            len,
        })?;
        props.push(parse_proposal(pb)?);
        match last {
            0 => break,
            2 => continue,
            _ => return Err(ParseError::Invalid("proposal last-substructure field")),
        }
    }
    if !r.is_empty() {
        return Err(ParseError::BadLength {
            what: "security association payload",
            len: body.len(),
        });
    }
    Ok(props)
}

fn parse_proposal(pb: &[u8]) -> Result<Proposal, ParseError> {
    let mut r = Reader::new(pb, "proposal");
    let num = r.u8()?;
    let protocol = r.u8()?;
    let spi_size = r.u8()? as usize;
    let n = r.u8()? as usize;
    let spi = r.take(spi_size)?.to_vec();
    let mut transforms = Vec::with_capacity(n);
    let mut unknown_attribute = false;
    for i in 0..n {
        let last = r.u8()?;
        r.u8()?;
        let len = r.u16()? as usize;
        if len < 8 {
            return Err(ParseError::BadLength {
                what: "transform",
                len,
            });
        }
        let tb = r.take(len - 4).map_err(|_| ParseError::BadLength {
            what: "transform",
            len,
        })?;
        if (last == 0) != (i + 1 == n) {
            return Err(ParseError::Invalid("transform count"));
        }
        let mut tr = Reader::new(tb, "transform");
        let kind = tr.u8()?;
        tr.u8()?;
        let id = tr.u16()?;
        let mut key_len = None;
        while !tr.is_empty() {
            let at = tr.u16()?;
            if at & 0x8000 != 0 {
                let v = tr.u16()?;
                if at & 0x7fff == 14 {
                    key_len = Some(v);
                } else {
                    unknown_attribute = true;
                }
            } else {
                let l = tr.u16()? as usize;
                tr.take(l)?;
                unknown_attribute = true;
            }
        }
        transforms.push(Transform { kind, id, key_len });
    }
    if !r.is_empty() {
        return Err(ParseError::BadLength {
            what: "proposal (trailing bytes)",
            len: pb.len(),
        });
    }
    Ok(Proposal {
        num,
        protocol,
        spi,
        transforms,
        unknown_attribute,
    })
}
