//! One end of the cluster channel: seals outgoing messages, and opens incoming
//! ones in the order that costs an attacker most and the node least — framing,
//! arrival (the claimed sender's address and link from the [`NodeMap`]), HMAC,
//! then the sender's replay window, then the body.
//!
//! Re-synchronisation: a message outside its sender's window (more than 63
//! behind the highest sequence number seen, or more than
//! [`MAX_JUMP`](super::MAX_JUMP) ahead) is
//! held (at most [`HOLD_MAX`] per sender) and the sender is sent a Challenge
//! with a fresh nonce, at its address from the node map (at most one pending
//! per sender, renewed after [`RECHALLENGE`]). The sender answers every
//! distinct nonce once with a ChallengeAck sealed under its next sequence
//! number `A`; the challenger then restarts the window at `A` — up after the
//! sender restarted, down after a forged message had pushed it ahead — and
//! applies the held messages numbered in `(A - 64, A)`, those the sender sent
//! before its answer. Held messages numbered above `A` cannot be the sender's:
//! they are discarded. Challenge and ChallengeAck are authenticated but not
//! subject to the window (the nonce makes them fresh); a ChallengeAck that
//! answers no pending challenge is refused as a replay.

use super::window::{Position, ReplayWindow, REPLAY_WINDOW};
use super::{authenticate, header, seal_with, ClusterError, ClusterKey, Message};
use crate::link::{Arrival, NodeMap};
use crate::{ClusterTransmit, Destination, NodeId};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Most messages held per sender while it is challenged.
pub const HOLD_MAX: usize = 8;
/// A pending challenge is renewed (a new nonce sent) after this long.
pub const RECHALLENGE: Duration = Duration::from_secs(1);

/// One end of the cluster channel: seals outgoing messages and opens incoming
/// ones (see the module documentation for the checks and the re-synchronisation).
#[derive(Debug)]
pub struct ClusterEndpoint {
    key: ClusterKey,
    id: NodeId,
    next_seq: u64,
    first_seq: u64,
    nonces: u64,
    nodes: NodeMap,
    peers: HashMap<NodeId, Peer>,
    control: VecDeque<ClusterTransmit>,
    released: VecDeque<(NodeId, Message)>,
}

#[derive(Debug, Default)]
struct Peer {
    window: Option<ReplayWindow>,
    pending: Option<Pending>,
    /// The last nonce this node answered for that peer (each is answered once).
    answered: Option<u64>,
}

#[derive(Debug)]
struct Pending {
    nonce: u64,
    /// When the challenge went out (`None`: the caller gave no time).
    sent_at: Option<Instant>,
    held: Vec<(u64, Message)>,
}

