//! Admission control for background work (paper 6.5): how many bytes per second anti-entropy
//! may move, adapted to what it does to foreground latency.
//!
//! The paper's controller watches the latency of foreground operations and grants background
//! tasks fewer or more slices of the shared resource. Here:
//! - **Baseline.** Before background work starts moving data while clients are active, and again
//!   every [`REPROBE_MS`], it pauses for [`PROBE_MS`] and averages the latency of the client
//!   requests answered meanwhile: the foreground without background work.
//! - **Feedback.** Every [`ADJUST_MS`] it compares a moving average of client latency with that
//!   baseline: above it by more than [`TOLERANCE`], the allowed rate halves; otherwise it grows
//!   by an eighth of the ceiling (additive increase, multiplicative decrease, as TCP does). It
//!   never drops under [`MIN_RATE`], so repair always progresses.
//! - **Ceiling.** The configured bytes per second is the most it allows; with no client request
//!   for [`QUIET_MS`] there is no foreground to protect and the ceiling applies.
//!
//! The allowed rate feeds a token bucket: a batch that overdraws it makes the next one wait.
//!
//! It works in plain milliseconds (rates are bytes per millisecond of a moving clock); the
//! core turns its [`Time`](super::Time) into milliseconds at each call.
//!
//! This module must not know what the background work is, how requests travel, or any clock:
//! `now` is the core's milliseconds.

/// Without a client request for this long, the foreground is not busy.
pub(super) const QUIET_MS: u64 = 5_000;
/// How long background work pauses to measure the foreground without it.
const PROBE_MS: u64 = 1_000;
/// How often the baseline is measured again while background work goes on.
const REPROBE_MS: u64 = 30_000;
/// How often the allowed rate is adjusted.
const ADJUST_MS: u64 = 250;
/// Client latency may exceed the baseline by this fraction before background work slows down.
const TOLERANCE: f64 = 0.10;
/// The allowed rate never drops under this many bytes per second (or the ceiling, if lower).
const MIN_RATE: u64 = 64 * 1024;
/// Requests answered this long after background work last moved data measure the baseline.
const SETTLE_MS: u64 = 100;
/// A baseline needs at least this many requests; with fewer, the foreground is too light to
/// need protecting.
const MIN_SAMPLES: u32 = 20;
/// Weight of each client request in the moving average of latency.
const AVERAGE_WEIGHT: f64 = 0.02;
/// How long a rate-limited batch waits before it looks again, at most.
const MAX_WAIT_MS: u64 = 500;

/// Bytes that may be moved: refilled at the allowed rate, one second of it at most.
#[derive(Debug, Default)]
struct TokenBucket {
    /// Bytes per second; 0: unlimited.
    rate: u64,
    tokens: i64,
    refilled_at: u64,
}

impl TokenBucket {
    fn refill(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.refilled_at);
        self.refilled_at = now;
        let added = i64::try_from(self.rate.saturating_mul(elapsed) / 1000).unwrap_or(i64::MAX);
        let capacity = i64::try_from(self.rate).unwrap_or(i64::MAX);
        self.tokens = self.tokens.saturating_add(added).min(capacity);
    }

    /// When the bucket is positive again, if it is not now.
    fn wait_until(&mut self, now: u64) -> Option<u64> {
        if self.rate == 0 {
            return None;
        }
        self.refill(now);
        (self.tokens < 0).then(|| {
            let deficit = self.tokens.unsigned_abs();
            now + (deficit.saturating_mul(1000) / self.rate).clamp(1, MAX_WAIT_MS)
        })
    }

    fn take(&mut self, bytes: u64) {
        if self.rate > 0 {
            self.tokens = self
                .tokens
                .saturating_sub(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }
}

/// Where the controller is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// No baseline: measure one before moving data under client load.
    Unmeasured,
    /// Background work is paused until `until`, measuring the foreground.
    Probing { until: u64, sum_ms: f64, count: u32 },
    /// Moving data; the baseline (`None`: too few requests to need one) is measured again at
    /// `reprobe_at`.
    Running {
        baseline_ms: Option<f64>,
        reprobe_at: u64,
    },
}

