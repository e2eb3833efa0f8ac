//! The routing gateway daemon (`plexgate run`): sockets, TUN, threads and the
//! control socket around one [`core::GatewayCore`].
//!
//! - [`core`]: the sans-IO gateway (data path, Child SAs and routes, status,
//!   control operations);
//! - `io`: sockets, the TUN, the [`core::Sink`] that writes to them, receive threads;
//! - `routes`, `control`, `metrics`: routes into the TUN, control-socket commands,
//!   the Prometheus exposition;
//! - this file: start-up, the TUN and cluster threads, and the timer thread that
//!   sleeps until the core's next deadline and applies its side effects (records,
//!   key log, routes).

pub mod config;
mod control;
pub mod core;
mod io;
mod metrics;
mod routes;
pub mod store;

pub use routes::{host_cidr, ip};

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use self::core::{CoreSetup, GatewayCore, SideEffect, HEADROOM};
use self::io::{receive_thread, spawn, Framing, Io, IoSink, Out};
use crate::io::net;
use crate::io::tun::{Tun, TunReader};

type BoxError = Box<dyn std::error::Error>;

/// Wakes the timer thread when a core call left work for it: side effects to
/// apply, or a deadline earlier than the one it sleeps until.
#[derive(Default)]
pub(crate) struct Waker {
    state: Mutex<WakeState>,
    cond: Condvar,
}

#[derive(Default)]
struct WakeState {
    woken: bool,
    sleeping_until: Option<Instant>,
}

impl Waker {
    /// After any call into the core (under its lock): wake the timer thread if
    /// it has something to do earlier than it planned.
    pub(crate) fn after_core_call(&self, c: &GatewayCore) {
        let due = c.has_side_effects();
        let next = c.next_timeout();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if due || s.sleeping_until.is_some_and(|t| next < t) {
            s.woken = true;
            self.cond.notify_one();
        }
    }

    /// Sleep until `deadline` or a wake-up.
    fn sleep_until(&self, deadline: Instant) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.sleeping_until = Some(deadline);
        while !s.woken {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            s = self
                .cond
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        s.woken = false;
        s.sleeping_until = None;
    }
}

/// Run the gateway until killed.
pub fn run(
    policy_path: &Path,
    name: Option<&str>,
    ctl: &Path,
    metrics: Option<SocketAddr>,
) -> Result<(), BoxError> {
    let p = load_policy(policy_path, name)?;
    if let Some(k) = &p.log.keylog {
        tracing::warn!("KEY LOG ENABLED: every SA's keys are written to {} — anyone who reads it can decrypt the traffic. Turn it off in production.", k.display());
    }
    let setup = CoreSetup::load(&p)?;
    let core = GatewayCore::new(
        &p,
        setup,
        Box::new(plexgate_ike::SystemRng::new()),
        Instant::now(),
    )?;
    let core = Arc::new(Mutex::new(core));
    let io = Arc::new(open_io(&p)?);
    routes::install_static(&p, io.tun.name());
    let waker = Arc::new(Waker::default());
    let mut threads = receivers(&p, &core, &io, &waker);
    threads.push(tun_thread(&core, &io, &waker));
    threads.push(cluster_thread(&core, &io, &waker));
    threads.push(timer_thread(&p, &core, &io, &waker)?);
    serve_control(ctl, &core, &io, &waker)?;
    if let Some(m) = metrics {
        let core = core.clone();
        let bound = crate::metrics::serve(
            m,
            Arc::new(move || metrics::render(&core.lock().unwrap_or_else(|e| e.into_inner()))),
        )?;
        tracing::info!("metrics on http://{bound}/metrics");
    }
    tracing::info!(site = %p.site.name, tun = %io.tun.name(), "gateway running; control socket {}", ctl.display());
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Load and check the site policy; `name` says which gateway of the site this is.
fn load_policy(path: &Path, name: Option<&str>) -> Result<plexgate_policy::Policy, BoxError> {
    let checked = plexgate_policy::load(path).map_err(|d| format!("{d}"))?;
    if checked.warnings.iter().next().is_some() {
        eprint!("{}", checked.warnings);
    }
    let p = checked.policy;
    if let (Some(n), Some(ha)) = (name, p.ha.as_ref()) {
        if ha.name != n && !ha.peers.iter().any(|peer| peer.name == n) {
            return Err(format!(
                "{}: no gateway named {n:?} in [ha] (this file's gateway is {:?})",
                path.display(),
                ha.name
            )
            .into());
        }
        if ha.name != n {
            return Err(format!(
                "gateway {n:?} is a backup in {}; running backups comes with the failover wave",
                path.display()
            )
            .into());
        }
    }
    Ok(p)
}

/// Open every socket and the TUN device.
fn open_io(p: &plexgate_policy::Policy) -> Result<Io, BoxError> {
    let mut udp = HashMap::new();
    for vipa in &p.site.gateway_vipas {
        for port in [p.site.ike_port, p.site.natt_port] {
            let a = SocketAddr::new(*vipa, port);
            let s = net::udp_socket(a).map_err(|e| format!("bind UDP {a}: {e}"))?;
            udp.insert(a, Arc::new(s));
        }
    }
    let esp = match io::raw_esp_socket() {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            tracing::warn!("no raw ESP socket (protocol 50): {e}; only ESP-in-UDP will work");
            None
        }
    };
    let tun_name = format!("pg-{}", p.site.name.chars().take(12).collect::<String>());
    let tun = Arc::new(
        Tun::open_with(&tun_name, None, 1400, true).map_err(|e| format!("TUN {tun_name}: {e}"))?,
    );
    // Decrypted packets enter the kernel through the TUN with sources routed
    // elsewhere until their Child SA's route exists: no reverse-path filter there.
    let _ = std::fs::write(format!("/proc/sys/net/ipv4/conf/{tun_name}/rp_filter"), "0");
    let cluster_port = p.cluster.as_ref().map(|c| c.port).unwrap_or(7600);
    let cluster = Arc::new(net::udp_socket(SocketAddr::new(
        "0.0.0.0".parse()?,
        cluster_port,
    ))?);
    let targets = p
        .targets
        .iter()
        .filter_map(|t| config::target_node(p, &t.name).map(|n| (n, t.address)))
        .collect();
    Ok(Io {
        udp,
        esp,
        gre: Arc::new(net::gre_socket(None)?),
        tun,
        cluster,
        cluster_port,
        targets,
    })
}

