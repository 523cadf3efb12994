//! The embedded store's token index, split by event time into partitions: when expiry forgets
//! a token, how a namespace's window sets the span of its partitions, what a reopened store
//! finds, what it estimates without reading the tokens, and how a store of format 4, which kept
//! every token in one keyspace, is read.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use tally_core::{EventKey, EventKind, EventTime, NamespaceConfig, NamespaceName};
use tally_storage::encoding::{token_key, token_value};
use tally_storage::token_partitions::{LEGACY_KEYSPACE, span_seconds};
use tally_storage::{
    AppendBatch, Durability, EmbeddedStore, EventStore, NamespaceId, NamespaceRecord, ScannedToken,
    StoredEvent, TokenEstimate, TokenRecord,
};
use tempfile::TempDir;

/// A multiple of every span used here, so that `at(0)` starts a partition of each.
const BASE_SECONDS: i64 = 1_800_000_000;

/// The span of a namespace with the default window of one hour: 1 minute.
const DEFAULT_SPAN: i64 = 60;

fn at(seconds: i64) -> EventTime {
    EventTime::from_micros(BASE_SECONDS * 1_000_000).plus_seconds(seconds)
}

fn open(path: &Path) -> EmbeddedStore {
    EmbeddedStore::open(path, Durability::Sync).unwrap()
}

/// Appends an add of 1 with `token` to counter 10 of the namespace, at `time`.
fn add_with_token(store: &EmbeddedStore, namespace_id: NamespaceId, time: EventTime, token: &str) {
    let id = next_event_id(store);
    let event = StoredEvent {
        counter_id: 10,
        key: EventKey { time, id },
        kind: EventKind::Add { delta: 1 },
        token: Some(token.into()),
    };
    store
        .append(&AppendBatch {
            events: vec![(namespace_id, event)],
            new_counters: Vec::new(),
            last_event_id: id,
            last_counter_id: 10,
        })
        .unwrap();
}

fn next_event_id(store: &EmbeddedStore) -> u64 {
    store.recover().unwrap().last_event_id + 1
}

fn is_known(store: &EmbeddedStore, namespace_id: NamespaceId, token: &str) -> bool {
    store.find_token(namespace_id, 10, token).unwrap().is_some()
}

fn scanned_tokens(store: &EmbeddedStore) -> Vec<(NamespaceId, String, EventTime)> {
    let mut found = Vec::new();
    store
        .scan_tokens(&mut |token: ScannedToken<'_>| {
            found.push((token.namespace_id, token.token.to_owned(), token.event_time));
        })
        .unwrap();
    found.sort();
    found
}

fn put_namespace(store: &EmbeddedStore, id: NamespaceId, window_seconds: i64) {
    store
        .put_namespace(&NamespaceRecord {
            id,
            name: NamespaceName::parse(&format!("ns{id}")).unwrap(),
            config: NamespaceConfig {
                idempotency_window_seconds: window_seconds,
                ..NamespaceConfig::default()
            },
            sealed_until: at(0),
        })
        .unwrap();
}

#[test]
fn token_kept_until_partition_ends() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path());
    add_with_token(&store, 1, at(10), "early");
    add_with_token(&store, 1, at(DEFAULT_SPAN + 10), "next");

    assert_eq!(store.expire_tokens(1, at(11)).unwrap(), 0);
    assert!(is_known(&store, 1, "early"));

    assert_eq!(store.expire_tokens(1, at(DEFAULT_SPAN)).unwrap(), 1);
    assert!(!is_known(&store, 1, "early"));
    assert!(is_known(&store, 1, "next"));
}

