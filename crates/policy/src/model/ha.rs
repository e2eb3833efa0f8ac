//! `[cluster]`, `[ha]` with its peers and shared store, and `[log]`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `[cluster]`: the control channel between gateways and targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Key file for the control channel (mode 0600).
    pub key_file: PathBuf,
    /// This gateway's id, carried in the GRE key to name the sender (1..=2^32-1).
    pub gateway_id: u32,
    /// UDP port of the control channel (default 7600).
    pub port: u16,
    /// Destination UDP port of GRE-in-UDP (RFC 8086) on links with
    /// `encap = "udp"` (default 4754, the IANA port of GRE-in-UDP).
    pub gre_udp_port: u16,
}

/// `[ha.store]`: where recovery records and liveness live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// A store on this host, shared by its gateway processes.
    Embedded {
        /// The store's file (an SQLite database).
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

/// The keys that seal recovery records (`[ha.store] key_file`, `key_id`,
/// `old_keys`): AEAD keys, 32 bytes written as 64 hex digits (or 32 raw bytes),
/// mode 0600 like the cluster key. Records are sealed with `key_file` under
/// `key_id`; records sealed under an `old_keys` id can still be opened while
/// the site rotates to the new key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreKeys {
    /// The current sealing key.
    pub key_file: PathBuf,
    /// Its id, written in every sealed record (1-65535, default 1).
    pub key_id: u16,
    /// Keys still accepted for opening, each with its own id.
    pub old_keys: Vec<OldStoreKey>,
}

/// A previous store key, kept readable during a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldStoreKey {
    /// Its id (1-65535; unique, not the current `key_id`).
    pub id: u16,
    /// Its file (mode 0600).
    pub file: PathBuf,
}

/// `[[ha.peer]]`: another gateway of the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaPeer {
    /// Gateway name.
    pub name: String,
    /// Its cluster node id (unique among the gateways; what `[cluster]
    /// gateway_id` is for this file's gateway). Without it the peer cannot be a
    /// cluster member: its messages are refused and the file cannot be run as it.
    pub id: Option<u32>,
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
    /// This gateway's control-channel address, as the peers reach it (what
    /// `[[ha.peer]] address` is for the others); needed to run the file as a peer.
    pub address: Option<IpAddr>,
    /// The other gateways.
    pub peers: Vec<HaPeer>,
    /// The shared store.
    pub store: Store,
    /// The keys that seal the store's recovery records.
    pub store_keys: StoreKeys,
    /// How often this gateway renews its heartbeat in the store (default
    /// 150 ms, at least 20 ms).
    pub heartbeat: Duration,
    /// A gateway whose heartbeat is this old is dead (default 4 heartbeats,
    /// i.e. 600 ms; at least 3 heartbeats).
    pub dead_after: Duration,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Log {
    /// If set, IKE and ESP keys are written here in Wireshark's format. Off by
    /// default; the checker warns when it is on.
    pub keylog: Option<PathBuf>,
}

/// `[l2]`: owning the gateway addresses on the LAN (ARP, seeds 000, 002, 003, 004).
/// Absent or `arp = false`: the kernel answers ARP for addresses on the host
/// (and a takeover sends no gratuitous ARP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2 {
    /// plexgate answers ARP for the gateway VIPAs itself and announces them on
    /// takeover (default false).
    pub arp: bool,
    /// LAN interfaces to speak ARP on, in order of preference (default: every
    /// IPv4 `[[site.interface]]`).
    pub interfaces: Vec<String>,
    /// A private gateway-system address owned with the VIPAs (seed 003).
    pub system_address: Option<std::net::Ipv4Addr>,
    /// Addresses bound to no adapter answered by proxy ARP (seed 000), e.g. a
    /// DVIPA reached by plain traffic from the LAN.
    pub proxy_arp: Vec<std::net::Ipv4Addr>,
    /// Interfaces on one network back each other up (seed 002).
    pub adapter_backup: bool,
    /// A shared multicast cluster MAC (seed 004); off when `None`.
    pub cluster_mac: Option<[u8; 6]>,
    /// The members' own LAN addresses (cluster MAC mode).
    pub cluster_members: Vec<std::net::Ipv4Addr>,
    /// Gratuitous ARPs per takeover (default 3).
    pub garp_count: u32,
    /// Time between them (default 500 ms).
    pub garp_interval: Duration,
}
