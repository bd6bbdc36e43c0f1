//! What every coordinator shares with its driver: replies and timeouts go in, commands and the
//! next deadline come out. The node drives a get, a put and a reap through this one interface
//! instead of a hand-written dispatch per coordinator.
//!
//! This module must not know what a coordinator decides, nor how its commands are carried out.

use dynamo_ring::NodeId;

use crate::message::{Command, ReplicaReply};

/// A sans-IO quorum coordinator (shaped like quinn-proto's connection: inputs with `now`,
/// outputs polled).
///
/// ```
/// use dynamo_quorum::{Command, Coordinate};
///
/// /// Runs a coordinator until it waits for the outside world; returns what it asked for.
/// fn drain(coordinator: &mut dyn Coordinate) -> Vec<Command> {
///     std::iter::from_fn(|| coordinator.poll_command()).collect()
/// }
/// # let _ = drain;
/// ```
pub trait Coordinate {
    /// A replica's reply (or failure) to the request this coordinator sent to `from`.
    /// Replies it did not ask for, duplicates and late ones are ignored.
    fn handle_reply(&mut self, now: u64, from: &NodeId, reply: ReplicaReply);

    /// Time passed: the deadline, and stand-in delays (paper 4.6), due by `now`.
    fn handle_timeout(&mut self, now: u64);

    /// When [`Coordinate::handle_timeout`] must be called next; `None` once finished.
    fn poll_timeout(&self) -> Option<u64>;

    /// The next command for the driver, until there is none.
    fn poll_command(&mut self) -> Option<Command>;

    /// Whether nothing more will happen: its client was answered and its repairs were sent.
    fn is_finished(&self) -> bool;

    /// Spare nodes it asked in place of silent or failed targets (paper 4.6).
    fn stand_ins(&self) -> usize {
        0
    }
}
