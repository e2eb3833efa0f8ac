//! What goes into the HA machine ([`Input`]) and what comes out ([`Action`]), with
//! the store's view of a group's ownership ([`OwnerRecord`], [`Epoch`]). The daemon
//! maps store watch events, compare-and-swap answers, operator commands and the
//! gateway core's reports onto inputs, and carries out every action; the machine
//! never does I/O itself. What each action means for the daemon is spelled out on
//! the variant and in `docs/failover.md`.

use super::config::{DistributionId, GatewayName, GroupId};
use std::fmt;
use std::net::IpAddr;
use std::time::Instant;
use thiserror::Error;

/// An ownership epoch: the store revision at which a group's owner record was last
/// written. Epochs of a group only grow; targets follow the highest one they heard.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The owner record of a group in the store (one key per group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerRecord {
    /// No record yet: the group was never claimed.
    Absent,
    /// `gateway` owns the group since `epoch`.
    Owned {
        /// The owner.
        gateway: GatewayName,
        /// The revision of the write that made it owner.
        epoch: Epoch,
        /// The owner got the group by a planned move (`plexgate move`) rather than
        /// as primary or by takeover: the primary does not take it back by itself.
        pinned: bool,
    },
    /// The last owner handed the group over and released it at `epoch`; the
    /// `successor` it handed over to claims first.
    Released {
        /// The revision of the release.
        epoch: Epoch,
        /// Who should claim next.
        successor: Option<GatewayName>,
        /// The successor claims with `pinned` (an operator's move to a backup).
        pinned: bool,
    },
}

impl OwnerRecord {
    /// The record's epoch (`None` for [`OwnerRecord::Absent`]).
    pub fn epoch(&self) -> Option<Epoch> {
        match self {
            OwnerRecord::Absent => None,
            OwnerRecord::Owned { epoch, .. } | OwnerRecord::Released { epoch, .. } => Some(*epoch),
        }
    }

    /// The owner, if the group is owned.
    pub fn owner(&self) -> Option<&GatewayName> {
        match self {
            OwnerRecord::Owned { gateway, .. } => Some(gateway),
            _ => None,
        }
    }
}

/// A condition on a claim: `gateway`'s heartbeat key still has store revision
/// `revision` (`None`: the key does not exist, its lease is gone). A backup whose
/// view of the store lags can therefore never depose an owner that is still
/// renewing: the owner's newer heartbeat makes the claim fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatGuard {
    /// The owner we take over from.
    pub gateway: GatewayName,
    /// The revision of its heartbeat we last saw.
    pub revision: Option<u64>,
}

/// The store's answer to a compare-and-swap on an owner record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// The write happened; the record now has this epoch.
    Applied {
        /// The new epoch.
        epoch: Epoch,
    },
    /// The record was not as expected; this is what it is.
    Conflict {
        /// The current record.
        current: OwnerRecord,
    },
    /// The store could not be reached (or did not answer in time). The write may
    /// or may not have happened; the watch will tell.
    Unreachable,
}

