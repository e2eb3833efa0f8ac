//! A masquerading router in front of a node (a client behind a home router): UDP
//! from the node leaves from the router's public address with a port of the
//! router's choosing, and only UDP to a port it mapped comes back in. Raw ESP does
//! not pass (the node has to encapsulate ESP in UDP, RFC 3948), cleartext IP is
//! left alone. Mappings do not expire.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::net::Payload;

/// One NAT.
#[derive(Debug, Clone)]
pub struct Nat {
    public: IpAddr,
    next_port: u16,
    out: HashMap<SocketAddr, u16>,
    back: HashMap<u16, SocketAddr>,
    /// Datagrams it refused (raw ESP out, UDP to an unmapped port in).
    pub refused: u64,
}

impl Nat {
    /// A NAT whose public address is `public`.
    pub fn new(public: IpAddr) -> Nat {
        Nat {
            public,
            next_port: 31000,
            out: HashMap::new(),
            back: HashMap::new(),
            refused: 0,
        }
    }

    /// Its public address.
    pub fn public(&self) -> IpAddr {
        self.public
    }

    /// A datagram leaving the node; `None` when the NAT does not pass it.
    pub fn outbound(&mut self, p: Payload) -> Option<Payload> {
        match p {
            Payload::Udp { src, dst, data } => {
                let port = match self.out.get(&src) {
                    Some(p) => *p,
                    None => {
                        let p = self.next_port;
                        self.next_port = self.next_port.wrapping_add(1).max(1024);
                        self.out.insert(src, p);
                        self.back.insert(p, src);
                        p
                    }
                };
                let src = SocketAddr::new(self.public, port);
                Some(Payload::Udp { src, dst, data })
            }
            Payload::Esp { .. } => {
                self.refused += 1;
                None
            }
            other => Some(other),
        }
    }

    /// A datagram for the public address; `None` when no mapping takes it.
    pub fn inbound(&mut self, p: Payload) -> Option<Payload> {
        match p {
            Payload::Udp { src, dst, data } if dst.ip() == self.public => {
                match self.back.get(&dst.port()) {
                    Some(private) => Some(Payload::Udp {
                        src,
                        dst: *private,
                        data,
                    }),
                    None => {
                        self.refused += 1;
                        None
                    }
                }
            }
            Payload::Esp { dst, .. } if dst == self.public => {
                self.refused += 1;
                None
            }
            other => Some(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_out_and_back_and_refuses_the_rest() {
        let mut n = Nat::new("198.51.100.7".parse().unwrap());
        let udp = |s: &str, d: &str| Payload::Udp {
            src: s.parse().unwrap(),
            dst: d.parse().unwrap(),
            data: vec![1],
        };
        let out = n.outbound(udp("10.0.0.1:500", "10.10.0.2:500")).unwrap();
        assert_eq!(out, udp("198.51.100.7:31000", "10.10.0.2:500"));
        let out2 = n.outbound(udp("10.0.0.1:4500", "10.10.0.2:4500")).unwrap();
        assert_eq!(out2, udp("198.51.100.7:31001", "10.10.0.2:4500"));
        let back = n
            .inbound(udp("10.10.0.2:4500", "198.51.100.7:31001"))
            .unwrap();
        assert_eq!(back, udp("10.10.0.2:4500", "10.0.0.1:4500"));
        assert!(n
            .inbound(udp("10.10.0.2:4500", "198.51.100.7:40000"))
            .is_none());
        let esp = Payload::Esp {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.10.0.2".parse().unwrap(),
            data: vec![0; 8],
        };
        assert!(n.outbound(esp).is_none());
        assert_eq!(n.refused, 2);
    }
}
