//! Time as the core sees it: milliseconds on the driver's clock, which never goes back. A moment
//! is a [`Time`], its own type, so it cannot be mixed up with a duration, an id or a count;
//! durations stay plain milliseconds (`_ms` names), as in the configuration.
//!
//! This module must not read a clock: the driver says what time it is.

use std::fmt;
use std::ops::{Add, Sub};

/// A moment on the driver's clock, in milliseconds (the runtime: milliseconds since its
/// start plus an epoch; the simulator: virtual time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(u64);

impl Time {
    /// The moment `ms` milliseconds after the clock's zero.
    pub const fn from_millis(ms: u64) -> Time {
        Time(ms)
    }

    /// Milliseconds since the clock's zero (what the sans-IO crates take as `now`).
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Milliseconds from `earlier` to this moment; 0 if `earlier` is later.
    pub const fn saturating_since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A moment `ms` milliseconds later (saturating: "never" stays never).
impl Add<u64> for Time {
    type Output = Time;

    fn add(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms))
    }
}

/// A moment `ms` milliseconds earlier (saturating at the clock's zero).
impl Sub<u64> for Time {
    type Output = Time;

    fn sub(self, ms: u64) -> Time {
        Time(self.0.saturating_sub(ms))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}
