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
pub mod ha;
mod io;
mod metrics;
mod routes;
mod status;
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
use crate::io::tun::{Tun, TunReader};
use crate::io::{link, net};

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
    let me = name
        .map(str::to_string)
        .or_else(|| p.ha.as_ref().map(|h| h.name.clone()));
    let setup = CoreSetup::load(&p)?;
    let mut core = GatewayCore::new(
        &p,
        setup,
        Box::new(plexgate_ike::SystemRng::new()),
        Instant::now(),
    )?;
    let nodes = crate::cluster::gateway_nodes(&p);
    for n in nodes.with_role(plexgate_distrib::Role::Gateway) {
        core.add_cluster_node(n.clone());
    }
    let core = Arc::new(Mutex::new(core));
    let io = Arc::new(open_io(&p, &nodes)?);
    routes::install_static(&p, io.tun.name());
    let site = store::open(&p)?.map(Arc::new);
    let l2 = crate::l2::from_policy(&p)?.map(Arc::new);
    let ha = match (&site, &me) {
        (Some(s), Some(me)) if p.ha.is_some() => {
            let (h, t) = ha::start(&p, me, core.clone(), io.clone(), s, l2.clone())?;
            Some((h, t))
        }
        _ => None,
    };
    let ha_handle = ha.as_ref().map(|(h, _)| h.clone());
    let waker = Arc::new(Waker::default());
    let mut threads = receivers(&p, &core, &io, &waker);
    threads.push(tun_thread(&core, &io, &waker));
    threads.extend(cluster_threads(&core, &io, &waker));
    threads.push(timer_thread(
        &p,
        &core,
        &io,
        &waker,
        site.clone(),
        ha_handle.clone(),
    )?);
    if let Some((_, t)) = ha {
        threads.push(t);
    }
    let ctx = control::Context {
        site: site.clone(),
        ha: ha_handle.clone(),
        l2: l2.clone(),
    };
    serve_control(ctl, &core, &io, &waker, ctx)?;
    on_termination(ha_handle, l2);
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

/// On SIGTERM/SIGINT: hand every owned DVIPA over (at most a few seconds), put
/// the addresses back, remove the control socket, exit.
fn on_termination(ha: Option<ha::HaHandle>, l2: Option<Arc<crate::l2::L2Agent>>) {
    let r = crate::ctl::on_termination(move |sig| {
        if let Some(h) = &ha {
            tracing::info!("stopping: handing the owned DVIPAs over");
            h.send(ha::HaMsg::Shutdown);
            h.wait_stopped(Duration::from_secs(3));
        }
        if let Some(l2) = l2.and_then(|a| Arc::try_unwrap(a).ok()) {
            let _ = l2.stop();
        }
        crate::ctl::shutdown_all();
        std::process::exit(128 + sig);
    });
    if let Err(e) = r {
        tracing::warn!("no SIGTERM handler: {e}");
    }
}

/// Load and check the site policy, and see it as gateway `name` (default: the
/// file's own): its node id, rank and address in `[ha]`/`[cluster]`, its links
/// only, and the targets' addresses on those links (`Policy::for_gateway`).
fn load_policy(path: &Path, name: Option<&str>) -> Result<plexgate_policy::Policy, BoxError> {
    let checked = plexgate_policy::load(path).map_err(|d| format!("{d}"))?;
    if checked.warnings.iter().next().is_some() {
        eprint!("{}", checked.warnings);
    }
    let p = checked.policy;
    let name = name.unwrap_or(p.gateway_name()).to_string();
    if name != p.gateway_name() && p.ha.is_none() {
        return Err(format!(
            "{}: no gateway named {name:?}: the file has no [ha] section",
            path.display()
        )
        .into());
    }
    p.for_gateway(&name)
        .map_err(|e| format!("{}: {e}", path.display()).into())
}

/// Open every socket and the TUN device.
fn open_io(p: &plexgate_policy::Policy, nodes: &plexgate_distrib::NodeMap) -> Result<Io, BoxError> {
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
    let (cluster, cluster_to) = cluster_sockets(p, nodes)?;
    let gre6 = match link::gre_socket_on(true, None, None) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            tracing::warn!("no raw IPv6 GRE socket: {e}; IPv6 links will not work");
            None
        }
    };
    Ok(Io {
        udp,
        esp,
        gre: Arc::new(net::gre_socket(None)?),
        gre6,
        tun,
        cluster,
        cluster_to,
    })
}

/// The cluster channel listens on this gateway's address on each link that has
/// a target (bound to the link's interface too), and on its `[ha] address` for
/// the other gateways — never on a wildcard or a gateway VIPA (#15) — and sends
/// to each node from the socket of that node's link.
#[allow(clippy::type_complexity)]
fn cluster_sockets(
    p: &plexgate_policy::Policy,
    nodes: &plexgate_distrib::NodeMap,
) -> Result<
    (
        Vec<io::ClusterSocket>,
        HashMap<plexgate_distrib::NodeId, (usize, SocketAddr)>,
    ),
    BoxError,
