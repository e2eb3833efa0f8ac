//! The routing gateway daemon (`plexgate run`): sockets, TUN, threads and the
//! control socket around one [`core::GatewayCore`].

pub mod config;
pub mod core;

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plexgate_distrib as distrib;
use serde_json::{json, Value};
use socket2::Socket;

use self::core::{GatewayCore, RxBatch, SideEffect, Sink, HEADROOM};
use crate::io::net::{self, RecvBatch, SendBatch, UdpSendBatch};
use crate::io::tun::{Tun, TunBatch, TunReader};
use crate::metrics::Exposition;
use crate::store::{FileStore, RecordWriter};

type BoxError = Box<dyn std::error::Error>;

/// The sockets every thread sends on.
struct Io {
    udp: HashMap<SocketAddr, Arc<Socket>>,
    esp: Option<Arc<Socket>>,
    gre: Arc<Socket>,
    tun: Arc<Tun>,
    cluster: Arc<Socket>,
    cluster_port: u16,
    targets: HashMap<distrib::NodeId, IpAddr>,
}

/// What one batch of received packets produced for the data-path sockets: written
/// with one `sendmmsg` per socket and one coalescing TUN write pass, after the core
/// lock is released (the TUN write runs the receiving stack in the writer's context).
#[derive(Default)]
struct Out {
    tun: TunBatch,
    esp: SendBatch,
    gre: SendBatch,
    /// Per local UDP socket (IKE and ESP-in-UDP), sent with UDP GSO where it can.
    udp: Vec<(SocketAddr, UdpSendBatch)>,
}

impl Out {
    fn flush(&mut self, io: &Io) {
        if let Some(s) = &io.esp {
            self.esp.flush(s);
        }
        for (local, b) in &mut self.udp {
            if let Some(s) = io.udp.get(local) {
                b.flush(s);
            }
        }
        self.gre.flush(&io.gre);
        self.tun.flush(&io.tun);
    }
}

/// A [`Sink`] that writes to the real sockets: at once, or into an [`Out`] batch.
struct IoSink<'a> {
    io: &'a Io,
    out: Option<&'a mut Out>,
}

impl<'a> IoSink<'a> {
    /// Every output is sent at once (control plane, timers).
    fn direct(io: &'a Io) -> Self {
        IoSink { io, out: None }
    }
    /// ESP, GRE and TUN outputs wait in `out` until [`Out::flush`].
    fn batched(io: &'a Io, out: &'a mut Out) -> Self {
        IoSink { io, out: Some(out) }
    }
}

impl Sink for IoSink<'_> {
    fn udp(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let found = self
            .io
            .udp
            .get_key_value(&local)
            .or_else(|| self.io.udp.iter().find(|(a, _)| a.port() == local.port()));
        let Some((addr, s)) = found else {
            return;
        };
        match self.out.as_deref_mut() {
            Some(o) => {
                let i = match o.udp.iter().position(|(a, _)| a == addr) {
                    Some(i) => i,
                    None => {
                        o.udp.push((*addr, UdpSendBatch::new()));
                        o.udp.len() - 1
                    }
                };
                o.udp[i].1.push(s, data, remote);
            }
            None => {
                if let Err(e) = net::send_to(s, data, remote) {
                    tracing::debug!("udp send to {remote}: {e}");
                }
            }
        }
    }
    fn esp(&mut self, _local: IpAddr, remote: IpAddr, data: &[u8]) {
        if let Some(s) = &self.io.esp {
            let to = SocketAddr::new(remote, 0);
            match self.out.as_deref_mut() {
                Some(o) => o.esp.push(s, data, to),
                None => {
                    let _ = net::send_to(s, data, to);
                }
            }
        }
    }
    fn gre(&mut self, remote: IpAddr, data: &[u8]) {
        let to = SocketAddr::new(remote, 0);
        match self.out.as_deref_mut() {
            Some(o) => o.gre.push(&self.io.gre, data, to),
            None => {
                if let Err(e) = net::send_to(&self.io.gre, data, to) {
                    tracing::debug!("gre send to {remote}: {e}");
                }
            }
        }
    }
    fn tun(&mut self, packet: &[u8]) {
        match self.out.as_deref_mut() {
            Some(o) => o.tun.push(&self.io.tun, packet),
            None => {
                let _ = self.io.tun.send(packet);
            }
        }
    }
    fn cluster(&mut self, to: distrib::Destination, data: &[u8]) {
        let send = |a: &IpAddr| {
            let _ = net::send_to(
                &self.io.cluster,
                data,
                SocketAddr::new(*a, self.io.cluster_port),
            );
        };
        match to {
            distrib::Destination::Broadcast => self.io.targets.values().for_each(send),
            distrib::Destination::Node(n) => {
                if let Some(a) = self.io.targets.get(&n) {
                    send(a)
                }
            }
        }
    }
}

