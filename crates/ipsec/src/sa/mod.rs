//! A Child SA's data plane: parameters (a serializable record from which a
//! backup gateway can rebuild the SA, `params.rs`), and seal / open of ESP
//! packets in caller buffers (RFC 4303 §3.3 outbound in `seal.rs`, §3.4
//! inbound in `open.rs`), with the SA's sequence, replay and lifetime state.
//!
//! ESP packet layout (RFC 4303 §2): `SPI | Seq | IV | ciphertext | ICV`, where
//! the ciphertext covers `inner | padding 1,2,3,... | pad length | next header`.
//! Nothing on the seal/open path allocates.

use crate::error::{EspError, SaError};
use crate::replay::{ReplayWindow, MIN_WINDOW};
use crate::selector::{inbound_matches, outbound_matches, InboundSelectors};
use crate::transform::EspCipher;
use crate::transport::TransportPacket;
use plexgate_wire::ip::FiveTuple;
use std::time::{Duration, Instant};

mod open;
mod params;
mod seal;
#[cfg(test)]
mod tests;

pub use open::Opened;
pub use params::{ChildSaConfig, Direction, Lifetime, Limits, Mode, SaParams, UdpEncapPorts};

/// Length of the ESP header (SPI + sequence number).
pub const ESP_HEADER_LEN: usize = plexgate_wire::esp::HEADER_LEN;

/// Lifetime events an SA raises (collected by the SAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    None,
    Soft,
    Hard,
}

/// Byte and packet counts of one SA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SaStats {
    /// Inner bytes sealed or opened.
    pub bytes: u64,
    /// Packets sealed or opened.
    pub packets: u64,
    /// Packets dropped as replays (inbound).
    pub replay_drops: u64,
    /// Packets dropped for a bad ICV (inbound).
    pub icv_failures: u64,
}

/// A live SA: cipher, sequence state, replay window, lifetime bookkeeping.
#[derive(Debug)]
pub struct SecurityAssociation {
    params: SaParams,
    cipher: EspCipher,
    /// Outbound: last sequence number used. Inbound: unused.
    last_seq: u64,
    seq_max: u64,
    seq_soft: u64,
    window: Option<ReplayWindow>,
    created: Instant,
    /// `created` + the hard lifetime in seconds, computed once (`None`: no
    /// time limit, or beyond what `Instant` can represent): the per-packet
    /// check is one comparison instead of a duration subtraction.
    hard_deadline: Option<Instant>,
    /// `params.local_ts` / `remote_ts` prepared for the inbound check.
    selectors_in: InboundSelectors,
    stats: SaStats,
    soft_bytes: u64,
    soft_packets: u64,
    hard_bytes: u64,
    hard_packets: u64,
    soft_done: bool,
    expired: bool,
    pub(crate) pending: Pending,
}

impl SecurityAssociation {
    /// Creates the SA at time `now` (lifetimes in seconds count from `now`).
    pub fn new(params: SaParams, now: Instant) -> Result<Self, SaError> {
        if params.spi == 0 {
            return Err(SaError::ZeroSpi);
        }
        let cipher = EspCipher::new(params.transform, &params.enc_key, &params.integ_key)?;
        // With anti-replay disabled the window still tracks the highest
        // number received, which ESN inference needs.
        let window = match (params.direction, params.replay_window) {
            (Direction::Inbound, 0) => {
                Some(ReplayWindow::starting_at(MIN_WINDOW, params.initial_seq))
            }
            (Direction::Inbound, w) if w < MIN_WINDOW => return Err(SaError::ReplayWindow(w)),
            (Direction::Inbound, w) => Some(ReplayWindow::starting_at(w, params.initial_seq)),
            (Direction::Outbound, _) => None,
        };
        //= https://www.rfc-editor.org/rfc/rfc4303#section-3.3.3
        //# the sender's counter and the receiver's counter MUST NOT be allowed to cycle
        if params.direction == Direction::Outbound
            && !params.esn
            && params.initial_seq > u64::from(u32::MAX)
        {
            return Err(SaError::InitialSeq(params.initial_seq));
        }
        let seq_max = if params.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        let seq_soft = seq_max - seq_max / 16;
        let lim = |v: Option<u64>| v.unwrap_or(u64::MAX);
        let hard_deadline = params
            .lifetime
            .hard
            .seconds
            .and_then(|s| now.checked_add(Duration::from_secs(s)));
        Ok(SecurityAssociation {
            last_seq: params.initial_seq,
            seq_max,
            seq_soft,
            window,
            created: now,
            hard_deadline,
            selectors_in: InboundSelectors::new(&params.local_ts, &params.remote_ts),
            stats: SaStats::default(),
            soft_bytes: lim(params.lifetime.soft.bytes),
            soft_packets: lim(params.lifetime.soft.packets),
            hard_bytes: lim(params.lifetime.hard.bytes),
            hard_packets: lim(params.lifetime.hard.packets),
            soft_done: false,
            expired: false,
            pending: Pending::None,
            cipher,
            params,
        })
    }

