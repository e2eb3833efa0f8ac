//! Recovery records (DESIGN.md flow 5): the IKE engine reports the record of each
//! IKE SA with its Child SAs whenever it changes (`RecordUpdated`) or goes
//! (`RecordRemoved`); here it becomes the store's typed records (phase 1, phase 2
//! and their link, `plexgate_store::records`) and the changes the runtime writes.
//! The way back (a backup reading the records to renegotiate) is
//! [`ike_record_of`]. The store's [`plexgate_store::Keys`] make the key names and
//! the record writer seals the values; no key material is recorded.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use plexgate_ike as ike;
use plexgate_store as store;
use store::records as rec;

use super::{ChildPolicy, GatewayCore, SideEffect};

/// A change of the recovery records, for the runtime's record writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordChange {
    /// Write (create or replace) a record.
    Put(Box<store::Record>),
    /// Remove an IKE SA's record.
    DeleteIke(store::IkeSpis),
    /// Remove a Child SA's record.
    DeleteChild {
        /// Its IKE SA.
        ike: store::IkeSpis,
        /// Its inbound SPI.
        spi_in: u32,
    },
}

/// What the core remembers of the records it wrote: per IKE SA its SPIs and
/// the Child SAs recorded, so that a change can delete what is gone.
#[derive(Debug, Default)]
pub(super) struct Recorded {
    sas: HashMap<ike::IkeSaId, (store::IkeSpis, HashSet<u32>, IpAddr)>,
}

impl GatewayCore {
    /// The IKE SA `id` has this record now: write it and its Child SAs, and
    /// remove the Child SAs it no longer has.
    pub(super) fn record_updated(&mut self, id: ike::IkeSaId, r: &ike::IkeRecord) {
        if !self.ha.records_for(r.local.ip()) {
            return;
        }
        let spis = store::IkeSpis {
            initiator: r.spi_i,
            responder: r.spi_r,
        };
        let auth = self.auth_methods.get(&r.peer).copied().unwrap_or(0);
        let ike_rec = ike_record(r, spis, auth);
        let children: Vec<rec::ChildRecord> = r
            .children
            .iter()
            .map(|c| self.child_record(r, spis, c))
            .collect();
        let now_children: HashSet<u32> = children.iter().map(|c| c.spis.spi_in).collect();
        if let Some((old_spis, old_children, _)) = self.recorded.sas.remove(&id) {
            for gone in old_children.difference(&now_children) {
                self.push_record(RecordChange::DeleteChild {
                    ike: old_spis,
                    spi_in: *gone,
                });
            }
            if old_spis != spis {
                self.push_record(RecordChange::DeleteIke(old_spis));
            }
        }
        self.push_record(RecordChange::Put(Box::new(store::Record::Ike(ike_rec))));
        for c in children {
            self.push_record(RecordChange::Put(Box::new(store::Record::Child(c))));
        }
        self.recorded
            .sas
            .insert(id, (spis, now_children, r.local.ip()));
    }

    /// The IKE SA `id` is gone: remove its record and its Child SAs' records —
    /// unless the records of its group are no longer ours to keep (handed over:
    /// the next owner renegotiates from them and replaces them).
    pub(super) fn record_removed(&mut self, id: ike::IkeSaId) {
        let Some((spis, children, local)) = self.recorded.sas.remove(&id) else {
            return;
        };
        if !self.ha.records_for(local) {
            return;
        }
        for spi_in in children {
            self.push_record(RecordChange::DeleteChild { ike: spis, spi_in });
        }
        self.push_record(RecordChange::DeleteIke(spis));
    }

    fn push_record(&mut self, c: RecordChange) {
        if self.records_on {
            self.side.push(SideEffect::Record(c));
        }
    }

    /// The phase 2 record of one Child SA of `r`.
    fn child_record(
        &self,
        r: &ike::IkeRecord,
        ike: store::IkeSpis,
        c: &ike::record::ChildRecord,
    ) -> rec::ChildRecord {
        let pol = self.children.get(&(r.peer.clone(), c.name.clone()));
        let out = self.sad.outbound_of_child(c.spi_in);
        let encap = out
            .and_then(|h| self.sad.outbound(h))
            .and_then(|sa| sa.params().encap);
        let ts_local: Vec<rec::Selector> = c.ts_local.iter().map(selector).collect();
        let dvipas = self
            .dist
            .dvipas()
            .map(|(d, _)| d.dvipa)
            .filter(|d| ts_local.iter().any(|t| covers(t, *d)))
            .collect();
        rec::ChildRecord {
            schema: store::SCHEMA_VERSION,
            ike,
            peer: r.peer.clone(),
            child: c.name.clone(),
            spis: rec::ChildSpis {
                spi_in: c.spi_in,
                spi_out: c.spi_out,
            },
            protocol: c.protocol,
            proposal: rec::EspProposal {
                encr: c.proposal.encr,
                encr_bits: c.proposal.encr_bits,
                integ: c.proposal.integ,
                dh: c.proposal.dh,
            },
            esn: c.proposal.esn,
            mode: match c.mode {
                ike::Mode::Transport => rec::Mode::Transport,
                _ => rec::Mode::Tunnel,
            },
            ts_local,
            ts_remote: c.ts_remote.iter().map(selector).collect(),
            lifetimes: pol.map(lifetimes).unwrap_or_default(),
            udp_encap: encap.map(|e| rec::UdpEncap {
                local_port: e.local_port,
                remote_port: e.remote_port,
            }),
            dvipas,
            replaces: None,
            established_unix_ms: 0,
        }
    }
}

