//! The typed model of a site policy: what the daemon maps onto the IKE engine, the
//! SPD/SAD and the distribution tables.
//!
//! Everything here is plain data: parsed addresses (`ipnet`/`std::net`), parsed
//! proposals, durations, and file paths already resolved against the policy file's
//! directory. No spans, no I/O. A `Policy` is only handed out after validation
//! found no errors, so its invariants (documented per field, and in
//! `docs/policy.md`) hold: names are unique, references resolve, addresses sit in
//! their subnets, ranks are 1-254, and so on.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::addr::{AddrSel, PortRange, TrafficSelector};
use crate::proposal::{EspProposal, IkeProposal};

/// A whole site policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The policy file this was read from (as given to `load`).
    pub source: PathBuf,
    /// `[site]`.
    pub site: Site,
    /// `[[peer]]`, in file order.
    pub peers: Vec<Peer>,
    /// `[[spd]]`, in file order (first match wins).
    pub spd: Vec<SpdRule>,
    /// `[[dvipa]]`.
    pub dvipas: Vec<Dvipa>,
    /// `[[target]]`.
    pub targets: Vec<Target>,
    /// `[[link]]`.
    pub links: Vec<Link>,
    /// `[cluster]`, if present.
    pub cluster: Option<Cluster>,
    /// `[ha]`, if present (absent: a single gateway, no shared store).
    pub ha: Option<Ha>,
    /// `[log]`.
    pub log: Log,
}

impl Policy {
    /// The peer named `name`.
    pub fn peer(&self, name: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// The target named `name`.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The link named `name`.
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    /// The DVIPA with address `a`.
    pub fn dvipa(&self, a: IpAddr) -> Option<&Dvipa> {
        self.dvipas.iter().find(|d| d.address == a)
    }

    /// The targets a DVIPA distributes to, with their effective weights
    /// (the DVIPA's `weights` override the target's own `weight`; 0 = drained).
    pub fn dvipa_targets<'a>(&'a self, d: &'a Dvipa) -> Vec<(&'a Target, u32)> {
        let names: Vec<&str> = match &d.targets {
            TargetSet::All => self.targets.iter().map(|t| t.name.as_str()).collect(),
            TargetSet::Named(v) => v.iter().map(String::as_str).collect(),
        };
        names
            .into_iter()
            .filter_map(|n| self.target(n))
            .map(|t| (t, d.weights.get(&t.name).copied().unwrap_or(t.weight)))
            .collect()
    }
}

/// `[site]`: who this site is and where it listens.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// Site name (used in logs and as the default store prefix).
    pub name: String,
    /// Gateway VIPAs: the outer addresses clients send IKE and ESP to. Each lies in
    /// the subnet of one of `interfaces`.
    pub gateway_vipas: Vec<IpAddr>,
    /// Local (LAN/uplink) interfaces with their address and prefix.
    pub interfaces: Vec<Interface>,
    /// IKE port (default 500).
    pub ike_port: u16,
    /// NAT-T port for IKE and ESP-in-UDP (default 4500).
    pub natt_port: u16,
}

/// `[[site.interface]]`: a local interface and its address with prefix length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// OS interface name, e.g. `eth0`.
    pub name: String,
    /// The interface address with its prefix (`198.51.100.2/24`); the subnet is
    /// `address.trunc()`.
    pub address: IpNet,
}

/// Where an IKE peer may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteAddr {
    /// Anywhere (road warriors); we only respond.
    Any,
    /// A single host; we can initiate.
    Host(IpAddr),
    /// Anywhere in a subnet; we only respond.
    Subnet(IpNet),
}

/// An IKE identity (RFC 7296 §3.5 ID types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// `%any` / `any`: accept any identity the peer proves (remote side only).
    Any,
    /// ID_FQDN, written `@host.example` or `fqdn:host.example` or a bare name.
    Fqdn(String),
    /// ID_RFC822_ADDR, written `user@example` or `email:user@example`.
    Email(String),
    /// ID_IPV4_ADDR / ID_IPV6_ADDR.
    Ip(IpAddr),
    /// ID_DER_ASN1_DN, written `C=CH, O=Example, CN=gw` or `dn:...`.
    Dn(String),
}

