//! The client-site — gateway — target topology, and the strongSwan baseline.
//!
//! ```text
//!  client (site)                 gateway                     target
//!  lo 192.168.77.1/32            (gateway VIPA)              lo: DVIPA 203.0.113.10/32 (opt-in)
//!  gw: 10.10.0.1/24 ---------- client: 10.10.0.2/24
//!                                target: 10.20.0.1/24 ------ gw: 10.20.0.2/24
//! ```
//!
//! The two tunnel ends (client and gateway) are each either a strongSwan
//! [`Charon`] or a command the caller provides (plexgate), started inside the
//! host's namespace; the target may run a command too (`plexgate target`). With
//! strongSwan at both ends the Child SA covers `192.168.77.1/32 === 10.20.0.0/24`
//! (kernel-libipsec needs a local address inside each end's local selector, so the
//! gateway's selector is the target subnet it has an address in), the gateway
//! forwards in the clear to the target, and [`strongswan_baseline`] measures iperf3
//! through that: the number plexgate is compared with.

use crate::charon::{Charon, CharonConfig, ChildConfig};
use crate::error::{LabError, Result};
use crate::labdir::LabDir;
use crate::netns::{Netns, Process};
use crate::topology::Topology;
use crate::traffic::{iperf3_client, IperfResult, IperfServer};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Client's address on the client—gateway link.
pub const CLIENT_OUTER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
/// Gateway's address on the client—gateway link (the gateway VIPA).
pub const GATEWAY_OUTER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
/// Gateway's address on the gateway—target link.
pub const GATEWAY_INNER: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 1);
/// Target's address on the gateway—target link.
pub const TARGET_ADDR: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 2);
/// The target subnet.
pub const TARGET_NET: &str = "10.20.0.0/24";
/// The client site's inner address (on the client's `lo`).
pub const CLIENT_INNER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
/// The client site subnet (routed back from the target via the gateway).
pub const CLIENT_NET: &str = "192.168.77.0/24";
/// A DVIPA for plexgate tests (put on the target's `lo` if asked).
pub const DVIPA: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Pre-shared key used by the default configs.
pub const PSK: &str = "plexgate-lab-psk-0123456789";
/// Child SA name used by the default configs.
pub const CHILD: &str = "site";

/// What the caller wants to wait for before a command counts as started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// Nothing; return at once.
    Immediately,
    /// Until a UDP socket listens on this port (IKE: 500 or 4500).
    UdpPort(u16),
    /// Until a TCP socket listens on this port.
    TcpPort(u16),
}

/// One tunnel end (or the target's process).
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// strongSwan with the lab's default config for that end.
    Strongswan,
    /// strongSwan with this config.
    StrongswanWith(Box<CharonConfig>),
    /// A command run in the host's namespace (argv), ready when `ready` holds.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
        /// Readiness condition (bounded by 20 s).
        ready: Ready,
    },
    /// Nothing is started; the caller does it with the namespace.
    Nothing,
}

/// A started endpoint.
#[derive(Debug)]
pub enum Running {
    /// A charon.
    Charon(Box<Charon>),
    /// A caller command.
    Process(Process),
    /// Nothing.
    Nothing,
}

impl Running {
    /// The charon, if this end is strongSwan.
    pub fn charon(&self) -> Option<&Charon> {
        match self {
            Running::Charon(c) => Some(c),
            _ => None,
        }
    }

    /// The process, if this end is a command.
    pub fn process(&self) -> Option<&Process> {
        match self {
            Running::Process(p) => Some(p),
            _ => None,
        }
    }
}

/// Default strongSwan config of the client end (initiator).
pub fn default_client_config() -> CharonConfig {
    CharonConfig::psk(
        &CLIENT_OUTER.to_string(),
        &GATEWAY_OUTER.to_string(),
        "client@plexgate.lab",
        "gw@plexgate.lab",
        PSK,
    )
    .child(ChildConfig::new(
        CHILD,
        &format!("{CLIENT_INNER}/32"),
        TARGET_NET,
    ))
}

/// Default strongSwan config of the gateway end (responder).
pub fn default_gateway_config() -> CharonConfig {
    default_client_config().mirrored()
}

/// What to build.
#[derive(Debug, Clone)]
pub struct SiteSpec {
    /// The client end.
    pub client: Endpoint,
    /// The gateway end.
    pub gateway: Endpoint,
    /// What runs on the target.
    pub target: Endpoint,
    /// Put [`DVIPA`]/32 on the target's `lo`.
    pub dvipa_on_target: bool,
}

