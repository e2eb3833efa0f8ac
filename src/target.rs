//! The target stack daemon (`plexgate target`, DESIGN.md flow 3).
//!
//! GRE from the routing gateway → anti-spoof → the inner packet goes into a TUN
//! device, where the kernel delivers it to the server bound on the DVIPA (the DVIPA
//! sits on the loopback device, not advertised on the LAN). Every packet the host
//! sends from a DVIPA is steered into the same TUN by a policy rule, so plexgate sees
//! the replies: those of IPsec connections go back over GRE to the routing gateway,
//! those of plain connections leave directly. The target reports its listeners
//! (SRVSTAT, read from the kernel's socket table) and connections its apps open
//! (NEWCONN) on the cluster channel.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plexgate_distrib as distrib;
use socket2::Socket;

use crate::gateway::{config, host_cidr, ip};
use crate::io::net::{self, RecvBatch, SendBatch};
use crate::io::tun::{Tun, TunBatch, TunReader};

type BoxError = Box<dyn std::error::Error>;

/// Routing table that carries DVIPA-sourced packets into the TUN.
const TABLE: &str = "7411";
/// Firewall mark of packets the target sends directly (exempt from that table).
const MARK: u32 = 0x7411;

struct TargetIo {
    gre: Socket,
    direct: Socket,
    cluster: Socket,
    tun: Tun,
    gateway: IpAddr,
    cluster_port: u16,
}

impl TargetIo {
    fn flush(&self, stack: &mut distrib::TargetStack) {
        while let Some(t) = stack.poll_transmit() {
            let _ = net::send_to(
                &self.cluster,
                &t.bytes,
                SocketAddr::new(self.gateway, self.cluster_port),
            );
        }
    }
}