/// An event for the HA machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The gateway starts: the first input. The daemon then delivers the current
    /// owner record of every group as [`Input::OwnerChanged`] (a store read).
    Start,
    /// The heartbeat write sent at `sent_at` (the instant the daemon sent it, not
    /// when the answer came) was acknowledged by the store.
    RenewOk {
        /// When the acknowledged write was sent.
        sent_at: Instant,
    },
    /// A heartbeat write failed or timed out.
    RenewFailed,
    /// The store connection went down (`false`) or came back (`true`).
    StoreReachable(bool),
    /// The store watch (or a read) shows a heartbeat of another gateway.
    PeerHeartbeat {
        /// Whose heartbeat.
        gateway: GatewayName,
        /// The store revision of that heartbeat write (etcd: the heartbeat key's
        /// `mod_revision`); claims are guarded by it ([`HeartbeatGuard`]).
        revision: u64,
    },
    /// A gateway's store lease ended (process gone, lease expired or revoked).
    LeaseGone {
        /// Whose lease.
        gateway: GatewayName,
    },
    /// The store watch (or a read) shows a group's owner record.
    OwnerChanged {
        /// The group.
        group: GroupId,
        /// Its record now.
        record: OwnerRecord,
    },
    /// The answer to [`Action::Claim`].
    ClaimResult {
        /// The group.
        group: GroupId,
        /// The outcome.
        outcome: CasOutcome,
    },
    /// The answer to [`Action::Release`].
    ReleaseResult {
        /// The group.
        group: GroupId,
        /// The outcome.
        outcome: CasOutcome,
    },
    /// The operator asked this gateway to move a DVIPA (and with it its group):
    /// `plexgate move DVIPA --to GATEWAY`.
    MoveCommand {
        /// The DVIPA named on the command line.
        dvipa: IpAddr,
        /// The gateway that should route it.
        to: GatewayName,
    },
    /// The store watch shows a move request (written by [`Action::RequestMove`] on
    /// some gateway): the owner at `epoch` should hand the group over to `to`.
    MoveRequested {
        /// The group.
        group: GroupId,
        /// The requested new owner.
        to: GatewayName,
        /// The ownership epoch the request applies to.
        epoch: Epoch,
    },
    /// [`Action::Renegotiate`] finished: `up` SAs renegotiated, `failed` not.
    RenegotiationDone {
        /// The group.
        group: GroupId,
        /// The epoch of the takeover.
        epoch: Epoch,
        /// SAs now up.
        up: usize,
        /// SAs that could not be renegotiated.
        failed: usize,
    },
    /// [`Action::HandOver`] finished: NEWCONNs and DELETEs are sent.
    HandoverDone {
        /// The group.
        group: GroupId,
        /// The epoch of the hand-over.
        epoch: Epoch,
    },
    /// Graceful stop: hand every owned group over to the best live candidate (or
    /// release it), then [`HaMachine::released_all`](super::HaMachine::released_all).
    Shutdown,
}

/// Which distribution definition to use for a DVIPA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Distribution {
    /// The DVIPA's own `[[dvipa]]` definition (targets, method, weights).
    Default,
    /// This backup's own definition (seed 001: a backup's own VIPADISTribute).
    Own(DistributionId),
}

/// A DVIPA and the distribution definition used to route it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DvipaRoute {
    /// The DVIPA.
    pub dvipa: IpAddr,
    /// Its distribution definition.
    pub distribution: Distribution,
}

/// How this gateway's own connections to a group's DVIPAs are to be treated
/// (seed 001, figure 7A block 110 and figure 8B blocks 136 and 352).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnMark {
    /// We route the group now: connections we held to its DVIPAs are ours.
    Local,
    /// Someone else routes it: our connections to its DVIPAs go through the owner.
    Distributed,
}

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// A normal change of role.
    Info,
    /// Something an operator should look at (fencing, timeouts, refusals).
    Warn,
}

/// A log line for the operator, as data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: Level,
    /// The group it is about, if any.
    pub group: Option<GroupId>,
    /// The text.
    pub message: String,
}

