//! Configuration of the HA machine, built by the daemon from the site policy: this
//! gateway's name and default rank, the other gateways, and per DVIPA its routing
//! (primary) gateway, its ranked backups and the gateway VIPA it is reached through.
//! DVIPAs that share a gateway VIPA ride on the same IKE SAs, so they move together:
//! the constructor folds them into one ownership group ([`GroupId`], named by the
//! gateway VIPA) and refuses them unless their primary and backups are identical.
//! The timing parameters are checked against the fencing inequality
//! `fence_after + max_clock_skew + heartbeat < dead_after` (see `docs/failover.md`).

use super::event::{Distribution, DvipaRoute};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;
use thiserror::Error;

/// The name of a gateway (`[ha] name`, `[[ha.peer]] name`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct GatewayName(String);

impl GatewayName {
    /// A gateway name.
    pub fn new(name: impl Into<String>) -> Self {
        GatewayName(name.into())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for GatewayName {
    fn from(s: &str) -> Self {
        GatewayName(s.to_owned())
    }
}

impl fmt::Display for GatewayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A backup rank, 1-254; a higher rank takes over first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Rank(u8);

impl Rank {
    /// A rank; 0 and 255 are refused.
    pub fn new(rank: u8) -> Result<Rank, ConfigError> {
        if (1..=254).contains(&rank) {
            Ok(Rank(rank))
        } else {
            Err(ConfigError::RankOutOfRange(rank))
        }
    }

    /// The rank as a number.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An ownership group: the DVIPAs reached through one gateway VIPA. They share the
/// IKE SAs of that address, so they are claimed, routed and moved as one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct GroupId(IpAddr);

impl GroupId {
    /// The group reached through gateway VIPA `vipa`.
    pub fn new(vipa: IpAddr) -> Self {
        GroupId(vipa)
    }

    /// The gateway VIPA: the outer address clients send IKE and ESP to.
    pub fn vipa(self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vipa {}", self.0)
    }
}

/// Names a backup's own distribution definition for a DVIPA (seed 001: MVS5 has its
/// own `VIPADISTribute DVA1` with other targets, used once it has taken DVA1 over).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct DistributionId(String);

impl DistributionId {
    /// A distribution id (the daemon chooses the naming).
    pub fn new(id: impl Into<String>) -> Self {
        DistributionId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A gateway of the site and its default rank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySpec {
    /// `[ha] name` or `[[ha.peer]] name`.
    pub name: GatewayName,
    /// `[ha] rank` or `[[ha.peer]] rank`: used for a backup entry without a rank.
    pub rank: Rank,
}

/// One backup of a DVIPA (`[[dvipa]] backup = [{ gateway, rank }]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSpec {
    /// The backup gateway.
    pub gateway: GatewayName,
    /// Its rank for this DVIPA; `None` takes the gateway's default rank.
    pub rank: Option<Rank>,
    /// The backup's own distribution definition, if it has one.
    pub distribution: Option<DistributionId>,
}

/// One DVIPA as the HA machine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DvipaSpec {
    /// The DVIPA.
    pub dvipa: IpAddr,
    /// The gateway VIPA clients reach it through (its ownership group).
    pub gateway_vipa: IpAddr,
    /// `routing_gateway`: the primary owner.
    pub routing_gateway: GatewayName,
    /// The ranked backups.
    pub backups: Vec<BackupSpec>,
}

/// Whether a returning primary takes its groups back by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takeback {
    /// After the primary has renewed in the store without a failure for
    /// [`Timing::takeback_hold`] (hysteresis), it asks the owner to hand over.
    Automatic,
    /// Only `plexgate move` moves a group back.
    Manual,
}

/// Timing parameters. The defaults give a takeover decision 600 ms after the
/// owner's last heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How often this gateway renews its heartbeat in the store (150 ms).
    pub heartbeat: Duration,
    /// A gateway whose heartbeat is this old is dead (600 ms).
    pub dead_after: Duration,
    /// An owner that has not renewed for this long stops routing (350 ms).
    pub fence_after: Duration,
    /// Bound on clock rate skew and timer lateness between gateways (50 ms).
    pub max_clock_skew: Duration,
    /// Extra wait per higher-ranked live candidate before claiming (300 ms).
    pub rank_delay: Duration,
    /// How long an owner waits for its hand-over (NEWCONN, DELETEs) (1 s).
    pub handover_timeout: Duration,
    /// How long a returning primary must be stable before taking back (3 s).
    pub takeback_hold: Duration,
    /// After this long, a takeover counts as done even without the report (30 s).
    pub renegotiation_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: Duration::from_millis(150),
            dead_after: Duration::from_millis(600),
            fence_after: Duration::from_millis(350),
            max_clock_skew: Duration::from_millis(50),
            rank_delay: Duration::from_millis(300),
            handover_timeout: Duration::from_secs(1),
            takeback_hold: Duration::from_secs(3),
            renegotiation_timeout: Duration::from_secs(30),
        }
    }
}