> {
    let port = p.cluster.as_ref().map(|c| c.port).unwrap_or(7600);
    // (link, our address on it, its interface)
    let mut binds: Vec<(plexgate_distrib::LinkId, std::net::IpAddr, Option<String>)> = p
        .targets
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let l = p.link(&t.link)?;
            Some((
                plexgate_distrib::LinkId(i as u32),
                l.local,
                Some(l.interface.clone()),
            ))
        })
        .collect();
    if let Some(a) = p.ha.as_ref().and_then(|h| h.address) {
        binds.push((crate::cluster::PEER_LINK, a, link::interface_of(a)));
    }
    let mut sockets = Vec::new();
    for (link, a, dev) in binds {
        let local = SocketAddr::new(a, port);
        let sock = link::udp_socket_on_link(local, dev.as_deref())
            .map_err(|e| format!("bind cluster socket {local}: {e}"))?;
        sockets.push(io::ClusterSocket {
            link,
            local,
            sock: Arc::new(sock),
        });
    }
    let mut to = HashMap::new();
    for n in nodes.iter() {
        match sockets.iter().position(|s| s.link == n.link) {
            Some(i) => {
                to.insert(n.id, (i, SocketAddr::new(n.address, port)));
            }
            None => tracing::warn!(
                "no cluster socket towards {} ({}): {}",
                n.name,
                n.address,
                if n.link == crate::cluster::PEER_LINK {
                    "[ha] has no `address`"
                } else {
                    "its link has no local address"
                }
            ),
        }
    }
    Ok((sockets, to))
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
    // GRE receivers, one per link, bound to the link's device; an IPv6 link has
    // an IPv6 raw socket (no IP header: the source is the datagram's address).
    for (i, l) in p.links.iter().enumerate() {
        let v6 = l.local.is_ipv6();
        let sock = match link::gre_socket_on(v6, Some(&l.interface), None) {
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
            if v6 {
                Framing::RawIpv6
            } else {
                Framing::RawIpv4
            },
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

/// The cluster channel (SRVSTAT, NEWCONN, keepalives from targets; the other
/// gateways): one thread per cluster socket, each message checked against the
/// sender's address and the socket's link.
fn cluster_threads(
    core: &Arc<Mutex<GatewayCore>>,
    io: &Arc<Io>,
    waker: &Arc<Waker>,
) -> Vec<JoinHandle<()>> {
    (0..io.cluster.len())
        .map(|i| {
            let (core, io, waker) = (core.clone(), io.clone(), waker.clone());
            spawn(&format!("cluster-{i}"), move || {
                let s = &io.cluster[i];
                tracing::debug!("cluster channel on {} (link {})", s.local, s.link.0);
                let mut buf = vec![0u8; 65536];
                loop {
                    let Ok((n, from)) = s.sock.recv_from(io::as_uninit(&mut buf)) else {
                        continue;
                    };
                    let Some(src) = from.as_socket().map(|a| a.ip()) else {
                        continue;
                    };
                    let arrival = plexgate_distrib::Arrival { link: s.link, src };
                    let now = Instant::now();
                    let mut c = core.lock().unwrap_or_else(|e| e.into_inner());
                    c.on_cluster_from(now, arrival, &buf[..n], &mut IoSink::direct(&io));
                    waker.after_core_call(&c);
                }
            })
        })
        .collect()
}

/// Where the side effects of the core go: recovery records to the store's
/// writer, key-log lines to the Wireshark files (`esp_sa`, and the same path
/// with `.ikev2` for `ikev2_decryption_table`).
struct Effects {
    store: Option<Arc<store::SiteStore>>,
    esp_log: Option<std::fs::File>,
    ike_log: Option<std::fs::File>,
}

impl Effects {
    fn open(
        p: &plexgate_policy::Policy,
        store: Option<Arc<store::SiteStore>>,
    ) -> Result<Effects, BoxError> {
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
            store,
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
    site: Option<Arc<store::SiteStore>>,
    ha: Option<ha::HaHandle>,
) -> Result<JoinHandle<()>, BoxError> {
    let mut sinks = Effects::open(p, site)?;
    let (core, io, waker) = (core.clone(), io.clone(), waker.clone());
    Ok(spawn("timer", move || loop {
        let now = Instant::now();
        let (effects, routes, next) = {
            let mut c = core.lock().unwrap_or_else(|e| e.into_inner());
            if now >= c.next_timeout() {
                c.on_timeout(now, &mut IoSink::direct(&io));
            }
            while let Some(r) = c.poll_ha_report() {
                if let Some(h) = &ha {
                    h.send(ha::HaMsg::Report(r));
                }
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
    ctx: control::Context,
) -> Result<(), BoxError> {
    let (core, io, waker) = (core.clone(), io.clone(), waker.clone());
    let h: crate::ctl::Handler = Arc::new(move |req: &Value| {
        if let Some(answer) = ctx.handle(req) {
            return answer;
        }
        let now = Instant::now();
        let mut c = core.lock().unwrap_or_else(|e| e.into_inner());
        let mut answer = control::handle(&mut c, now, req, &mut IoSink::direct(&io));
        waker.after_core_call(&c);
        drop(c);
        if req["cmd"] == "status" {
            ctx.add_status(&mut answer);
        }
        answer
    });
    crate::ctl::serve(ctl, h)?;
    Ok(())
}
