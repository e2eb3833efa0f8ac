//! Errors of the ESP data path and the drop counters the daemon exports.
//!
//! Every reason to drop a packet is one [`EspError`] variant with a readable
//! message, and one field of [`Counters`], so that a Prometheus exporter can show
//! why traffic is being dropped. Incrementing a counter is a plain `u64` add on
//! a struct the caller owns (one per worker thread; sum them when exporting).

use core::fmt;

/// Why an ESP packet was not sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EspError {
    /// The packet is shorter than header + IV + ICV + minimal trailer, or its
    /// ciphertext is not a whole number of cipher blocks.
    #[error("truncated or misaligned ESP packet ({len} bytes)")]
    Truncated {
        /// Length of the ESP packet.
        len: usize,
    },
    /// No inbound SA has this SPI (RFC 4303 §3.4.2: discard and audit).
    #[error("unknown SPI {0:#010x}")]
    UnknownSpi(u32),
    /// The sequence number was already received or is left of the window
    /// (RFC 4303 §3.4.3).
    #[error("replayed or too old sequence number {0}")]
    Replay(u64),
    /// Integrity check failed (RFC 4303 §3.4.4).
    #[error("ICV verification failed")]
    BadIcv,
    /// Pad bytes are not 1, 2, 3, ... or the pad length exceeds the payload
    /// (RFC 4303 §2.4).
    #[error("bad ESP padding")]
    BadPadding,
    /// The next header does not fit the SA's mode (tunnel mode needs 4 or 41
    /// and a matching inner IP version).
    #[error("unexpected next header {0}")]
    BadNextHeader(u8),
    /// A dummy packet (next header 59, RFC 4303 §2.6): authentic, to be
    /// discarded silently.
    #[error("dummy packet (next header 59)")]
    DummyPacket,
    /// The decrypted inner packet does not match the SA's traffic selectors
    /// (RFC 4301 §5.2 step 4).
    #[error("inner packet does not match the SA's traffic selectors")]
    SelectorMismatch,
    /// The outbound sequence number space is used up; the SA must be rekeyed
    /// (RFC 4303 §3.3.3).
    #[error("sequence number space exhausted: rekey the SA")]
    SeqExhausted,
    /// The SA reached its hard lifetime (RFC 4301 §4.4.2.1).
    #[error("SA lifetime expired")]
    SaExpired,
    /// The caller's output buffer is too small.
    #[error("output buffer too small: need {needed} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// Seal on an inbound SA or open on an outbound SA.
    #[error("SA used in the wrong direction")]
    WrongDirection,
}

/// Why SA parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaError {
    /// Unsupported combination of IKEv2 transform IDs / key length.
    #[error("unsupported ESP transform: encr {encr} ({key_bits:?} bits), integ {integ:?}")]
    UnsupportedTransform {
        /// ENCR transform ID.
        encr: u16,
        /// Key length attribute.
        key_bits: Option<u16>,
        /// INTEG transform ID.
        integ: Option<u16>,
    },
    /// A key does not have the length the transform needs.
    #[error("{which} key has {have} bytes, transform needs {needed}")]
    KeyLength {
        /// "encryption" or "integrity".
        which: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        have: usize,
    },
    /// Replay window below the minimum.
    #[error("replay window {0} is below the minimum of {min}", min = crate::replay::MIN_WINDOW)]
    ReplayWindow(u32),
    /// An initial sequence number beyond the 32-bit space without ESN.
    #[error("initial sequence number {0} needs ESN")]
    InitialSeq(u64),
    /// SPI 0 is reserved (RFC 4303 §2.1).
    #[error("SPI 0 is reserved")]
    ZeroSpi,
    /// An SA with this SPI and direction is already installed.
    #[error("duplicate SPI {0:#010x}")]
    DuplicateSpi(u32),
    /// The random generator failed.
    #[error("system random generator failed")]
    Rng,
    /// The remote selectors of a new Child SA overlap those of an SA that
    /// belongs to another peer identity under the same (peer, child): one peer
    /// must never receive another's traffic (RFC 4301 §4.4.1).
    #[error("its remote traffic selectors are held by another peer ({owner})")]
    SelectorsHeld {
        /// The identity holding them.
        owner: String,
    },
    /// An inbound SA given where an outbound one was expected, or the reverse.
    #[error("SA parameters of the wrong direction")]
    WrongDirection,
}

