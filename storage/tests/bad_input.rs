//! A damaged or misused data directory gives an error, never a panic (bad input is an error
//! value; the Dynamo paper, section 4.8: a replica must not crash on a bad request).

use dynamo_storage::{Durability, FjallStore, StorageError, Store, StoreOptions};
use dynamo_vclock::{Actor, DvvSet};
use fjall::{Database, KeyspaceCreateOptions, PersistMode};

fn options() -> StoreOptions {
    StoreOptions::new("node-a", 10)
}

fn set(value: &[u8]) -> DvvSet<Vec<u8>> {
    DvvSet::new(&Actor::new("a"), value.to_vec(), 1)
}

fn data_key(partition: u32, key: &[u8]) -> Vec<u8> {
    let mut raw = partition.to_be_bytes().to_vec();
    raw.extend_from_slice(key);
    raw
}

/// Writes raw engine entries into a closed store's directory.
fn damage(dir: &std::path::Path, space: &str, entries: &[(Vec<u8>, Vec<u8>)]) {
    let db = Database::builder(dir).open().expect("open raw");
    let keyspace = db
        .keyspace(space, KeyspaceCreateOptions::default)
        .expect("keyspace");
    for (key, value) in entries {
        keyspace
            .insert(key.as_slice(), value.as_slice())
            .expect("insert");
    }
    db.persist(PersistMode::SyncAll).expect("persist");
}

#[test]
fn corrupt_version_sets_are_errors_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store: FjallStore<Vec<u8>> = FjallStore::open(dir.path(), &options()).expect("open");
        store
            .apply(3, b"good", &set(b"v"), Durability::Sync)
            .expect("apply");
    }
    let cases: [(&[u8], Vec<u8>); 4] = [
        (b"truncated", vec![1, 0xff, 0xff]),
        (b"foreign-format", vec![9, 1, 2]),
        (b"empty", vec![]),
        // A set whose entry claims more live values than its counter allows.
        (b"invalid-set", {
            let mut bytes = vec![1];
            bytes.extend(postcard::to_stdvec(&(1u8, "a", 0u64, 0u64, 1u8, 0u8)).expect("encode"));
            bytes
        }),
    ];
    let raw: Vec<(Vec<u8>, Vec<u8>)> = cases
        .iter()
        .map(|(key, value)| (data_key(3, key), value.clone()))
        .collect();
    damage(dir.path(), "data", &raw);

    let store: FjallStore<Vec<u8>> = FjallStore::open(dir.path(), &options()).expect("reopen");
    for (key, _) in &cases {
        match store.get(3, key) {
            Err(StorageError::Corrupt { space, key: k, .. }) => {
                assert_eq!((space, k.as_slice()), ("data", *key));
            }
            other => panic!("{key:?}: expected Corrupt, got {other:?}"),
        }
        // A write to a corrupt key fails and leaves the bytes for an operator to inspect.
        assert!(matches!(
            store.apply(3, key, &set(b"new"), Durability::Sync),
            Err(StorageError::Corrupt { .. })
        ));
    }
    assert!(matches!(
        store.scan_partition(3, None, 100),
        Err(StorageError::Corrupt { .. })
    ));
    // The rest of the store keeps working.
    let good = store.get(3, b"good").expect("get").expect("present");
    assert_eq!(good.values().collect::<Vec<_>>(), [&b"v".to_vec()]);
    assert!(store.scan_partition(4, None, 100).expect("scan").is_empty());
    // Trees hash stored bytes, so they stay consistent even around a corrupt key.
    assert_eq!(
        store.merkle_tree(3).expect("tree"),
        store.partition_digest(3).expect("digest").tree
    );
}

#[test]
fn corrupt_hints_are_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(FjallStore::<Vec<u8>>::open(dir.path(), &options()).expect("open"));
    let mut key = vec![6];
    key.extend_from_slice(b"node-b");
    key.extend_from_slice(&7u32.to_be_bytes());
    key.extend_from_slice(b"k");
    damage(dir.path(), "hints", &[(key, vec![1, 0xff])]);
    let store: FjallStore<Vec<u8>> = FjallStore::open(dir.path(), &options()).expect("reopen");
    assert!(matches!(
        store.hints_for("node-b", 10),
        Err(StorageError::Corrupt { space: "hints", .. })
    ));
    assert_eq!(store.hint_owners().expect("owners"), ["node-b"]);
    assert!(matches!(
        store.put_hint("node-b", 7, b"k", &set(b"v"), Durability::Sync),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn damaged_metadata_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    damage(dir.path(), "meta", &[(b"epoch".to_vec(), vec![1, 2, 3])]);
    match FjallStore::<Vec<u8>>::open(dir.path(), &options()) {
        Err(StorageError::Corrupt { space: "meta", .. }) => {}
        other => panic!("expected Corrupt meta, got {other:?}"),
    }
    let dir = tempfile::tempdir().expect("temp dir");
    damage(
        dir.path(),
        "meta",
        &[
            (b"epoch".to_vec(), vec![1, 2, 3]),
            (b"node_id".to_vec(), b"node-a".to_vec()),
        ],
    );
    assert!(matches!(
        FjallStore::<Vec<u8>>::open(dir.path(), &options()),
        Err(StorageError::Corrupt { space: "meta", .. })
    ));
}

#[test]
fn unusable_directories_are_errors() {
    // A regular file where the directory should be.
    let file = tempfile::NamedTempFile::new().expect("temp file");
    assert!(FjallStore::<Vec<u8>>::open(file.path(), &options()).is_err());
    // A directory already held by an open store.
    let dir = tempfile::tempdir().expect("temp dir");
    let _first = FjallStore::<Vec<u8>>::open(dir.path(), &options()).expect("open");
    assert!(FjallStore::<Vec<u8>>::open(dir.path(), &options()).is_err());
}
