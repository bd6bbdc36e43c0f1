//! Runs the conformance suite against both stores (the Dynamo paper's replica storage
//! behaviour: sections 4.4 versioning, 4.6 hinted handoff, 4.7 Merkle trees, 6.1 durability).

use dynamo_storage::conformance::{FjallHarness, MemoryHarness, checks, run_all};

#[test]
fn memory_store_passes_the_conformance_suite() {
    run_all(&mut MemoryHarness);
}

#[test]
fn fjall_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("temp dir");
    run_all(&mut FjallHarness::new(dir.path()));
}

#[test]
fn the_suite_has_uniquely_named_checks() {
    let mut names: Vec<&str> = checks::<MemoryHarness>().iter().map(|c| c.name).collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count);
    assert!(count >= 15, "only {count} checks");
}

#[test]
fn stores_work_behind_a_trait_object() {
    use dynamo_storage::{MemoryStore, Store, StoreOptions};
    let store: Box<dyn Store<Vec<u8>>> =
        Box::new(MemoryStore::open(&StoreOptions::new("n1", 5)).expect("open"));
    assert_eq!(store.actor().as_str(), "n1#5");
    assert!(store.get(0, b"k").expect("get").is_none());
}
