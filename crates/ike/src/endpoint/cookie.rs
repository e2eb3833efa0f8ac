//! Stateless COOKIEs against IKE_SA_INIT floods (RFC 7296 §2.6): above a threshold of
//! half-open SAs the responder asks for a cookie bound to the initiator's nonce,
//! address and SPI, computed from a secret that rotates every few minutes (the
//! previous secret still verifies).

use super::*;

/// Cookie secrets (§2.6), rotated every few minutes; the previous one still verifies.
pub(super) struct CookieState {
    pub(super) secret: [u8; 32],
    pub(super) prev: [u8; 32],
    pub(super) version: u8,
    pub(super) rotate_at: Option<Instant>,
}

/// How long a cookie secret is used before the next one.
pub(super) const COOKIE_ROTATE: Duration = Duration::from_secs(300);

impl CookieState {
    pub(super) fn new(secret: [u8; 32]) -> Self {
        CookieState {
            secret,
            prev: secret,
            version: 0,
            rotate_at: None,
        }
    }
}

fn cookie_for(
    secret: &[u8; 32],
    version: u8,
    ni: &[u8],
    remote: SocketAddr,
    spi_i: u64,
) -> Vec<u8> {
    //= https://www.rfc-editor.org/rfc/rfc7296#section-2.6
    //# Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
    let prf = Prf::from_id(crypto::prf_id::HMAC_SHA2_256).map(|p| {
        let ip = match remote.ip() {
            std::net::IpAddr::V4(a) => a.octets().to_vec(),
            std::net::IpAddr::V6(a) => a.octets().to_vec(),
        };
        p.prf(secret, &[ni, &ip, &spi_i.to_be_bytes()])
    });
    let mut c = vec![version];
    c.extend_from_slice(prf.as_deref().unwrap_or(&[]).get(..16).unwrap_or(&[]));
    c
}

impl Endpoint {
    fn cookie_ok(&self, cookie: &[u8], ni: &[u8], remote: SocketAddr, spi_i: u64) -> bool {
        let Some(&v) = cookie.first() else {
            return false;
        };
        let secret = if v == self.cookie.version {
            &self.cookie.secret
        } else if v == self.cookie.version.wrapping_sub(1) {
            &self.cookie.prev
        } else {
            return false;
        };
        ring_eq(&cookie_for(secret, v, ni, remote, spi_i), cookie)
    }

    //= https://www.rfc-editor.org/rfc/rfc7296#section-2.6
    //# the responder should change the value of <secret> frequently
    pub(super) fn rotate_cookie_secret(&mut self, now: Instant) {
        self.cookie.prev = self.cookie.secret;
        self.rng.fill(&mut self.cookie.secret);
        self.cookie.version = self.cookie.version.wrapping_add(1);
        self.cookie.rotate_at = Some(now + COOKIE_ROTATE);
    }

    /// Above the threshold of half-open SAs, an IKE_SA_INIT request must carry a valid
    /// COOKIE as its first payload; without one it is answered with a fresh cookie.
    /// Returns whether the request may go on.
    pub(super) fn cookie_gate(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        header: &Header,
        p: &[Payload],
        ni: &[u8],
    ) -> bool {
        if self.init_index.len() < self.config.limits.cookie_threshold {
            return true;
        }
        match self.cookie.rotate_at {
            None => self.cookie.rotate_at = Some(now + COOKIE_ROTATE),
            Some(t) if t <= now => self.rotate_cookie_secret(now),
            Some(_) => {}
        }
        let ok = match p.first() {
            Some(Payload::Notify(n)) if n.kind == notify::COOKIE => {
                self.cookie_ok(&n.data, ni, remote, header.spi_i)
            }
            _ => false,
        };
        if !ok {
            let c = cookie_for(
                &self.cookie.secret,
                self.cookie.version,
                ni,
                remote,
                header.spi_i,
            );
            let reply = vec![Payload::notify(notify::COOKIE, c)];
            self.reply_plain(local, remote, header, reply);
        }
        ok
    }
}
