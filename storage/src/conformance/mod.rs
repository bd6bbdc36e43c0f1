//! Test support: one conformance suite that every [`Store`] implementation must pass.
//!
//! A [`Harness`] opens, reopens and wipes stores of one implementation; [`run_all`] runs every
//! named check of [`checks`] against it and panics with the list of failed checks. The crate's
//! own tests run it for [`MemoryHarness`] and `FjallHarness`; a new implementation only needs
//! a harness. Values are `Vec<u8>`. This module must not know how a store is implemented.

use std::fmt::Display;
#[cfg(feature = "fjall")]
use std::path::PathBuf;

use dynamo_vclock::{Actor, DvvSet, VClock};

use crate::error::Result;
#[cfg(feature = "fjall")]
use crate::fjall_store::FjallStore;
use crate::memory::MemoryStore;
use crate::options::{Durability, StoreOptions};
use crate::store::{LocalWrite, Store};

/// The value type of the suite.
pub type Bytes = Vec<u8>;

/// Opens stores of one implementation for the checks.
pub trait Harness {
    /// The implementation under test.
    type Store: Store<Bytes>;

    /// A new, empty store.
    fn open_fresh(&mut self, options: StoreOptions) -> Result<Self::Store>;

    /// Closes `store` cleanly ([`Store::close`]) and opens its data again (a restart that kept
    /// the disk).
    fn reopen(&mut self, store: Self::Store, options: StoreOptions) -> Result<Self::Store>;

    /// Closes `store`, throws its data away and opens an empty store in its place (a replica
    /// that lost its disk).
    fn wipe_and_reopen(
        &mut self,
        store: Self::Store,
        options: StoreOptions,
    ) -> Result<Self::Store> {
        drop(store);
        self.open_fresh(options)
    }
}

/// Harness for [`MemoryStore`].
#[derive(Debug, Default)]
pub struct MemoryHarness;

impl Harness for MemoryHarness {
    type Store = MemoryStore<Bytes>;

    fn open_fresh(&mut self, options: StoreOptions) -> Result<Self::Store> {
        MemoryStore::open(&options)
    }

    fn reopen(&mut self, store: Self::Store, options: StoreOptions) -> Result<Self::Store> {
        store.close()?;
        store.reopen(&options)
    }

    fn wipe_and_reopen(
        &mut self,
        store: Self::Store,
        options: StoreOptions,
    ) -> Result<Self::Store> {
        store.wipe(&options)
    }
}

/// Harness for [`FjallStore`]: every fresh store gets a new directory under `base`.
#[cfg(feature = "fjall")]
#[derive(Debug)]
pub struct FjallHarness {
    base: PathBuf,
    next: u32,
}

#[cfg(feature = "fjall")]
impl FjallHarness {
    /// Stores go in numbered directories under `base` (for example a temporary directory).
    pub fn new(base: impl Into<PathBuf>) -> Self {
        FjallHarness {
            base: base.into(),
            next: 0,
        }
    }
}

#[cfg(feature = "fjall")]
impl Harness for FjallHarness {
    type Store = FjallStore<Bytes>;

    fn open_fresh(&mut self, options: StoreOptions) -> Result<Self::Store> {
        self.next += 1;
        FjallStore::open(self.base.join(format!("store-{}", self.next)), &options)
    }

    fn reopen(&mut self, store: Self::Store, options: StoreOptions) -> Result<Self::Store> {
        store.close()?;
        let path = store.path().to_path_buf();
        drop(store);
        FjallStore::open(path, &options)
    }

    fn wipe_and_reopen(
        &mut self,
        store: Self::Store,
        options: StoreOptions,
    ) -> Result<Self::Store> {
        let path = store.path().to_path_buf();
        drop(store);
        std::fs::remove_dir_all(&path)?;
        FjallStore::open(path, &options)
    }
}

/// One named check.
pub struct Check<H> {
    /// What it checks (and the paper section or behaviour it is about).
    pub name: &'static str,
    /// Runs the check; `Err` explains the failure.
    pub run: fn(&mut H) -> Result<(), String>,
}

