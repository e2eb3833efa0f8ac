//! The data path of the gateway core (DESIGN.md flows 2 and 4): UDP on 500/4500
//! (IKE, ESP in UDP, keepalives), raw ESP, GRE from targets and packets the kernel
//! routed into the TUN. Packets are handled in place (see [`super::HEADROOM`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use plexgate_distrib as distrib;
use plexgate_ipsec as ipsec;

use super::*;
use plexgate_wire::udp_encap::{self, UdpEncap};

impl GatewayCore {
    /// A UDP datagram arrived on `local` from `remote`; the payload is at
    /// `buf[start..start + len]`.
    #[allow(clippy::too_many_arguments)] // in-place API: buffer, offset and length travel together
    pub fn on_udp(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        start: usize,
        len: usize,
        sink: &mut dyn Sink,
    ) {
        self.udp_in(now, local, remote, buf, start, len, None, sink);
    }

    /// An ESP packet (from its SPI on) is at `buf[start..start + len]`.
    pub fn on_esp(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        start: usize,
        len: usize,
        sink: &mut dyn Sink,
    ) {
        self.esp_in(now, buf, start, len, None, sink);
    }

    /// A batch of ESP packets (raw IP protocol 50, each from its SPI on), all
    /// received at `now`. Decides exactly as [`GatewayCore::on_esp`] on each
    /// packet in turn (same outputs in the same order, same counters and state),
    /// but a packet of the same connection as the one before it skips the
    /// distributor's lookups (see [`distrib::Distributor::route_inbound_cached`]).
    pub fn on_esp_batch(&mut self, now: Instant, batch: &mut impl RxBatch, sink: &mut dyn Sink) {
        let mut cache = distrib::InboundFlowCache::default();
        for i in 0..batch.count() {
            if let Some(p) = batch.packet(i) {
                self.esp_in(now, p.buf, p.start, p.len, Some(&mut cache), sink);
            }
        }
    }

    /// A batch of UDP datagrams received on `local` at `now`: [`GatewayCore::on_udp`]
    /// on each in turn, with the shortcut of [`GatewayCore::on_esp_batch`] for
    /// consecutive ESP-in-UDP packets of one connection.
    pub fn on_udp_batch(
        &mut self,
        now: Instant,
        local: SocketAddr,
        batch: &mut impl RxBatch,
        sink: &mut dyn Sink,
    ) {
        let mut cache = distrib::InboundFlowCache::default();
        for i in 0..batch.count() {
            let Some(p) = batch.packet(i) else { continue };
            let Some(remote) = p.remote else { continue };
            if self.udp_in(
                now,
                local,
                remote,
                p.buf,
                p.start,
                p.len,
                Some(&mut cache),
                sink,
            ) {
                // IKE may have changed anything: start afresh.
                cache = distrib::InboundFlowCache::default();
            }
        }
    }

