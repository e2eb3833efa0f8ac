//! The security policy database (RFC 4301 §4.4.1): ordered rules per
//! direction; the first rule whose selectors match a packet decides whether it
//! is protected (and by which peer / child SA), bypasses IPsec, or is
//! discarded. No matching rule means discard.
//!
//! Lookups parse the packet's 5-tuple without allocating and scan the rules
//! in order (linear in the number of rules).

use crate::sa::Direction;
use crate::selector::TrafficSelector;
use plexgate_wire::ip::FiveTuple;
use plexgate_wire::WireError;

/// What to do with a packet (RFC 4301 §4.4.1: PROTECT, BYPASS, DISCARD).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpdAction {
    /// Send through (or require arrival through) an SA of this peer / child.
    Protect {
        /// IKE peer (connection) name.
        peer: String,
        /// ESP proposals to negotiate if no SA exists yet.
        proposals: Vec<String>,
        /// Child SA configuration name.
        child: String,
    },
    /// Pass in the clear.
    Bypass,
    /// Drop.
    Discard,
}

/// One SPD rule: local and remote selectors and an action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpdRule {
    /// Our side: source of outbound packets, destination of inbound ones.
    pub local: TrafficSelector,
    /// The other side.
    pub remote: TrafficSelector,
    /// The action.
    pub action: SpdAction,
}

impl SpdRule {
    /// Whether a packet travelling in `direction` matches this rule.
    #[inline]
    pub fn matches(&self, direction: Direction, t: &FiveTuple) -> bool {
        match direction {
            Direction::Outbound => self.local.matches_src(t) && self.remote.matches_dst(t),
            Direction::Inbound => self.local.matches_dst(t) && self.remote.matches_src(t),
        }
    }
}

/// Ordered SPD rules for both directions.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Spd {
    /// Rules for packets we receive, in priority order.
    pub inbound: Vec<SpdRule>,
    /// Rules for packets we send, in priority order.
    pub outbound: Vec<SpdRule>,
}

impl Spd {
    /// An empty SPD (discards everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a rule (lowest priority so far) for one direction.
    pub fn push(&mut self, direction: Direction, rule: SpdRule) {
        match direction {
            Direction::Inbound => self.inbound.push(rule),
            Direction::Outbound => self.outbound.push(rule),
        }
    }

    /// The first matching rule for a 5-tuple (`None`: discard).
    pub fn lookup(&self, direction: Direction, t: &FiveTuple) -> Option<&SpdRule> {
        let rules = match direction {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        };
        rules.iter().find(|r| r.matches(direction, t))
    }

    /// The first matching rule for a 5-tuple with its position in the
    /// direction's rule list (for callers that keep per-rule data).
    pub fn lookup_indexed(&self, direction: Direction, t: &FiveTuple) -> Option<(usize, &SpdRule)> {
        let rules = match direction {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        };
        rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(direction, t))
    }

    /// Parses an IP packet and looks it up.
    pub fn lookup_packet(
        &self,
        direction: Direction,
        packet: &[u8],
    ) -> Result<Option<&SpdRule>, WireError> {
        let t = FiveTuple::parse(packet)?;
        Ok(self.lookup(direction, &t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut v, b"data")
            .unwrap();
        v
    }

    fn spd() -> Spd {
        let dvipa: TrafficSelector = TrafficSelector::host("203.0.113.250".parse().unwrap());
        let mut s = Spd::new();
        // 1. DNS from the DVIPA bypasses.
        s.push(
            Direction::Outbound,
            SpdRule {
                local: dvipa.with_protocol(17).with_ports(53, 53),
                remote: TrafficSelector::any_v4(),
                action: SpdAction::Bypass,
            },
        );
        // 2. Everything from the DVIPA to the client pool is protected.
        s.push(
            Direction::Outbound,
            SpdRule {
                local: dvipa,
                remote: TrafficSelector::from_net("192.168.250.0/24".parse().unwrap()),
                action: SpdAction::Protect {
                    peer: "c".into(),
                    proposals: vec!["aes128gcm16".into()],
                    child: "net".into(),
                },
            },
        );
        // 3. Anything else from the DVIPA is discarded.
        s.push(
            Direction::Outbound,
            SpdRule {
                local: dvipa,
                remote: TrafficSelector::any_v4(),
                action: SpdAction::Discard,
            },
        );
        s
    }

    #[test]
    fn first_match_wins() {
        let s = spd();
        let dns = udp([203, 0, 113, 250], [192, 168, 250, 1], 53, 4000);
        assert_eq!(
            s.lookup_packet(Direction::Outbound, &dns)
                .unwrap()
                .unwrap()
                .action,
            SpdAction::Bypass
        );
        let app = udp([203, 0, 113, 250], [192, 168, 250, 1], 8080, 4000);
        assert!(matches!(
            &s.lookup_packet(Direction::Outbound, &app).unwrap().unwrap().action,
            SpdAction::Protect { child, .. } if child == "net"
        ));
        let elsewhere = udp([203, 0, 113, 250], [198, 51, 100, 1], 8080, 4000);
        assert_eq!(
            s.lookup_packet(Direction::Outbound, &elsewhere)
                .unwrap()
                .unwrap()
                .action,
            SpdAction::Discard
        );
        let other_src = udp([203, 0, 113, 1], [192, 168, 250, 1], 8080, 4000);
        assert!(s
            .lookup_packet(Direction::Outbound, &other_src)
            .unwrap()
            .is_none());
        // The inbound direction has no rules: no match.
        assert!(s.lookup_packet(Direction::Inbound, &app).unwrap().is_none());
        assert!(s.lookup_packet(Direction::Outbound, &[0x45, 0]).is_err());
    }

    #[test]
    fn inbound_uses_destination_as_local() {
        let mut s = Spd::new();
        s.push(
            Direction::Inbound,
            SpdRule {
                local: TrafficSelector::host("203.0.113.250".parse().unwrap())
                    .with_protocol(17)
                    .with_ports(8080, 8080),
                remote: TrafficSelector::any_v4(),
                action: SpdAction::Bypass,
            },
        );
        let to_app = udp([192, 168, 250, 1], [203, 0, 113, 250], 4000, 8080);
        assert!(s
            .lookup_packet(Direction::Inbound, &to_app)
            .unwrap()
            .is_some());
        let from_app = udp([203, 0, 113, 250], [192, 168, 250, 1], 8080, 4000);
        assert!(s
            .lookup_packet(Direction::Inbound, &from_app)
            .unwrap()
            .is_none());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Spd>(&json).unwrap(), s);
    }
}
