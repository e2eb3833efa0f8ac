//! Child SA proposals and traffic selectors: the responder's choice of child config,
//! ESP proposal and narrowed selectors (§2.9), with PFS enforced and only what the
//! data plane can install; the peer's own address for `dynamic` selectors; and the SA
//! payloads both roles send.

use std::net::IpAddr;

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

/// Why a Child SA request is refused: the error notify to answer with (and its data)
/// and a log line that says what was received and what is configured.
pub(super) struct Refusal {
    pub(super) notify: u16,
    pub(super) data: Vec<u8>,
    pub(super) reason: String,
}

impl Refusal {
    pub(super) fn new(notify: u16, reason: String) -> Self {
        Refusal {
            notify,
            data: Vec::new(),
            reason,
        }
    }

    /// The notify payload to answer with.
    pub(super) fn payload(&self) -> Payload {
        Payload::notify(self.notify, self.data.clone())
    }
}

/// Perfect forward secrecy in the exchange that creates the Child SA.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Pfs {
    /// IKE_AUTH: the keys come from the IKE SA, no DH transform is negotiated.
    Auth,
    /// CREATE_CHILD_SA with a KE payload of this group, or without (None).
    Ke(Option<u16>),
}

/// How the responder selects: PFS of the exchange, only the config named (a rekey),
/// what the data plane can install, and the peer's address for `dynamic`.
pub(super) struct SelectCtx<'a> {
    pub(super) pfs: Pfs,
    pub(super) only: Option<&'a str>,
    pub(super) support: &'a EspSupport,
    pub(super) peer_ip: IpAddr,
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

/// The remote selectors of `cfg` for a peer at `peer_ip`: `remote_ts`, and each
/// `remote_dynamic` selector with the peer's own address (strongSwan `dynamic`).
pub(super) fn remote_selectors(cfg: &ChildConfig, peer_ip: IpAddr) -> Vec<TrafficSelector> {
    let mut v = cfg.remote_ts.clone();
    v.extend(cfg.remote_dynamic.iter().map(|d| TrafficSelector {
        start: peer_ip,
        end: peer_ip,
        ..*d
    }));
    v
}

/// Do two selectors share an address (whatever their protocols and ports)?
pub(super) fn addresses_overlap(a: &TrafficSelector, b: &TrafficSelector) -> bool {
    let v4 = |x: &TrafficSelector| x.start.is_ipv4() && x.end.is_ipv4();
    v4(a) == v4(b) && a.start <= b.end && b.start <= a.end
}

/// One ESP proposal of ours against the peer's proposals under `pfs`: the matching
/// proposal, or the group we would want in INVALID_KE_PAYLOAD.
fn match_esp<'p>(
    esp: &EspProposal,
    props: &'p [Proposal],
    pfs: Pfs,
) -> Result<(&'p Proposal, EspProposal), Option<u16>> {
    let plain = |esp: &EspProposal| {
        let found = props.iter().find(|pr| esp.offered_by(pr, false));
        found.map(|pr| (pr, EspProposal { dh: None, ..*esp }))
    };
    match (pfs, esp.dh) {
        (Pfs::Auth, _) => plain(esp).ok_or(None),
        //= https://www.rfc-editor.org/rfc/rfc7296#section-1.3.1
        //# A new Child SA may be created by sending a CREATE_CHILD_SA request.
        //# [...] The request MAY include a KE payload for an additional
        //# Diffie-Hellman exchange to enable stronger guarantees of forward
        //# secrecy
        // Our config wants PFS (a group) exactly when the request carries a KE: a
        // request without KE matches no proposal of ours that has a group, and a
        // request with KE none without.
        (Pfs::Ke(None), None) => plain(esp).ok_or(None),
        (Pfs::Ke(None), Some(_)) | (Pfs::Ke(Some(_)), None) => Err(None),
        (Pfs::Ke(Some(kg)), Some(g)) => match props.iter().find(|pr| esp.offered_by(pr, true)) {
            Some(pr) if g == kg => Ok((pr, *esp)),
            Some(_) => Err(Some(g)),
            None => Err(None),
        },
    }
}