    /// [`GatewayCore::on_udp`], with the batch's cache; true when the datagram
    /// was not ESP.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) fn udp_in(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        start: usize,
        len: usize,
        cache: Option<&mut distrib::InboundFlowCache>,
        sink: &mut dyn Sink,
    ) -> bool {
        let Some(payload) = buf.get(start..start + len) else {
            return true;
        };
        if local.port() != self.natt_port && remote.port() != self.natt_port {
            // Port 500 carries only IKE (RFC 7296 §2.23).
            self.ike.handle(now, local, remote, payload);
            self.flush(now, sink);
            return true;
        }
        match udp_encap::classify(payload) {
            Ok(UdpEncap::Ike(ike_bytes)) => {
                self.ike.handle(now, local, remote, ike_bytes);
                self.flush(now, sink);
            }
            Ok(UdpEncap::Keepalive) => self.counters.natt_keepalives += 1,
            Ok(UdpEncap::Esp(_)) => {
                if let Some(spi) = self.esp_in(now, buf, start, len, cache, sink) {
                    // Consecutive packets of one SA come from one place: the
                    // check costs a compare unless the source changed.
                    if self.last_source != Some((spi, remote)) {
                        self.check_source(now, spi, remote, sink);
                    }
                }
                return false;
            }
            Err(_) => self.counters.udp_malformed += 1,
        }
        true
    }

    #[inline]
    pub(super) fn esp_in(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        start: usize,
        len: usize,
        cache: Option<&mut distrib::InboundFlowCache>,
        sink: &mut dyn Sink,
    ) -> Option<u32> {
        let esp = buf.get_mut(start..start + len)?;
        if let Some(cache) = cache {
            // A batch: the SA's selector check keeps no 5-tuple (for IPv4 it works
            // on integers), and the distributor reads the next packet of the same
            // connection straight into an integer key (`cached_inbound`).
            let inb = self.sad.open_in_place(now, esp).ok()?;
            let inner = self.inner_packet(buf, start, &inb)?;
            // The next packet of the cached connection: its route is read in
            // place from the cache (a copy through the stack cost a stalled
            // 16-byte load of the target address).
            if let Some(route) = self
                .dist
                .cached_inbound(now, &buf[inner.clone()], true, cache)
            {
                self.forward(route, buf, inner, sink);
                return Some(inb.spi);
            }
            let route = self
                .dist
                .route_inbound_uncached(now, &buf[inner.clone()], true, cache);
            self.forward(&route, buf, inner, sink);
            return Some(inb.spi);
        }
        let (inb, tuple) = self.sad.open_in_place_tuple(now, esp).ok()?;
        // open_in_place already checked the inner packet against the SA's selectors
        // (RFC 4301 §5.2 step 4), which were negotiated from the SPD; the 5-tuple it
        // parsed for that is handed on, so the distributor does not parse it again.
        let inner = self.inner_packet(buf, start, &inb)?;
        self.deliver_inbound(now, buf, inner, tuple.as_ref(), true, None, sink);
        Some(inb.spi)
    }

    /// An authenticated ESP-in-UDP packet of the inbound SA `spi` came from
    /// `from`. When that is not where the SA's peer was, its NAT mapping changed:
    //= https://www.rfc-editor.org/rfc/rfc7296#section-2.23
    //# When such a validated packet is found, a host that does not support other
    //# methods of recovery such as IKEv2 Mobility and Multihoming (MOBIKE)
    //# [MOBIKE], and that is not behind a NAT, SHOULD send all packets
    //# (including retransmission packets) to the IP address and port in the
    //# validated packet, and SHOULD store this as the new address and port
    //# combination for the SA (that is, they SHOULD dynamically update the
    //# address).
    /// The IKE SA (and with it DPD and the recovery record) and every SA of the
    /// peer follow; without a NAT nothing moves (the IKE engine refuses).
    #[cold]
    fn check_source(&mut self, now: Instant, spi: u32, from: SocketAddr, sink: &mut dyn Sink) {
        let Some(p) = self.sad.inbound(spi).map(|sa| sa.params()) else {
            return;
        };
        let Some(encap) = p.encap else {
            return;
        };
        let was = SocketAddr::new(p.remote_addr, encap.remote_port);
        if was == from {
            self.last_source = Some((spi, from));
            return;
        }
        let Some(ike) = self.child_ike.get(&spi).copied() else {
            return;
        };
        match self.ike.peer_address_changed(now, ike, from) {
            Ok(()) => {
                let moved = self.sad.move_peer(was, from);
                self.counters.nat_rebindings += 1;
                tracing::info!(
                    "IKE SA {ike}: the peer's NAT mapping moved from {was} to {from}; {moved} SAs follow"
                );
                self.last_source = Some((spi, from));
                self.flush(now, sink);
            }
            Err(e) => tracing::debug!("ESP of {spi:08x} from {from}, not {was}: {e}"),
        }
    }

    /// Where the opened packet's inner IP packet lies in `buf`. In tunnel mode it
    /// is what ESP carried; in transport mode ESP carried only the transport
    /// payload: its IP header is rebuilt from the SA's addresses (whose
    /// selectors the SA already checked) in the room the ESP header and IV
    /// leave before it, so that the local stack gets a whole packet.
    #[inline(always)]
    fn inner_packet(
        &self,
        buf: &mut [u8],
        start: usize,
        inb: &ipsec::Inbound,
    ) -> Option<std::ops::Range<usize>> {
        let inner = start + inb.opened.inner.start..start + inb.opened.inner.end;
        if matches!(inb.opened.next_header, 4 | 41) {
            return Some(inner);
        }
        self.rebuild_transport(buf, start, inb)
    }

    #[cold]
    fn rebuild_transport(
        &self,
        buf: &mut [u8],
        start: usize,
        inb: &ipsec::Inbound,
    ) -> Option<std::ops::Range<usize>> {
        let tp = self.sad.inbound(inb.spi)?.transport_packet(&inb.opened)?;
        let payload = start + tp.payload.start..start + tp.payload.end;
        let h = payload.start.checked_sub(tp.ip_header_len())?;
        tp.write_ip_header(&mut buf[h..payload.start]).ok()?;
        Some(h..payload.end)
    }

    /// Send a decrypted (or plain) inbound packet to its target or to the local stack.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn deliver_inbound(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        inner: std::ops::Range<usize>,
        tuple: Option<&plexgate_wire::ip::FiveTuple>,
        via_ipsec: bool,
        cache: Option<&mut distrib::InboundFlowCache>,
        sink: &mut dyn Sink,
    ) {
        let route = match (tuple, cache) {
            (Some(t), Some(c)) => {
                self.dist
                    .route_inbound_cached(now, &buf[inner.clone()], t, via_ipsec, c)
            }
            (Some(t), None) => {
                self.dist
                    .route_inbound_parsed(now, &buf[inner.clone()], t, via_ipsec)
            }
            (None, c) => {
                // The distributor changes outside the cache's view.
                if let Some(c) = c {
                    *c = distrib::InboundFlowCache::default();
                }
                self.dist.route_inbound(now, &buf[inner.clone()], via_ipsec)
            }
        };
        self.forward(&route, buf, inner, sink);
    }

    /// Carry out the distributor's decision on the inbound packet `buf[inner]`.
    #[inline(always)]
    pub(super) fn forward(
        &mut self,
        route: &distrib::Route,
        buf: &mut [u8],
        inner: std::ops::Range<usize>,
        sink: &mut dyn Sink,
    ) {
        match route {
            &distrib::Route::ToTarget { remote, key, .. } => {
                if inner.start >= 8 {
                    let h = inner.start - 8;
                    let first = buf[inner.start];
                    if distrib::gre::write_header(key, first, &mut buf[h..inner.end], inner.len())
                        .is_ok()
                    {
                        sink.gre(remote, &buf[h..inner.end]);
                    }
                } else {
                    let n = inner.len();
                    if let Ok(w) =
                        distrib::gre::encapsulate(key, &buf[inner], &mut self.scratch[..n + 8])
                    {
                        sink.gre(remote, &self.scratch[..w]);
                    }
                }
            }
            distrib::Route::Local => {
                // The DVIPA itself is routed into the TUN (for plain traffic), so a
                // packet for a DVIPA port that is not distributed would come straight
                // back: there is nobody here to take it. Drop and count.
                let dst = plexgate_wire::ip::FiveTuple::parse(&buf[inner.clone()]).map(|t| t.dst);
                if dst.is_ok_and(|d| self.dist.dvipas().any(|(c, _)| c.dvipa == d)) {
                    self.counters.drop_dvipa_not_distributed += 1;
                } else {
                    sink.tun(&buf[inner]);
                }
            }
            distrib::Route::Drop(_) => {}
        }
    }

    /// A batch of GRE packets received on link `link` (each packet's `remote`
    /// is its outer source): [`GatewayCore::on_gre`] on each in turn.
    pub fn on_gre_batch(
        &mut self,
        now: Instant,
        link: distrib::LinkId,
        batch: &mut impl RxBatch,
        sink: &mut dyn Sink,
    ) {
        for i in 0..batch.count() {
            if let Some(p) = batch.packet(i) {
                if let Some(src) = p.remote {
                    self.on_gre(now, link, src.ip(), p.buf, p.start, p.len, sink);
                }
            }
        }
    }

    /// A GRE packet (the IP protocol 47 payload) arrived on link `link` from
    /// `outer_src`: a target's reply, or a packet of a connection its app opened.
    #[allow(clippy::too_many_arguments)] // in-place API: buffer, offset and length travel together
    pub fn on_gre(
        &mut self,
        now: Instant,
        link: distrib::LinkId,
        outer_src: IpAddr,
        buf: &mut [u8],
        start: usize,
        len: usize,
        sink: &mut dyn Sink,
    ) {
        let Some(gre) = buf.get(start..start + len) else {
            return;
        };
        let (inner_off, inner_len, uses_ipsec) =
            match self.dist.receive_gre(now, link, outer_src, gre) {
                distrib::FromTarget::ToClient {
                    inner, uses_ipsec, ..
                } => {
                    let off = inner.as_ptr() as usize - gre.as_ptr() as usize;
                    (start + off, inner.len(), uses_ipsec)
                }
                distrib::FromTarget::Drop(_) => return,
            };
        // A connection a target app opened (NEWCONN) is not known as IPsec yet: the
        // outbound SPD decides here, rather than a round trip through the kernel
        // (TUN → forward → back into the TUN → on_tun).
        let protected = uses_ipsec
            || matches!(
                self.spd.lookup_packet(ipsec::Direction::Outbound, &buf[inner_off..inner_off + inner_len]),
                Ok(Some(r)) if matches!(r.action, ipsec::SpdAction::Protect { .. })
            );
        if protected {
            match plexgate_wire::ip::FiveTuple::parse(&buf[inner_off..inner_off + inner_len]) {
                Ok(t) => self.protect(now, buf, inner_off, inner_len, t, sink),
                Err(_) => self.counters.drop_policy_out += 1,
            }
        } else {
            sink.tun(&buf[inner_off..inner_off + inner_len]);
        }
    }

    /// The kernel routed a packet into the TUN: plain traffic for a DVIPA, or
    /// traffic that the outbound SPD may protect.
    pub fn on_tun(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        start: usize,
        len: usize,
        sink: &mut dyn Sink,
    ) {
        let Some(pkt) = buf.get(start..start + len) else {
            return;
        };
        let Ok(t) = plexgate_wire::ip::FiveTuple::parse(pkt) else {
            self.counters.drop_policy_out += 1;
            return;
        };
        if link_scope(t.src) || link_scope(t.dst) {
            self.counters.tun_link_local += 1;
            return;
        }
        if self
            .dist
            .dvipas()
            .any(|(d, routing)| routing && d.dvipa == t.dst)
        {
            // Plain traffic for a DVIPA: only where the policy distributes it, and
            // never where the inbound SPD wants it protected or discarded
            // (RFC 4301 §5.2: cleartext matching PROTECT is dropped).
            let spd_ok = !matches!(
                self.spd
                    .lookup(ipsec::Direction::Inbound, &t)
                    .map(|r| &r.action),
                Some(ipsec::SpdAction::Protect { .. } | ipsec::SpdAction::Discard)
            );
            if spd_ok && !self.plain_drop.contains(&t.dst) {
                self.deliver_inbound(now, buf, start..start + len, None, false, None, sink);
            } else {
                self.counters.drop_policy_in += 1;
            }
            return;
        }
        self.protect(now, buf, start, len, t, sink);
    }

    /// Outbound SPD, then seal with the SA its PROTECT rule names whose
    /// selectors fit the packet (RFC 4301 §5.1), or start an acquire.
    pub(super) fn protect(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        start: usize,
        len: usize,
        t: plexgate_wire::ip::FiveTuple,
        sink: &mut dyn Sink,
    ) {
        let Some((i, rule)) = self.spd.lookup_indexed(ipsec::Direction::Outbound, &t) else {
            self.counters.drop_policy_out += 1;
            return;
        };
        // BYPASS cannot apply here: the packet came from the TUN (or a target) and
        // cannot go back; bypass traffic should not be routed into plexgate.
        let Some(key) = self.out_rule_keys.get(i).copied().flatten() else {
            self.counters.drop_policy_out += 1;
            return;
        };
        let Some(spi) = self.sad.select_outbound(key, &t) else {
            self.counters.drop_no_sa += 1;
            if let ipsec::SpdAction::Protect { peer, child, .. } = &rule.action {
                let (peer, child) = (peer.clone(), child.clone());
                self.acquire(now, &peer, &child, sink);
            }
            return;
        };
        let Some(sa) = self.sad.outbound(spi) else {
            self.counters.drop_no_sa += 1;
            return;
        };
        let h = sa.header_len();
        let total = sa.sealed_len(len);
        let p = sa.params();
        let (local, remote, encap) = (p.local_addr, p.remote_addr, p.encap);
        let nh = if t.dst.is_ipv6() { 41 } else { 4 };
        let (out, esp_len) = if start >= h && start - h + total <= buf.len() {
            let s = start - h;
            match self
                .sad
                .seal_in_place(now, spi, &mut buf[s..s + total], len, nh)
            {
                Ok(n) => (&buf[s..s + n], n),
                Err(_) => return,
            }
        } else {
            if total > self.scratch.len() {
                self.counters.drop_too_big += 1;
                return;
            }
            match self.sad.seal(
                now,
                spi,
                &buf[start..start + len],
                nh,
                &mut self.scratch[..total],
            ) {
                Ok(n) => (&self.scratch[..n], n),
                Err(_) => return,
            }
        };
        let out = &out[..esp_len];
        match encap {
            Some(e) => sink.udp(
                SocketAddr::new(local, e.local_port),
                SocketAddr::new(remote, e.remote_port),
                out,
            ),
            None => sink.esp(local, remote, out),
        }
        self.after_sad(now, sink);
    }
}