    /// The parameters this SA was built from.
    pub fn params(&self) -> &SaParams {
        &self.params
    }

    /// SPI.
    pub fn spi(&self) -> u32 {
        self.params.spi
    }

    /// Counts of this SA.
    pub fn stats(&self) -> SaStats {
        self.stats
    }

    /// Outbound: the last sequence number used (store it in recovery records).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Inbound: highest sequence number accepted so far.
    pub fn highest_received(&self) -> Option<u64> {
        self.window.as_ref().map(ReplayWindow::top)
    }

    /// Whether a soft limit was reached (a rekey should be started).
    pub fn needs_rekey(&self) -> bool {
        self.soft_done
    }

    /// Whether a hard limit was reached: the SA refuses all traffic.
    pub fn is_expired(&self) -> bool {
        self.expired
    }

    /// When the soft and hard time limits fall.
    pub fn deadlines(&self) -> (Option<Instant>, Option<Instant>) {
        let at = |s: Option<u64>| s.and_then(|s| self.created.checked_add(Duration::from_secs(s)));
        (
            at(self.params.lifetime.soft.seconds),
            at(self.params.lifetime.hard.seconds),
        )
    }

    /// Bytes before the inner packet when sealing in place (header + IV).
    pub fn header_len(&self) -> usize {
        ESP_HEADER_LEN + self.params.transform.iv_len()
    }

    /// Total ESP length for an inner packet of `inner_len` bytes.
    pub fn sealed_len(&self, inner_len: usize) -> usize {
        inner_len + self.params.transform.overhead(inner_len)
    }

    /// Applies time-based lifetimes; returns true if something changed.
    pub(crate) fn handle_time(&mut self, now: Instant) -> bool {
        let (soft, hard) = self.deadlines();
        let before = (self.soft_done, self.expired);
        if hard.is_some_and(|h| now >= h) {
            self.expire();
        } else if soft.is_some_and(|s| now >= s) {
            self.soft();
        }
        before != (self.soft_done, self.expired)
    }

    fn soft(&mut self) {
        if !self.soft_done && !self.expired {
            self.soft_done = true;
            self.pending = Pending::Soft;
        }
    }

    fn expire(&mut self) {
        if !self.expired {
            self.expired = true;
            self.pending = Pending::Hard;
        }
    }

    #[inline(always)]
    fn account(&mut self, inner_len: usize) {
        self.stats.bytes += inner_len as u64;
        self.stats.packets += 1;
        if self.stats.bytes >= self.hard_bytes || self.stats.packets >= self.hard_packets {
            self.expire();
        } else if !self.soft_done
            && (self.stats.bytes >= self.soft_bytes
                || self.stats.packets >= self.soft_packets
                || self.last_seq >= self.seq_soft)
        {
            self.soft();
        }
    }

    #[inline]
    fn check_alive(&mut self, now: Instant) -> Result<(), EspError> {
        // now - created >= hard seconds  <=>  now >= created + hard seconds
        // (RFC 4301 §4.4.2.1: a hard lifetime ends the SA).
        if !self.expired && self.hard_deadline.is_some_and(|d| now >= d) {
            self.expire();
        }
        if self.expired {
            Err(EspError::SaExpired)
        } else {
            Ok(())
        }
    }

    /// The peer now sends from `addr` and, with UDP encapsulation, `port`
    /// (NAT rebinding, RFC 7296 §2.23): packets of this SA go there from now on.
    pub fn move_peer(&mut self, addr: std::net::IpAddr, port: u16) {
        self.params.remote_addr = addr;
        if let Some(e) = self.params.encap.as_mut() {
            e.remote_port = port;
        }
    }

    /// For an SA in transport mode, the packet `opened` (a result of this
    /// inbound SA's open) belongs to: outer addresses, protocol and payload,
    /// to check again or to rebuild the IP packet around the payload. `None`
    /// in tunnel mode, where `buf[opened.inner]` is the whole inner packet.
    pub fn transport_packet(&self, opened: &Opened) -> Option<TransportPacket> {
        if self.params.mode != Mode::Transport {
            return None;
        }
        let (src, dst) = self.params.outer_src_dst();
        Some(TransportPacket {
            src,
            dst,
            protocol: opened.next_header,
            payload: opened.inner.clone(),
        })
    }

    /// Whether an inner packet may be sent on (outbound) or was allowed to
    /// arrive on (inbound) this SA, by its traffic selectors (RFC 4301 §5.1,
    /// §5.2 step 4). Unparseable packets do not match.
    pub fn selectors_match(&self, inner: &[u8]) -> bool {
        let Ok(t) = FiveTuple::parse(inner) else {
            return false;
        };
        match self.params.direction {
            Direction::Inbound => {
                inbound_matches(&self.params.local_ts, &self.params.remote_ts, &t)
            }
            Direction::Outbound => {
                outbound_matches(&self.params.local_ts, &self.params.remote_ts, &t)
            }
        }
    }
}
