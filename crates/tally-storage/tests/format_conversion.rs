//! Opening an embedded store of format 3, which kept one checkpoint per key. The store converts
//! it to the current format 5, which keeps checkpoints in blocks (since format 4), and keeps
//! every checkpoint.
//!
//! The tests write format 3 with fjall directly, in the layout that format kept: the keyspace
//! `checkpoints` with the counter ID (8 bytes, big-endian) as key and `encoding::checkpoint_value`
//! as value, and format 3 in the `meta` keyspace.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use tally_core::fold::Fold;
use tally_core::{CounterName, EventTime};
use tally_storage::encoding::checkpoint_value;
use tally_storage::{
    AppendBatch, Checkpoint, CounterId, CounterRecord, Durability, EmbeddedStore, EventStore,
};
use tempfile::TempDir;

const FORMAT_KEY: &[u8] = b"format";

fn checkpoint(id: CounterId) -> Checkpoint {
    Checkpoint {
        fold: Fold {
            sum: i128::from(id) * 7 - 1_000,
            cleared: id.is_multiple_of(3),
        },
        sealed_until: EventTime::from_micros(1_800_000_000_000_000 + id as i64),
        last_event_id: id * 2,
    }
}

/// Creates a store with counters `1..=num_counters` in namespace 1, then rewrites it as
/// format 3 with a checkpoint for every counter whose ID `has_checkpoint` accepts.
fn format_3_store(
    path: &Path,
    num_counters: u64,
    has_checkpoint: impl Fn(CounterId) -> bool,
) -> Vec<(CounterId, Checkpoint)> {
    let store = EmbeddedStore::open(path, Durability::Sync).unwrap();
    let counters: Vec<CounterRecord> = (1..=num_counters)
        .map(|id| CounterRecord {
            id,
            namespace_id: 1,
            name: CounterName::parse(&format!("c{id}")).unwrap(),
        })
        .collect();
    store
        .append(&AppendBatch {
            events: Vec::new(),
            new_counters: counters,
            last_event_id: 0,
            last_counter_id: num_counters,
        })
        .unwrap();
    drop(store);

    let checkpoints: Vec<(CounterId, Checkpoint)> = (1..=num_counters)
        .filter(|id| has_checkpoint(*id))
        .map(|id| (id, checkpoint(id)))
        .collect();
    let db = Database::builder(path).open().unwrap();
    let old = db
        .keyspace("checkpoints", KeyspaceCreateOptions::default)
        .unwrap();
    let mut batch = db.batch();
    for (id, checkpoint) in &checkpoints {
        batch.insert(&old, id.to_be_bytes(), checkpoint_value(checkpoint));
    }
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
    batch.insert(&meta, FORMAT_KEY, 3u32.to_be_bytes());
    batch.commit().unwrap();
    db.persist(PersistMode::SyncAll).unwrap();
    checkpoints
}

fn scanned_checkpoints(store: &dyn EventStore) -> Vec<(CounterId, Checkpoint)> {
    let mut found = Vec::new();
    store
        .scan_counters(0..=CounterId::MAX, &mut |counter| {
            if let Some(checkpoint) = counter.checkpoint {
                found.push((counter.id, checkpoint));
            }
        })
        .unwrap();
    found
}

/// Returns the store's format and whether it still has the keyspace of format 3.
fn format_and_old_keyspace(path: &Path) -> (u32, bool) {
    let db = Database::builder(path).open().unwrap();
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
    let format = meta.get(FORMAT_KEY).unwrap().unwrap();
    let format = u32::from_be_bytes(format.as_ref().try_into().unwrap());
    (format, db.keyspace_exists("checkpoints"))
}

#[test]
fn converted_store_keeps_every_checkpoint() {
    let dir = TempDir::new().unwrap();
    // More checkpoints than one conversion batch takes, with gaps of several blocks.
    let written = format_3_store(dir.path(), 260_000, |id| id % 97 > 10);
    assert!(written.len() > 200_000);
    assert_eq!(format_and_old_keyspace(dir.path()), (3, true));

    let store = EmbeddedStore::open(dir.path(), Durability::Sync).unwrap();
    assert_eq!(scanned_checkpoints(&store), written);
    for id in [1, 10, 11, 96, 97, 108, 259_999, 260_000, 260_001] {
        let expected = written.iter().find(|(found, _)| *found == id);
        assert_eq!(
            store.read_checkpoint(id).unwrap(),
            expected.map(|(_, checkpoint)| *checkpoint),
            "counter {id}"
        );
    }
    drop(store);
    assert_eq!(format_and_old_keyspace(dir.path()), (5, false));

    // A second open finds format 5 and reads the same.
    let store = EmbeddedStore::open(dir.path(), Durability::Sync).unwrap();
    assert_eq!(scanned_checkpoints(&store), written);
}

#[test]
fn leftover_format_3_checkpoints_dropped() {
    let dir = TempDir::new().unwrap();
    let written = format_3_store(dir.path(), 100, |id| id.is_multiple_of(2));
    drop(EmbeddedStore::open(dir.path(), Durability::Sync).unwrap());
    // As if a conversion had stopped after recording format 5: the old keyspace is back, with
    // a checkpoint that differs from the converted ones.
    {
        let db = Database::builder(dir.path()).open().unwrap();
        let old = db
            .keyspace("checkpoints", KeyspaceCreateOptions::default)
            .unwrap();
        old.insert(2u64.to_be_bytes(), checkpoint_value(&checkpoint(99)))
            .unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }
    assert_eq!(format_and_old_keyspace(dir.path()), (5, true));

    let store = EmbeddedStore::open(dir.path(), Durability::Sync).unwrap();
    assert_eq!(scanned_checkpoints(&store), written);
    drop(store);
    assert_eq!(format_and_old_keyspace(dir.path()), (5, false));
}
