//! plexgate-lab: the test and benchmark lab of plexgate.
//!
//! Every end-to-end test and benchmark runs in Linux network namespaces against
//! real strongSwan (user-space ESP via `kernel-libipsec`). This crate provides the
//! pieces, all as RAII guards that clean up on drop, also when a test panics:
//!
//! * [`Netns`], [`Veth`], [`Topology`]: namespaces with unique names per run, veth
//!   links, addresses, routes, sysctls, ping and port waits ([`netns`],
//!   [`topology`]);
//! * [`Charon`]: a strongSwan peer in a namespace, configured from a
//!   [`CharonConfig`], with `initiate`, `terminate_ike`, `list_sas` and its log
//!   ([`charon`]);
//! * traffic tools: iperf3, a byte-exact TCP transfer with SHA-256 verification,
//!   HTTP servers that answer with their name and a request loop ([`traffic`]);
//! * [`Site`]: the client-site — gateway — target topology with either strongSwan
//!   or a caller's command at each tunnel end, and [`strongswan_baseline`]
//!   ([`site`]);
//! * [`Capture`]: tcpdump in a namespace, read back with tshark ([`capture`]);
//! * [`check_prerequisites`]: fails loudly when a tool is missing ([`prereq`]).
//!
//! Rules the lab keeps: traffic only goes to addresses inside lab namespaces;
//! every command and wait has a deadline; nothing is left behind.
#![warn(missing_docs)]

pub mod capture;
pub mod charon;
pub mod cmd;
pub mod error;
pub mod failover;
pub mod fixture;
pub mod labdir;
pub mod netns;
pub mod prereq;
pub mod site;
pub mod streams;
pub mod switch;
pub mod topology;
pub mod traffic;

pub use capture::Capture;
pub use charon::{Auth, Charon, CharonConfig, ChildConfig, ChildSa, IkeSa, Mode, StartAction};
pub use error::{LabError, Result};
pub use labdir::LabDir;
pub use netns::{cleanup_stale, Netns, Process};
pub use prereq::check_prerequisites;
pub use site::{strongswan_baseline, Endpoint, Ready, Running, Site, SiteSpec};
pub use switch::Switch;
pub use topology::{Topology, Veth};
pub use traffic::{
    http_get_loop, iperf3_client, tcp_transfer, tcp_transfer_until, HttpServer, IperfResult,
    IperfServer, TransferReport,
};