/// Responder: pick a child config, an ESP proposal the data plane can install and
/// the narrowed selectors.
pub(super) fn select_child(
    pc: &PeerConfig,
    p: &[Payload],
    ctx: &SelectCtx<'_>,
) -> Result<Selected, Refusal> {
    let (Some(props), (Some(tsi), Some(tsr))) = (sa_of(p), ts_of(p)) else {
        let r = "Child SA request without SA, TSi or TSr payload".to_string();
        return Err(Refusal::new(notify::INVALID_SYNTAX, r));
    };
    let transport = find_notify(p, notify::USE_TRANSPORT_MODE).is_some();
    let mut ts_ok = Vec::new();
    let mut want_group = None;
    for cfg in pc
        .children
        .iter()
        .filter(|c| ctx.only.is_none_or(|n| n == c.name))
    {
        // TSi is the initiator's side: our remote.
        let ts_remote = narrow(tsi, &remote_selectors(cfg, ctx.peer_ip));
        let ts_local = narrow(tsr, &cfg.local_ts);
        if ts_remote.is_empty() || ts_local.is_empty() {
            continue;
        }
        ts_ok.push(cfg);
        for esp in cfg.esp_proposals.iter().filter(|e| ctx.support.allows(e)) {
            let (pr, esp) = match match_esp(esp, props, ctx.pfs) {
                Ok(x) => x,
                Err(g) => {
                    want_group = want_group.or(g);
                    continue;
                }
            };
            return Ok(Selected {
                cfg: cfg.clone(),
                esp,
                num: pr.num,
                spi_out: spi_of(&pr.spi),
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
    Err(refusal(pc, props, tsi, tsr, &ts_ok, want_group, ctx))
}

/// Why nothing was selected, with what was received and what is configured.
fn refusal(
    pc: &PeerConfig,
    props: &[Proposal],
    tsi: &[TrafficSelector],
    tsr: &[TrafficSelector],
    ts_ok: &[&ChildConfig],
    want_group: Option<u16>,
    ctx: &SelectCtx<'_>,
) -> Refusal {
    if ts_ok.is_empty() {
        let configured: Vec<String> = pc
            .children
            .iter()
            .filter(|c| ctx.only.is_none_or(|n| n == c.name))
            .map(|c| {
                let remote = remote_selectors(c, ctx.peer_ip);
                format!(
                    "'{}' {} === {}",
                    c.name,
                    ts_list(&c.local_ts),
                    ts_list(&remote)
                )
            })
            .collect();
        let reason = format!(
            "traffic selectors {} === {} (TSr === TSi) fit no child of peer '{}': configured {}",
            ts_list(tsr),
            ts_list(tsi),
            pc.name,
            configured.join(", ")
        );
        return Refusal::new(notify::TS_UNACCEPTABLE, reason);
    }
    if let Some(g) = want_group {
        return Refusal {
            notify: notify::INVALID_KE_PAYLOAD,
            data: g.to_be_bytes().to_vec(),
            reason: format!(
                "the KE payload is not of group {g}, which child '{}' wants",
                ts_ok[0].name
            ),
        };
    }
    let configured: Vec<String> = ts_ok
        .iter()
        .flat_map(|c| c.esp_proposals.iter())
        .map(|e| {
            let mut e = *e;
            if ctx.pfs == Pfs::Auth {
                e.dh = None;
            }
            let mut n = esp_name(&e);
            if !ctx.support.allows(&e) {
                n.push_str(" (not installable)");
            }
            n
        })
        .collect();
    let pfs = match ctx.pfs {
        Pfs::Auth => "",
        Pfs::Ke(None) => " without KE",
        Pfs::Ke(Some(_)) => " with KE",
    };
    let reason = format!(
        "no acceptable ESP proposal for child '{}': received {}{pfs}, configured {}",
        ts_ok[0].name,
        describe_proposals(props),
        configured.join(", ")
    );
    Refusal::new(notify::NO_PROPOSAL_CHOSEN, reason)
}

/// Selectors in strongSwan's notation, comma separated.
pub(super) fn ts_list(ts: &[TrafficSelector]) -> String {
    let v: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
    v.join(",")
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