/// The admission controller of one node's background data movement.
#[derive(Debug)]
pub(super) struct Admission {
    /// The configured bytes per second; 0: unlimited and not adapted.
    ceiling: u64,
    /// The rate allowed now.
    allowed: u64,
    bucket: TokenBucket,
    phase: Phase,
    /// Moving average of client request latency, in milliseconds.
    average_ms: f64,
    /// When the last client request was answered.
    last_request_at: Option<u64>,
    /// Background work counts as running until then (a batch in flight, or just answered).
    background_until: u64,
    adjusted_at: u64,
}

impl Admission {
    pub(super) fn new(now: u64, ceiling: u64) -> Self {
        let allowed = (ceiling / 8).max(MIN_RATE).min(ceiling);
        Self {
            ceiling,
            allowed,
            bucket: TokenBucket {
                rate: allowed,
                tokens: i64::try_from(allowed).unwrap_or(i64::MAX),
                refilled_at: now,
            },
            phase: Phase::Unmeasured,
            average_ms: 0.0,
            last_request_at: None,
            background_until: 0,
            adjusted_at: now,
        }
    }

    /// A client request answered at `now` took `latency_ms`.
    pub(super) fn observe(&mut self, now: u64, latency_ms: u64) {
        let latency = latency_ms as f64;
        if self.last_request_at.is_none() {
            self.average_ms = latency;
        }
        self.last_request_at = Some(now);
        self.average_ms += AVERAGE_WEIGHT * (latency - self.average_ms);
        if let Phase::Probing { sum_ms, count, .. } = &mut self.phase
            && now >= self.background_until
        {
            *sum_ms += latency;
            *count += 1;
        }
    }

    /// A batch was sent: background work runs until [`Admission::moved`] (or `deadline`).
    pub(super) fn sent(&mut self, deadline: u64) {
        self.background_until = self.background_until.max(deadline);
    }

    /// A batch of `bytes` arrived at `now`: it draws on the bucket.
    pub(super) fn moved(&mut self, now: u64, bytes: u64) {
        self.bucket.take(bytes);
        self.background_until = now + SETTLE_MS;
    }

    /// Whether clients made requests lately.
    fn foreground_active(&self, now: u64) -> bool {
        self.last_request_at
            .is_some_and(|at| now.saturating_sub(at) < QUIET_MS)
    }

    /// Whether background work may move a batch now; if not, when to ask again.
    pub(super) fn admit(&mut self, now: u64) -> Option<u64> {
        if self.ceiling == 0 {
            return None;
        }
        if !self.foreground_active(now) {
            self.phase = Phase::Unmeasured;
            self.set_allowed(now, self.ceiling);
            return self.bucket.wait_until(now);
        }
        match self.phase {
            Phase::Unmeasured => {
                return Some(self.start_probe(now));
            }
            Phase::Running { reprobe_at, .. } if reprobe_at <= now => {
                return Some(self.start_probe(now));
            }
            Phase::Probing { until, .. } if now < until => return Some(until),
            Phase::Probing { sum_ms, count, .. } => {
                let baseline_ms = (count >= MIN_SAMPLES).then(|| sum_ms / f64::from(count));
                self.phase = Phase::Running {
                    baseline_ms,
                    reprobe_at: now + REPROBE_MS,
                };
                // The average restarts from the baseline: what came before the probe says
                // nothing about background work now.
                if let Some(baseline) = baseline_ms {
                    self.average_ms = baseline;
                }
                self.adjusted_at = now;
            }
            Phase::Running { baseline_ms, .. } => {
                if now >= self.adjusted_at + ADJUST_MS {
                    self.adjusted_at = now;
                    let slower = baseline_ms
                        .is_some_and(|baseline| self.average_ms > baseline * (1.0 + TOLERANCE));
                    let allowed = if slower {
                        (self.allowed / 2).max(MIN_RATE)
                    } else {
                        self.allowed.saturating_add(self.ceiling / 8)
                    };
                    self.set_allowed(now, allowed.min(self.ceiling));
                }
            }
        }
        self.bucket.wait_until(now)
    }

    fn start_probe(&mut self, now: u64) -> u64 {
        let until = now.max(self.background_until) + PROBE_MS;
        self.phase = Phase::Probing {
            until,
            sum_ms: 0.0,
            count: 0,
        };
        until
    }

    fn set_allowed(&mut self, now: u64, rate: u64) {
        self.bucket.refill(now);
        self.allowed = rate;
        self.bucket.rate = rate;
    }