/// How a peer authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Pre-shared key read from `psk_file`.
    Psk {
        /// Resolved path of the PSK file (mode 0600).
        psk_file: PathBuf,
    },
    /// X.509 certificates.
    Cert {
        /// Our certificate (PEM or DER).
        cert: PathBuf,
        /// Our private key (mode 0600).
        private_key: PathBuf,
        /// CA certificates that may sign the peer's certificate.
        ca: Vec<PathBuf>,
    },
}

/// `[[peer]]`: an IKEv2 peer (or group of road warriors) and its Child SAs.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    /// Unique name.
    pub name: String,
    /// Where the peer may be.
    pub remote: RemoteAddr,
    /// Our identity.
    pub local_id: Identity,
    /// The identity the peer must prove.
    pub remote_id: Identity,
    /// Authentication method and its files.
    pub auth: Auth,
    /// IKE proposals in preference order (default `aes256gcm16-prfsha384-ecp384`,
    /// `aes128-sha256-x25519`).
    pub proposals: Vec<IkeProposal>,
    /// When to rekey the IKE SA (default 4 h).
    pub rekey_time: Duration,
    /// Hard IKE SA lifetime, above `rekey_time` (default rekey_time + 10 %).
    pub life_time: Duration,
    /// Dead peer detection interval; `None` = off (default 30 s).
    pub dpd_delay: Option<Duration>,
    /// How ESP travels to this peer (default `auto`).
    pub encap: Encap,
    /// Child SAs.
    pub children: Vec<Child>,
}

impl Peer {
    /// The child named `name`.
    pub fn child(&self, name: &str) -> Option<&Child> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// How ESP to a peer is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// Plain ESP (IP protocol 50) unless NAT detection (RFC 7296 §2.23) finds a NAT;
    /// then ESP in UDP on the NAT-T port (RFC 3948).
    Auto,
    /// Always ESP in UDP: when we initiate, IKE starts on the NAT-T port, which
    /// RFC 7296 §2.23 allows "regardless of whether or not there is a NAT", so both
    /// ends carry ESP in UDP (strongSwan's `encap = yes`). Lets the gateway batch
    /// ESP with UDP segmentation offload.
    Udp,
}

/// ESP mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Tunnel mode (default).
    Tunnel,
    /// Transport mode.
    Transport,
}

/// What to do with a Child SA when the daemon starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAction {
    /// Wait for the peer (default).
    None,
    /// Install a trap: negotiate when matching traffic appears.
    Trap,
    /// Initiate at start.
    Start,
}

/// Soft (rekey) and hard (expire) limits of a Child SA. Each soft limit is below
/// its hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildLifetime {
    /// Rekey after this time (default 1 h).
    pub rekey_time: Duration,
    /// Delete after this time (default rekey_time + 10 %).
    pub life_time: Duration,
    /// Rekey after this many bytes (None = no limit).
    pub rekey_bytes: Option<u64>,
    /// Delete after this many bytes.
    pub life_bytes: Option<u64>,
    /// Rekey after this many packets.
    pub rekey_packets: Option<u64>,
    /// Delete after this many packets.
    pub life_packets: Option<u64>,
}

/// `[[peer.child]]`: a Child SA configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    /// Name, unique within its peer.
    pub name: String,
    /// Our side's traffic selectors. A selector that contains a DVIPA names
    /// exactly that DVIPA (host granularity, so SAs can move between gateways).
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's traffic selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// ESP proposals (default `aes256gcm16`, `aes128gcm16`).
    pub esp_proposals: Vec<EspProposal>,
    /// Tunnel or transport.
    pub mode: Mode,
    /// Rekey and expiry limits.
    pub lifetime: ChildLifetime,
    /// Anti-replay window in packets, 128..=4096 (default 1024).
    pub replay_window: u32,
    /// What to do at start.
    pub start_action: StartAction,
}