impl Timing {
    /// Checks the parameters, in particular the fencing inequality
    /// `fence_after + max_clock_skew + heartbeat < dead_after`: an owner cut off
    /// from the store stops routing before any backup may claim (docs/failover.md).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let nonzero = [
            ("heartbeat", self.heartbeat),
            ("dead_after", self.dead_after),
            ("fence_after", self.fence_after),
            ("handover_timeout", self.handover_timeout),
            ("renegotiation_timeout", self.renegotiation_timeout),
        ];
        for (name, d) in nonzero {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        let lhs = self
            .fence_after
            .saturating_add(self.max_clock_skew)
            .saturating_add(self.heartbeat);
        if lhs >= self.dead_after {
            return Err(ConfigError::FencingInequality {
                fence_after: self.fence_after,
                max_clock_skew: self.max_clock_skew,
                heartbeat: self.heartbeat,
                dead_after: self.dead_after,
            });
        }
        Ok(())
    }
}

/// A configuration that did not pass the checks.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A rank outside 1-254.
    #[error("rank {0} is out of range: ranks are 1-254")]
    RankOutOfRange(u8),
    /// A gateway listed twice (this gateway among its peers, or a peer twice).
    #[error("gateway {0} is listed twice")]
    DuplicateGateway(GatewayName),
    /// A DVIPA names a gateway that is neither this one nor a peer.
    #[error("DVIPA {dvipa} names gateway {gateway}, which is not in [ha] or [[ha.peer]]")]
    UnknownGateway {
        /// The DVIPA.
        dvipa: IpAddr,
        /// The unknown name.
        gateway: GatewayName,
    },
    /// A DVIPA lists its routing gateway as a backup.
    #[error("DVIPA {dvipa}: {gateway} is its routing gateway and cannot also be a backup")]
    BackupIsRoutingGateway {
        /// The DVIPA.
        dvipa: IpAddr,
        /// The gateway.
        gateway: GatewayName,
    },
    /// A DVIPA lists a backup twice.
    #[error("DVIPA {dvipa} lists backup {gateway} twice")]
    DuplicateBackup {
        /// The DVIPA.
        dvipa: IpAddr,
        /// The gateway.
        gateway: GatewayName,
    },
    /// Two backups of a DVIPA have the same rank.
    #[error("DVIPA {dvipa} has two backups with rank {rank}: ranks must be unique per DVIPA")]
    DuplicateRank {
        /// The DVIPA.
        dvipa: IpAddr,
        /// The rank.
        rank: Rank,
    },
    /// A DVIPA listed twice.
    #[error("DVIPA {0} is listed twice")]
    DuplicateDvipa(IpAddr),
    /// A DVIPA that is also a gateway VIPA.
    #[error("{0} is both a DVIPA and a gateway VIPA")]
    DvipaIsGatewayVipa(IpAddr),
    /// DVIPAs sharing a gateway VIPA with different owners or backups.
    #[error(
        "DVIPAs {first} and {second} share gateway VIPA {vipa} but differ in {what}: DVIPAs \
         behind one gateway VIPA use the same IKE SAs and move together, so they must have \
         the same routing gateway and the same backups with the same ranks"
    )]
    GroupMismatch {
        /// The shared gateway VIPA.
        vipa: IpAddr,
        /// The first DVIPA of the group.
        first: IpAddr,
        /// The DVIPA that differs.
        second: IpAddr,
        /// What differs.
        what: &'static str,
    },
    /// A duration that must not be zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// The fencing inequality does not hold.
    #[error(
        "fence_after ({fence_after:?}) + max_clock_skew ({max_clock_skew:?}) + heartbeat \
         ({heartbeat:?}) must be less than dead_after ({dead_after:?}), or an owner cut off \
         from the store could still route when a backup claims"
    )]
    FencingInequality {
        /// Configured fence_after.
        fence_after: Duration,
        /// Configured max_clock_skew.
        max_clock_skew: Duration,
        /// Configured heartbeat.
        heartbeat: Duration,
        /// Configured dead_after.
        dead_after: Duration,
    },
}

