//! Quorum parameters (paper 4.5: N, R, W), Riak's PR/PW, `notfound_ok` and `basic_quorum`, and
//! the sibling limits.
//!
//! This module must not know where the numbers come from (bucket properties or a request).

use serde::{Deserialize, Serialize};

/// Above this many siblings a write succeeds with a warning.
pub const SOFT_SIBLING_LIMIT: usize = 25;
/// A write that would leave more siblings than this is refused.
pub const HARD_SIBLING_LIMIT: usize = 100;

/// How many replicas hold a key and how many must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Quorum {
    /// Replicas per key.
    pub n: usize,
    /// Successful replies a read waits for.
    pub r: usize,
    /// Acknowledgements a write waits for (the coordinator's own included).
    pub w: usize,
    /// Of the `r` replies, how many must come from primaries (0: no requirement).
    pub pr: usize,
    /// Of the `w` acknowledgements, how many must come from primaries (0: no requirement).
    pub pw: usize,
    /// Whether a "not found" reply counts towards `r` (Riak's default: true).
    pub notfound_ok: bool,
    /// With `notfound_ok = false`: answer "not found" as soon as a majority of the N replicas
    /// said not found or failed, instead of waiting for every reply.
    pub basic_quorum: bool,
}

impl Default for Quorum {
    /// Dynamo's common configuration (paper 6): N=3, R=2, W=2.
    fn default() -> Self {
        Self {
            n: 3,
            r: 2,
            w: 2,
            pr: 0,
            pw: 0,
            notfound_ok: true,
            basic_quorum: false,
        }
    }
}

/// Why a quorum configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// N must be at least 1.
    #[error("n must be at least 1")]
    ZeroN,
    /// R and W must be between 1 and N.
    #[error("{name} = {value} must be between 1 and n = {n}")]
    OutOfRange {
        /// "r" or "w".
        name: &'static str,
        /// The value given.
        value: usize,
        /// The replica count.
        n: usize,
    },
    /// PR and PW cannot exceed N (they may exceed R and W, as in Riak: the request then waits
    /// for max(R, PR) replies, PR of them from primaries).
    #[error("{name} = {value} cannot exceed n = {bound}")]
    PrimaryAboveQuorum {
        /// "pr" or "pw".
        name: &'static str,
        /// The value given.
        value: usize,
        /// N.
        bound: usize,
    },
}

impl Quorum {
    /// N, R, W with no primary requirements and Riak's defaults for the rest.
    pub fn new(n: usize, r: usize, w: usize) -> Self {
        Self {
            n,
            r,
            w,
            ..Self::default()
        }
    }

    /// Checks 1 <= R, W <= N and PR, PW <= N. A PR above R (or PW above W) is allowed, as in
    /// Riak: the request waits for max(R, PR) replies, PR of them from primaries.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.n == 0 {
            return Err(ConfigError::ZeroN);
        }
        for (name, value) in [("r", self.r), ("w", self.w)] {
            if value == 0 || value > self.n {
                return Err(ConfigError::OutOfRange {
                    name,
                    value,
                    n: self.n,
                });
            }
        }
        for (name, value, bound) in [("pr", self.pr, self.n), ("pw", self.pw, self.n)] {
            if value > bound {
                return Err(ConfigError::PrimaryAboveQuorum { name, value, bound });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_table() {
        let cases = [
            (Quorum::new(3, 2, 2), Ok(())),
            (Quorum::new(3, 1, 3), Ok(())),
            (Quorum::new(0, 1, 1), Err(ConfigError::ZeroN)),
            (
                Quorum::new(3, 0, 2),
                Err(ConfigError::OutOfRange {
                    name: "r",
                    value: 0,
                    n: 3,
                }),
            ),
            (
                Quorum::new(3, 2, 4),
                Err(ConfigError::OutOfRange {
                    name: "w",
                    value: 4,
                    n: 3,
                }),
            ),
            (
                Quorum {
                    pr: 3,
                    ..Quorum::new(3, 2, 2)
                },
                Ok(()),
            ),
            (
                Quorum {
                    pw: 4,
                    ..Quorum::new(3, 2, 2)
                },
                Err(ConfigError::PrimaryAboveQuorum {
                    name: "pw",
                    value: 4,
                    bound: 3,
                }),
            ),
        ];
        for (quorum, expected) in cases {
            assert_eq!(quorum.validate(), expected, "{quorum:?}");
        }
    }
}