/// The UDP (IKE, ESP in UDP), raw ESP and per-link GRE receive threads.
fn receivers(
    p: &plexgate_policy::Policy,
    core: &Arc<Mutex<GatewayCore>>,
    io: &Arc<Io>,
    waker: &Arc<Waker>,
) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::new();
    // UDP receivers (IKE on 500, IKE + ESP-in-UDP on 4500), a batch per call.
    for (addr, sock) in io.udp.clone() {
        let name = format!("udp-{}", addr.port());
        // ESP-in-UDP from a peer that sends with UDP GSO arrives coalesced.
        let gro = addr.port() == p.site.natt_port && net::enable_udp_gro(&sock);
        threads.push(receive_thread(
            &name,
            sock,
            core,
            io,
            Framing::Udp { gro },
            waker,
            move |c, now, batch, sink| c.on_udp_batch(now, addr, batch, sink),
        ));
    }
    // Raw ESP receiver: raw IPv4 sockets hand over the IP header too.
    if let Some(sock) = io.esp.clone() {
        threads.push(receive_thread(
            "esp",
            sock,
            core,
            io,
            Framing::RawIpv4,
            waker,
            |c, now, batch, sink| c.on_esp_batch(now, batch, sink),
        ));
    }
    // GRE receivers, one per link, bound to the link's device.
    for (i, l) in p.links.iter().enumerate() {
        let sock = match net::gre_socket(Some(&l.interface)) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!("link {}: cannot bind GRE to {}: {e}", l.name, l.interface);
                continue;
            }
        };
        let link = p
            .targets
            .iter()
            .position(|t| t.link == l.name)
            .map(|t| plexgate_distrib::LinkId(t as u32))
            .unwrap_or(plexgate_distrib::LinkId(1_000_000 + i as u32));
        threads.push(receive_thread(
            &format!("gre-{}", l.name),
            sock,
            core,
            io,
            Framing::RawIpv4,
            waker,
            move |c, now, batch, sink| c.on_gre_batch(now, link, batch, sink),
        ));
    }
    threads
}

/// TUN reader: with offload one read returns a TCP super-packet split into
/// segments; several reads are drained per lock acquisition.
fn tun_thread(core: &Arc<Mutex<GatewayCore>>, io: &Arc<Io>, waker: &Arc<Waker>) -> JoinHandle<()> {
    let (core, io, waker) = (core.clone(), io.clone(), waker.clone());
    spawn("tun", move || {
        let mut reader = TunReader::new(HEADROOM);
        let mut out = Out::default();
        loop {
            if reader.read(&io.tun, Duration::from_millis(200)) == 0 {
                continue;
            }
            let now = Instant::now();
            {
                let mut c = core.lock().unwrap_or_else(|e| e.into_inner());
                let mut sink = IoSink::batched(&io, &mut out);
                for (buf, len) in reader.packets_mut() {
                    c.on_tun(now, buf, HEADROOM, len, &mut sink);
                }
                waker.after_core_call(&c);
            }
            out.flush(&io);
        }
    })
}

