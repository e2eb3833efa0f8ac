//! DVIPA roles, takeover, takeback and planned moves as a sans-IO state machine
//! (DESIGN.md flows 6 and 7; seed 001, figures 7A, 7B, 8A, 8B, 14 and 15).
//!
//! One [`HaMachine`] runs per gateway process. It works on *ownership groups*: the
//! DVIPAs reached through one gateway VIPA, which share IKE SAs and so move
//! together ([`GroupId`] is that VIPA). For each group the gateway is the routing
//! owner, a candidate waiting (the primary or a ranked backup) or a standby, with
//! the transitional states claiming, taking over, handing over, releasing and
//! fenced ([`Role`]). Ownership lives in the shared store as an owner record per
//! group, changed only by compare-and-swap; the store revision of the write is the
//! group's epoch, which every message to the targets carries so that they follow
//! the newest owner only. Liveness is judged on heartbeats written to the store;
//! an owner whose heartbeats stop being acknowledged fences itself (stops
//! forwarding, gives up the address) before any backup may claim, by the
//! inequality `fence_after + max_clock_skew + heartbeat < dead_after`.
//!
//! No I/O, no clock: the daemon passes `now`, maps store watch events and
//! answers onto [`Input`]s and carries out [`Action`]s. [`sim`] runs a whole
//! cluster of machines over a model of the store on virtual time.
//! `docs/failover.md` has the timelines and what each action means for the daemon.
//!
//! ```
//! use plexgate_ha::takeover::*;
//! use std::time::Instant;
//!
//! let rank = |r| Rank::new(r).unwrap();
//! let cfg = HaConfig::new(
//!     GatewaySpec { name: "gw-1".into(), rank: rank(250) },
//!     vec![GatewaySpec { name: "gw-2".into(), rank: rank(200) }],
//!     vec![DvipaSpec {
//!         dvipa: "10.200.0.20".parse().unwrap(),
//!         gateway_vipa: "192.0.2.10".parse().unwrap(),
//!         routing_gateway: "gw-1".into(),
//!         backups: vec![BackupSpec { gateway: "gw-2".into(), rank: None, distribution: None }],
//!     }],
//!     Timing::default(),
//!     Takeback::Automatic,
//! )?;
//! let group = cfg.group_of("10.200.0.20".parse().unwrap()).unwrap();
//! let mut ha = HaMachine::new(cfg);
//! let t0 = Instant::now();
//! ha.handle(t0, Input::Start)?;
//! // The daemon writes our heartbeat, then reads the owner records.
//! ha.handle(t0, Input::RenewOk { sent_at: t0 })?;
//! ha.handle(t0, Input::OwnerChanged { group, record: OwnerRecord::Absent })?;
//! let claims: Vec<Action> = std::iter::from_fn(|| ha.poll_action())
//!     .filter(|a| matches!(a, Action::Claim { .. }))
//!     .collect();
//! assert_eq!(claims, vec![Action::Claim { group, expected: None, pinned: false, owner_heartbeat: None }]);
//! assert!(ha.poll_timeout().is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod claim;
mod config;
mod event;
mod group;
mod handover;
mod liveness;
mod machine;
pub mod sim;

pub use config::{
    BackupSpec, ConfigError, DistributionId, DvipaSpec, GatewayName, GatewaySpec, GroupConfig,
    GroupId, HaConfig, Rank, Takeback, Timing,
};
pub use event::{
    Action, CasOutcome, ConnMark, Distribution, DvipaRoute, Epoch, HeartbeatGuard, Input,
    InputError, Level, LogLine, OwnerRecord,
};
pub use machine::{GroupStatus, HaMachine};

/// This gateway's role for one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// We own the group and route it.
    Routing,
    /// We own the group and renegotiate its recorded SAs (routing meanwhile).
    TakingOver,
    /// We own the group and hand it over to `to`.
    HandingOver {
        /// The new owner.
        to: GatewayName,
    },
    /// We own the group but our heartbeats are not acknowledged: not routing.
    Fenced,
    /// Our claim is in flight.
    Claiming,
    /// Our release is in flight.
    Releasing,
    /// We are the group's primary and do not own it now.
    Primary,
    /// We are a backup of the group with this rank and do not own it.
    Backup {
        /// Our rank for this group.
        rank: Rank,
    },
    /// We may not own the group.
    Standby,
}

impl Role {
    /// Whether this role owns the group (routing, taking over, handing over or
    /// fenced).
    pub fn owns(&self) -> bool {
        matches!(
            self,
            Role::Routing | Role::TakingOver | Role::HandingOver { .. } | Role::Fenced
        )
    }
}