impl SiteSpec {
    /// strongSwan at both tunnel ends, nothing on the target.
    pub fn strongswan() -> SiteSpec {
        SiteSpec {
            client: Endpoint::Strongswan,
            gateway: Endpoint::Strongswan,
            target: Endpoint::Nothing,
            dvipa_on_target: false,
        }
    }

    /// strongSwan at the client with its child covering `192.168.77.1/32 ===
    /// DVIPA/32` (host granularity, as plexgate wants), the caller's gateway
    /// command (ready when UDP 4500 listens) and target command (ready at once).
    /// Example argv: `["target/debug/plexgate", "gateway", "--config", "gw.toml"]`.
    pub fn plexgate(gateway_argv: &[&str], target_argv: Option<&[&str]>) -> SiteSpec {
        let mut client = default_client_config();
        for c in &mut client.children {
            c.remote_ts = vec![format!("{DVIPA}/32")];
        }
        let cmd = |a: &[&str], ready| Endpoint::Command {
            argv: a.iter().map(|s| s.to_string()).collect(),
            ready,
        };
        SiteSpec {
            client: Endpoint::StrongswanWith(Box::new(client)),
            gateway: cmd(gateway_argv, Ready::UdpPort(4500)),
            target: match target_argv {
                Some(a) => cmd(a, Ready::Immediately),
                None => Endpoint::Nothing,
            },
            dvipa_on_target: false,
        }
    }
}

/// A built site: the topology and what runs at each end. Dropping it stops
/// everything and deletes the namespaces.
#[derive(Debug)]
pub struct Site {
    /// Client end (declared first: stopped before the namespaces go).
    pub client: Running,
    /// Gateway end.
    pub gateway: Running,
    /// Target process.
    pub target: Running,
    /// Hosts `client`, `gateway`, `target`.
    pub topo: Topology,
    dir: LabDir,
}

fn start(
    ns: &Netns,
    ep: &Endpoint,
    default: fn() -> CharonConfig,
    dir: &LabDir,
) -> Result<Running> {
    Ok(match ep {
        Endpoint::Strongswan => Running::Charon(Box::new(Charon::start(ns, default())?)),
        Endpoint::StrongswanWith(c) => Running::Charon(Box::new(Charon::start(ns, (**c).clone())?)),
        Endpoint::Command { argv, ready } => {
            let args: Vec<&str> = argv.iter().map(String::as_str).collect();
            let log = dir.join(&format!("{}.log", ns.label()));
            let p = ns.spawn(&args, &log)?;
            let t = Duration::from_secs(20);
            match ready {
                Ready::Immediately => {}
                Ready::UdpPort(port) => ns.wait_listening(*port, true, t)?,
                Ready::TcpPort(port) => ns.wait_listening(*port, false, t)?,
            }
            Running::Process(p)
        }
        Endpoint::Nothing => Running::Nothing,
    })
}

impl Site {
    /// Build the three namespaces, links, addresses and plain routes, then start
    /// the endpoints (gateway and target first, client last).
    pub fn build(spec: &SiteSpec) -> Result<Site> {
        let mut topo = Topology::new();
        for h in ["client", "gateway", "target"] {
            topo.add_host(h)?;
        }
        topo.link("client", &["10.10.0.1/24"], "gateway", &["10.10.0.2/24"])?;
        topo.link("gateway", &["10.20.0.1/24"], "target", &["10.20.0.2/24"])?;
        let (c, g, t) = (topo.ns("client")?, topo.ns("gateway")?, topo.ns("target")?);
        c.add_loopback_addr(&format!("{CLIENT_INNER}/32"))?;
        c.disable_rp_filter()?;
        g.enable_forwarding()?;
        t.disable_rp_filter()?;
        t.route_via(CLIENT_NET, &GATEWAY_INNER.to_string())?;
        t.route_via("10.10.0.0/24", &GATEWAY_INNER.to_string())?;
        if spec.dvipa_on_target {
            t.add_loopback_addr(&format!("{DVIPA}/32"))?;
        }
        let dir = LabDir::new("site")?;
        let target = start(t, &spec.target, default_gateway_config, &dir)?;
        let gateway = start(g, &spec.gateway, default_gateway_config, &dir)?;
        let client = start(c, &spec.client, default_client_config, &dir)?;
        Ok(Site {
            client,
            gateway,
            target,
            topo,
            dir,
        })
    }

