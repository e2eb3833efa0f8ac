//! A small reliable TCP for the harness's hosts: three-way handshake with the MSS
//! option, a fixed window of segments, cumulative acknowledgments, go-back-N
//! retransmission on a doubling timeout, FIN in both directions and RST. It keeps
//! no out-of-order segment (the sender resends them), which is all a byte-exact
//! transfer over a lossy, reordering network needs. Time is passed in.
//!
//! Not RFC 9293 in full (no congestion control, no SACK, no window scaling, no
//! TIME-WAIT): it is a test double that the MSS clamping, CRT tracking and ESP
//! paths of plexgate see as ordinary TCP segments.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::packet::{flags, TcpSeg};

/// First retransmission timeout (doubles up to [`MAX_RTO`]).
pub const INITIAL_RTO: Duration = Duration::from_millis(200);
/// Largest retransmission timeout.
pub const MAX_RTO: Duration = Duration::from_secs(3);
/// Retransmissions of one segment before the connection gives up.
pub const MAX_RETRIES: u32 = 12;
/// Segments in flight at most.
pub const WINDOW_SEGMENTS: u64 = 16;

/// Connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// SYN sent, waiting for SYN-ACK.
    SynSent,
    /// SYN received, SYN-ACK sent, waiting for its ACK.
    SynReceived,
    /// Open (FINs may be on their way in either direction).
    Established,
    /// Both FINs sent and acknowledged.
    Closed,
    /// Reset by the peer, or aborted here.
    Reset,
    /// Gave up after [`MAX_RETRIES`] retransmissions.
    TimedOut,
}

/// The fields of a received segment the connection reads.
#[derive(Debug, Clone, Copy)]
pub struct SegIn<'a> {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flag bits.
    pub flags: u8,
    /// MSS option.
    pub mss: Option<u16>,
    /// Payload.
    pub payload: &'a [u8],
}

/// One TCP connection.
#[derive(Debug)]
pub struct TcpConn {
    local: SocketAddr,
    remote: SocketAddr,
    state: TcpState,
    mss: u16,
    iss: u32,
    /// Everything the application wrote (offset 0 = first data byte).
    tx: Vec<u8>,
    una: u64,
    nxt: u64,
    close_wanted: bool,
    fin_sent: bool,
    fin_acked: bool,
    rcv_nxt: u32,
    rx: Vec<u8>,
    peer_fin: bool,
    ack_due: bool,
    rto: Duration,
    rto_at: Option<Instant>,
    retries: u32,
    out: VecDeque<Vec<u8>>,
    /// Segments sent again after a timeout.
    pub retransmits: u64,
}

impl TcpConn {
    fn blank(local: SocketAddr, remote: SocketAddr, iss: u32, mss: u16, state: TcpState) -> Self {
        TcpConn {
            local,
            remote,
            state,
            mss,
            iss,
            tx: Vec::new(),
            una: 0,
            nxt: 0,
            close_wanted: false,
            fin_sent: false,
            fin_acked: false,
            rcv_nxt: 0,
            rx: Vec::new(),
            peer_fin: false,
            ack_due: false,
            rto: INITIAL_RTO,
            rto_at: None,
            retries: 0,
            out: VecDeque::new(),
            retransmits: 0,
        }
    }

    /// Active open: queues a SYN with our MSS.
    pub fn connect(
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        iss: u32,
        mss: u16,
    ) -> Self {
        let mut c = Self::blank(local, remote, iss, mss, TcpState::SynSent);
        c.send_syn(now);
        c
    }

    /// Passive open on a received SYN: queues the SYN-ACK.
    pub fn accept(
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        syn: &SegIn<'_>,
        iss: u32,
        mss: u16,
    ) -> Self {
        let mut c = Self::blank(local, remote, iss, mss, TcpState::SynReceived);
        c.rcv_nxt = syn.seq.wrapping_add(1);
        c.mss = c.mss.min(syn.mss.unwrap_or(536));
        c.send_syn(now);
        c
    }