/// Run the gateway until killed.
pub fn run(
    policy_path: &Path,
    name: Option<&str>,
    ctl: &Path,
    metrics: Option<SocketAddr>,
) -> Result<(), BoxError> {
    let checked = plexgate_policy::load(policy_path).map_err(|d| format!("{d}"))?;
    if checked.warnings.iter().next().is_some() {
        eprint!("{}", checked.warnings);
    }
    let p = checked.policy;
    // One policy file serves every gateway of a site; `--name` says which one this is.
    if let (Some(n), Some(ha)) = (name, p.ha.as_ref()) {
        if ha.name != n && !ha.peers.iter().any(|peer| peer.name == n) {
            return Err(format!(
                "{}: no gateway named {n:?} in [ha] (this file's gateway is {:?})",
                policy_path.display(),
                ha.name
            )
            .into());
        }
        if ha.name != n {
            return Err(format!(
                "gateway {n:?} is a backup in {}; running backups comes with the failover wave",
                policy_path.display()
            )
            .into());
        }
    }
    if let Some(k) = &p.log.keylog {
        tracing::warn!("KEY LOG ENABLED: every SA's keys are written to {} — anyone who reads it can decrypt the traffic. Turn it off in production.", k.display());
    }
    let core = GatewayCore::new(&p, Box::new(plexgate_ike::SystemRng::new()))?;
    let core = Arc::new(Mutex::new(core));

    // Sockets.
    let mut udp = HashMap::new();
    for vipa in &p.site.gateway_vipas {
        for port in [p.site.ike_port, p.site.natt_port] {
            let a = SocketAddr::new(*vipa, port);
            let s = net::udp_socket(a).map_err(|e| format!("bind UDP {a}: {e}"))?;
            udp.insert(a, Arc::new(s));
        }
    }
    let esp = match raw_esp_socket() {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            tracing::warn!("no raw ESP socket (protocol 50): {e}; only ESP-in-UDP will work");
            None
        }
    };
    let gre = Arc::new(net::gre_socket(None)?);
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
        .filter_map(|t| config::target_node(&p, &t.name).map(|n| (n, t.address)))
        .collect();
    let io = Arc::new(Io {
        udp,
        esp,
        gre,
        tun: tun.clone(),
        cluster,
        cluster_port,
        targets,
    });

    // Routes: DVIPAs (plain traffic) into the TUN.
    for d in &p.dvipas {
        ip(&["route", "replace", &host_cidr(d.address), "dev", &tun_name]);
    }
    // Routes: the remote side of each outbound PROTECT rule that is one specific
    // prefix, so that its traffic reaches the TUN (and starts an acquire) before
    // any SA exists. Never a prefix holding a peer's own address (IKE would loop).
    for cidr in protect_routes(&p) {
        ip(&["route", "replace", &cidr, "dev", &tun_name]);
    }
    let store_dir = match p.ha.as_ref().map(|h| &h.store) {
        Some(plexgate_policy::Store::Embedded { path }) => path.clone(),
        other => {
            let dir = std::env::temp_dir().join(format!("plexgate-store-{}", p.site.name));
            if other.is_some() {
                tracing::warn!("the etcd store comes with the failover wave; recovery records go to the embedded store at {}", dir.display());
            }
            dir
        }
    };
    let mut records = RecordWriter::new(Box::new(FileStore::open(&store_dir)?));
    let keylog = p.log.keylog.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();

    // UDP receivers (IKE on 500, IKE + ESP-in-UDP on 4500), a batch per call.
    for (addr, sock) in io.udp.clone() {
        let name = format!("udp-{}", addr.port());
        // ESP-in-UDP from a peer that sends with UDP GSO arrives coalesced.
        let gro = addr.port() == p.site.natt_port && net::enable_udp_gro(&sock);
        threads.push(receive_thread(
            &name,
            sock,
            &core,
            &io,
            Framing::Udp { gro },
            move |c, now, batch, sink| c.on_udp_batch(now, addr, batch, sink),
        ));
    }
    // Raw ESP receiver: raw IPv4 sockets hand over the IP header too.
    if let Some(sock) = io.esp.clone() {
        threads.push(receive_thread(
            "esp",
            sock,
            &core,
            &io,
            Framing::RawIpv4,
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
            .map(|t| distrib::LinkId(t as u32))
            .unwrap_or(distrib::LinkId(1_000_000 + i as u32));
        let name = format!("gre-{}", l.name);
        threads.push(receive_thread(
            &name,
            sock,
            &core,
            &io,
            Framing::RawIpv4,
            move |c, now, batch, sink| {
                for i in 0..batch.count() {
                    if let Some(p) = batch.packet(i) {
                        if let Some(src) = p.remote {
                            c.on_gre(now, link, src.ip(), p.buf, p.start, p.len, sink);
                        }
                    }
                }
            },
        ));
    }
    // TUN reader: with offload one read returns a TCP super-packet split into
    // segments; several reads are drained per lock acquisition.
    {
        let (core, io, tun) = (core.clone(), io.clone(), tun.clone());
        threads.push(spawn("tun", move || {
            let mut reader = TunReader::new(HEADROOM);
            let mut out = Out::default();
            loop {
                if reader.read(&tun, Duration::from_millis(200)) == 0 {
                    continue;
                }
                let now = Instant::now();
                {
                    let mut c = core.lock().unwrap_or_else(|e| e.into_inner());
                    let mut sink = IoSink::batched(&io, &mut out);
                    for (buf, len) in reader.packets_mut() {
                        c.on_tun(now, buf, HEADROOM, len, &mut sink);
                    }
                }
                out.flush(&io);
            }
        }));
    }
    // Cluster channel.
    {
        let (core, io) = (core.clone(), io.clone());
        threads.push(spawn("cluster", move || {
            let mut buf = [0u8; 65536];
            loop {
                let Ok((n, _)) = io.cluster.recv_from(as_uninit(&mut buf)) else {
                    continue;
                };
                let now = Instant::now();
                let mut c = core.lock().unwrap_or_else(|e| e.into_inner());
                c.on_cluster(now, &buf[..n], &mut IoSink::direct(&io));
            }
        }));
    }
    // Timers, side effects (records, key log, routes), periodic DVIPA announcements.
    {
        let (core, io, stop) = (core.clone(), io.clone(), stop.clone());
        let tun_name = tun_name.clone();
        threads.push(spawn("timer", move || {
            let mut last_announce = Instant::now() - Duration::from_secs(60);
            let mut last_keepalive = Instant::now();
            let mut keylog_file = keylog.as_ref().and_then(|k| {
                std::os::unix::fs::OpenOptionsExt::mode(
                    std::fs::OpenOptions::new().create(true).append(true),
                    0o600,
                )
                .open(k)
                .map_err(|e| tracing::error!("keylog {}: {e}", k.display()))
                .ok()
            });
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                let (effects, routes) = {
                    let mut c = core.lock().unwrap_or_else(|e| e.into_inner());
                    let mut sink = IoSink::direct(&io);
                    // Every tick: the distributor's idle timers are not in next_timeout().
                    c.on_timeout(now, &mut sink);
                    if now.duration_since(last_keepalive) >= Duration::from_secs(20) {
                        c.send_nat_keepalives(&mut sink);
                        last_keepalive = now;
                    }
                    if now.duration_since(last_announce) >= Duration::from_secs(5) {
                        c.announce(now, &mut sink);
                        last_announce = now;
                    }
                    let effects = c.drain_side_effects();
                    let routes = c.routes_wanted();
                    (effects, routes)
                };
                apply_routes(&tun_name, routes);
                for e in effects {
                    match e {
                        SideEffect::PutRecord(k, v) => records.set(k, Some(v)),
                        SideEffect::DeleteRecord(k) => records.set(k, None),
                        SideEffect::KeyLog(line) => {
                            if let Some(f) = keylog_file.as_mut() {
                                let _ = writeln!(f, "{line}");
                                let _ = f.flush();
                            }
                        }
                    }
                }
                if records.pending() > 0 {
                    records.flush();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    // Control socket.
    {
        let (core, io) = (core.clone(), io.clone());
        let h: crate::ctl::Handler = Arc::new(move |req: &Value| {
            let now = Instant::now();
            let mut c = core.lock().unwrap_or_else(|e| e.into_inner());
            let mut sink = IoSink::direct(&io);
            handle_ctl(&mut c, now, req, &mut sink)
        });
        crate::ctl::serve(ctl, h)?;
    }
    if let Some(m) = metrics {
        let core = core.clone();
        let bound = crate::metrics::serve(
            m,
            Arc::new(move || render_metrics(&core.lock().unwrap_or_else(|e| e.into_inner()))),
        )?;
        tracing::info!("metrics on http://{bound}/metrics");
    }
    tracing::info!(site = %p.site.name, tun = %tun_name, "gateway running; control socket {}", ctl.display());
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn handle_ctl(c: &mut GatewayCore, now: Instant, req: &Value, sink: &mut dyn Sink) -> Value {
    let as_u64 = |k: &str| {
        req[k].as_u64().or_else(|| {
            req[k]
                .as_str()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
        })
    };
    match req["cmd"].as_str() {
        Some("status") => c.status(now),
        Some("initiate") => match c.initiate(
            now,
            req["peer"].as_str().unwrap_or(""),
            req["child"].as_str(),
            sink,
        ) {
            Ok(id) => json!({"ok": true, "ike_sa": id}),
            Err(e) => json!({"error": e}),
        },
        Some("rekey-child") => match as_u64("spi") {
            Some(spi) => result_json(c.rekey_child(now, spi as u32, sink)),
            None => {
                json!({"error": "rekey-child needs \"spi\" (inbound SPI, hex string or number)"})
            }
        },
        Some("rekey-ike") => match req["id"].as_u64() {
            Some(id) => result_json(c.rekey_ike(now, id, sink)),
            None => json!({"error": "rekey-ike needs \"id\""}),
        },
        Some("delete-ike") => match req["id"].as_u64() {
            Some(id) => result_json(c.delete_ike(now, id, sink)),
            None => json!({"error": "delete-ike needs \"id\""}),
        },
        Some("set-weight") => match (
            req["dvipa"].as_str().and_then(|d| d.parse().ok()),
            req["node"].as_u64(),
            req["weight"].as_u64(),
        ) {
            (Some(d), Some(n), Some(w)) if n <= u64::from(u32::MAX) && w <= u64::from(u16::MAX) => {
                result_json(c.set_weight(d, n as u32, w as u16))
            }
            _ => {
                json!({"error": "set-weight needs \"dvipa\" (address), \"node\" (target node id) and \"weight\" (0-65535)"})
            }
        },
        other => {
            json!({"error": format!("unknown command {other:?}; try status, initiate, rekey-child, rekey-ike, delete-ike, set-weight")})
        }
    }
}

fn result_json(r: Result<(), String>) -> Value {
    match r {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"error": e}),
    }
}

fn render_metrics(c: &GatewayCore) -> String {
    let mut e = Exposition::default();
    let sad = c.sad();
    e.family(
        "plexgate_sa_bytes",
        "counter",
        "Inner bytes sealed or opened per SA",
    );
    for sa in sad.iter() {
        let p = sa.params();
        let l = [
            ("spi", format!("{:08x}", p.spi)),
            ("direction", format!("{:?}", p.direction).to_lowercase()),
            ("peer", p.peer.clone()),
            ("child", p.child.clone()),
        ];
        e.sample("plexgate_sa_bytes", &l, sa.stats().bytes);
    }
    e.family(
        "plexgate_sa_packets",
        "counter",
        "Packets sealed or opened per SA",
    );
    for sa in sad.iter() {
        let p = sa.params();
        let l = [
            ("spi", format!("{:08x}", p.spi)),
            ("direction", format!("{:?}", p.direction).to_lowercase()),
            ("peer", p.peer.clone()),
            ("child", p.child.clone()),
        ];
        e.sample("plexgate_sa_packets", &l, sa.stats().packets);
    }
    let k = sad.counters;
    e.family(
        "plexgate_esp_drops_total",
        "counter",
        "ESP packets dropped, by reason",
    );
    for (reason, v) in [
        ("unknown_spi", k.drop_unknown_spi),
        ("replay", k.drop_replay),
        ("bad_icv", k.drop_bad_icv),
        ("bad_padding", k.drop_bad_padding),
        ("truncated", k.drop_truncated),
        ("selector_mismatch", k.drop_selector_mismatch),
        ("seq_exhausted", k.drop_seq_exhausted),
        ("expired", k.drop_sa_expired),
    ] {
        e.sample("plexgate_esp_drops_total", &[("reason", reason.into())], v);
    }
    let cc = c.counters();
    e.family(
        "plexgate_policy_drops_total",
        "counter",
        "Packets dropped by the SPD",
    );
    e.sample(
        "plexgate_policy_drops_total",
        &[("direction", "in".into())],
        cc.drop_policy_in,
    );
    e.sample(
        "plexgate_policy_drops_total",
        &[("direction", "out".into())],
        cc.drop_policy_out,
    );
    let snap = c.distributor().snapshot();
    e.family(
        "plexgate_distrib_drops_total",
        "counter",
        "Distribution drops, by reason (spoof = GRE from the wrong link)",
    );
    for (reason, v) in snap.drops.iter() {
        e.sample(
            "plexgate_distrib_drops_total",
            &[("reason", reason.label().to_string())],
            *v,
        );
    }
    e.family(
        "plexgate_connections",
        "gauge",
        "Connections in the CRT per target",
    );
    for t in snap.targets.iter() {
        e.sample(
            "plexgate_connections",
            &[("target", t.node.0.to_string())],
            t.connections,
        );
    }
    e.finish()
}

/// How the datagrams of a socket are framed.
#[derive(Clone, Copy)]
enum Framing {
    /// UDP payloads; with `gro`, a receive may hold several datagrams (UDP GRO).
    Udp { gro: bool },
    /// Raw IPv4 sockets: the outer IPv4 header comes first; `remote` is its source.
    RawIpv4,
}

/// One receive batch as the core's [`self::core::RxBatch`]: each datagram, or each
/// segment of a coalesced UDP GRO receive, in the order they arrived.
struct Received<'a> {
    b: &'a mut RecvBatch,
    /// (slot, start, length) of each packet.
    items: &'a [(usize, usize, usize)],
    framing: Framing,
}

impl RxBatch for Received<'_> {
    fn count(&self) -> usize {
        self.items.len()
    }
    fn packet(&mut self, i: usize) -> Option<self::core::RxPacket<'_>> {
        let &(slot, start, len) = self.items.get(i)?;
        let (buf, _, from) = self.b.slot_mut(slot);
        match self.framing {
            Framing::Udp { .. } => Some(self::core::RxPacket {
                buf: &mut buf[..],
                start,
                len,
                remote: from,
            }),
            Framing::RawIpv4 => {
                let (src, ihl) = net::ipv4_outer(buf.get(start..start + len)?)?;
                Some(self::core::RxPacket {
                    buf: &mut buf[..],
                    start: start + ihl,
                    len: len - ihl,
                    remote: Some(SocketAddr::new(src, 0)),
                })
            }
        }
    }
}

/// A thread that receives batches with `recvmmsg` on `sock` and hands each batch
/// to `handle` under one acquisition of the core lock; the outputs are written
/// after the lock is released.
fn receive_thread(
    name: &str,
    sock: Arc<Socket>,
    core: &Arc<Mutex<GatewayCore>>,
    io: &Arc<Io>,
    framing: Framing,
    mut handle: impl FnMut(&mut GatewayCore, Instant, &mut Received<'_>, &mut IoSink<'_>)
        + Send
        + 'static,
) -> std::thread::JoinHandle<()> {
    let (core, io, label) = (core.clone(), io.clone(), name.to_string());
    spawn(name, move || {
        let mut b = match framing {
            Framing::Udp { gro: true } => RecvBatch::for_gro(),
            _ => RecvBatch::new(),
        };
        let mut items: Vec<(usize, usize, usize)> = Vec::with_capacity(4 * net::BATCH);
        let mut out = Out::default();
        loop {
            let n = match b.recv(net::fd_of(&sock)) {
                Ok(0) => continue,
                Ok(n) => n,
                Err(e) => {
                    tracing::error!("{label}: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            items.clear();
            for i in 0..n {
                items.extend(b.segments(i).map(|(start, len)| (i, start, len)));
            }
            let now = Instant::now();
            {
                let mut c = core.lock().unwrap_or_else(|e| e.into_inner());
                let mut sink = IoSink::batched(&io, &mut out);
                let mut batch = Received {
                    b: &mut b,
                    items: &items,
                    framing,
                };
                handle(&mut c, now, &mut batch, &mut sink);
            }
            out.flush(&io);
        }
    })
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawn thread")
}

fn as_uninit(buf: &mut [u8]) -> &mut [std::mem::MaybeUninit<u8>] {
    // SAFETY: u8 and MaybeUninit<u8> have the same layout; we only let the kernel write.
    unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) }
}

fn raw_esp_socket() -> std::io::Result<Socket> {
    let s = Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(50)),
    )?;
    // Room for the bursts that sendmmsg on the other tunnel end produces.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s)
}

/// `addr/32` or `addr/128`.
pub fn host_cidr(a: IpAddr) -> String {
    match a {
        IpAddr::V4(_) => format!("{a}/32"),
        IpAddr::V6(_) => format!("{a}/128"),
    }
}

/// Run `ip ARGS`, logging failures.
pub fn ip(args: &[&str]) -> bool {
    match std::process::Command::new("ip").args(args).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            tracing::warn!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            tracing::warn!("ip {}: {e}", args.join(" "));
            false
        }
    }
}