/// Run the target `name` of the site policy until killed.
pub fn run(policy_path: &Path, name: &str, ctl: &Path) -> Result<(), BoxError> {
    let p = plexgate_policy::load(policy_path)
        .map_err(|d| format!("{d}"))?
        .policy;
    let me = p
        .targets
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| format!("no target {name:?} in {}", policy_path.display()))?;
    let link = p
        .links
        .iter()
        .find(|l| l.name == me.link)
        .ok_or_else(|| format!("target {name:?}: no link {:?}", me.link))?;
    let node = config::target_node(&p, name).ok_or("target id")?;
    let gw_node = config::gateway_node(&p);
    let key = match &p.cluster {
        Some(c) => {
            std::fs::read(&c.key_file).map_err(|e| format!("{}: {e}", c.key_file.display()))?
        }
        None => {
            return Err("the policy has no [cluster] section: targets need the cluster key".into())
        }
    };
    let cluster_port = p.cluster.as_ref().map(|c| c.port).unwrap_or(7600);
    let first_seq = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1);
    let mut stack = distrib::TargetStack::new(distrib::TargetConfig::new(
        node,
        distrib::ClusterKey::new(&key),
        first_seq,
    ));
    stack.bind_link(distrib::LinkId(0), gw_node, link.local);

    // The DVIPAs this target may serve live on its loopback, unadvertised.
    let tun_name = format!("pgt-{}", name.chars().take(10).collect::<String>());
    // With offloads (IFF_VNET_HDR, TSO/GRO): replies are read as TCP super-packets
    // and split here, and the segments of one GRE batch are written coalesced, so
    // the kernel sees one big packet instead of dozens (as on the gateway).
    let tun =
        Tun::open_with(&tun_name, None, 1500, true).map_err(|e| format!("TUN {tun_name}: {e}"))?;
    sysctl(&format!("net/ipv4/conf/{tun_name}/rp_filter"), "0");
    sysctl("net/ipv4/conf/all/rp_filter", "0");
    sysctl(&format!("net/ipv4/conf/{tun_name}/accept_local"), "1");
    for d in &p.dvipas {
        let candidate = match &d.targets {
            plexgate_policy::TargetSet::All => true,
            plexgate_policy::TargetSet::Named(n) => n.contains(&me.name),
        };
        if !candidate {
            continue;
        }
        let cidr = host_cidr(d.address);
        ip(&["addr", "replace", &cidr, "dev", "lo"]);
        ip(&["rule", "del", "from", &cidr, "lookup", TABLE]);
        ip(&[
            "rule", "add", "from", &cidr, "lookup", TABLE, "priority", "100",
        ]);
    }
    ip(&[
        "rule",
        "del",
        "fwmark",
        &format!("{MARK:#x}"),
        "lookup",
        "main",
    ]);
    ip(&[
        "rule",
        "add",
        "fwmark",
        &format!("{MARK:#x}"),
        "lookup",
        "main",
        "priority",
        "99",
    ]);
    ip(&[
        "route", "replace", "default", "dev", &tun_name, "table", TABLE,
    ]);

    let direct = net::raw_ip_sender()?;
    direct.set_mark(MARK)?;
    let io = Arc::new(TargetIo {
        gre: net::gre_socket(None)?,
        direct,
        cluster: net::udp_socket(SocketAddr::new("0.0.0.0".parse()?, cluster_port))?,
        tun,
        gateway: link.local,
        cluster_port,
    });
    stack.hello();
    let stack = Arc::new(Mutex::new(stack));
    io.flush(&mut stack.lock().unwrap_or_else(|e| e.into_inner()));

    let mut threads = Vec::new();
    {
        // GRE from the gateway → TUN: one coalescing TUN write pass per batch.
        let (stack, io) = (stack.clone(), io.clone());
        threads.push(std::thread::spawn(move || {
            let mut b = RecvBatch::new();
            let mut to_tun = TunBatch::new();
            loop {
                let Ok(n) = b.recv(net::fd_of(&io.gre)) else {
                    continue;
                };
                if n == 0 {
                    continue;
                }
                let now = Instant::now();
                {
                    let mut s = stack.lock().unwrap_or_else(|e| e.into_inner());
                    for i in 0..n {
                        let (buf, len, _) = b.slot_mut(i);
                        let Some((src, ihl)) = net::ipv4_outer(&buf[..len]) else {
                            continue;
                        };
                        if let Ok(inner) =
                            s.receive_gre(now, distrib::LinkId(0), src, &mut buf[ihl..len])
                        {
                            to_tun.push(&io.tun, inner);
                        }
                    }
                    io.flush(&mut s);
                }
                to_tun.flush(&io.tun);
            }
        }));
    }
    {
        // TUN (packets from the DVIPA) → GRE to the gateway, or straight out; a read
        // may be a TCP super-packet, split into segments; sends go out with one
        // sendmmsg per socket per batch.
        const HEAD: usize = 64;
        let (stack, io) = (stack.clone(), io.clone());
        threads.push(std::thread::spawn(move || {
            let mut reader = TunReader::new(HEAD);
            let (mut gre, mut direct) = (SendBatch::new(), SendBatch::new());
            loop {
                if reader.read(&io.tun, Duration::from_millis(200)) == 0 {
                    continue;
                }
                let now = Instant::now();
                {
                    let mut s = stack.lock().unwrap_or_else(|e| e.into_inner());
                    for (buf, len) in reader.packets_mut() {
                        let pkt = HEAD..HEAD + len;
                        match s.route_tun(now, &mut buf[pkt.clone()]) {
                            distrib::TunRoute::ToGateway { remote, key, .. } => {
                                let first = buf[HEAD];
                                let framed = HEAD - 8..pkt.end;
                                if distrib::gre::write_header(
                                    key,
                                    first,
                                    &mut buf[framed.clone()],
                                    len,
                                )
                                .is_ok()
                                {
                                    gre.push(&io.gre, &buf[framed], SocketAddr::new(remote, 0));
                                }
                            }
                            distrib::TunRoute::Direct => {
                                if let Some(dst) = net::ipv4_dst(&buf[pkt.clone()]) {
                                    direct.push(&io.direct, &buf[pkt], SocketAddr::new(dst, 0));
                                }
                            }
                            distrib::TunRoute::Drop(_) => {}
                        }
                    }
                    io.flush(&mut s);
                }
                gre.flush(&io.gre);
                direct.flush(&io.direct);
            }
        }));
    }
    {
        // Cluster messages from the gateway.
        let (stack, io) = (stack.clone(), io.clone());
        threads.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                // SAFETY: see gateway::as_uninit; the kernel writes initialised bytes.
                let ub = unsafe {
                    &mut *(buf.as_mut_slice() as *mut [u8] as *mut [std::mem::MaybeUninit<u8>])
                };
                let Ok((n, _)) = io.cluster.recv_from(ub) else {
                    continue;
                };
                let now = Instant::now();
                let mut s = stack.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = s.handle_cluster(now, &buf[..n]) {
                    tracing::debug!("cluster message dropped: {e}");
                }
                io.flush(&mut s);
            }
        }));
    }
    {
        // Listeners (SRVSTAT), timeouts, keepalives.
        let (stack, io) = (stack.clone(), io.clone());
        threads.push(std::thread::spawn(move || {
            let mut last_keepalive = Instant::now();
            // Established connections are scanned less often than listeners: they
            // only matter for connections the stack does not know yet (after a
            // restart); connections apps open announce themselves on the data path.
            let mut last_established: Option<Instant> = None;
            loop {
                let now = Instant::now();
                let listeners = tcp_sockets(crate::io::sockdiag::LISTEN);
                let established = if last_established
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(2))
                {
                    last_established = Some(now);
                    Some(tcp_sockets(crate::io::sockdiag::ESTABLISHED))
                } else {
                    None
                };
                {
                    let mut s = stack.lock().unwrap_or_else(|e| e.into_inner());
                    let changes = s.update_listeners(&listeners);
                    if changes > 0 {
                        tracing::info!("{changes} listener change(s) reported (SRVSTAT)");
                    }
                    // Connections on served DVIPA ports that this stack does not know
                    // (after a restart of the daemon, or served before the DVIPA list
                    // arrived) are reported with NEWCONN so the gateway keeps them here.
                    if let Some(est) = &established {
                        let learnt = s.learn_established(now, est);
                        if learnt > 0 {
                            tracing::info!(
                                "{learnt} existing DVIPA connection(s) reported (NEWCONN)"
                            );
                        }
                    }
                    s.handle_timeout(now);
                    if now.duration_since(last_keepalive) >= Duration::from_secs(2) {
                        s.keepalive();
                        last_keepalive = now;
                    }
                    io.flush(&mut s);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }));
    }
    {
        let stack = stack.clone();
        let h: crate::ctl::Handler = Arc::new(move |_req| {
            let s = stack.lock().unwrap_or_else(|e| e.into_inner());
            serde_json::json!({
                "target": s.id().0,
                "connections": s.connection_count(),
                "served": s.served().iter().map(|d| d.dvipa.to_string()).collect::<Vec<_>>(),
                "counters": format!("{:?}", s.snapshot()),
            })
        });
        crate::ctl::serve(ctl, h)?;
    }
    tracing::info!(target = name, tun = %tun_name, gateway = %link.local, "target running");
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// TCP sockets in `states` from sock_diag, or from `/proc/net/tcp*` when netlink is
/// refused; an empty list (logged) when neither answers.
fn tcp_sockets(states: u32) -> Vec<distrib::listeners::ProcSocket> {
    match crate::io::sockdiag::tcp_sockets(states) {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!("sock_diag: {e}; reading /proc/net/tcp instead");
            match distrib::listeners::read_listeners() {
                Ok(mut v) => {
                    v.retain(|s| states & crate::io::sockdiag::state_bit(s.state) != 0);
                    v
                }
                Err(e) => {
                    tracing::warn!("cannot read the host's TCP sockets: {e}");
                    Vec::new()
                }
            }
        }
    }
}

fn sysctl(key: &str, value: &str) {
    let _ = std::fs::write(format!("/proc/sys/{key}"), value);
}
