//! `plexgate demo`: the whole product in network namespaces on this machine.
//!
//! ```text
//!  client (strongSwan)            gateway (plexgate run)              web-1..3 (plexgate target + HTTP)
//!  10.10.0.1 ── IKEv2/ESP-in-UDP ── 10.10.0.2 (gateway VIPA)
//!  inner 192.168.77.1                       10.9.0.N/30 ── GRE ───── 10.9.0.N+1, DVIPA 10.100.0.10 on lo
//! ```
//!
//! The client negotiates IKEv2 (PSK) with the gateway, then opens new HTTP
//! connections to the DVIPA; the gateway decrypts, spreads them round-robin over the
//! three targets over GRE, and encrypts their replies. Recovery records land in the
//! embedded store. Everything is removed at the end, also on failure.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::site_template::DvipaSite;
use plexgate_lab::{
    Charon, CharonConfig, ChildConfig, HttpServer, LabDir, Netns, Process, Topology,
};

type BoxError = Box<dyn std::error::Error>;

/// The DVIPA of the demo.
pub const DVIPA: &str = "10.100.0.10";
const CLIENT_OUT: &str = "10.10.0.1";
const GW_OUT: &str = "10.10.0.2";
const CLIENT_IN: &str = "192.168.77.1";
const PSK: &str = "plexgate-demo-secret-0123456789";
/// Targets: (name, gateway side /30 address, target address).
pub const TARGETS: [(&str, &str, &str); 3] = [
    ("web-1", "10.9.0.1", "10.9.0.2"),
    ("web-2", "10.9.0.5", "10.9.0.6"),
    ("web-3", "10.9.0.9", "10.9.0.10"),
];

/// The site policy of the demo gateway, written into `dir`.
pub fn write_policy(
    dir: &Path,
    method: &str,
    weights: Option<[u32; 3]>,
    plain: &str,
) -> Result<PathBuf, BoxError> {
    let mut site = DvipaSite::new("demo", GW_OUT.parse()?, DVIPA.parse()?)
        .with_targets(TARGETS.len(), |i| TARGETS[i].0.to_string());
    site.dvipa_extra = format!("method = \"{method}\"\nplain_traffic = \"{plain}\"");
    if let Some(w) = weights {
        site.dvipa_extra.push_str(&format!(
            "\nweights = {{ web-1 = {}, web-2 = {}, web-3 = {} }}",
            w[0], w[1], w[2]
        ));
    }
    site.ha_store = Some(dir.join("store"));
    Ok(site.write(
        dir,
        PSK.as_bytes(),
        b"plexgate-demo-cluster-key-0123456789abcdef",
    )?)
}

/// The running demo topology. Field order is drop order: processes first.
pub struct DemoLab {
    /// The strongSwan client.
    pub client: Charon,
    /// HTTP servers on the targets.
    pub servers: Vec<Option<HttpServer>>,
    /// `plexgate target` processes.
    pub targets: Vec<Process>,
    /// `plexgate run`.
    pub gateway: Process,
    /// Control socket of the gateway.
    pub ctl: PathBuf,
    /// Namespaces and links.
    pub topo: Topology,
    /// Scratch directory (policy, keys, logs, store).
    pub dir: LabDir,
}

impl DemoLab {
    /// Build the topology and start everything; `bin` is the plexgate binary.
    pub fn start(
        bin: &Path,
        method: &str,
        weights: Option<[u32; 3]>,
        plain: &str,
    ) -> Result<DemoLab, BoxError> {
        plexgate_lab::check_prerequisites()?;
        let dir = LabDir::new("demo")?;
        let mut topo = Topology::new();
        for h in ["client", "gateway", "web-1", "web-2", "web-3"] {
            topo.add_host(h)?;
        }
        topo.link(
            "client",
            &[&format!("{CLIENT_OUT}/24")],
            "gateway",
            &[&format!("{GW_OUT}/24")],
        )?;
        for (name, gw, addr) in TARGETS {
            topo.link(
                "gateway",
                &[&format!("{gw}/30")],
                name,
                &[&format!("{addr}/30")],
            )?;
            let ns = topo.ns(name)?;
            ns.route_via("default", gw)?;
        }
        let c = topo.ns("client")?;
        c.add_loopback_addr(&format!("{CLIENT_IN}/32"))?;
        c.disable_rp_filter()?;
        let g = topo.ns("gateway")?;
        g.disable_rp_filter()?;
        g.enable_forwarding()?;
        g.sysctl("net.ipv4.conf.default.rp_filter", "0")?;
        let policy = write_policy(dir.path(), method, weights, plain)?;
        let ctl = dir.join("gw.sock");
        let bin_s = bin.to_string_lossy().to_string();
        let gateway = g.spawn(
            &[
                &bin_s,
                "run",
                "--policy",
                &policy.to_string_lossy(),
                "--ctl",
                &ctl.to_string_lossy(),
            ],
            &dir.join("gateway.log"),
        )?;
        wait_ctl(&ctl, &gateway)?;
        let mut targets = Vec::new();
        let mut servers = Vec::new();
        for (name, _, _) in TARGETS {
            let ns = topo.ns(name)?;
            let tctl = dir.join(&format!("{name}.sock"));
            let p = ns.spawn(
                &[
                    &bin_s,
                    "target",
                    "--policy",
                    &policy.to_string_lossy(),
                    "--name",
                    name,
                    "--ctl",
                    &tctl.to_string_lossy(),
                ],
                &dir.join(&format!("{name}.log")),
            )?;
            wait_ctl(&tctl, &p)?;
            // The target daemon put the DVIPA on lo; the server binds it.
            let addr = SocketAddr::new(DVIPA.parse::<IpAddr>()?, 80);
            servers.push(Some(HttpServer::start(ns, addr, name)?));
            targets.push(p);
        }
        let mut cc = CharonConfig::psk(
            CLIENT_OUT,
            GW_OUT,
            "client@plexgate.demo",
            "gw@plexgate.demo",
            PSK,
        );
        // (the ids are DvipaSite's defaults for site "demo")
        cc.ike_proposals = vec!["aes128gcm16-prfsha256-x25519".into()];
        let cc = cc.child(
            ChildConfig::new("web", &format!("{CLIENT_IN}/32"), &format!("{DVIPA}/32"))
                .esp(&["aes128gcm16"]),
        );
        let client = Charon::start(c, cc)?;
        Ok(DemoLab {
            client,
            servers,
            targets,
            gateway,
            ctl,
            topo,
            dir,
        })
    }

