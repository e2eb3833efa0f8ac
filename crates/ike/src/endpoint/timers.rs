//! Timers: retransmissions with exponential back-off (§2.1), rekeys, liveness checks,
//! half-open expiry and COOKIE secret rotation (§2.6).

use super::*;

impl Endpoint {
    /// How long to wait for an answer after the `n`-th send of a request of `sa`.
    pub(super) fn retransmit_wait(&self, sa: &IkeSa, n: u32) -> Duration {
        match sa.peer.as_ref().and_then(|p| p.retransmit) {
            Some(r) => r.wait(n),
            None => self.config.limits.retransmit_base * (1u32 << n.min(16)),
        }
    }

    /// Retransmissions of a request of `sa` before the peer counts as dead.
    fn retransmit_tries(&self, sa: &IkeSa) -> u32 {
        match sa.peer.as_ref().and_then(|p| p.retransmit) {
            Some(r) => r.tries,
            None => self.config.limits.retransmit_tries,
        }
    }

    /// Send the outstanding request of `sa` again, or give the peer up for dead after
    /// the last try (then `sa` is gone: None).
    fn retransmit(&mut self, now: Instant, mut sa: IkeSa) -> Option<IkeSa> {
        let tries = self.retransmit_tries(&sa);
        let sent = sa.outstanding.as_ref().map_or(0, |o| o.tries);
        let wait = self.retransmit_wait(&sa, sent + 1);
        let o = sa.outstanding.as_mut()?;
        if o.tries >= tries {
            if sa.state == SaState::Deleting {
                // A rekeyed or failed SA whose DELETE went unanswered.
                self.destroy(sa, "", false);
                return None;
            }
            let reason = if matches!(o.pending, Pending::DeleteIke) {
                "deleted (peer did not confirm)"
            } else {
                "peer not responding (retransmits exhausted)"
            };
            self.destroy(sa, reason, true);
            return None;
        }
        o.tries += 1;
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.1
        //# retransmission times MUST increase exponentially
        o.next = now + wait;
        self.transmits.push_back(Transmit {
            local: sa.local,
            remote: sa.remote,
            payload: o.bytes.clone(),
        });
        Some(sa)
    }

    pub(super) fn handle_timeout_sa(&mut self, now: Instant, mut sa: IkeSa) {
        if let Some(t) = sa.expire_at {
            if t <= now {
                return self.destroy(sa, "half-open SA timed out", false);
            }
        }
        let due = sa.outstanding.as_ref().is_some_and(|o| o.next <= now);
        if due {
            let Some(s) = self.retransmit(now, sa) else {
                return;
            };
            sa = s;
        }
        if sa.state == SaState::Established && sa.outstanding.is_none() {
            if sa.rekey_at.is_some_and(|t| t <= now) {
                sa.rekey_at = None;
                sa.queue.push_back(Task::RekeyIke);
            }
            if sa.dpd_at.is_some_and(|t| t <= now) {
                sa.dpd_at = None;
                sa.queue.push_back(Task::Dpd);
            }
            let due: Vec<u32> = sa
                .children
                .iter_mut()
                .filter(|c| c.rekey_at.is_some_and(|t| t <= now))
                .map(|c| {
                    c.rekey_at = None;
                    c.sa.spi_in
                })
                .collect();
            for s in due {
                sa.queue.push_back(Task::RekeyChild(s));
            }
        }
        self.finish(now, sa);
    }

    /// Timers: retransmissions, rekeys, liveness checks, half-open expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.cookie.rotate_at.is_some_and(|t| t <= now) {
            self.rotate_cookie_secret(now);
        }
        // Collect first: handling a timer may schedule new ones at `now`.
        let due: Vec<(Instant, IkeSaId)> = self
            .timers
            .iter()
            .take_while(|(t, _)| *t <= now)
            .copied()
            .collect();
        for (t, id) in due {
            self.timers.remove(&(t, id));
            let Some(mut sa) = self.take(id) else {
                continue;
            };
            sa.deadline = None;
            self.handle_timeout_sa(now, sa);
        }
    }
}