/// CIDRs of the remote selectors of outbound PROTECT rules that are one specific
/// prefix and contain no peer's outer address nor one of our own, a link's or a
/// target's address.
fn protect_routes(p: &plexgate_policy::Policy) -> Vec<String> {
    use plexgate_policy as pol;
    // Addresses that must stay reachable outside the tunnel.
    let mut peers: Vec<IpAddr> = p
        .peers
        .iter()
        .filter_map(|x| match x.remote {
            pol::RemoteAddr::Host(a) => Some(a),
            _ => None,
        })
        .collect();
    peers.extend(p.site.gateway_vipas.iter().copied());
    peers.extend(p.site.interfaces.iter().map(|i| i.address.addr()));
    peers.extend(p.links.iter().flat_map(|l| [l.local, l.remote]));
    peers.extend(p.targets.iter().map(|t| t.address));
    let mut out = Vec::new();
    for r in &p.spd {
        let outbound = matches!(r.direction, pol::Direction::Out | pol::Direction::Both);
        let (true, pol::SpdAction::Protect { .. }, pol::AddrSel::Range(rg)) =
            (outbound, &r.action, &r.remote)
        else {
            continue;
        };
        let ts = plexgate_ipsec::TrafficSelector {
            protocol: 0,
            start_port: 0,
            end_port: 65535,
            start_addr: rg.start,
            end_addr: rg.end,
        };
        let holds =
            |a: &IpAddr| a.is_ipv4() == rg.start.is_ipv4() && *a >= rg.start && *a <= rg.end;
        if let Some(c) = self::core::ts_cidr(&ts) {
            if !peers.iter().any(holds) && !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

fn apply_routes(tun: &str, routes: Vec<(bool, String)>) {
    for (add, cidr) in routes {
        if add {
            ip(&["route", "replace", &cidr, "dev", tun]);
        } else {
            ip(&["route", "del", &cidr, "dev", tun]);
        }
    }
}