/// Per-reason drop counters plus traffic totals. Plain integers: one instance
/// per worker, summed for export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Packets opened successfully.
    pub rx_packets: u64,
    /// Inner bytes opened successfully.
    pub rx_bytes: u64,
    /// Packets sealed.
    pub tx_packets: u64,
    /// Inner bytes sealed.
    pub tx_bytes: u64,
    /// [`EspError::Truncated`].
    pub drop_truncated: u64,
    /// [`EspError::UnknownSpi`].
    pub drop_unknown_spi: u64,
    /// [`EspError::Replay`].
    pub drop_replay: u64,
    /// [`EspError::BadIcv`].
    pub drop_bad_icv: u64,
    /// [`EspError::BadPadding`].
    pub drop_bad_padding: u64,
    /// [`EspError::BadNextHeader`].
    pub drop_bad_next_header: u64,
    /// [`EspError::DummyPacket`].
    pub drop_dummy: u64,
    /// [`EspError::SelectorMismatch`].
    pub drop_selector_mismatch: u64,
    /// [`EspError::SeqExhausted`].
    pub drop_seq_exhausted: u64,
    /// [`EspError::SaExpired`].
    pub drop_sa_expired: u64,
    /// [`EspError::BufferTooSmall`] and [`EspError::WrongDirection`].
    pub drop_other: u64,
}

impl Counters {
    /// Counts one dropped packet.
    #[inline]
    pub fn record_drop(&mut self, e: &EspError) {
        let c = match e {
            EspError::Truncated { .. } => &mut self.drop_truncated,
            EspError::UnknownSpi(_) => &mut self.drop_unknown_spi,
            EspError::Replay(_) => &mut self.drop_replay,
            EspError::BadIcv => &mut self.drop_bad_icv,
            EspError::BadPadding => &mut self.drop_bad_padding,
            EspError::BadNextHeader(_) => &mut self.drop_bad_next_header,
            EspError::DummyPacket => &mut self.drop_dummy,
            EspError::SelectorMismatch => &mut self.drop_selector_mismatch,
            EspError::SeqExhausted => &mut self.drop_seq_exhausted,
            EspError::SaExpired => &mut self.drop_sa_expired,
            EspError::BufferTooSmall { .. } | EspError::WrongDirection => &mut self.drop_other,
        };
        *c += 1;
    }

    /// Adds another worker's counters.
    pub fn merge(&mut self, o: &Counters) {
        for ((_, a), (_, b)) in self.fields_mut().into_iter().zip(o.fields()) {
            *a += b;
        }
    }

    /// `(name, value)` pairs, for an exporter (names are Prometheus-friendly).
    pub fn fields(&self) -> [(&'static str, u64); 15] {
        [
            ("rx_packets", self.rx_packets),
            ("rx_bytes", self.rx_bytes),
            ("tx_packets", self.tx_packets),
            ("tx_bytes", self.tx_bytes),
            ("drop_truncated", self.drop_truncated),
            ("drop_unknown_spi", self.drop_unknown_spi),
            ("drop_replay", self.drop_replay),
            ("drop_bad_icv", self.drop_bad_icv),
            ("drop_bad_padding", self.drop_bad_padding),
            ("drop_bad_next_header", self.drop_bad_next_header),
            ("drop_dummy", self.drop_dummy),
            ("drop_selector_mismatch", self.drop_selector_mismatch),
            ("drop_seq_exhausted", self.drop_seq_exhausted),
            ("drop_sa_expired", self.drop_sa_expired),
            ("drop_other", self.drop_other),
        ]
    }

    fn fields_mut(&mut self) -> [(&'static str, &mut u64); 15] {
        [
            ("rx_packets", &mut self.rx_packets),
            ("rx_bytes", &mut self.rx_bytes),
            ("tx_packets", &mut self.tx_packets),
            ("tx_bytes", &mut self.tx_bytes),
            ("drop_truncated", &mut self.drop_truncated),
            ("drop_unknown_spi", &mut self.drop_unknown_spi),
            ("drop_replay", &mut self.drop_replay),
            ("drop_bad_icv", &mut self.drop_bad_icv),
            ("drop_bad_padding", &mut self.drop_bad_padding),
            ("drop_bad_next_header", &mut self.drop_bad_next_header),
            ("drop_dummy", &mut self.drop_dummy),
            ("drop_selector_mismatch", &mut self.drop_selector_mismatch),
            ("drop_seq_exhausted", &mut self.drop_seq_exhausted),
            ("drop_sa_expired", &mut self.drop_sa_expired),
            ("drop_other", &mut self.drop_other),
        ]
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, v)) in self.fields().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_counter() {
        let all = [
            EspError::Truncated { len: 3 },
            EspError::UnknownSpi(1),
            EspError::Replay(1),
            EspError::BadIcv,
            EspError::BadPadding,
            EspError::BadNextHeader(6),
            EspError::DummyPacket,
            EspError::SelectorMismatch,
            EspError::SeqExhausted,
            EspError::SaExpired,
            EspError::WrongDirection,
        ];
        let mut c = Counters::default();
        for e in &all {
            c.record_drop(e);
        }
        let drops: u64 = c.fields()[4..].iter().map(|(_, v)| v).sum();
        assert_eq!(drops, all.len() as u64);
        // Each of the ten specific reasons landed in a distinct field.
        assert!(c.fields()[4..14].iter().all(|(_, v)| *v == 1));
        let mut m = c;
        m.merge(&c);
        assert_eq!(m.drop_bad_icv, 2);
        assert!(c.to_string().contains("drop_replay=1"));
    }
}
