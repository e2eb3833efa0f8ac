//! `plexgate`: the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "plexgate",
    version,
    about = "IPsec front door for server pools: ESP + IKEv2 in user space, DVIPA distribution over GRE"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the routing gateway for a site.
    Run {
        /// The site policy file.
        #[arg(long)]
        policy: PathBuf,
        /// This gateway's name in the policy's [ha] section (checked against it).
        #[arg(long)]
        name: Option<String>,
        /// Control socket for `plexgate status` / `plexgate initiate`.
        #[arg(long, default_value = plexgate::ctl::DEFAULT_SOCKET)]
        ctl: PathBuf,
        /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9741).
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Run a target stack: receive DVIPA traffic over GRE and hand it to local servers.
    Target {
        /// The site policy file.
        #[arg(long)]
        policy: PathBuf,
        /// This target's name in the policy.
        #[arg(long)]
        name: String,
        /// Control socket.
        #[arg(long, default_value = "/run/plexgate/target.sock")]
        ctl: PathBuf,
    },
    /// Show IKE SAs, Child SAs, DVIPAs, the DPT and CRT counts of a running daemon.
    Status {
        /// Control socket of the daemon.
        #[arg(long, default_value = plexgate::ctl::DEFAULT_SOCKET)]
        ctl: PathBuf,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running gateway to negotiate an IKE SA (and its first Child SA) with a peer.
    Initiate {
        /// The peer's name in the policy.
        peer: String,
        /// The child to negotiate (default: the peer's first).
        #[arg(long)]
        child: Option<String>,
        /// Control socket of the daemon.
        #[arg(long, default_value = plexgate::ctl::DEFAULT_SOCKET)]
        ctl: PathBuf,
    },
    /// Site policy tools.
    /// Move a DVIPA (with every DVIPA of its gateway VIPA) to another gateway of
    /// the site: the owner hands its SAs over, the new owner renegotiates them.
    Move {
        /// The DVIPA.
        dvipa: std::net::IpAddr,
        /// The gateway that should route it.
        #[arg(long)]
        to: String,
        #[arg(long, default_value = plexgate::ctl::DEFAULT_SOCKET)]
        ctl: PathBuf,
    },
    /// The recovery records in the shared store that this gateway can open (no
    /// key material: records hold none).
    Records {
        #[arg(long, default_value = plexgate::ctl::DEFAULT_SOCKET)]
        ctl: PathBuf,
        /// The JSON as the daemon answers it.
        #[arg(long)]
        json: bool,
    },
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Run the demo in network namespaces: a strongSwan client, this gateway, three targets.
    Demo {
        /// HTTP requests to send through the tunnel.
        #[arg(long, default_value_t = 30)]
        requests: usize,
    },
    /// Measure on this machine.
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Check policy files; report every error with file:line:column.
    Check {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Raw AEAD vs the whole inbound path, per transform and packet size.
    Datapath {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 0.5)]
        seconds: f64,
        /// Only this transform (e.g. AesGcm128).
        #[arg(long)]
        transform: Option<String>,
        /// Only this inner packet size.
        #[arg(long)]
        size: Option<usize>,
        /// Hand the gateway one packet per call (`on_udp`) instead of batches
        /// of 32 (`on_udp_batch`, as the daemon's receive threads do).
        #[arg(long)]
        per_packet: bool,
        /// Instead: the cost per packet of unknown-SPI and bad-ICV floods next
        /// to legitimate packets of the same SA.
        #[arg(long)]
        flood: bool,
    },
    /// IKE SA + Child SA setups per second, memory per SA.
    Ike {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Number of setups.
        #[arg(long, default_value_t = 3000)]
        count: usize,
    },
    /// iperf3 through plexgate vs through strongSwan, in namespaces.
    E2e {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Seconds per iperf3 run.
        #[arg(long, default_value_t = 5)]
        seconds: u32,
        /// Only this run: strongswan, plexgate, plexgate_esp, plexgate_distributed or no_tunnel
        /// (ratios need the strongswan run and are then left out).
        #[arg(long)]
        only: Option<String>,
    },
    /// Recovery records per second and SA-to-durable latency, embedded and etcd;
    /// the data path with the store idle and busy.
    Store {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Backends: embedded, etcd (etcd is started on loopback by the bench).
        #[arg(long, value_delimiter = ',', default_value = "embedded,etcd")]
        backend: Vec<String>,
        /// SA counts (two records each).
        #[arg(long, value_delimiter = ',', default_value = "1000,100000")]
        sas: Vec<usize>,
        /// Seconds per half of the data-path comparison (0 skips it).
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Bench { .. } => plexgate::logging::init_with("warn"),
        _ => plexgate::logging::init(),
    }
    let r: Result<(), Box<dyn std::error::Error>> = match cli.cmd {
        Cmd::Run {
            policy,
            name,
            ctl,
            metrics,
        } => plexgate::gateway::run(&policy, name.as_deref(), &ctl, metrics),
        Cmd::Target { policy, name, ctl } => plexgate::target::run(&policy, &name, &ctl),
        Cmd::Status { ctl, json } => plexgate::status::print(&ctl, json),
        Cmd::Initiate { peer, child, ctl } => {
            plexgate::status::initiate(&ctl, &peer, child.as_deref())
        }
        Cmd::Move { dvipa, to, ctl } => plexgate::status::move_dvipa(&ctl, dvipa, &to),
        Cmd::Records { ctl, json } => plexgate::status::records(&ctl, json),
        Cmd::Policy {
            cmd: PolicyCmd::Check { files },
        } => return plexgate::policy_check(&files),
        Cmd::Demo { requests } => plexgate::demo::run(requests),
        Cmd::Bench { cmd } => match cmd {
            BenchCmd::Datapath {
                json,
                seconds,
                transform,
                size,
                per_packet,
                flood,
            } => plexgate::bench::datapath(
                json,
                seconds,
                transform.as_deref(),
                size,
                per_packet,
                flood,
            ),
            BenchCmd::Ike { json, count } => plexgate::bench::ike(json, count),
            BenchCmd::E2e {
                json,
                seconds,
                only,
            } => plexgate::bench::e2e(json, seconds, only.as_deref()),
            BenchCmd::Store {
                json,
                backend,
                sas,
                seconds,
            } => plexgate::bench::store(json, &backend, &sas, seconds),
        },
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plexgate: error: {e}");
            ExitCode::FAILURE
        }
    }
}