fn ike_record(r: &ike::IkeRecord, spis: store::IkeSpis, auth_method: u8) -> rec::IkeRecord {
    rec::IkeRecord {
        schema: store::SCHEMA_VERSION,
        peer: r.peer.clone(),
        spis,
        initiator: r.initiator,
        local: r.local,
        remote: r.remote,
        nat_local: r.nat_local,
        nat_remote: r.nat_remote,
        local_id: identity(&r.local_id),
        remote_id: identity(&r.remote_id),
        auth_method,
        proposal: rec::IkeProposal {
            encr: r.proposal.encr,
            encr_bits: r.proposal.encr_bits,
            integ: r.proposal.integ,
            prf: r.proposal.prf,
            dh: r.proposal.dh,
        },
        established_unix_ms: 0,
    }
}

/// The IKE engine's record of an IKE SA and its Child SAs, from the store's
/// records, to renegotiate it ([`ike::Endpoint::initiate_recovered`]).
pub fn ike_record_of(i: &rec::IkeRecord, children: &[&rec::ChildRecord]) -> ike::IkeRecord {
    ike::IkeRecord {
        peer: i.peer.clone(),
        local: i.local,
        remote: i.remote,
        nat_local: i.nat_local,
        nat_remote: i.nat_remote,
        initiator: i.initiator,
        spi_i: i.spis.initiator,
        spi_r: i.spis.responder,
        local_id: ike::message::Identification {
            id_type: i.local_id.id_type,
            data: i.local_id.data.clone(),
        },
        remote_id: ike::message::Identification {
            id_type: i.remote_id.id_type,
            data: i.remote_id.data.clone(),
        },
        proposal: ike::IkeProposal {
            encr: i.proposal.encr,
            encr_bits: i.proposal.encr_bits,
            integ: i.proposal.integ,
            prf: i.proposal.prf,
            dh: i.proposal.dh,
        },
        children: children
            .iter()
            .map(|c| ike::record::ChildRecord {
                name: c.child.clone(),
                spi_in: c.spis.spi_in,
                spi_out: c.spis.spi_out,
                protocol: c.protocol,
                proposal: ike::EspProposal {
                    encr: c.proposal.encr,
                    encr_bits: c.proposal.encr_bits,
                    integ: c.proposal.integ,
                    esn: c.esn,
                    dh: c.proposal.dh,
                },
                ts_local: c.ts_local.iter().map(ts_of).collect(),
                ts_remote: c.ts_remote.iter().map(ts_of).collect(),
                mode: match c.mode {
                    rec::Mode::Transport => ike::Mode::Transport,
                    rec::Mode::Tunnel => ike::Mode::Tunnel,
                },
            })
            .collect(),
    }
}

fn identity(i: &ike::message::Identification) -> rec::Identity {
    rec::Identity {
        id_type: i.id_type,
        data: i.data.clone(),
    }
}

fn selector(t: &ike::TrafficSelector) -> rec::Selector {
    rec::Selector {
        protocol: t.protocol,
        start_port: t.start_port,
        end_port: t.end_port,
        start: t.start,
        end: t.end,
    }
}

fn ts_of(s: &rec::Selector) -> ike::TrafficSelector {
    ike::TrafficSelector {
        protocol: s.protocol,
        start_port: s.start_port,
        end_port: s.end_port,
        start: s.start,
        end: s.end,
    }
}

fn covers(t: &rec::Selector, a: IpAddr) -> bool {
    t.start.is_ipv4() == a.is_ipv4() && t.start <= a && a <= t.end
}

fn lifetimes(p: &ChildPolicy) -> rec::Lifetimes {
    let l = |x: &plexgate_ipsec::Limits| rec::Limits {
        bytes: x.bytes,
        packets: x.packets,
        seconds: x.seconds,
    };
    rec::Lifetimes {
        soft: l(&p.lifetime.soft),
        hard: l(&p.lifetime.hard),
    }
}
