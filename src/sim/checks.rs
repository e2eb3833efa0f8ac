//! Invariants the harness checks at every step, cheaply, from what the nodes do:
//!
//! - a gateway forwards (GRE to a target) only traffic of a DVIPA it routes now;
//! - no DVIPA is forwarded by two gateways without an ownership change of an
//!   address (a VIPA or DVIPA claimed on the network) in between;
//! - the packets of one TCP connection all reach the same target, from its
//!   initial SYN until another initial SYN reuses the 4-tuple.
//!
//! A violation panics at once with what happened (or is recorded, for a test
//! that wants to see one: [`Checks::panic_on_violation`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::target::Inbound;

/// Invariant state.
#[derive(Debug)]
pub struct Checks {
    /// Check at all.
    pub enabled: bool,
    /// Panic at the first violation (else record it in `violations`).
    pub panic_on_violation: bool,
    /// Violations seen (when not panicking).
    pub violations: Vec<String>,
    last_forwarder: HashMap<IpAddr, (usize, u64)>,
    flows: HashMap<(SocketAddr, SocketAddr), usize>,
    /// GRE packets to targets checked.
    pub forwards_checked: u64,
    /// Packets into targets checked.
    pub deliveries_checked: u64,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            enabled: true,
            panic_on_violation: true,
            violations: Vec::new(),
            last_forwarder: HashMap::new(),
            flows: HashMap::new(),
            forwards_checked: 0,
            deliveries_checked: 0,
        }
    }
}

impl Checks {
    fn violated(&mut self, what: String) {
        if self.panic_on_violation {
            panic!("cluster invariant violated: {what}");
        }
        self.violations.push(what);
    }

    /// Gateway `gw` sent a packet for `dvipa` to a target; it `routing` it now;
    /// the network's ownership generation is `generation`.
    pub fn gateway_forwarded(&mut self, gw: usize, dvipa: IpAddr, routing: bool, generation: u64) {
        if !self.enabled {
            return;
        }
        self.forwards_checked += 1;
        if !routing {
            self.violated(format!(
                "gateway {gw} forwarded a packet for {dvipa}, which it does not route"
            ));
        }
        if let Some((other, g)) = self.last_forwarder.get(&dvipa).copied() {
            if other != gw && g == generation {
                self.violated(format!(
                    "{dvipa} forwarded by gateway {other} and then by gateway {gw} with no ownership change between"
                ));
            }
        }
        self.last_forwarder.insert(dvipa, (gw, generation));
    }

    /// Target `t` handed `p` to its host.
    pub fn target_inbound(&mut self, t: usize, p: &Inbound) {
        if !self.enabled || !p.tcp {
            return;
        }
        self.deliveries_checked += 1;
        let k = (p.src, p.dst);
        if p.syn {
            self.flows.insert(k, t);
            return;
        }
        match self.flows.get(&k).copied() {
            Some(owner) if owner != t => self.violated(format!(
                "a packet of {} → {} reached target {t}, its connection is on target {owner}",
                p.src, p.dst
            )),
            Some(_) => {}
            None => {
                self.flows.insert(k, t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inb(syn: bool) -> Inbound {
        Inbound {
            src: "192.0.2.1:4000".parse().unwrap(),
            dst: "198.51.100.7:80".parse().unwrap(),
            tcp: true,
            syn,
        }
    }

    #[test]
    fn each_invariant_catches_its_violation() {
        let mut c = Checks {
            panic_on_violation: false,
            ..Checks::default()
        };
        let d: IpAddr = "198.51.100.7".parse().unwrap();
        c.gateway_forwarded(0, d, true, 1);
        c.gateway_forwarded(0, d, true, 1);
        assert!(c.violations.is_empty());
        c.gateway_forwarded(1, d, true, 1);
        c.gateway_forwarded(1, d, false, 2);
        c.gateway_forwarded(0, d, true, 3);
        assert_eq!(c.violations.len(), 2, "{:?}", c.violations);
        c.target_inbound(0, &inb(true));
        c.target_inbound(0, &inb(false));
        c.target_inbound(1, &inb(false));
        c.target_inbound(1, &inb(true));
        c.target_inbound(1, &inb(false));
        assert_eq!(c.violations.len(), 3, "{:?}", c.violations);
    }

    #[test]
    #[should_panic(expected = "forwarded a packet for 198.51.100.7, which it does not route")]
    fn violations_panic_by_default() {
        Checks::default().gateway_forwarded(0, "198.51.100.7".parse().unwrap(), false, 0);
    }
}