/// SPD rule direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Inbound only.
    In,
    /// Outbound only.
    Out,
    /// Both directions.
    Both,
}

impl Direction {
    /// True if a rule with direction `self` sees all traffic a rule with `o` sees.
    pub fn covers(&self, o: &Direction) -> bool {
        *self == Direction::Both || self == o
    }
}

/// What an SPD rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpdAction {
    /// Protect with a Child SA of `peer` negotiated from child config `child`.
    Protect {
        /// Peer name.
        peer: String,
        /// Child name within that peer.
        child: String,
    },
    /// Pass in clear.
    Bypass,
    /// Drop.
    Discard,
}

/// `[[spd]]`: one security policy rule (RFC 4301 §4.4.1). Rules are ordered;
/// validation guarantees no rule is shadowed by an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpdRule {
    /// Optional name for logs.
    pub name: Option<String>,
    /// Direction.
    pub direction: Direction,
    /// Local (our side) addresses.
    pub local: AddrSel,
    /// Remote addresses.
    pub remote: AddrSel,
    /// IP protocol, `None` = any.
    pub protocol: Option<u8>,
    /// Local ports.
    pub local_ports: PortRange,
    /// Remote ports.
    pub remote_ports: PortRange,
    /// Action.
    pub action: SpdAction,
}

impl SpdRule {
    /// True if every packet this rule matches is matched by `earlier` too.
    pub fn shadowed_by(&self, earlier: &SpdRule) -> bool {
        earlier.direction.covers(&self.direction)
            && earlier.local.covers(&self.local)
            && earlier.remote.covers(&self.remote)
            && (earlier.protocol.is_none() || earlier.protocol == self.protocol)
            && earlier.local_ports.covers(&self.local_ports)
            && earlier.remote_ports.covers(&self.remote_ports)
    }
}

/// How a DVIPA picks a target for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Each target in turn.
    RoundRobin,
    /// In proportion to the weights.
    WeightedRoundRobin,
    /// The target with the fewest open connections (weights break ties).
    LeastConnections,
}

/// Which targets serve a DVIPA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSet {
    /// Every `[[target]]` of the site.
    All,
    /// The named targets.
    Named(Vec<String>),
}

/// What to do with plain (non-IPsec) traffic to a DVIPA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainTraffic {
    /// Distribute it like IPsec traffic.
    Distribute,
    /// Drop it (default): only IPsec-protected traffic reaches the pool.
    Drop,
}

/// A backup gateway for a DVIPA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// Gateway name (`ha.name` or an `ha.peer` name).
    pub gateway: String,
    /// Rank 1-254; higher takes over first. Unique within one DVIPA.
    pub rank: u8,
}

/// `[[dvipa]]`: a distributed virtual IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dvipa {
    /// The address (unique).
    pub address: IpAddr,
    /// Ports distributed (other ports are not accepted).
    pub ports: Vec<PortRange>,
    /// Candidate targets.
    pub targets: TargetSet,
    /// Distribution method.
    pub method: Method,
    /// Per-target weight overrides (0 = drain: no new connections).
    pub weights: BTreeMap<String, u32>,
    /// The gateway that owns the DVIPA (required when `[ha]` is present).
    pub routing_gateway: Option<String>,
    /// Backups, sorted by rank, highest first.
    pub backups: Vec<Backup>,
    /// Plain traffic handling.
    pub plain_traffic: PlainTraffic,
}

/// `[[target]]`: a server that runs `plexgate target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Unique name.
    pub name: String,
    /// The target's address on its link (in the link's subnet).
    pub address: IpAddr,
    /// The link it sits on (exactly one target per link).
    pub link: String,
    /// Default weight (default 1; 0 = drained).
    pub weight: u32,
}

/// `[[link]]`: the point-to-point path from this gateway to one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Unique name.
    pub name: String,
    /// Local interface name.
    pub interface: String,
    /// Our address on the link (in `subnet`).
    pub local: IpAddr,
    /// The link subnet (host bits zero; link subnets do not overlap).
    pub subnet: IpNet,
    /// The address GRE on this link must come from: the target's address.
    pub remote: IpAddr,
}

