//! The per-sender replay window of the cluster channel: a 64-entry sliding
//! window over 64-bit sequence numbers (as the ESP window of RFC 4303 §3.4.3),
//! bounded ahead as well as behind. A sequence number is *new* when it is not
//! yet seen and lies at most 63 behind the highest seen (`top`) or at most
//! [`MAX_JUMP`] ahead of it; anything further away either side is *outside*:
//! the endpoint does not apply it and re-synchronises with the sender instead
//! (see [`super::ClusterEndpoint`]). The bound ahead is what keeps one message
//! — even one signed with the site key — from pushing `top` so far that the
//! sender's real messages fall behind the window for good.

/// Width of the per-sender replay window.
pub const REPLAY_WINDOW: u64 = 64;

/// How far ahead of the highest sequence number seen a message may be and
/// still be accepted without a challenge. A sender numbers its messages one by
/// one, so a larger jump means that many messages were lost (a long outage), or
/// that it restarted (it seeds its sequence from a clock in microseconds), or a
/// forgery: in every case the receiver asks the sender where it really is.
pub const MAX_JUMP: u64 = 1 << 16;

/// Where a sequence number falls relative to a [`ReplayWindow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Not seen, inside the window or at most [`MAX_JUMP`] ahead: accept.
    New,
    /// Seen already (or zero, which is never valid): a replay.
    Duplicate,
    /// More than 63 behind, or more than [`MAX_JUMP`] ahead: re-synchronise.
    Outside,
}

//= https://www.rfc-editor.org/rfc/rfc4303#section-3.4.3
//# Duplicates are rejected through the use of a sliding receive window.
/// A 64-entry sliding window over 64-bit sequence numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    top: u64,
    bitmap: u64,
}

impl ReplayWindow {
    /// A window whose only sequence number seen is `seq` (first contact, or
    /// the answer to a challenge).
    pub fn starting_at(seq: u64) -> Self {
        ReplayWindow {
            top: seq,
            bitmap: 1,
        }
    }

    /// The highest sequence number seen.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Where `seq` falls.
    pub fn position(&self, seq: u64) -> Position {
        if seq == 0 {
            return Position::Duplicate;
        }
        if seq > self.top {
            return if seq - self.top <= MAX_JUMP {
                Position::New
            } else {
                Position::Outside
            };
        }
        let diff = self.top - seq;
        if diff >= REPLAY_WINDOW {
            Position::Outside
        } else if self.bitmap & (1u64 << diff) != 0 {
            Position::Duplicate
        } else {
            Position::New
        }
    }

    /// True if `seq` is new (not seen, inside the window or at most
    /// [`MAX_JUMP`] ahead). Zero is never valid.
    pub fn check(&self, seq: u64) -> bool {
        self.position(seq) == Position::New
    }

    /// Record `seq` as seen (call only after [`ReplayWindow::check`] and authentication).
    pub fn update(&mut self, seq: u64) {
        if seq > self.top {
            let shift = seq - self.top;
            self.bitmap = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.bitmap << shift
            };
            self.bitmap |= 1;
            self.top = seq;
        } else {
            let diff = self.top - seq;
            if diff < REPLAY_WINDOW {
                self.bitmap |= 1u64 << diff;
            }
        }
    }
}
