//! Body encodings of the cluster messages (field layouts in
//! `docs/distribution.md`, "Cluster messages"): `ip` = family octet then the
//! address, `flow` = protocol, client, DVIPA; a decoded body must be consumed
//! exactly.

use super::{Announcement, ClusterError, Message, NewConnKind, Role};
use crate::dpt::{Algorithm, DvipaConfig, PortSet, TargetSet};
use crate::flow::{FlowKey, Proto};
use crate::NodeId;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

impl Message {
    /// Append the body encoding to `out`.
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Message::Hello { role, link_up } => {
                out.push(match role {
                    Role::Gateway => 1,
                    Role::Target => 2,
                });
                out.push(u8::from(*link_up));
            }
            Message::Keepalive { link_up } => out.push(u8::from(*link_up)),
            Message::DvipaList(list) => {
                put_u16(out, list.len());
                for a in list.iter().take(usize::from(u16::MAX)) {
                    encode_dvipa(&a.cfg, out);
                    out.extend_from_slice(&a.epoch.to_be_bytes());
                }
            }
            Message::SrvStat {
                target,
                dvipa,
                port,
                listening,
            } => {
                out.extend_from_slice(&target.0.to_be_bytes());
                put_ip(out, *dvipa);
                out.extend_from_slice(&port.to_be_bytes());
                out.push(u8::from(*listening));
            }
            Message::NewConn {
                target,
                conn,
                kind,
                uses_ipsec,
            } => {
                out.extend_from_slice(&target.0.to_be_bytes());
                let existing = if *kind == NewConnKind::Existing { 2 } else { 0 };
                out.push(u8::from(*uses_ipsec) | existing);
                put_flow(out, conn);
            }
            Message::ConnEnd { target, conn } => {
                out.extend_from_slice(&target.0.to_be_bytes());
                put_flow(out, conn);
            }
            Message::ConnQuery { dvipa } => match dvipa {
                None => out.push(0),
                Some(ip) => {
                    out.push(1);
                    put_ip(out, *ip);
                }
            },
            Message::Challenge { nonce } | Message::ChallengeAck { nonce } => {
                out.extend_from_slice(&nonce.to_be_bytes())
            }
        }
    }

    /// Decode a body of type `ty`; the whole body must be consumed.
    pub fn decode_body(ty: u8, body: &[u8]) -> Result<Message, ClusterError> {
        let mut r = Reader { b: body };
        let m = match ty {
            1 => Message::Hello {
                role: match r.u8()? {
                    1 => Role::Gateway,
                    2 => Role::Target,
                    _ => return Err(ClusterError::Malformed("role")),
                },
                link_up: r.flag()?,
            },
            2 => Message::Keepalive { link_up: r.flag()? },
            3 => {
                let n = r.u16()?;
                let mut v = Vec::new();
                for _ in 0..n {
                    let cfg = decode_dvipa(&mut r)?;
                    let epoch = r.u64()?;
                    v.push(Announcement { cfg, epoch });
                }
                Message::DvipaList(v)
            }
            4 => Message::SrvStat {
                target: NodeId(r.u32()?),
                dvipa: r.ip()?,
                port: r.u16()?,
                listening: r.flag()?,
            },
            5 => {
                let target = NodeId(r.u32()?);
                let f = r.u8()?;
                if f & !3 != 0 {
                    return Err(ClusterError::Malformed("NewConn flags"));
                }
                Message::NewConn {
                    target,
                    uses_ipsec: f & 1 != 0,
                    kind: if f & 2 != 0 {
                        NewConnKind::Existing
                    } else {
                        NewConnKind::Opened
                    },
                    conn: r.flow()?,
                }
            }
            6 => Message::ConnEnd {
                target: NodeId(r.u32()?),
                conn: r.flow()?,
            },
            7 => Message::ConnQuery {
                dvipa: match r.u8()? {
                    0 => None,
                    1 => Some(r.ip()?),
                    _ => return Err(ClusterError::Malformed("ConnQuery")),
                },
            },
            8 => Message::Challenge { nonce: r.u64()? },
            9 => Message::ChallengeAck { nonce: r.u64()? },
            t => return Err(ClusterError::UnknownType(t)),
        };
        if !r.b.is_empty() {
            return Err(ClusterError::Malformed("trailing bytes"));
        }
        Ok(m)
    }
}