/// Something the daemon must do. Every variant that concerns a group names it;
/// actions come out in the order they must be carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write our heartbeat to the store (key on our lease; keep the lease alive);
    /// answer [`Input::RenewOk`] with the send instant, or [`Input::RenewFailed`].
    RenewHeartbeat,
    /// Compare-and-swap the group's owner record to `Owned { us, new epoch, pinned }`
    /// if its epoch is `expected` (`None`: only if there is no record) **and** the
    /// `owner_heartbeat` guard holds (one transaction); answer
    /// [`Input::ClaimResult`] (a failed guard is a `Conflict` with the unchanged
    /// record).
    Claim {
        /// The group.
        group: GroupId,
        /// The epoch the record must have.
        expected: Option<Epoch>,
        /// Store `pinned` in the record (we claim as target of a planned move).
        pinned: bool,
        /// When we take over from an owner we judged dead: its heartbeat must not
        /// have been written since the one we saw.
        owner_heartbeat: Option<HeartbeatGuard>,
    },
    /// Compare-and-swap the owner record from `Owned { us, epoch }` to
    /// `Released { new epoch, successor, pinned }`; answer [`Input::ReleaseResult`].
    Release {
        /// The group.
        group: GroupId,
        /// Our ownership epoch.
        epoch: Epoch,
        /// Who should claim next.
        successor: Option<GatewayName>,
        /// Store `pinned` in the record: the successor claims pinned.
        pinned: bool,
    },
    /// Write a move request for the group into the store (one key per group) so
    /// that its owner sees [`Input::MoveRequested`].
    RequestMove {
        /// The group.
        group: GroupId,
        /// The requested new owner.
        to: GatewayName,
        /// The owner's epoch the request applies to.
        epoch: Epoch,
    },
    /// Add the group's gateway VIPA to our interface and send gratuitous ARP
    /// (the L2 machine answers ARP for it from now on).
    AddVipa {
        /// The group; the address is `group.vipa()`.
        group: GroupId,
    },
    /// Remove the gateway VIPA from our interface (stop answering ARP for it).
    RemoveVipa {
        /// The group.
        group: GroupId,
    },
    /// Accept and route the group's traffic (ESP to the VIPA, GRE from targets)
    /// with these distribution definitions; rebuild DPT and CRT from the targets'
    /// SRVSTAT and NEWCONN; every message to a target carries `epoch`.
    StartForwarding {
        /// The group.
        group: GroupId,
        /// Our ownership epoch.
        epoch: Epoch,
        /// The DVIPAs and the distribution definition of each.
        routes: Vec<DvipaRoute>,
    },
    /// Stop routing the group's traffic (drop it) at once.
    StopForwarding {
        /// The group.
        group: GroupId,
    },
    /// Tell every target "I route these DVIPAs with epoch E" (the DVIPA list);
    /// targets refuse older epochs and answer with SRVSTAT and NEWCONN.
    AnnounceRouting {
        /// The group.
        group: GroupId,
        /// Our ownership epoch.
        epoch: Epoch,
        /// The DVIPAs and the distribution definition of each.
        routes: Vec<DvipaRoute>,
    },
    /// Write the full current set of the group's recovery records and keep them
    /// up to date as SAs come, rekey and go.
    StartRecords {
        /// The group.
        group: GroupId,
        /// Our ownership epoch.
        epoch: Epoch,
    },
    /// Stop writing recovery records for the group and drop queued writes. Never
    /// delete the group's records: the next owner renegotiates from them.
    StopRecords {
        /// The group.
        group: GroupId,
    },
    /// Renegotiate every recorded IKE and Child SA of the group's DVIPAs as
    /// initiator, with INITIAL_CONTACT, from the recovery records; replace the old
    /// records with new ones; answer [`Input::RenegotiationDone`].
    Renegotiate {
        /// The group.
        group: GroupId,
        /// Our ownership epoch.
        epoch: Epoch,
    },
    /// Hand the group over to `to`: send NEWCONN to `to` for the connections we
    /// route, then DELETE for our SAs of the group to the peers (records stay);
    /// answer [`Input::HandoverDone`].
    HandOver {
        /// The group.
        group: GroupId,
        /// Our ownership epoch.
        epoch: Epoch,
        /// The new owner.
        to: GatewayName,
    },
    /// Forget the group's SAs without telling the peers (another gateway took the
    /// group over and its INITIAL_CONTACT already replaced them).
    DropSas {
        /// The group.
        group: GroupId,
    },
    /// Mark our own connections to the group's DVIPAs local or distributed.
    MarkConnections {
        /// The group.
        group: GroupId,
        /// How to mark them.
        mark: ConnMark,
    },
    /// A line for the operator's log.
    Log(LogLine),
}

/// An input the machine refused; nothing changed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InputError {
    /// An input before [`Input::Start`].
    #[error("the HA machine has not been started")]
    NotStarted,
    /// A group that is not configured.
    #[error("unknown group {0}")]
    UnknownGroup(GroupId),
    /// A DVIPA that is not configured.
    #[error("{0} is not a DVIPA of this site")]
    UnknownDvipa(IpAddr),
    /// A gateway that is not configured.
    #[error("unknown gateway {0}")]
    UnknownGateway(GatewayName),
    /// A move to a gateway that may not own the group.
    #[error("{gateway} is neither the routing gateway nor a backup of {group}")]
    NotACandidate {
        /// The group.
        group: GroupId,
        /// The gateway.
        gateway: GatewayName,
    },
    /// The owner of the group is not known yet (no store read so far).
    #[error("the owner of {0} is not known yet")]
    OwnerUnknown(GroupId),
    /// Nobody owns the group, so nobody can hand it over.
    #[error("nobody owns {0} at the moment; only its claim order decides")]
    NoOwner(GroupId),
    /// The group is changing hands on this gateway; try again.
    #[error("{0} is changing hands at the moment; try again")]
    Busy(GroupId),
    /// The move target's heartbeat is stale.
    #[error("{0} is not alive (no recent heartbeat in the store)")]
    NotLive(GatewayName),
    /// A move while the gateway shuts down.
    #[error("the gateway is shutting down")]
    ShuttingDown,
}
