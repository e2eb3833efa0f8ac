//! One peer must never touch another's SAs: a Child SA whose remote selectors share
//! an inner address with a Child SA of another identity is refused, and
//! INITIAL_CONTACT (RFC 7296 §2.4) deletes only SAs of the same peer config and the
//! same proven identity.
//!
//! An identity is the pair (peer config, remote ID). Under a group PSK (`remote_id =
//! "%any"`) the remote ID is only claimed, not proven: it still separates the inner
//! addresses of the members, but it cannot make the gateway delete anyone's SAs.

use super::*;

/// Do two IKE SAs belong to the same identity (peer config and remote ID)?
fn same_identity(a: &IkeSa, b: &IkeSa) -> bool {
    let name = |s: &IkeSa| s.peer.as_ref().map(|p| p.name.clone());
    name(a) == name(b) && a.remote_id == b.remote_id
}

/// Was the peer's identity of `sa` really proven as that identity: by a
/// certificate, or by a PSK that belongs to one identity (a peer config with a
/// specific `remote_id`, not `%any` with a group PSK)?
fn identity_proven(sa: &IkeSa) -> bool {
    match sa.peer.as_deref() {
        Some(pc) => match pc.auth {
            AuthConfig::Cert { .. } => true,
            AuthConfig::Psk(_) => pc.remote_id.0 != "%any",
        },
        None => false,
    }
}

impl Endpoint {
    /// Why the remote selectors `ts` of a new Child SA of `sa` cannot be had: an inner
    /// address of them is held by a Child SA of an IKE SA of another identity.
    pub(super) fn ts_conflict(&self, sa: &IkeSa, ts: &[TrafficSelector]) -> Option<String> {
        for o in self.sas.values() {
            if o.id == sa.id || o.children.is_empty() || same_identity(o, sa) {
                continue;
            }
            for c in &o.children {
                let held =
                    c.sa.ts_remote
                        .iter()
                        .find(|h| ts.iter().any(|t| addresses_overlap(t, h)));
                if let Some(h) = held {
                    let who = o
                        .remote_id
                        .as_ref()
                        .map(|i| i.to_string())
                        .unwrap_or_default();
                    return Some(format!(
                        "remote selectors {} overlap {h}, held by Child SA '{}' of IKE SA {} ('{who}', peer '{}')",
                        ts_list(ts),
                        c.sa.name,
                        o.id,
                        o.peer_name(),
                    ));
                }
            }
        }
        None
    }

    /// `sel`, unless its remote selectors conflict with another identity's.
    pub(super) fn check_ts_conflict(&self, sa: &IkeSa, sel: Selected) -> Result<Selected, Refusal> {
        match self.ts_conflict(sa, &sel.ts_remote) {
            None => Ok(sel),
            Some(why) => Err(Refusal::new(
                notify::TS_UNACCEPTABLE,
                format!("child '{}': {why}", sel.cfg.name),
            )),
        }
    }

    /// INITIAL_CONTACT from the peer of `sa` (RFC 7296 §2.4): delete its other IKE
    /// SAs, when its identity was proven, and only those of the same peer config and
    /// identity.
    pub(super) fn initial_contact(&mut self, sa: &IkeSa) {
        if !identity_proven(sa) {
            return;
        }
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.4
        //# the receiver MAY delete any other IKE SAs it has with the same
        //# authenticated identities
        let ids: Vec<IkeSaId> = self
            .sas
            .values()
            .filter(|o| {
                o.id != sa.id
                    && o.state == SaState::Established
                    && same_identity(o, sa)
                    && o.local_id == sa.local_id
            })
            .map(|o| o.id)
            .collect();
        for id in ids {
            if let Some(old) = self.take(id) {
                self.destroy(old, "replaced by a new IKE SA (INITIAL_CONTACT)", true);
            }
        }
    }
}
