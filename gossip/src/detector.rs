//! The phi accrual failure detector (Hayashibara et al. 2004), one per peer.
//!
//! Samples are the intervals between arrivals of *new heartbeat versions* of a peer, however
//! they arrived (directly or relayed by gossip). `phi` is `-log10` of the probability that a
//! heartbeat is still to come after the silence observed so far, under a normal model of the
//! intervals with a floor on the standard deviation and an acceptable pause added to the mean.
//! The floor and the pause absorb multi-hop propagation jitter, which is what makes naive
//! detectors cry wolf under load (paper section 4.8.3 keeps detection local and tolerant).
//!
//! This module must not know about members, messages or events: it turns arrival times into a
//! suspicion level.

use std::collections::VecDeque;
use std::time::Duration;

/// Below this many samples the standard deviation is at least the bootstrap interval.
const BOOTSTRAP_SAMPLES: usize = 10;

/// Tuning of every detector of an engine.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DetectorConfig {
    /// Number of intervals kept.
    pub(crate) window: usize,
    /// The mean assumed before two samples exist (normally the gossip interval).
    pub(crate) bootstrap_interval: Duration,
    /// Lower bound on the standard deviation.
    pub(crate) min_std_dev: Duration,
    /// Added to the mean: a silence this long beyond the usual is not suspicious at all.
    pub(crate) acceptable_pause: Duration,
    /// Intervals longer than this (a partition, a down period) are not recorded.
    pub(crate) max_sample: Duration,
}

/// Arrival history of one peer's heartbeats.
#[derive(Clone, Debug, Default)]
pub(crate) struct PhiDetector {
    intervals: VecDeque<u64>,
    sum: u64,
    sum_sq: u128,
    last_arrival: Option<Duration>,
}

impl PhiDetector {
    /// A detector that has seen one arrival at `now`.
    pub(crate) fn started_at(now: Duration) -> Self {
        Self {
            last_arrival: Some(now),
            ..Self::default()
        }
    }

    /// Records a heartbeat arrival.
    pub(crate) fn heartbeat(&mut self, now: Duration, config: &DetectorConfig) {
        if let Some(last) = self.last_arrival {
            let interval = now.saturating_sub(last);
            if interval <= config.max_sample {
                let micros = interval.as_micros() as u64;
                self.intervals.push_back(micros);
                self.sum += micros;
                self.sum_sq += u128::from(micros) * u128::from(micros);
                while self.intervals.len() > config.window.max(1) {
                    if let Some(old) = self.intervals.pop_front() {
                        self.sum -= old;
                        self.sum_sq -= u128::from(old) * u128::from(old);
                    }
                }
            }
        }
        self.last_arrival = Some(now.max(self.last_arrival.unwrap_or_default()));
    }

    /// Forgets the recorded intervals (after the peer was declared down) but keeps the last
    /// arrival time.
    pub(crate) fn clear_samples(&mut self) {
        self.intervals.clear();
        self.sum = 0;
        self.sum_sq = 0;
    }

    /// Mean and standard deviation in seconds, with the bootstrap and floor applied.
    fn model(&self, config: &DetectorConfig) -> (f64, f64) {
        let n = self.intervals.len();
        // Until the window holds a few samples, trust it less: arrivals of a newly discovered
        // peer's heartbeats are irregular while gossip about it is still spreading.
        let floor = if n < BOOTSTRAP_SAMPLES {
            config
                .min_std_dev
                .max(config.bootstrap_interval)
                .as_secs_f64()
        } else {
            config.min_std_dev.as_secs_f64()
        };
        if n < 2 {
            return (config.bootstrap_interval.as_secs_f64(), floor);
        }
        let n_f = n as f64;
        let mean = self.sum as f64 / n_f;
        let variance = (self.sum_sq as f64 / n_f - mean * mean).max(0.0);
        (mean / 1e6, (variance.sqrt() / 1e6).max(floor))
    }

