//! What tests do to a running simulation: call into a node with its outputs
//! carried onto the network, negotiate a client's SAs, move bytes over TCP and
//! check them byte-exact, kill and restart processes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use plexgate_distrib::Route;

use super::{ClientNode, ConnId, Engine, Node, Payload, Sim, SimError, TargetNode};
use crate::gateway::core::Sink;
use crate::sim::tcp::TcpState;

/// A TCP exchange between a client and a DVIPA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The client.
    pub client: usize,
    /// Its connection.
    pub conn: ConnId,
    /// Client side.
    pub src: SocketAddr,
    /// DVIPA side.
    pub dst: SocketAddr,
    /// What the client sent.
    pub sent: Vec<u8>,
}

impl Sim {
    /// Call into gateway `i`'s engine with a sink onto the network (a control
    /// operation, a takeover); records and forwarding go where they belong.
    pub fn gateway_do<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Engine, Instant, &mut dyn Sink) -> R,
    ) -> R {
        let now = self.now;
        let (r, out) =
            self.gateways[i].call(Node::Gateway(i), &mut self.net, now, |e, s| f(e, now, s));
        self.apply(i, out);
        r
    }

    /// Act on target `j`, then send what it queued.
    pub fn target_do<R>(&mut self, j: usize, f: impl FnOnce(&mut TargetNode, Instant) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.targets[j], now);
        self.targets[j].pump(Node::Target(j), &mut self.net, now);
        r
    }

    /// Act on client `k`, then send what it queued.
    pub fn client_do<R>(&mut self, k: usize, f: impl FnOnce(&mut ClientNode, Instant) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.clients[k], now);
        self.clients[k].pump(Node::Client(k), &mut self.net, now);
        r
    }

    /// Put a datagram on the network as if `from` sent it now.
    pub fn inject(&mut self, from: Node, p: Payload) {
        let now = self.now;
        self.net.send(now, from, p);
    }

    /// A hand-made IP packet from client `k`'s host (sealed if it has SAs).
    pub fn client_send(&mut self, k: usize, packet: Vec<u8>) {
        self.client_do(k, |c, _| c.host.send_raw(packet));
    }

    /// A hand-made IP packet from target `j`'s host (through its `route_tun`).
    pub fn target_send(&mut self, j: usize, packet: Vec<u8>) {
        self.target_do(j, |t, _| t.host.send_raw(packet));
    }

    /// A decrypted (or plain) packet into distributor-only gateway `i`'s data
    /// path; its route.
    pub fn inject_inner(&mut self, i: usize, packet: &[u8], via_ipsec: bool) -> Option<Route> {
        self.gateway_do(i, |e, now, sink| match e {
            Engine::Distributor(d) => Some(d.inbound(now, packet, via_ipsec, sink)),
            Engine::Core(_) => None,
        })
    }

    /// Client `k` negotiates an IKE SA with child `child`; done when the child
    /// is installed on the client.
    pub fn connect(&mut self, k: usize, child: &str, max: Duration) -> Result<Duration, SimError> {
        let before = self.child_count(k, child);
        self.client_do(k, |c, now| c.initiate(now, child))?;
        self.wait_child(k, child, before, max)
    }

    /// Client `k` adds child `child` to its IKE SA (CREATE_CHILD_SA).
    pub fn add_child(
        &mut self,
        k: usize,
        child: &str,
        max: Duration,
    ) -> Result<Duration, SimError> {
        let before = self.child_count(k, child);
        self.client_do(k, |c, now| c.create_child(now, child))?;
        self.wait_child(k, child, before, max)
    }

    fn child_count(&self, k: usize, child: &str) -> usize {
        self.clients[k]
            .children
            .iter()
            .filter(|(_, c)| c.name == child)
            .count()
    }

    fn wait_child(
        &mut self,
        k: usize,
        child: &str,
        before: usize,
        max: Duration,
    ) -> Result<Duration, SimError> {
        self.run_until(max, |s| s.child_count(k, child) > before)
            .map_err(|_| SimError::Timeout {
                what: format!("client {k}: Child SA {child:?}"),
                after: max,
            })
    }

    /// Start an echo exchange: client `k` connects from its first inner address
    /// to `dst`, writes `data` and closes.
    pub fn start_echo(&mut self, k: usize, dst: SocketAddr, data: &[u8]) -> Transfer {
        let data = data.to_vec();
        let (conn, src) = self.client_do(k, |c, now| {
            let src = SocketAddr::new(c.inner[0], c.host.ephemeral_port());
            let id = c.host.connect(now, src, dst);
            c.host.send(now, id, &data);
            c.host.close(now, id);
            (id, src)
        });
        Transfer {
            client: k,
            conn,
            src,
            dst,
            sent: data,
        }
    }

    /// The exchange is over: the echo came back and the server closed, or the
    /// connection failed.
    pub fn echo_done(&self, t: &Transfer) -> bool {
        self.clients[t.client].host.conn(t.conn).is_none_or(|c| {
            (c.peer_closed() && c.all_acked())
                || matches!(
                    c.state(),
                    TcpState::Reset | TcpState::TimedOut | TcpState::Closed
                )
        })
    }

    /// The bytes came back byte-exact.
    pub fn echo_check(&self, t: &Transfer) -> Result<(), SimError> {
        let c = self.clients[t.client]
            .host
            .conn(t.conn)
            .ok_or_else(|| SimError::Mismatch("no such connection".into()))?;
        let got = c.received();
        if got == &t.sent[..] {
            return Ok(());
        }
        let at = got
            .iter()
            .zip(&t.sent)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(t.sent.len()));
        Err(SimError::Mismatch(format!(
            "{} → {}: sent {} bytes, {} came back (state {:?}), first difference at byte {at}",
            t.src,
            t.dst,
            t.sent.len(),
            got.len(),
            c.state()
        )))
    }

    /// Client `k` sends `data` over TCP to `dst` and gets it back byte-exact from
    /// an echo server.
    pub fn echo(
        &mut self,
        k: usize,
        dst: SocketAddr,
        data: &[u8],
        max: Duration,
    ) -> Result<Transfer, SimError> {
        let t = self.start_echo(k, dst, data);
        self.run_until(max, |s| s.echo_done(&t))
            .map_err(|_| SimError::Timeout {
                what: format!("echo of {} bytes {} → {}", data.len(), t.src, t.dst),
                after: max,
            })?;
        self.echo_check(&t)?;
        Ok(t)
    }

    /// Client `k` asks `dst` for `/` (an [`super::App::Http`] server); the answer.
    pub fn http_get(
        &mut self,
        k: usize,
        dst: SocketAddr,
        max: Duration,
    ) -> Result<String, SimError> {
        let t = self.start_echo(k, dst, b"GET / HTTP/1.0\r\n\r\n");
        self.run_until(max, |s| s.echo_done(&t))
            .map_err(|_| SimError::Timeout {
                what: format!("HTTP GET {} → {}", t.src, t.dst),
                after: max,
            })?;
        let c = self.clients[k].host.conn(t.conn);
        Ok(String::from_utf8_lossy(c.map_or(&[][..], |c| c.received())).into_owned())
    }

    /// The target whose host holds the connection `src` → `dst`.
    pub fn served_by(&self, src: SocketAddr, dst: SocketAddr) -> Option<usize> {
        self.targets
            .iter()
            .position(|t| t.host.conns().any(|(_, c)| c.endpoints() == (dst, src)))
    }

    /// Gateway `i`'s process dies: it receives nothing and its timers stop.
    pub fn kill_gateway(&mut self, i: usize) {
        self.net.set_down(Node::Gateway(i), true);
    }

    /// Gateway `i` starts again with its policy and empty state.
    pub fn restart_gateway(&mut self, i: usize) -> Result<(), SimError> {
        let seed = self.seed ^ 0x5eed ^ (u64::from(self.gateways[i].restarts) << 8) ^ i as u64;
        self.gateways[i].restart(seed, self.now)?;
        self.net.set_down(Node::Gateway(i), false);
        Ok(())
    }

    /// Target `j`'s host goes dark (daemon and applications).
    pub fn kill_target(&mut self, j: usize) {
        self.net.set_down(Node::Target(j), true);
    }

    /// Target `j`'s daemon restarts (its host's sockets and connections stay).
    pub fn restart_target(&mut self, j: usize) {
        self.net.set_down(Node::Target(j), false);
        self.target_do(j, |t, now| t.restart(now));
    }
}