impl ClusterEndpoint {
    /// An endpoint for node `id`. `first_seq` should be larger than any
    /// sequence number this node used before: seed it from a clock, for example
    /// microseconds since the Unix epoch at start-up (peers that remember an
    /// older life then see a jump and re-synchronise; they never mistake the new
    /// life's messages for replays).
    pub fn new(key: ClusterKey, id: NodeId, first_seq: u64) -> Self {
        ClusterEndpoint {
            key,
            id,
            next_seq: first_seq.max(1),
            first_seq,
            nonces: 0,
            nodes: NodeMap::new(),
            peers: HashMap::new(),
            control: VecDeque::new(),
            released: VecDeque::new(),
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The cluster nodes messages are accepted from (by [`ClusterEndpoint::receive`]
    /// with an [`Arrival`]).
    pub fn nodes(&self) -> &NodeMap {
        &self.nodes
    }

    /// The node map, to add or change nodes.
    pub fn nodes_mut(&mut self) -> &mut NodeMap {
        &mut self.nodes
    }

    /// Encode and authenticate `msg` with the next sequence number.
    pub fn seal(&mut self, msg: &Message) -> Vec<u8> {
        let seq = self.next_seq;
        self.next_seq += 1;
        seal_with(&self.key, self.id, seq, msg)
    }

    /// A Challenge or ChallengeAck this endpoint wants sent (drain after every
    /// [`ClusterEndpoint::receive`]).
    pub fn poll_control(&mut self) -> Option<ClusterTransmit> {
        self.control.pop_front()
    }

    /// A held message released by a re-synchronisation, to apply as if it had
    /// just arrived (drain after every [`ClusterEndpoint::receive`]).
    pub fn poll_released(&mut self) -> Option<(NodeId, Message)> {
        self.released.pop_front()
    }

    /// [`ClusterEndpoint::receive`] without an arrival check or a clock (codec
    /// tests and in-memory harnesses).
    pub fn open(&mut self, bytes: &[u8]) -> Result<(NodeId, Message), ClusterError> {
        self.receive(None, None, bytes)
    }

    /// Check and decode one message. `from` is where it arrived (checked
    /// against the node map; `None` skips the check, for in-memory harnesses);
    /// `now` paces challenges. On success returns the sender and the message,
    /// which the caller applies (Challenge and ChallengeAck need nothing more).
    /// Afterwards drain [`ClusterEndpoint::poll_control`] and
    /// [`ClusterEndpoint::poll_released`].
    pub fn receive(
        &mut self,
        now: Option<Instant>,
        from: Option<Arrival>,
        bytes: &[u8],
    ) -> Result<(NodeId, Message), ClusterError> {
        let h = header(bytes)?;
        if let Some(a) = from {
            if !self.nodes.admits(h.sender, a) {
                return Err(ClusterError::Misrouted {
                    sender: h.sender,
                    src: a.src,
                    link: a.link.0,
                });
            }
        }
        let body = authenticate(&self.key, bytes, &h)?;
        let (sender, seq) = (h.sender, h.seq);
        if sender == self.id {
            return Err(ClusterError::Replayed { sender, seq });
        }
        let msg = Message::decode_body(h.ty, body)?;
        match msg {
            Message::Challenge { nonce } => {
                self.answer(sender, nonce);
                Ok((sender, msg))
            }
            Message::ChallengeAck { nonce } => {
                self.resync(sender, seq, nonce)?;
                Ok((sender, msg))
            }
            msg => self.windowed(now, sender, seq, msg),
        }
    }

    /// The window check of an ordinary message.
    fn windowed(
        &mut self,
        now: Option<Instant>,
        sender: NodeId,
        seq: u64,
        msg: Message,
    ) -> Result<(NodeId, Message), ClusterError> {
        let peer = self.peers.entry(sender).or_default();
        let Some(w) = peer.window.as_mut() else {
            // First contact: nothing to compare with, the window starts here.
            // (A forged first message is undone by the first real one, which
            // falls outside and starts a re-synchronisation.)
            if seq == 0 {
                return Err(ClusterError::Replayed { sender, seq });
            }
            peer.window = Some(ReplayWindow::starting_at(seq));
            return Ok((sender, msg));
        };
        match w.position(seq) {
            Position::New => {
                w.update(seq);
                Ok((sender, msg))
            }
            Position::Duplicate => Err(ClusterError::Replayed { sender, seq }),
            Position::Outside => {
                self.hold(now, sender, seq, msg);
                Err(ClusterError::Unsynced { sender, seq })
            }
        }
    }

    /// Hold an out-of-window message and challenge its sender (unless a
    /// challenge is pending and recent).
    fn hold(&mut self, now: Option<Instant>, sender: NodeId, seq: u64, msg: Message) {
        let peer = self.peers.entry(sender).or_default();
        let renew = match &peer.pending {
            None => true,
            Some(p) => matches!(
                (p.sent_at, now),
                (Some(t), Some(n)) if n.saturating_duration_since(t) >= RECHALLENGE
            ),
        };
        let mut p = peer.pending.take().unwrap_or(Pending {
            nonce: 0,
            sent_at: now,
            held: Vec::new(),
        });
        if p.held.len() == HOLD_MAX {
            p.held.remove(0);
        }
        p.held.push((seq, msg));
        if renew {
            self.nonces += 1;
            p.nonce = nonce_of(&self.key, self.id, self.first_seq, self.nonces);
            p.sent_at = now;
            let bytes = self.seal(&Message::Challenge { nonce: p.nonce });
            self.control.push_back(ClusterTransmit {
                to: Destination::Node(sender),
                bytes,
            });
        }
        self.peers.entry(sender).or_default().pending = Some(p);
    }

    /// Answer a Challenge (each nonce once) with our next sequence number.
    fn answer(&mut self, sender: NodeId, nonce: u64) {
        let peer = self.peers.entry(sender).or_default();
        if peer.answered == Some(nonce) {
            return;
        }
        peer.answered = Some(nonce);
        let bytes = self.seal(&Message::ChallengeAck { nonce });
        self.control.push_back(ClusterTransmit {
            to: Destination::Node(sender),
            bytes,
        });
    }

    /// A ChallengeAck numbered `seq`: if it answers the pending challenge,
    /// restart the window at `seq` and release the held messages sent before.
    fn resync(&mut self, sender: NodeId, seq: u64, nonce: u64) -> Result<(), ClusterError> {
        let peer = self.peers.entry(sender).or_default();
        let Some(p) = peer.pending.take_if(|p| p.nonce == nonce) else {
            return Err(ClusterError::Replayed { sender, seq });
        };
        let mut w = ReplayWindow::starting_at(seq);
        let mut held = p.held;
        held.sort_by_key(|(s, _)| *s);
        for (s, m) in held {
            if s < seq && seq - s < REPLAY_WINDOW && w.position(s) == Position::New {
                w.update(s);
                self.released.push_back((sender, m));
            }
        }
        peer.window = Some(w);
        Ok(())
    }
}

/// A challenge nonce: HMAC(site key, "plexgate challenge" · own id · first
/// sequence number · counter), first 8 octets. Unpredictable to anyone
/// without the key; a key holder still has to receive the challenge, which
/// goes to the challenged node's address from policy.
fn nonce_of(key: &ClusterKey, id: NodeId, first_seq: u64, counter: u64) -> u64 {
    let mut m = Vec::with_capacity(36);
    m.extend_from_slice(b"plexgate challenge");
    m.extend_from_slice(&id.0.to_be_bytes());
    m.extend_from_slice(&first_seq.to_be_bytes());
    m.extend_from_slice(&counter.to_be_bytes());
    let t = key.sign(&m);
    let mut n = [0u8; 8];
    n.copy_from_slice(&t.as_ref()[..8]);
    u64::from_be_bytes(n)
}
