//! Child SA proposals and traffic selectors: the responder's choice of child config,
//! ESP proposal and narrowed selectors (§2.9), and the SA payloads both roles send.

use super::*;

/// What the responder picked for a Child SA.
pub(super) struct Selected {
    pub(super) cfg: ChildConfig,
    pub(super) esp: EspProposal,
    pub(super) num: u8,
    pub(super) spi_out: u32,
    pub(super) ts_remote: Vec<TrafficSelector>,
    pub(super) ts_local: Vec<TrafficSelector>,
    pub(super) mode: Mode,
}

/// Narrow the peer's selectors against ours (§2.9): every non-empty intersection.
//= https://www.rfc-editor.org/rfc/rfc7296#section-2.9
//# the responder is allowed to narrow the choices by selecting a subset
//# of the traffic, for instance by eliminating or narrowing the range of
//# one or more members of the set of traffic selectors
pub(super) fn narrow(theirs: &[TrafficSelector], ours: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for t in theirs {
        for o in ours {
            if let Some(x) = t.intersect(o) {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
        }
    }
    out
}

/// Responder: pick a child config, an ESP proposal the data plane can install
/// (`support`) and the narrowed selectors.
pub(super) fn select_child(
    pc: &PeerConfig,
    p: &[Payload],
    with_dh: Option<u16>,
    only: Option<&str>,
    support: &EspSupport,
) -> Result<Selected, u16> {
    let (Some(props), (Some(tsi), Some(tsr))) = (sa_of(p), ts_of(p)) else {
        return Err(notify::INVALID_SYNTAX);
    };
    let transport = find_notify(p, notify::USE_TRANSPORT_MODE).is_some();
    let mut ts_ok = false;
    for cfg in pc
        .children
        .iter()
        .filter(|c| only.is_none_or(|n| n == c.name))
    {
        // TSi is the initiator's side: our remote.
        let ts_remote = narrow(tsi, &cfg.remote_ts);
        let ts_local = narrow(tsr, &cfg.local_ts);
        if ts_remote.is_empty() || ts_local.is_empty() {
            continue;
        }
        ts_ok = true;
        for esp in cfg.esp_proposals.iter().filter(|e| support.allows(e)) {
            let with = with_dh.is_some() && esp.dh.is_some() && esp.dh == with_dh;
            if let Some(pr) = props.iter().find(|pr| esp.offered_by(pr, with)) {
                let mut esp = *esp;
                if !with {
                    esp.dh = None;
                }
                let spi_out = spi_of(&pr.spi);
                return Ok(Selected {
                    cfg: cfg.clone(),
                    esp,
                    num: pr.num,
                    spi_out,
                    ts_remote,
                    ts_local,
                    mode: if transport && cfg.mode == Mode::Transport {
                        Mode::Transport
                    } else {
                        Mode::Tunnel
                    },
                });
            }
        }
    }
    Err(if ts_ok {
        notify::NO_PROPOSAL_CHOSEN
    } else {
        notify::TS_UNACCEPTABLE
    })
}

/// `cfg` with only the ESP proposals the data plane can install; the error is why
/// none is left (a log line).
pub(super) fn installable(cfg: &ChildConfig, support: &EspSupport) -> Result<ChildConfig, String> {
    let mut cfg = cfg.clone();
    cfg.esp_proposals.retain(|e| support.allows(e));
    if cfg.esp_proposals.is_empty() {
        return Err(format!(
            "none of the ESP proposals of child '{}' can be installed by the data plane",
            cfg.name
        ));
    }
    Ok(cfg)
}

pub(super) fn esp_sa_payload(cfg: &ChildConfig, spi_in: u32, with_dh: bool) -> Payload {
    Payload::Sa(
        cfg.esp_proposals
            .iter()
            .enumerate()
            .map(|(i, e)| Proposal {
                num: i as u8 + 1,
                protocol: protocol::ESP,
                spi: spi_in.to_be_bytes().to_vec(),
                transforms: e.transforms(with_dh),
                unknown_attribute: false,
            })
            .collect(),
    )
}

pub(super) fn chosen_esp_payload(sel: &Selected, spi_in: u32) -> Payload {
    Payload::Sa(vec![Proposal {
        num: sel.num,
        protocol: protocol::ESP,
        spi: spi_in.to_be_bytes().to_vec(),
        transforms: sel.esp.transforms(sel.esp.dh.is_some()),
        unknown_attribute: false,
    }])
}