fn put_u16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n.min(usize::from(u16::MAX)) as u16).to_be_bytes());
}

fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
}

fn put_flow(out: &mut Vec<u8>, f: &FlowKey) {
    out.push(f.proto.number());
    put_ip(out, f.client);
    out.extend_from_slice(&f.client_port.to_be_bytes());
    put_ip(out, f.dvipa);
    out.extend_from_slice(&f.dvipa_port.to_be_bytes());
}

// Lists longer than 65535 elements are cut at encode time: a DvipaList of
// that size does not fit one message anyway.
fn encode_dvipa(d: &DvipaConfig, out: &mut Vec<u8>) {
    put_ip(out, d.dvipa);
    out.push(d.algorithm.code());
    match &d.ports {
        PortSet::All => out.push(0),
        PortSet::List(l) => {
            out.push(1);
            put_u16(out, l.len());
            for p in l.iter().take(usize::from(u16::MAX)) {
                out.extend_from_slice(&p.to_be_bytes());
            }
        }
    }
    match &d.targets {
        TargetSet::All => out.push(0),
        TargetSet::List(l) => {
            out.push(1);
            put_u16(out, l.len());
            for (n, w) in l.iter().take(usize::from(u16::MAX)) {
                out.extend_from_slice(&n.0.to_be_bytes());
                out.extend_from_slice(&w.to_be_bytes());
            }
        }
    }
    out.extend_from_slice(&d.routing_gateway.0.to_be_bytes());
    out.push(d.backups.len().min(255) as u8);
    for (n, rank) in d.backups.iter().take(255) {
        out.extend_from_slice(&n.0.to_be_bytes());
        out.push(*rank);
    }
}

fn decode_dvipa(r: &mut Reader<'_>) -> Result<DvipaConfig, ClusterError> {
    let dvipa = r.ip()?;
    let algorithm = Algorithm::from_code(r.u8()?).ok_or(ClusterError::Malformed("algorithm"))?;
    let ports = match r.u8()? {
        0 => PortSet::All,
        1 => {
            let n = r.u16()?;
            let mut l = Vec::new();
            for _ in 0..n {
                l.push(r.u16()?);
            }
            PortSet::List(l)
        }
        _ => return Err(ClusterError::Malformed("port set")),
    };
    let targets = match r.u8()? {
        0 => TargetSet::All,
        1 => {
            let n = r.u16()?;
            let mut l = Vec::new();
            for _ in 0..n {
                l.push((NodeId(r.u32()?), r.u16()?));
            }
            TargetSet::List(l)
        }
        _ => return Err(ClusterError::Malformed("target set")),
    };
    let routing_gateway = NodeId(r.u32()?);
    let nb = r.u8()?;
    let mut backups = Vec::new();
    for _ in 0..nb {
        backups.push((NodeId(r.u32()?), r.u8()?));
    }
    Ok(DvipaConfig {
        dvipa,
        ports,
        targets,
        algorithm,
        routing_gateway,
        backups,
    })
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ClusterError> {
        if self.b.len() < n {
            return Err(ClusterError::Truncated);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, ClusterError> {
        Ok(self.take(1)?[0])
    }
    fn flag(&mut self) -> Result<bool, ClusterError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ClusterError::Malformed("flag")),
        }
    }
    fn u16(&mut self) -> Result<u16, ClusterError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ClusterError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, ClusterError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn ip(&mut self) -> Result<IpAddr, ClusterError> {
        match self.u8()? {
            4 => {
                let b = self.take(4)?;
                Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            }
            6 => {
                let b: [u8; 16] = self
                    .take(16)?
                    .try_into()
                    .map_err(|_| ClusterError::Truncated)?;
                Ok(IpAddr::V6(Ipv6Addr::from(b)))
            }
            _ => Err(ClusterError::Malformed("address family")),
        }
    }
    fn flow(&mut self) -> Result<FlowKey, ClusterError> {
        let proto = Proto::from_number(self.u8()?).ok_or(ClusterError::Malformed("protocol"))?;
        let client = self.ip()?;
        let client_port = self.u16()?;
        let dvipa = self.ip()?;
        let dvipa_port = self.u16()?;
        if client.is_ipv4() != dvipa.is_ipv4() {
            return Err(ClusterError::Malformed("mixed address families"));
        }
        Ok(FlowKey {
            client,
            client_port,
            dvipa,
            dvipa_port,
            proto,
        })
    }
}