/// `[cluster]`: the control channel between gateways and targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Key file for the control channel (mode 0600).
    pub key_file: PathBuf,
    /// This gateway's id, carried in the GRE key to name the sender (1..=2^32-1).
    pub gateway_id: u32,
    /// UDP port of the control channel (default 7600).
    pub port: u16,
}

/// `[ha.store]`: where recovery records and liveness live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// A file store on this host.
    Embedded {
        /// Directory or file of the store.
        path: PathBuf,
    },
    /// etcd v3.
    Etcd {
        /// Client URLs, e.g. `http://10.0.0.50:2379`.
        endpoints: Vec<String>,
        /// Key prefix (default `/plexgate/<site name>/`).
        prefix: String,
        /// Liveness lease; a gateway whose lease expires is considered dead.
        lease: Duration,
    },
}

/// `[[ha.peer]]`: another gateway of the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaPeer {
    /// Gateway name.
    pub name: String,
    /// Its control-channel address.
    pub address: IpAddr,
    /// Its default rank 1-254.
    pub rank: u8,
}

/// `[ha]`: high availability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ha {
    /// This gateway's name.
    pub name: String,
    /// This gateway's default rank 1-254 (higher takes over first).
    pub rank: u8,
    /// The other gateways.
    pub peers: Vec<HaPeer>,
    /// The shared store.
    pub store: Store,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Log {
    /// If set, IKE and ESP keys are written here in Wireshark's format. Off by
    /// default; the checker warns when it is on.
    pub keylog: Option<PathBuf>,
}

// ---------------------------------------------------------------- display

/// A duration as `4h24m`, `30s`, `1d`, `0s`.
pub fn fmt_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    out
}

impl fmt::Display for Identity {
    /// In a form that parses back to the same identity.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Any => f.write_str("%any"),
            Identity::Fqdn(s) => write!(f, "@{s}"),
            Identity::Email(s) if s.contains('@') && !s.contains('=') => f.write_str(s),
            Identity::Email(s) => write!(f, "email:{s}"),
            Identity::Ip(a) => write!(f, "{a}"),
            Identity::Dn(s) if s.contains('=') => f.write_str(s),
            Identity::Dn(s) => write!(f, "dn:{s}"),
        }
    }
}

impl fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteAddr::Any => f.write_str("any"),
            RemoteAddr::Host(a) => write!(f, "{a}"),
            RemoteAddr::Subnet(n) => write!(f, "{n}"),
        }
    }
}

fn list<T: fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_peer(f: &mut fmt::Formatter<'_>, p: &Peer) -> fmt::Result {
    let auth = match &p.auth {
        Auth::Psk { psk_file } => format!("psk {}", psk_file.display()),
        Auth::Cert { cert, .. } => format!("cert {}", cert.display()),
    };
    writeln!(
        f,
        "peer {}: remote {}, {} <-> {}, auth {auth}",
        p.name, p.remote, p.local_id, p.remote_id
    )?;
    let dpd = p.dpd_delay.map_or("off".into(), fmt_duration);
    let encap = match p.encap {
        Encap::Auto => "",
        Encap::Udp => ", esp in udp",
    };
    writeln!(
        f,
        "  ike {}; rekey {}, life {}, dpd {dpd}{encap}",
        list(&p.proposals),
        fmt_duration(p.rekey_time),
        fmt_duration(p.life_time)
    )?;
    for c in &p.children {
        let mode = if c.mode == Mode::Tunnel {
            "tunnel"
        } else {
            "transport"
        };
        writeln!(
            f,
            "  child {}: {} === {} ({mode})",
            c.name,
            list(&c.local_ts),
            list(&c.remote_ts)
        )?;
        writeln!(
            f,
            "    esp {}; rekey {}, life {}; replay {}; start {:?}",
            list(&c.esp_proposals),
            fmt_duration(c.lifetime.rekey_time),
            fmt_duration(c.lifetime.life_time),
            c.replay_window,
            c.start_action
        )?;
    }
    Ok(())
}

