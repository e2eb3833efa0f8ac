//! Helpers shared by the exchanges: payload lookups, notify names, the IKE suite of
//! a proposal and NAT detection (§2.23).

use super::*;

pub(super) fn nonce_of(p: &[Payload]) -> Option<&Vec<u8>> {
    p.iter().find_map(|p| match p {
        Payload::Nonce(n) => Some(n),
        _ => None,
    })
}

pub(super) fn ke_of(p: &[Payload]) -> Option<(u16, &Vec<u8>)> {
    p.iter().find_map(|p| match p {
        Payload::Ke { group, data } => Some((*group, data)),
        _ => None,
    })
}

pub(super) fn sa_of(p: &[Payload]) -> Option<&Vec<Proposal>> {
    p.iter().find_map(|p| match p {
        Payload::Sa(s) => Some(s),
        _ => None,
    })
}

pub(super) fn ts_of(
    p: &[Payload],
) -> (Option<&Vec<TrafficSelector>>, Option<&Vec<TrafficSelector>>) {
    let tsi = p.iter().find_map(|p| match p {
        Payload::TsI(t) => Some(t),
        _ => None,
    });
    let tsr = p.iter().find_map(|p| match p {
        Payload::TsR(t) => Some(t),
        _ => None,
    });
    (tsi, tsr)
}

/// Is a nonce long enough for `prf`?
//= https://www.rfc-editor.org/rfc/rfc7296#section-2.10
//# Nonces used in IKEv2 MUST be randomly chosen, MUST be at least 128 bits
//# in size, and MUST be at least half the key size of the negotiated
//# pseudorandom function (PRF).
pub(super) fn nonce_ok(prf: Prf, n: &[u8]) -> bool {
    n.len() >= 16.max(prf.len() / 2)
}

/// A Child SA SPI from a proposal or notify SPI field (0 when it is not 4 bytes).
pub(super) fn spi_of(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

/// The first error notify (type < 16384) of a chain.
pub(super) fn error_notify(p: &[Payload]) -> Option<&Notify> {
    crate::message::notifies(p).find(|n| n.kind < 16384)
}

pub(super) fn notify_name(kind: u16) -> String {
    match kind {
        notify::NO_PROPOSAL_CHOSEN => "NO_PROPOSAL_CHOSEN".into(),
        notify::INVALID_KE_PAYLOAD => "INVALID_KE_PAYLOAD".into(),
        notify::AUTHENTICATION_FAILED => "AUTHENTICATION_FAILED".into(),
        notify::TS_UNACCEPTABLE => "TS_UNACCEPTABLE".into(),
        notify::SINGLE_PAIR_REQUIRED => "SINGLE_PAIR_REQUIRED".into(),
        notify::NO_ADDITIONAL_SAS => "NO_ADDITIONAL_SAS".into(),
        notify::INTERNAL_ADDRESS_FAILURE => "INTERNAL_ADDRESS_FAILURE".into(),
        notify::FAILED_CP_REQUIRED => "FAILED_CP_REQUIRED".into(),
        notify::TEMPORARY_FAILURE => "TEMPORARY_FAILURE".into(),
        notify::CHILD_SA_NOT_FOUND => "CHILD_SA_NOT_FOUND".into(),
        notify::INVALID_SYNTAX => "INVALID_SYNTAX".into(),
        notify::UNSUPPORTED_CRITICAL_PAYLOAD => "UNSUPPORTED_CRITICAL_PAYLOAD".into(),
        k => format!("notify {k}"),
    }
}

pub(super) fn suite_of(p: &IkeProposal) -> Option<IkeSuite> {
    let s = IkeSuite {
        encr: p.encr,
        encr_bits: p.encr_bits,
        integ: p.integ,
        prf: Prf::from_id(p.prf)?,
        dh: p.dh,
    };
    s.validate().ok()?;
    Some(s)
}

pub(super) fn natd_payloads(
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
) -> [Payload; 2] {
    [
        Payload::notify(
            notify::NAT_DETECTION_SOURCE_IP,
            crypto::natd_hash(spi_i, spi_r, local).to_vec(),
        ),
        Payload::notify(
            notify::NAT_DETECTION_DESTINATION_IP,
            crypto::natd_hash(spi_i, spi_r, remote).to_vec(),
        ),
    ]
}

/// NAT detection from a peer's NAT_DETECTION_* notifies (§2.23): returns
/// (nat in front of us, nat in front of the peer), or None when the peer sent none.
//= https://www.rfc-editor.org/rfc/rfc7296#section-2.23
//# If none of the NAT_DETECTION_SOURCE_IP payload(s) received matches
//# the expected value of the source IP and port found from the IP header
//# of the packet containing the payload, it means that the system
//# sending those payloads is behind a NAT
pub(super) fn detect_nat(
    p: &[Payload],
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
) -> Option<(bool, bool)> {
    let src: Vec<&Notify> = crate::message::notifies(p)
        .filter(|n| n.kind == notify::NAT_DETECTION_SOURCE_IP)
        .collect();
    let dst = find_notify(p, notify::NAT_DETECTION_DESTINATION_IP)?;
    if src.is_empty() {
        return None;
    }
    let want_src = crypto::natd_hash(spi_i, spi_r, remote);
    let want_dst = crypto::natd_hash(spi_i, spi_r, local);
    let nat_remote = !src.iter().any(|n| n.data == want_src);
    let nat_local = dst.data != want_dst;
    Some((nat_local, nat_remote))
}