    fn send_syn(&mut self, now: Instant) {
        let (f, ack) = match self.state {
            TcpState::SynSent => (flags::SYN, 0),
            _ => (flags::SYN | flags::ACK, self.rcv_nxt),
        };
        self.emit(self.iss, ack, f, Some(self.mss), Vec::new());
        self.arm(now);
    }

    /// Local and remote endpoints.
    pub fn endpoints(&self) -> (SocketAddr, SocketAddr) {
        (self.local, self.remote)
    }

    /// The state.
    pub fn state(&self) -> TcpState {
        self.state
    }

    /// The MSS in use (ours, lowered to the peer's).
    pub fn mss(&self) -> u16 {
        self.mss
    }

    /// Bytes received in order so far.
    pub fn received(&self) -> &[u8] {
        &self.rx
    }

    /// Take the bytes received so far.
    pub fn take_received(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.rx)
    }

    /// The peer sent its FIN (and everything before it arrived).
    pub fn peer_closed(&self) -> bool {
        self.peer_fin
    }

    /// Every byte written has been acknowledged.
    pub fn all_acked(&self) -> bool {
        self.una == self.tx.len() as u64
    }

    /// Queue application bytes.
    pub fn send(&mut self, now: Instant, bytes: &[u8]) {
        self.tx.extend_from_slice(bytes);
        self.flush(now);
    }

    /// Send FIN once all written bytes are out.
    pub fn close(&mut self, now: Instant) {
        self.close_wanted = true;
        self.flush(now);
    }

    /// Abort: queue a RST and forget the connection.
    pub fn abort(&mut self) {
        if matches!(self.state, TcpState::Established | TcpState::SynReceived) {
            let seq = self.seq_of(self.nxt);
            self.emit(seq, self.rcv_nxt, flags::RST | flags::ACK, None, Vec::new());
        }
        self.state = TcpState::Reset;
        self.rto_at = None;
    }

    /// Next IP packet to send.
    pub fn poll_packet(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// When [`TcpConn::handle_timeout`] must run.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.rto_at
    }

    fn seq_of(&self, data_off: u64) -> u32 {
        self.iss.wrapping_add(1).wrapping_add(data_off as u32)
    }

    fn emit(&mut self, seq: u32, ack: u32, f: u8, mss: Option<u16>, payload: Vec<u8>) {
        let seg = TcpSeg {
            src: self.local,
            dst: self.remote,
            seq,
            ack,
            flags: f,
            window: 65535,
            mss,
            payload,
        };
        if let Some(p) = seg.build() {
            self.out.push_back(p);
        }
    }

    fn arm(&mut self, now: Instant) {
        if self.rto_at.is_none() {
            self.rto_at = Some(now + self.rto);
        }
    }

    fn outstanding(&self) -> bool {
        matches!(self.state, TcpState::SynSent | TcpState::SynReceived)
            || self.nxt > self.una
            || (self.fin_sent && !self.fin_acked)
    }

    /// Send what the window allows, the FIN when due, and an ACK if one is owed.
    fn flush(&mut self, now: Instant) {
        if self.state != TcpState::Established {
            return;
        }
        let wnd = WINDOW_SEGMENTS * u64::from(self.mss);
        let total = self.tx.len() as u64;
        let mut sent = false;
        while self.nxt < total && self.nxt - self.una < wnd {
            let n = (total - self.nxt)
                .min(u64::from(self.mss))
                .min(wnd - (self.nxt - self.una));
            let (a, b) = (self.nxt as usize, (self.nxt + n) as usize);
            let payload = self.tx[a..b].to_vec();
            let seq = self.seq_of(self.nxt);
            self.emit(seq, self.rcv_nxt, flags::ACK | flags::PSH, None, payload);
            self.nxt += n;
            sent = true;
        }
        if self.close_wanted && !self.fin_sent && self.nxt == total {
            let seq = self.seq_of(self.nxt);
            self.emit(seq, self.rcv_nxt, flags::FIN | flags::ACK, None, Vec::new());
            self.fin_sent = true;
            sent = true;
        }
        if self.ack_due && !sent {
            let seq = self.seq_of(self.nxt + u64::from(self.fin_sent));
            self.emit(seq, self.rcv_nxt, flags::ACK, None, Vec::new());
        }
        self.ack_due = false;
        if self.outstanding() {
            self.arm(now);
        }
        if self.fin_acked && self.peer_fin {
            self.state = TcpState::Closed;
            self.rto_at = None;
        }
    }

    /// A segment for this connection arrived.
    pub fn on_segment(&mut self, now: Instant, s: &SegIn<'_>) {
        if matches!(
            self.state,
            TcpState::Closed | TcpState::Reset | TcpState::TimedOut
        ) {
            return;
        }
        if s.flags & flags::RST != 0 {
            let ok = match self.state {
                TcpState::SynSent => s.ack == self.iss.wrapping_add(1),
                _ => s.seq == self.rcv_nxt,
            };
            if ok {
                self.state = TcpState::Reset;
                self.rto_at = None;
            }
            return;
        }
        if s.flags & flags::SYN != 0 {
            self.on_syn(now, s);
            return;
        }
        if self.state == TcpState::SynSent {
            return;
        }
        if s.flags & flags::ACK != 0 {
            self.on_ack(now, s.ack);
        }
        if self.state != TcpState::Established {
            return;
        }
        self.on_data(s);
        self.flush(now);
    }

    fn on_syn(&mut self, now: Instant, s: &SegIn<'_>) {
        match self.state {
            TcpState::SynSent if s.flags & flags::ACK != 0 && s.ack == self.iss.wrapping_add(1) => {
                self.rcv_nxt = s.seq.wrapping_add(1);
                self.mss = self.mss.min(s.mss.unwrap_or(536));
                self.state = TcpState::Established;
                self.progress(now);
                self.ack_due = true;
                self.flush(now);
            }
            // Our SYN-ACK or our ACK of theirs was lost: say it again.
            TcpState::SynReceived if s.seq.wrapping_add(1) == self.rcv_nxt => {
                self.emit(
                    self.iss,
                    self.rcv_nxt,
                    flags::SYN | flags::ACK,
                    Some(self.mss),
                    Vec::new(),
                );
            }
            TcpState::Established if s.seq.wrapping_add(1) == self.rcv_nxt => {
                self.ack_due = true;
                self.flush(now);
            }
            _ => {}
        }
    }

    fn on_ack(&mut self, now: Instant, ack: u32) {
        if self.state == TcpState::SynReceived {
            if ack != self.iss.wrapping_add(1) {
                return;
            }
            self.state = TcpState::Established;
            self.progress(now);
        }
        let delta = u64::from(ack.wrapping_sub(self.iss.wrapping_add(1)));
        let top = self.nxt + u64::from(self.fin_sent);
        if delta < self.una || delta > top {
            return;
        }
        let before = (self.una, self.fin_acked);
        self.una = delta.min(self.nxt);
        if self.fin_sent && delta == self.nxt + 1 {
            self.fin_acked = true;
        }
        if (self.una, self.fin_acked) != before {
            self.progress(now);
        }
    }

    /// Forward progress: the timer restarts from the initial timeout.
    fn progress(&mut self, now: Instant) {
        self.rto = INITIAL_RTO;
        self.retries = 0;
        self.rto_at = None;
        if self.outstanding() {
            self.arm(now);
        }
    }

    fn on_data(&mut self, s: &SegIn<'_>) {
        let fin = s.flags & flags::FIN != 0;
        if s.payload.is_empty() && !fin {
            return;
        }
        self.ack_due = true;
        if s.seq != self.rcv_nxt || self.peer_fin {
            return; // out of order or a duplicate: the ACK says what we expect
        }
        self.rx.extend_from_slice(s.payload);
        self.rcv_nxt = self.rcv_nxt.wrapping_add(s.payload.len() as u32);
        if fin {
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
            self.peer_fin = true;
        }
    }

    /// The retransmission timer: resend from the first unacknowledged byte.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.rto_at.is_none_or(|t| now < t) {
            return;
        }
        self.rto_at = None;
        if !self.outstanding() {
            return;
        }
        self.retries += 1;
        if self.retries > MAX_RETRIES {
            self.state = TcpState::TimedOut;
            return;
        }
        self.rto = (self.rto * 2).min(MAX_RTO);
        self.retransmits += 1;
        match self.state {
            TcpState::SynSent | TcpState::SynReceived => self.send_syn(now),
            _ => {
                self.nxt = self.una;
                if !self.fin_acked {
                    self.fin_sent = false;
                }
                self.flush(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::packet::{parse, Parsed};
    use super::*;
    use crate::sim::rng::SimRng;

    fn seg_in(p: &[u8]) -> SegIn<'_> {
        match parse(p).unwrap() {
            Parsed::Tcp {
                seq,
                ack,
                flags,
                mss,
                payload,
                ..
            } => SegIn {
                seq,
                ack,
                flags,
                mss,
                payload,
            },
            other => panic!("{other:?}"),
        }
    }

    /// Two connections joined by a link that drops and swaps packets: the data
    /// arrives byte-exact both ways and both sides close.
    #[test]
    fn transfer_over_a_lossy_reordering_link() {
        let (a, b): (SocketAddr, SocketAddr) = (
            "192.0.2.1:40000".parse().unwrap(),
            "198.51.100.7:80".parse().unwrap(),
        );
        let mut now = Instant::now();
        let mut rng = SimRng::new(3, 0);
        let mut c = TcpConn::connect(now, a, b, 1000, 1400);
        let syn = c.poll_packet().unwrap();
        let mut s = TcpConn::accept(now, b, a, &seg_in(&syn), u32::MAX - 5, 1200);
        assert_eq!(c.mss(), 1400);
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut sent_c = false;
        for _ in 0..20_000 {
            let mut wire: Vec<(bool, Vec<u8>)> = Vec::new();
            while let Some(p) = c.poll_packet() {
                wire.push((true, p));
            }
            while let Some(p) = s.poll_packet() {
                wire.push((false, p));
            }
            if wire.len() > 1 && rng.chance(0.3) {
                wire.swap(0, 1);
            }
            for (to_s, p) in wire {
                if rng.chance(0.1) {
                    continue;
                }
                if to_s {
                    s.on_segment(now, &seg_in(&p));
                } else {
                    c.on_segment(now, &seg_in(&p));
                }
            }
            if c.state() == TcpState::Established && !sent_c {
                c.send(now, &data);
                c.close(now);
                sent_c = true;
            }
            let got = s.take_received();
            if !got.is_empty() {
                s.send(now, &got);
            }
            if s.peer_closed() {
                s.close(now);
            }
            if c.state() == TcpState::Closed && s.state() == TcpState::Closed {
                break;
            }
            now += Duration::from_millis(50);
            c.handle_timeout(now);
            s.handle_timeout(now);
        }
        assert_eq!(c.state(), TcpState::Closed);
        assert_eq!(s.state(), TcpState::Closed);
        assert_eq!(c.received(), &data[..]);
        assert!(c.retransmits + s.retransmits > 0, "the link lost something");
        assert_eq!(s.mss(), 1200);
    }

    #[test]
    fn rst_ends_and_silence_times_out() {
        let (a, b): (SocketAddr, SocketAddr) = (
            "192.0.2.1:40000".parse().unwrap(),
            "198.51.100.7:80".parse().unwrap(),
        );
        let mut now = Instant::now();
        let mut c = TcpConn::connect(now, a, b, 1, 1400);
        let syn = c.poll_packet().unwrap();
        let mut s = TcpConn::accept(now, b, a, &seg_in(&syn), 77, 1400);
        let synack = s.poll_packet().unwrap();
        c.on_segment(now, &seg_in(&synack));
        let ack = c.poll_packet().unwrap();
        s.on_segment(now, &seg_in(&ack));
        assert_eq!(s.state(), TcpState::Established);
        s.abort();
        let rst = s.poll_packet().unwrap();
        c.on_segment(now, &seg_in(&rst));
        assert_eq!(c.state(), TcpState::Reset);
        let mut lone = TcpConn::connect(now, a, b, 1, 1400);
        for _ in 0..100 {
            now += MAX_RTO;
            lone.handle_timeout(now);
        }
        assert_eq!(lone.state(), TcpState::TimedOut);
        assert_eq!(lone.retransmits, u64::from(MAX_RETRIES));
    }
}