    /// The suspicion level at `now`; 0 when nothing has arrived yet.
    pub(crate) fn phi(&self, now: Duration, config: &DetectorConfig) -> f64 {
        let Some(last) = self.last_arrival else {
            return 0.0;
        };
        let elapsed = now.saturating_sub(last).as_secs_f64();
        let (mean, std_dev) = self.model(config);
        phi(
            elapsed,
            mean + config.acceptable_pause.as_secs_f64(),
            std_dev,
        )
    }
}

/// `-log10(P(X > elapsed))` for `X ~ Normal(mean, std_dev)`, using the logistic approximation
/// of the normal CDF (Bowling et al. 2009): cheap, and within about 6% of the exact value up
/// to phi 8 (it slightly overstates phi in the far tail).
pub(crate) fn phi(elapsed: f64, mean: f64, std_dev: f64) -> f64 {
    let y = (elapsed - mean) / std_dev;
    let e = (-y * (1.5976 + 0.070_566 * y * y)).exp();
    let tail = if elapsed > mean {
        e / (1.0 + e)
    } else {
        1.0 - 1.0 / (1.0 + e)
    };
    if tail <= 0.0 {
        // Far beyond any realistic threshold.
        f64::MAX
    } else {
        -tail.log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DetectorConfig {
        DetectorConfig {
            window: 100,
            bootstrap_interval: Duration::from_secs(1),
            min_std_dev: Duration::from_millis(500),
            acceptable_pause: Duration::ZERO,
            max_sample: Duration::from_secs(10),
        }
    }

    /// Paper 4.8.3 (local failure detection): suspicion grows with silence and resets on
    /// arrival.
    #[test]
    fn phi_grows_with_silence_and_resets_on_heartbeat() {
        let config = config();
        let mut detector = PhiDetector::started_at(Duration::ZERO);
        for second in 1..=20 {
            detector.heartbeat(Duration::from_secs(second), &config);
        }
        let at = |s: f64| detector.phi(Duration::from_secs_f64(20.0 + s), &config);
        assert!(at(0.5) < 1.0);
        assert!(at(2.0) < at(3.0));
        assert!(at(3.0) < at(4.0));
        assert!(at(5.0) > 8.0, "phi {}", at(5.0));
        detector.heartbeat(Duration::from_secs(25), &config);
        assert!(detector.phi(Duration::from_secs(25), &config) < 1.0);
    }

    /// Table: the approximation matches known normal tail probabilities.
    #[test]
    fn phi_matches_normal_tail() {
        // (z, -log10 P(Z > z)) from standard normal tables.
        let cases = [
            (0.0, 0.301),
            (1.0, 0.799),
            (2.0, 1.643),
            (3.0, 2.870),
            (4.0, 4.502),
        ];
        for (z, expected) in cases {
            let got = phi(z, 0.0, 1.0);
            assert!(
                (got - expected).abs() <= 0.06 * expected + 0.01,
                "z={z}: {got} vs {expected}"
            );
        }
    }

    /// Long silences (partitions) are not learned as normal intervals.
    #[test]
    fn long_gaps_are_not_sampled() {
        let config = config();
        let mut detector = PhiDetector::started_at(Duration::ZERO);
        detector.heartbeat(Duration::from_secs(1), &config);
        detector.heartbeat(Duration::from_secs(100), &config);
        detector.heartbeat(Duration::from_secs(101), &config);
        assert_eq!(detector.intervals.len(), 2);
    }

    /// The window is bounded.
    #[test]
    fn window_is_bounded() {
        let config = DetectorConfig {
            window: 5,
            ..config()
        };
        let mut detector = PhiDetector::started_at(Duration::ZERO);
        for second in 1..50 {
            detector.heartbeat(Duration::from_secs(second), &config);
        }
        assert_eq!(detector.intervals.len(), 5);
        let (mean, _) = detector.model(&config);
        assert!((mean - 1.0).abs() < 1e-9);
    }
}