/// An ownership group as configured: its DVIPAs, primary and ranked backups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    id: GroupId,
    dvipas: Vec<IpAddr>,
    primary: GatewayName,
    /// Highest rank first.
    backups: Vec<(GatewayName, Rank)>,
    distributions: BTreeMap<(GatewayName, IpAddr), DistributionId>,
}

impl GroupConfig {
    /// The group (its gateway VIPA).
    pub fn id(&self) -> GroupId {
        self.id
    }

    /// The DVIPAs of the group, in configuration order.
    pub fn dvipas(&self) -> &[IpAddr] {
        &self.dvipas
    }

    /// The routing (primary) gateway.
    pub fn primary(&self) -> &GatewayName {
        &self.primary
    }

    /// The backups, highest rank first.
    pub fn backups(&self) -> &[(GatewayName, Rank)] {
        &self.backups
    }

    /// Everyone who may own the group, in priority order: the primary, then the
    /// backups by rank.
    pub fn candidates(&self) -> impl Iterator<Item = &GatewayName> {
        std::iter::once(&self.primary).chain(self.backups.iter().map(|(g, _)| g))
    }

    /// Whether `gateway` is the primary or a backup of the group.
    pub fn is_candidate(&self, gateway: &GatewayName) -> bool {
        self.candidates().any(|g| g == gateway)
    }

    /// The rank of a backup of the group.
    pub fn rank_of(&self, gateway: &GatewayName) -> Option<Rank> {
        self.backups
            .iter()
            .find(|(g, _)| g == gateway)
            .map(|(_, r)| *r)
    }

    /// The DVIPAs with the distribution definition `gateway` uses when it routes them.
    pub fn routes_for(&self, gateway: &GatewayName) -> Vec<DvipaRoute> {
        self.dvipas
            .iter()
            .map(|&dvipa| DvipaRoute {
                dvipa,
                distribution: match self.distributions.get(&(gateway.clone(), dvipa)) {
                    Some(id) => Distribution::Own(id.clone()),
                    None => Distribution::Default,
                },
            })
            .collect()
    }
}

/// The whole configuration of one gateway's HA machine.
#[derive(Clone, Debug)]
pub struct HaConfig {
    me: GatewayName,
    gateways: BTreeMap<GatewayName, Rank>,
    groups: Vec<GroupConfig>,
    timing: Timing,
    takeback: Takeback,
}

impl HaConfig {
    /// Checks and builds the configuration. DVIPAs with the same `gateway_vipa`
    /// become one group; they must agree on routing gateway and backups (gateways
    /// and ranks; each backup's own distribution may differ per DVIPA).
    pub fn new(
        me: GatewaySpec,
        peers: Vec<GatewaySpec>,
        dvipas: Vec<DvipaSpec>,
        timing: Timing,
        takeback: Takeback,
    ) -> Result<HaConfig, ConfigError> {
        timing.validate()?;
        let mut gateways = BTreeMap::new();
        for g in std::iter::once(&me).chain(peers.iter()) {
            if gateways.insert(g.name.clone(), g.rank).is_some() {
                return Err(ConfigError::DuplicateGateway(g.name.clone()));
            }
        }
        let vipas: BTreeSet<IpAddr> = dvipas.iter().map(|d| d.gateway_vipa).collect();
        let mut seen = BTreeSet::new();
        let mut groups: Vec<GroupConfig> = Vec::new();
        for spec in &dvipas {
            if !seen.insert(spec.dvipa) {
                return Err(ConfigError::DuplicateDvipa(spec.dvipa));
            }
            if vipas.contains(&spec.dvipa) {
                return Err(ConfigError::DvipaIsGatewayVipa(spec.dvipa));
            }
            let (backups, dist) = resolve_backups(spec, &gateways)?;
            let id = GroupId(spec.gateway_vipa);
            match groups.iter_mut().find(|g| g.id == id) {
                Some(group) => merge_into(group, spec, backups, dist)?,
                None => groups.push(GroupConfig {
                    id,
                    dvipas: vec![spec.dvipa],
                    primary: spec.routing_gateway.clone(),
                    backups,
                    distributions: dist,
                }),
            }
        }
        Ok(HaConfig {
            me: me.name,
            gateways,
            groups,
            timing,
            takeback,
        })
    }