/// The count that expiry reports includes tokens that fjall has moved from the memtable into
/// tables: more tokens than three memtables of the partition hold, across a reopen.
#[test]
fn expiry_counts_tokens_in_tables() {
    const NUM_TOKENS: u64 = 400_000;
    const BATCH: u64 = 10_000;
    let dir = TempDir::new().unwrap();
    let store = open(dir.path());
    // Tokens of 100 bytes make each entry over 120 bytes, so 48 MiB in all.
    for first in (1..=NUM_TOKENS).step_by(usize::try_from(BATCH).unwrap()) {
        let events: Vec<(NamespaceId, StoredEvent)> = (first..first + BATCH)
            .map(|id| {
                let event = StoredEvent {
                    counter_id: 10,
                    key: EventKey { time: at(10), id },
                    kind: EventKind::Add { delta: 1 },
                    token: Some(format!("{id:0>100}").into()),
                };
                (1, event)
            })
            .collect();
        store
            .append(&AppendBatch {
                events,
                new_counters: Vec::new(),
                last_event_id: first + BATCH - 1,
                last_counter_id: 10,
            })
            .unwrap();
    }
    drop(store);
    let store = open(dir.path());

    let expected = usize::try_from(NUM_TOKENS).unwrap();
    assert_eq!(
        store.estimate_tokens().unwrap(),
        Some(vec![estimate(at(0), at(DEFAULT_SPAN), expected)])
    );
    assert_eq!(store.expire_tokens(1, at(DEFAULT_SPAN)).unwrap(), expected);
    assert!(!is_known(&store, 1, &format!("{:0>100}", 1)));
    assert!(!is_known(&store, 1, &format!("{NUM_TOKENS:0>100}")));
}

fn estimate(from: EventTime, until: EventTime, approximate_len: usize) -> TokenEstimate {
    TokenEstimate {
        from,
        until,
        approximate_len,
    }
}

/// The estimate gives each partition's span and number of tokens, in the order of the
/// partitions' namespaces and starts.
#[test]
fn estimate_follows_partitions() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path());
    put_namespace(&store, 2, 60 * 600);
    add_with_token(&store, 1, at(10), "a");
    add_with_token(&store, 1, at(20), "b");
    add_with_token(&store, 1, at(DEFAULT_SPAN + 5), "c");
    add_with_token(&store, 2, at(30), "d");

    let expected = vec![
        estimate(at(0), at(DEFAULT_SPAN), 2),
        estimate(at(DEFAULT_SPAN), at(2 * DEFAULT_SPAN), 1),
        estimate(at(0), at(600), 1),
    ];
    assert_eq!(store.estimate_tokens().unwrap(), Some(expected.clone()));
    drop(store);
    assert_eq!(open(dir.path()).estimate_tokens().unwrap(), Some(expected));
}

#[test]
fn span_follows_namespace_window() {
    let window = 60 * 600;
    assert_eq!(span_seconds(window), 600);
    let dir = TempDir::new().unwrap();
    put_namespace(&open(dir.path()), 2, window);

    let store = open(dir.path());
    add_with_token(&store, 2, at(10), "long");
    add_with_token(&store, 1, at(10), "short");

    // The partition of namespace 2 spans 600 s, that of namespace 1 the default 60 s.
    assert_eq!(store.expire_tokens(2, at(599)).unwrap(), 0);
    assert_eq!(store.expire_tokens(1, at(599)).unwrap(), 1);
    assert!(is_known(&store, 2, "long"));
    assert_eq!(store.expire_tokens(2, at(600)).unwrap(), 1);
    assert!(!is_known(&store, 2, "long"));
}

#[test]
fn old_span_partitions_stay_readable() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path());
    put_namespace(&store, 2, 3600);
    add_with_token(&store, 2, at(10), "before-change");
    put_namespace(&store, 2, 60 * 600);
    // Inside the open 60 s partition, then in a new 600 s partition.
    add_with_token(&store, 2, at(20), "same-partition");
    add_with_token(&store, 2, at(DEFAULT_SPAN), "new-partition");
    drop(store);

    let store = open(dir.path());
    for token in ["before-change", "same-partition", "new-partition"] {
        assert!(is_known(&store, 2, token), "{token}");
    }
    // The 60 s partition ends first. The 600 s one starts at the same multiple of 600.
    assert_eq!(store.expire_tokens(2, at(DEFAULT_SPAN)).unwrap(), 2);
    assert!(is_known(&store, 2, "new-partition"));
    assert_eq!(store.expire_tokens(2, at(599)).unwrap(), 0);
    assert_eq!(store.expire_tokens(2, at(600)).unwrap(), 1);
    assert_eq!(scanned_tokens(&store), []);
}