/// The cluster channel (SRVSTAT, NEWCONN, keepalives from targets).
fn cluster_thread(
    core: &Arc<Mutex<GatewayCore>>,
    io: &Arc<Io>,
    waker: &Arc<Waker>,
) -> JoinHandle<()> {
    let (core, io, waker) = (core.clone(), io.clone(), waker.clone());
    spawn("cluster", move || {
        let mut buf = [0u8; 65536];
        loop {
            let Ok((n, _)) = io.cluster.recv_from(io::as_uninit(&mut buf)) else {
                continue;
            };
            let now = Instant::now();
            let mut c = core.lock().unwrap_or_else(|e| e.into_inner());
            c.on_cluster(now, &buf[..n], &mut IoSink::direct(&io));
            waker.after_core_call(&c);
        }
    })
}

/// Where the side effects of the core go: recovery records to the store's
/// writer, key-log lines to the Wireshark files (`esp_sa`, and the same path
/// with `.ikev2` for `ikev2_decryption_table`).
struct Effects {
    store: Option<store::SiteStore>,
    esp_log: Option<std::fs::File>,
    ike_log: Option<std::fs::File>,
}

impl Effects {
    fn open(p: &plexgate_policy::Policy) -> Result<Effects, BoxError> {
        let log_file = |path: PathBuf| {
            std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new().create(true).append(true),
                0o600,
            )
            .open(&path)
            .map_err(|e| tracing::error!("keylog {}: {e}", path.display()))
            .ok()
        };
        let keylog = p.log.keylog.clone();
        Ok(Effects {
            store: store::open(p)?,
            esp_log: keylog.clone().and_then(log_file),
            ike_log: keylog
                .map(|k| PathBuf::from(format!("{}.ikev2", k.display())))
                .and_then(log_file),
        })
    }

    fn apply(&mut self, e: SideEffect) {
        let line = |f: &mut Option<std::fs::File>, l: String| {
            if let Some(f) = f.as_mut() {
                let _ = writeln!(f, "{l}");
                let _ = f.flush();
            }
        };
        match e {
            SideEffect::Record(c) => {
                if let Some(s) = &self.store {
                    s.apply(c);
                }
            }
            SideEffect::KeyLog(l) => line(&mut self.esp_log, l),
            SideEffect::IkeKeyLog(l) => line(&mut self.ike_log, l),
        }
    }
}

/// Timers and side effects: the thread sleeps until the core's next deadline
/// (or until a core call wakes it), runs the core's timers and applies what
/// the core asked for: recovery records, key-log lines, routes.
fn timer_thread(
    p: &plexgate_policy::Policy,
    core: &Arc<Mutex<GatewayCore>>,
    io: &Arc<Io>,
    waker: &Arc<Waker>,
) -> Result<JoinHandle<()>, BoxError> {
    let mut sinks = Effects::open(p)?;
    let (core, io, waker) = (core.clone(), io.clone(), waker.clone());
    Ok(spawn("timer", move || loop {
        let now = Instant::now();
        let (effects, routes, next) = {
            let mut c = core.lock().unwrap_or_else(|e| e.into_inner());
            if now >= c.next_timeout() {
                c.on_timeout(now, &mut IoSink::direct(&io));
            }
            (c.drain_side_effects(), c.routes_wanted(), c.next_timeout())
        };
        routes::apply(io.tun.name(), routes);
        for e in effects {
            sinks.apply(e);
        }
        waker.sleep_until(next);
    }))
}

/// The control socket: each request runs on the core under its lock.
fn serve_control(
    ctl: &Path,
    core: &Arc<Mutex<GatewayCore>>,
    io: &Arc<Io>,
    waker: &Arc<Waker>,
) -> Result<(), BoxError> {
    let (core, io, waker) = (core.clone(), io.clone(), waker.clone());
    let h: crate::ctl::Handler = Arc::new(move |req: &Value| {
        let now = Instant::now();
        let mut c = core.lock().unwrap_or_else(|e| e.into_inner());
        let answer = control::handle(&mut c, now, req, &mut IoSink::direct(&io));
        waker.after_core_call(&c);
        answer
    });
    crate::ctl::serve(ctl, h)?;
    Ok(())
}