    /// This gateway.
    pub fn me(&self) -> &GatewayName {
        &self.me
    }

    /// Every gateway of the site (this one included) with its default rank.
    pub fn gateways(&self) -> &BTreeMap<GatewayName, Rank> {
        &self.gateways
    }

    /// The ownership groups.
    pub fn groups(&self) -> &[GroupConfig] {
        &self.groups
    }

    /// The group of a DVIPA.
    pub fn group_of(&self, dvipa: IpAddr) -> Option<GroupId> {
        self.groups
            .iter()
            .find(|g| g.dvipas.contains(&dvipa))
            .map(|g| g.id)
    }

    /// The timing parameters.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// The takeback policy.
    pub fn takeback(&self) -> Takeback {
        self.takeback
    }
}

type Distributions = BTreeMap<(GatewayName, IpAddr), DistributionId>;

/// Checks one DVIPA's gateways and returns its backups sorted by rank (highest
/// first) and the backups' own distributions.
fn resolve_backups(
    spec: &DvipaSpec,
    gateways: &BTreeMap<GatewayName, Rank>,
) -> Result<(Vec<(GatewayName, Rank)>, Distributions), ConfigError> {
    let unknown = |g: &GatewayName| ConfigError::UnknownGateway {
        dvipa: spec.dvipa,
        gateway: g.clone(),
    };
    if !gateways.contains_key(&spec.routing_gateway) {
        return Err(unknown(&spec.routing_gateway));
    }
    let mut backups: Vec<(GatewayName, Rank)> = Vec::new();
    let mut dist = BTreeMap::new();
    for b in &spec.backups {
        let default_rank = *gateways
            .get(&b.gateway)
            .ok_or_else(|| unknown(&b.gateway))?;
        if b.gateway == spec.routing_gateway {
            return Err(ConfigError::BackupIsRoutingGateway {
                dvipa: spec.dvipa,
                gateway: b.gateway.clone(),
            });
        }
        if backups.iter().any(|(g, _)| *g == b.gateway) {
            return Err(ConfigError::DuplicateBackup {
                dvipa: spec.dvipa,
                gateway: b.gateway.clone(),
            });
        }
        let rank = b.rank.unwrap_or(default_rank);
        if backups.iter().any(|(_, r)| *r == rank) {
            return Err(ConfigError::DuplicateRank {
                dvipa: spec.dvipa,
                rank,
            });
        }
        backups.push((b.gateway.clone(), rank));
        if let Some(id) = &b.distribution {
            dist.insert((b.gateway.clone(), spec.dvipa), id.clone());
        }
    }
    backups.sort_by_key(|b| std::cmp::Reverse(b.1));
    Ok((backups, dist))
}

/// Adds a DVIPA to an existing group after checking it agrees with the group.
fn merge_into(
    group: &mut GroupConfig,
    spec: &DvipaSpec,
    backups: Vec<(GatewayName, Rank)>,
    dist: Distributions,
) -> Result<(), ConfigError> {
    let mismatch = |what| ConfigError::GroupMismatch {
        vipa: spec.gateway_vipa,
        first: group.dvipas[0],
        second: spec.dvipa,
        what,
    };
    if group.primary != spec.routing_gateway {
        return Err(mismatch("routing_gateway"));
    }
    if group.backups != backups {
        return Err(mismatch("backups"));
    }
    group.dvipas.push(spec.dvipa);
    group.distributions.extend(dist);
    Ok(())
}