    /// Bring up the tunnel and route the DVIPA into it on the client.
    pub fn connect(&self) -> Result<(), BoxError> {
        self.client.initiate("web")?;
        self.client
            .wait_established("web", Duration::from_secs(15))?;
        self.client
            .route_ipsec0(&format!("{DVIPA}/32"), CLIENT_IN)?;
        Ok(())
    }

    /// Wait until every target reported a listener on the DVIPA port (SRVSTAT).
    pub fn wait_listeners(&self, n: usize, timeout: Duration) -> Result<(), BoxError> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status()?;
            if crate::status::listening_targets(&s) >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                let dpt = &s["dpt"];
                return Err(
                    format!("targets did not report their listeners in time; DPT: {dpt}").into(),
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `n` HTTP requests on new connections; returns which target answered each.
    pub fn requests(&self, n: usize) -> Result<Vec<Result<String, String>>, BoxError> {
        let to = SocketAddr::new(DVIPA.parse::<IpAddr>()?, 80);
        Ok(plexgate_lab::http_get_loop(
            self.topo.ns("client")?,
            to,
            n,
            Duration::from_secs(5),
        )?)
    }

    /// The gateway's status JSON.
    pub fn status(&self) -> Result<serde_json::Value, BoxError> {
        Ok(crate::ctl::request(
            &self.ctl,
            &serde_json::json!({"cmd": "status"}),
        )?)
    }

    /// A namespace of the demo.
    pub fn ns(&self, host: &str) -> Result<&Netns, BoxError> {
        Ok(self.topo.ns(host)?)
    }
}

fn wait_ctl(ctl: &Path, p: &Process) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if crate::ctl::request(ctl, &serde_json::json!({"cmd": "status"})).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{} did not come up; its log:\n{}", p.argv(), p.log()).into())
}

/// `plexgate demo`.
pub fn run(requests: usize) -> Result<(), BoxError> {
    let bin = std::env::current_exe()?;
    println!("== building namespaces: client (strongSwan), gateway (plexgate run), web-1..3 (plexgate target + HTTP on {DVIPA}:80)");
    let lab = DemoLab::start(&bin, "round-robin", None, "drop")?;
    lab.wait_listeners(3, Duration::from_secs(15))?;
    println!("== targets reported their listeners (SRVSTAT); strongSwan client negotiates IKEv2 with the gateway");
    if let Err(e) = lab.connect() {
        return Err(format!(
            "{e}\n--- charon log ---\n{}\n--- gateway log ---\n{}",
            lab.client.log(),
            lab.gateway.log()
        )
        .into());
    }
    for sa in lab.client.list_sas()? {
        let kids: Vec<String> = sa
            .children
            .iter()
            .map(|c| {
                format!(
                    "{} {} SPIs {:08x}_i {:08x}_o {:?}",
                    c.name, c.state, c.spi_in, c.spi_out, c.encr_alg
                )
            })
            .collect();
        println!(
            "   strongSwan: IKE SA {} {} {}[{}] ... {}[{}], {:?}/{:?}/{:?}; CHILD_SA {}",
            sa.name,
            sa.state,
            sa.local_host,
            sa.local_id,
            sa.remote_host,
            sa.remote_id,
            sa.encr_alg,
            sa.prf_alg,
            sa.dh_group,
            kids.join("; ")
        );
    }
    println!("== {requests} HTTP requests from the client, each on a new connection, through the tunnel to the DVIPA");
    let r = lab.requests(requests)?;
    let mut counts = std::collections::BTreeMap::new();
    for x in &r {
        *counts
            .entry(x.clone().unwrap_or_else(|e| format!("error: {e}")))
            .or_insert(0) += 1;
    }
    for (who, n) in &counts {
        println!("   {who:<28} {n}");
    }
    println!("== plexgate status");
    print!("{}", crate::status::render(&lab.status()?));
    println!(
        "== recovery records in the embedded store ({})",
        lab.dir.join("store").display()
    );
    if let Ok(rd) = std::fs::read_dir(lab.dir.join("store")) {
        for e in rd.flatten() {
            println!("   {}", e.file_name().to_string_lossy().replace("%2F", "/"));
        }
    }
    let ok = r.iter().filter(|x| x.is_ok()).count();
    println!("== done: {ok}/{requests} requests answered; cleaning up namespaces");
    if ok != requests {
        return Err(format!(
            "{} requests failed; gateway log:\n{}",
            requests - ok,
            lab.gateway.log()
        )
        .into());
    }
    Ok(())
}