fn fmt_spd(f: &mut fmt::Formatter<'_>, i: usize, r: &SpdRule) -> fmt::Result {
    let name = r.name.as_deref().map_or(String::new(), |n| format!(" {n}"));
    let proto = crate::addr::proto_name(r.protocol);
    let action = match &r.action {
        SpdAction::Protect { peer, child } => format!("protect {peer}/{child}"),
        SpdAction::Bypass => "bypass".into(),
        SpdAction::Discard => "discard".into(),
    };
    writeln!(
        f,
        "  #{}{name}: {:?} {proto} local {} port {} remote {} port {} -> {action}",
        i + 1,
        r.direction,
        r.local,
        r.local_ports,
        r.remote,
        r.remote_ports
    )
}

fn fmt_dvipa(f: &mut fmt::Formatter<'_>, p: &Policy, d: &Dvipa) -> fmt::Result {
    writeln!(
        f,
        "dvipa {} ports {}: {:?}, plain traffic {:?}",
        d.address,
        list(&d.ports),
        d.method,
        d.plain_traffic
    )?;
    for (t, w) in p.dvipa_targets(d) {
        writeln!(
            f,
            "  target {} {} via link {} weight {w}",
            t.name, t.address, t.link
        )?;
    }
    if let Some(g) = &d.routing_gateway {
        let backups: Vec<String> = d
            .backups
            .iter()
            .map(|b| format!("{} (rank {})", b.gateway, b.rank))
            .collect();
        writeln!(
            f,
            "  routed by {g}, backups: {}",
            if backups.is_empty() {
                "none".into()
            } else {
                backups.join(", ")
            }
        )?;
    }
    Ok(())
}

impl fmt::Display for Policy {
    /// A normalized listing of the whole policy, for `plexgate policy check -v`
    /// and logs: defaults filled in, proposals spelled out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.site;
        writeln!(
            f,
            "site {}: gateway VIPAs {} (IKE {}, NAT-T {})",
            s.name,
            list(&s.gateway_vipas),
            s.ike_port,
            s.natt_port
        )?;
        for i in &s.interfaces {
            writeln!(f, "  interface {} {}", i.name, i.address)?;
        }
        for p in &self.peers {
            fmt_peer(f, p)?;
        }
        if !self.spd.is_empty() {
            writeln!(f, "spd (first match wins):")?;
        }
        for (i, r) in self.spd.iter().enumerate() {
            fmt_spd(f, i, r)?;
        }
        for d in &self.dvipas {
            fmt_dvipa(f, self, d)?;
        }
        for l in &self.links {
            writeln!(
                f,
                "link {}: {} {} in {} <-> {}",
                l.name, l.interface, l.local, l.subnet, l.remote
            )?;
        }
        if let Some(c) = &self.cluster {
            writeln!(
                f,
                "cluster: gateway id {}, port {}, key {}",
                c.gateway_id,
                c.port,
                c.key_file.display()
            )?;
        }
        if let Some(ha) = &self.ha {
            let peers: Vec<String> = ha
                .peers
                .iter()
                .map(|p| format!("{} {} (rank {})", p.name, p.address, p.rank))
                .collect();
            writeln!(
                f,
                "ha: this gateway {} (rank {}), peers: {}",
                ha.name,
                ha.rank,
                peers.join(", ")
            )?;
            match &ha.store {
                Store::Embedded { path } => writeln!(f, "  store embedded {}", path.display())?,
                Store::Etcd {
                    endpoints,
                    prefix,
                    lease,
                } => writeln!(
                    f,
                    "  store etcd {} prefix {prefix} lease {}",
                    endpoints.join(", "),
                    fmt_duration(*lease)
                )?,
            }
        }
        if let Some(k) = &self.log.keylog {
            writeln!(f, "KEY LOG ON: {}", k.display())?;
        }
        Ok(())
    }
}