/// Every check of the suite.
pub fn checks<H: Harness>() -> Vec<Check<H>> {
    macro_rules! check {
        ($f:ident) => {
            Check {
                name: stringify!($f),
                run: $f::<H>,
            }
        };
    }
    vec![
        check!(get_of_a_missing_key_is_none),
        check!(update_makes_a_new_version),
        check!(update_discards_what_the_context_saw),
        check!(key_incarnations_are_never_reused),
        check!(apply_keeps_concurrent_sets_as_siblings),
        check!(apply_is_idempotent_and_keeps_newer_versions),
        check!(racing_updates_of_one_key_lose_nothing),
        check!(racing_applies_of_one_key_lose_nothing),
        check!(partition_scan_returns_exactly_its_keys_in_order),
        check!(reaping_removes_only_an_unchanged_set),
        check!(hints_are_listed_per_owner),
        check!(hints_are_removed_only_when_covered),
        check!(oversized_keys_and_values_are_rejected),
        check!(merkle_tree_equals_a_rebuild_after_writes),
        check!(a_tree_built_while_writes_race_equals_a_rebuild),
        check!(data_hints_and_trees_survive_a_reopen),
        check!(epoch_is_kept_on_reopen_and_new_after_a_wipe),
        check!(another_nodes_store_is_refused),
        check!(sync_and_buffered_writes_are_both_readable),
        check!(node_state_round_trips_and_is_overwritten),
        check!(node_state_survives_a_reopen_but_not_a_wipe),
        check!(bad_node_state_names_and_oversized_state_are_rejected),
    ]
}

/// Runs every check against `harness`; panics listing the failed ones.
pub fn run_all<H: Harness>(harness: &mut H) {
    let mut failed = Vec::new();
    for check in checks::<H>() {
        if let Err(message) = (check.run)(harness) {
            failed.push(format!("{}: {message}", check.name));
        }
    }
    assert!(
        failed.is_empty(),
        "{} conformance check(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers

pub(super) const NODE: &str = "node-a";
pub(super) const T0: u64 = 1_000_000;

pub(super) fn options() -> StoreOptions {
    StoreOptions::new(NODE, T0)
}

trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// A set holding one new version of `value` written by `actor` with an empty context.
pub(super) fn fresh(actor: &str, value: &[u8]) -> DvvSet<Bytes> {
    DvvSet::new(&Actor::new(actor), value.to_vec(), T0)
}

/// The sorted sibling values of a set.
pub(super) fn values(set: &DvvSet<Bytes>) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = set.values().cloned().collect();
    out.sort();
    out
}

pub(super) fn sorted(values: &[&[u8]]) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = values.iter().map(|v| v.to_vec()).collect();
    out.sort();
    out
}

/// The coordinator's write of `value` with `context`, as the store's actor (buffered, to keep
/// the suite fast; durability has its own checks and the crash test).
pub(super) fn put<S: Store<Bytes>>(
    store: &S,
    partition: u32,
    key: &[u8],
    context: &VClock,
    value: &[u8],
) -> Result<DvvSet<Bytes>> {
    store.update(
        partition,
        key,
        LocalWrite {
            context,
            value: value.to_vec(),
            now: T0,
        },
        Durability::Buffered,
    )
}

pub(super) fn stored<S: Store<Bytes>>(
    store: &S,
    partition: u32,
    key: &[u8],
) -> Result<DvvSet<Bytes>, String> {
    store
        .get(partition, key)
        .ctx("get")?
        .ok_or_else(|| format!("key {key:?} of partition {partition} is missing"))
}

// ---------------------------------------------------------------------------------------------
// Checks

// The checks, after the helpers and the `ensure!` macro they use (macros are textually scoped).
mod lifecycle;
mod versions;

use lifecycle::{
    a_tree_built_while_writes_race_equals_a_rebuild, another_nodes_store_is_refused,
    bad_node_state_names_and_oversized_state_are_rejected, data_hints_and_trees_survive_a_reopen,
    epoch_is_kept_on_reopen_and_new_after_a_wipe, hints_are_listed_per_owner,
    hints_are_removed_only_when_covered, merkle_tree_equals_a_rebuild_after_writes,
    node_state_round_trips_and_is_overwritten, node_state_survives_a_reopen_but_not_a_wipe,
    oversized_keys_and_values_are_rejected, sync_and_buffered_writes_are_both_readable,
};
use versions::{
    apply_is_idempotent_and_keeps_newer_versions, apply_keeps_concurrent_sets_as_siblings,
    get_of_a_missing_key_is_none, key_incarnations_are_never_reused,
    partition_scan_returns_exactly_its_keys_in_order, racing_applies_of_one_key_lose_nothing,
    racing_updates_of_one_key_lose_nothing, reaping_removes_only_an_unchanged_set,
    update_discards_what_the_context_saw, update_makes_a_new_version,
};