    /// Whether background work is held back under the ceiling now (for status).
    pub(super) fn throttled(&self, now: u64) -> bool {
        self.ceiling > 0
            && self.foreground_active(now)
            && (self.allowed < self.ceiling || matches!(self.phase, Phase::Probing { .. }))
    }

    /// The bytes per second allowed now (0: unlimited).
    pub(super) fn allowed_rate(&self) -> u64 {
        self.allowed
    }
}

#[cfg(test)]
mod tests {
    use super::{
        ADJUST_MS, Admission, MIN_RATE, PROBE_MS, Phase, QUIET_MS, REPROBE_MS, SETTLE_MS,
        TokenBucket,
    };

    /// The rate limit: a batch that overdraws the bucket makes the next one wait until the
    /// bucket refilled (checked every half second at most), and an idle second refills it.
    #[test]
    fn the_token_bucket_holds_batches_back_until_refilled() {
        let mut bucket = TokenBucket {
            rate: 1_000,
            tokens: 1_000,
            refilled_at: 0,
        };
        assert_eq!(bucket.wait_until(0), None);
        bucket.take(1_200);
        assert_eq!(bucket.wait_until(0), Some(200), "200 bytes short: 200 ms");
        assert_eq!(bucket.wait_until(200), None);
        bucket.take(5_000);
        assert_eq!(
            bucket.wait_until(200),
            Some(700),
            "long waits are re-checked"
        );
        assert_eq!(bucket.wait_until(10_000), None);
        let mut unlimited = TokenBucket::default();
        unlimited.take(u64::MAX);
        assert_eq!(unlimited.wait_until(0), None);
    }

    /// Drives the controller for `ms` with one client request per millisecond taking
    /// `latency(t)`, moving a 1 KiB batch whenever admitted; returns the time reached.
    fn run(
        admission: &mut Admission,
        from: u64,
        ms: u64,
        latency: impl Fn(u64, bool) -> u64,
    ) -> u64 {
        for now in from..from + ms {
            let background = now < admission.background_until;
            admission.observe(now, latency(now, background));
            if admission.admit(now).is_none() {
                admission.sent(now + 1);
                admission.moved(now, 1024);
            }
        }
        from + ms
    }

    /// Paper 6.5: background work measures the foreground without itself before it moves data
    /// under client load, then slows down (multiplicatively) while client latency is above
    /// that baseline and speeds up (additively) while it is not, never under a floor.
    #[test]
    fn background_work_adapts_to_foreground_latency() {
        let ceiling = 16 * 1024 * 1024;
        let mut admission = Admission::new(0, ceiling);
        admission.observe(0, 2);
        let probe_end = admission.admit(0).expect("clients are active: probe first");
        assert_eq!(probe_end, PROBE_MS);
        // During the probe nothing moves; requests take 2 ms.
        let now = run(&mut admission, 1, PROBE_MS, |_, _| 2);
        assert!(admission.throttled(now));
        // Background work that doubles client latency: the rate falls to the floor.
        let now = run(
            &mut admission,
            now,
            20 * ADJUST_MS,
            |_, bg| {
                if bg { 4 } else { 2 }
            },
        );
        assert_eq!(
            admission.allowed_rate(),
            MIN_RATE,
            "halved down to the floor"
        );
        // Background work that costs clients nothing: the rate climbs back to the ceiling.
        let now = run(&mut admission, now, 40 * ADJUST_MS, |_, _| 2);
        assert_eq!(admission.allowed_rate(), ceiling);
        // The baseline is measured again after a while.
        let Phase::Running { reprobe_at, .. } = admission.phase else {
            panic!("running: {:?}", admission.phase)
        };
        assert!(reprobe_at <= now + REPROBE_MS);
        let reprobe = run(&mut admission, now, reprobe_at - now, |_, _| 2);
        assert!(admission.admit(reprobe).is_some(), "probing again");
        // Without clients there is nothing to protect: the ceiling applies at once.
        let quiet = reprobe + PROBE_MS + QUIET_MS + SETTLE_MS;
        assert_eq!(admission.admit(quiet), None);
        assert!(!admission.throttled(quiet));
    }

    /// A ceiling of 0 means unlimited: never held back.
    #[test]
    fn an_unlimited_ceiling_is_never_held_back() {
        let mut admission = Admission::new(0, 0);
        admission.observe(0, 500);
        admission.moved(0, u64::MAX);
        assert_eq!(admission.admit(1), None);
        assert!(!admission.throttled(1));
    }
}
