//! A readable summary of a simulation's counters, node by node, to print when a
//! scenario fails (`eprintln!("{}", sim.report())`).

use std::fmt::Write as _;

use super::{Node, Sim};

impl Sim {
    /// Every node's counters, the network's and the store's.
    pub fn report(&self) -> String {
        let mut r = String::new();
        let _ = writeln!(
            r,
            "seed {} at {:?} after {} steps; in flight {}",
            self.seed,
            self.elapsed(),
            self.steps,
            self.net.in_flight()
        );
        let _ = writeln!(r, "network: {:?}", self.net.stats);
        let _ = writeln!(
            r,
            "store: {} records, {:?}",
            self.store.len(),
            self.store.stats
        );
        for (i, g) in self.gateways.iter().enumerate() {
            let n = Node::Gateway(i);
            let _ = writeln!(
                r,
                "gateway {i} {} (node {}){}: received {:?}",
                g.name,
                g.id.0,
                if self.net.is_down(n) { " DOWN" } else { "" },
                self.delivered.get(&n)
            );
            if let Some(c) = g.core() {
                let _ = writeln!(r, "  core {:?}", c.counters());
                let _ = writeln!(r, "  esp {:?}", c.sad().counters);
                let _ = writeln!(r, "  ike SAs {}", c.ike_sas(self.now).len());
            }
            let _ = writeln!(r, "  distributor {:?}", g.distributor().snapshot());
        }
        for (j, t) in self.targets.iter().enumerate() {
            let n = Node::Target(j);
            let _ = writeln!(
                r,
                "target {j} {} (node {}){}: received {:?}",
                t.name,
                t.id.0,
                if self.net.is_down(n) { " DOWN" } else { "" },
                self.delivered.get(&n)
            );
            let _ = writeln!(r, "  stack {:?}", t.stack().snapshot());
            let _ = writeln!(r, "  host {:?}", t.host.stats);
        }
        for (k, c) in self.clients.iter().enumerate() {
            let _ = writeln!(
                r,
                "client {k} {}: {} IKE SA(s), {} Child SA(s), {:?}, host {:?}",
                c.name,
                c.ike_sas.len(),
                c.children.len(),
                c.stats,
                c.host.stats
            );
        }
        r
    }
}