    /// Namespace of `client`, `gateway` or `target`.
    pub fn ns(&self, host: &str) -> Result<&Netns> {
        self.topo.ns(host)
    }

    /// Scratch directory of the site (logs of caller commands).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Bring the tunnel up when the client is strongSwan: initiate every child,
    /// wait until installed, and route each child's remote selectors into `ipsec0`
    /// on the client (and, if the gateway is strongSwan too, the client's
    /// selectors into the gateway's `ipsec0`). Then ping the target's address from
    /// the client's inner address (≤ 10 s) when the gateway is strongSwan.
    pub fn connect(&self) -> Result<()> {
        let client = self.client.charon().ok_or_else(|| {
            LabError::Config("Site::connect needs strongSwan at the client".into())
        })?;
        for child in &client.config().children {
            client.initiate(&child.name)?;
            client.wait_established(&child.name, Duration::from_secs(15))?;
            for ts in &child.remote_ts {
                client.route_ipsec0(ts, &CLIENT_INNER.to_string())?;
            }
        }
        if let Some(gw) = self.gateway.charon() {
            for child in &gw.config().children {
                for ts in &child.remote_ts {
                    gw.route_ipsec0(ts, &GATEWAY_INNER.to_string())?;
                }
            }
            let c = self.ns("client")?;
            c.wait_ping(
                &TARGET_ADDR.to_string(),
                Some(&CLIENT_INNER.to_string()),
                Duration::from_secs(10),
            )?;
        }
        Ok(())
    }

    /// iperf3 from the client's inner address to `server` (an address in the
    /// target namespace, e.g. [`TARGET_ADDR`] or [`DVIPA`]).
    pub fn iperf(&self, server: IpAddr, streams: u32, duration: Duration) -> Result<IperfResult> {
        let srv = IperfServer::start(self.ns("target")?, server, 5201)?;
        let r = iperf3_client(
            self.ns("client")?,
            server,
            srv.port,
            Some(IpAddr::V4(CLIENT_INNER)),
            streams,
            duration,
        );
        drop(srv);
        r
    }
}

impl Site {
    /// iperf3 to `server` with 1 stream, then with 8, `duration` each; returns
    /// `(gbps_1_stream, gbps_8_streams)` (receiver side).
    pub fn throughput_1_and_8(&self, server: IpAddr, duration: Duration) -> Result<(f64, f64)> {
        let one = self.iperf(server, 1, duration)?;
        let eight = self.iperf(server, 8, duration)?;
        Ok((one.received_gbps, eight.received_gbps))
    }
}

/// strongSwan at both tunnel ends (PSK, IKE aes128-sha256-x25519, ESP
/// aes128gcm16, kernel-libipsec), iperf3 from the client site through the gateway
/// to the target for `duration` with 1 and then 8 TCP streams. Returns
/// `(gbps_1_stream, gbps_8_streams)`, receiver side. Takes about
/// `2 × duration + 5 s`.
pub fn strongswan_baseline(duration: Duration) -> Result<(f64, f64)> {
    let site = Site::build(&SiteSpec::strongswan())?;
    site.connect()?;
    site.throughput_1_and_8(IpAddr::V4(TARGET_ADDR), duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_configs_mirror_each_other() {
        let c = default_client_config();
        let g = default_gateway_config();
        assert_eq!(c.local_addrs, g.remote_addrs);
        assert_eq!(c.children[0].local_ts, vec![format!("{CLIENT_INNER}/32")]);
        assert_eq!(g.children[0].local_ts, vec![TARGET_NET.to_string()]);
        assert!(c.validate().is_ok() && g.validate().is_ok());
    }

    #[test]
    fn plexgate_spec_uses_host_granularity_dvipa() {
        let s = SiteSpec::plexgate(&["plexgate", "gateway"], Some(&["plexgate", "target"]));
        let Endpoint::StrongswanWith(c) = &s.client else {
            panic!("client must be strongSwan")
        };
        assert_eq!(c.children[0].remote_ts, vec!["203.0.113.10/32".to_string()]);
        assert!(
            matches!(&s.gateway, Endpoint::Command { ready: Ready::UdpPort(4500), argv } if argv[1] == "gateway")
        );
        assert!(matches!(
            &s.target,
            Endpoint::Command {
                ready: Ready::Immediately,
                ..
            }
        ));
    }
}