#[test]
fn late_token_reopens_expired_partition() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path());
    add_with_token(&store, 1, at(10), "first");
    assert_eq!(store.expire_tokens(1, at(DEFAULT_SPAN)).unwrap(), 1);

    // A late token in the span of the deleted partition opens it again.
    add_with_token(&store, 1, at(20), "late");
    drop(store);
    let store = open(dir.path());
    assert!(is_known(&store, 1, "late"));
    assert!(!is_known(&store, 1, "first"));
    assert_eq!(scanned_tokens(&store), [(1, "late".to_owned(), at(20))]);
}

/// Rewrites a new store in `path` as format 4 with `tokens` in the one token keyspace of that
/// format, written with fjall directly.
fn format_4_store(path: &Path, tokens: &[(NamespaceId, &str, EventTime)]) {
    drop(open(path));
    let db = Database::builder(path).open().unwrap();
    let legacy = db
        .keyspace(LEGACY_KEYSPACE, KeyspaceCreateOptions::default)
        .unwrap();
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
    let mut batch = db.batch();
    for (event_id, (namespace_id, token, time)) in (1..).zip(tokens) {
        let record = TokenRecord {
            event_id,
            event_time: *time,
            kind: EventKind::Add { delta: 1 },
        };
        batch.insert(
            &legacy,
            token_key(*namespace_id, 10, token),
            token_value(&record),
        );
    }
    batch.insert(&meta, b"format", 4u32.to_be_bytes());
    batch.commit().unwrap();
    db.persist(PersistMode::SyncAll).unwrap();
}

/// Returns the recorded format and whether the legacy token keyspace exists, read with fjall.
fn format_and_legacy(path: &Path) -> (Vec<u8>, bool) {
    let db = Database::builder(path).open().unwrap();
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
    let format = meta.get(b"format").unwrap().unwrap().to_vec();
    (format, db.keyspace_exists(LEGACY_KEYSPACE))
}

#[test]
fn format_4_tokens_found_and_expired() {
    let dir = TempDir::new().unwrap();
    format_4_store(
        dir.path(),
        &[
            (1, "old", at(10)),
            (1, "recent", at(3600)),
            (2, "other", at(10)),
        ],
    );

    let store = open(dir.path());
    let found = store.find_token(1, 10, "recent").unwrap().unwrap();
    assert_eq!((found.event_id, found.event_time), (2, at(3600)));
    add_with_token(&store, 1, at(3700), "new");
    assert_eq!(
        scanned_tokens(&store),
        [
            (1, "new".to_owned(), at(3700)),
            (1, "old".to_owned(), at(10)),
            (1, "recent".to_owned(), at(3600)),
            (2, "other".to_owned(), at(10)),
        ]
    );

    // Tokens of the legacy keyspace have no span to estimate by.
    assert_eq!(store.estimate_tokens().unwrap(), None);

    // The legacy keyspace expires tokens one by one, exactly at the bound.
    assert_eq!(store.expire_tokens(1, at(11)).unwrap(), 1);
    assert!(!is_known(&store, 1, "old"));
    assert!(is_known(&store, 1, "recent"));
    drop(store);
    assert_eq!(
        format_and_legacy(dir.path()),
        (5u32.to_be_bytes().to_vec(), true)
    );
}

#[test]
fn empty_format_4_keyspace_deleted() {
    let dir = TempDir::new().unwrap();
    format_4_store(dir.path(), &[(1, "old", at(10)), (2, "other", at(20))]);

    let store = open(dir.path());
    assert_eq!(store.expire_tokens(1, at(3600)).unwrap(), 1);
    drop(store);
    assert!(
        format_and_legacy(dir.path()).1,
        "namespace 2 still has a token"
    );

    let store = open(dir.path());
    assert_eq!(store.expire_tokens(2, at(3600)).unwrap(), 1);
    assert_eq!(scanned_tokens(&store), []);
    assert_eq!(store.estimate_tokens().unwrap(), Some(Vec::new()));
    drop(store);
    assert_eq!(
        format_and_legacy(dir.path()),
        (5u32.to_be_bytes().to_vec(), false)
    );
}
