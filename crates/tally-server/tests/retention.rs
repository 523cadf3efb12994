//! Rollups, retention and token expiry on the embedded store, driven by a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use tally_core::{EventTime, NamespaceConfigPatch};
use tally_server::clock::{Clock, ManualClock};
use tally_server::service::TokenInput;
use tally_server::{Service, ServiceError};
use tally_storage::{Durability, EmbeddedStore, EventStore};

const START_MICROS: i64 = 1_800_000_000_000_000;

struct Node {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    running: Option<(Service, std::thread::JoinHandle<()>, Arc<EmbeddedStore>)>,
}

impl Node {
    fn start() -> Self {
        let mut node = Self {
            dir: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::new(EventTime::from_micros(START_MICROS))),
            running: None,
        };
        node.open();
        node
    }

    fn open(&mut self) {
        let store = Arc::new(EmbeddedStore::open(self.dir.path(), Durability::Sync).unwrap());
        let (service, writer) = Service::open(store.clone(), self.clock.clone(), 64).unwrap();
        self.running = Some((service, writer, store));
    }

    fn restart(&mut self) {
        if let Some((service, writer, store)) = self.running.take() {
            drop(service);
            writer.join().unwrap();
            drop(store);
        }
        self.open();
    }

    fn service(&self) -> &Service {
        &self.running.as_ref().unwrap().0
    }

    fn store(&self) -> &EmbeddedStore {
        &self.running.as_ref().unwrap().2
    }

    fn token(&self, token: &str, time: EventTime) -> Option<TokenInput> {
        Some(TokenInput {
            token: token.into(),
            generation_time: Some(time.to_string()),
        })
    }
}

async fn short_lived_namespace(node: &Node) {
    let patch = NamespaceConfigPatch {
        accept_limit_seconds: Some(60),
        event_retention_seconds: Some(60),
        idempotency_window_seconds: Some(60),
        ..NamespaceConfigPatch::default()
    };
    node.service().put_namespace("short", &patch).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_values_in_checkpoints() {
    let mut node = Node::start();
    short_lived_namespace(&node).await;
    let written_at = node.clock.now();
    node.service()
        .add("short", "c", 5, node.token("a", written_at))
        .await
        .unwrap();
    node.service()
        .add("short", "c", 3, node.token("b", written_at))
        .await
        .unwrap();

    // Two hours later the events are sealed, past retention, and their bucket has ended.
    node.clock.advance_seconds(2 * 3600);
    let report = node.service().roll_up_now().await.unwrap();
    assert_eq!(report.num_events, 2, "{report:?}");
    assert_eq!(report.num_checkpoints, 1, "{report:?}");
    assert!(report.num_buckets_dropped >= 1, "{report:?}");
    assert_eq!(report.num_tokens_expired, 2, "{report:?}");

    // The raw events are gone; the value lives on in the checkpoint, also after a restart.
    // `default` is namespace 1, so the first namespace created is 2.
    let namespace_id = 2;
    let mut remaining = 0;
    node.store()
        .scan_events(
            namespace_id,
            EventTime::MIN,
            EventTime::from_micros(i64::MAX),
            &mut |_| remaining += 1,
        )
        .unwrap();
    assert_eq!(remaining, 0, "dropped bucket still holds events");
    assert_eq!(node.service().get("short", "c"), Ok(8));
    node.restart();
    assert_eq!(node.service().get("short", "c"), Ok(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_rejected_not_recounted() {
    let mut node = Node::start();
    short_lived_namespace(&node).await;
    let written_at = node.clock.now();
    node.service()
        .add("short", "c", 5, node.token("a", written_at))
        .await
        .unwrap();

    node.clock.advance_seconds(3600);
    node.service().roll_up_now().await.unwrap();
    node.restart();

    // The token is forgotten, but its event time is older than the accept limit, so the late
    // retry is rejected instead of counted a second time.
    let retry = node
        .service()
        .add("short", "c", 5, node.token("a", written_at))
        .await;
    assert!(
        matches!(&retry, Err(ServiceError::Invalid(error)) if error.rule.contains("accept limit")),
        "{retry:?}"
    );
    assert_eq!(node.service().get("short", "c"), Ok(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_waits_for_rollup() {
    let node = Node::start();
    let patch = NamespaceConfigPatch {
        accept_limit_seconds: Some(7200),
        event_retention_seconds: Some(7200),
        idempotency_window_seconds: Some(7200),
        ..NamespaceConfigPatch::default()
    };
    node.service().put_namespace("long", &patch).await.unwrap();
    node.service()
        .add("long", "c", 4, node.token("a", node.clock.now()))
        .await
        .unwrap();

    // One hour later the bucket has ended but its events are not sealed: nothing is dropped.
    node.clock.advance_seconds(3600 + 60);
    let report = node.service().roll_up_now().await.unwrap();
    assert_eq!(report.num_buckets_dropped, 0, "{report:?}");
    assert_eq!(report.num_events, 0, "{report:?}");
    assert_eq!(node.service().get("long", "c"), Ok(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_window_rejects_late_events() {
    let node = Node::start();
    short_lived_namespace(&node).await;
    let early = node.clock.now();
    node.clock.advance_seconds(61);
    node.service().roll_up_now().await.unwrap();

    // Even if the namespace's accept limit grows later, a sealed window stays closed.
    let patch = NamespaceConfigPatch {
        accept_limit_seconds: Some(600),
        event_retention_seconds: Some(600),
        idempotency_window_seconds: Some(600),
        ..NamespaceConfigPatch::default()
    };
    node.service().put_namespace("short", &patch).await.unwrap();
    let late = node
        .service()
        .add("short", "c", 1, node.token("late", early))
        .await;
    assert!(
        matches!(&late, Err(ServiceError::Invalid(error)) if error.rule.contains("rolled up")),
        "{late:?}"
    );
    assert!(matches!(
        node.service().get("short", "c"),
        Err(ServiceError::CounterNotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_releases_tail_keys_without_changing_values() {
    let mut node = Node::start();
    short_lived_namespace(&node).await;
    let first = node.clock.now();
    let service = node.service();
    service
        .add("short", "a", 5, node.token("a1", first))
        .await
        .unwrap();
    service
        .clear("short", "a", node.token("a2", first.plus_seconds(1)))
        .await
        .unwrap();
    service
        .add("short", "a", 7, node.token("a3", first.plus_seconds(2)))
        .await
        .unwrap();
    service
        .add("short", "b", 4, node.token("b1", first))
        .await
        .unwrap();
    assert_eq!(node.service().num_tail_counters(), 2);

    node.clock.advance_seconds(120);
    let report = node.service().roll_up_now().await.unwrap();
    assert_eq!(report.num_events, 4, "{report:?}");
    assert_eq!(node.service().num_tail_counters(), 0);
    assert_eq!(node.service().get("short", "a"), Ok(7));

    // New events after the sealed window: the clear resets, the add after it counts.
    let now = node.clock.now();
    let service = node.service();
    service
        .add("short", "a", 1, node.token("a4", now))
        .await
        .unwrap();
    service
        .clear("short", "a", node.token("a5", now.plus_seconds(1)))
        .await
        .unwrap();
    service
        .add("short", "a", 2, node.token("a6", now.plus_seconds(2)))
        .await
        .unwrap();
    // An add out of time order, before the clear of b: it does not count.
    service
        .clear("short", "b", node.token("b2", now))
        .await
        .unwrap();
    service
        .add("short", "b", 3, node.token("b3", now.minus_seconds(1)))
        .await
        .unwrap();
    assert_eq!(node.service().get("short", "a"), Ok(2));
    assert_eq!(node.service().get("short", "b"), Ok(0));
    assert_eq!(node.service().num_tail_counters(), 2);

    node.restart();
    assert_eq!(node.service().get("short", "a"), Ok(2));
    assert_eq!(node.service().get("short", "b"), Ok(0));
}

/// After a restart the writer reads the stored tokens of the longest idempotency window of any
/// namespace into its token filter, so a token older than the default hour but inside a
/// namespace's two-hour window is still recognised once the filter is in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_in_long_window_found_after_restart() {
    let mut node = Node::start();
    let patch = NamespaceConfigPatch {
        accept_limit_seconds: Some(7200),
        idempotency_window_seconds: Some(7200),
        ..NamespaceConfigPatch::default()
    };
    node.service().put_namespace("long", &patch).await.unwrap();
    let written_at = node.clock.now();
    node.service()
        .add("long", "c", 5, node.token("a", written_at))
        .await
        .unwrap();

    node.clock.advance_seconds(5000);
    node.restart();
    // The writer takes the loader's result at a group commit at least a second after its
    // previous check, so give the loader time, then move the clock and write.
    for warm_up in ["w1", "w2"] {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        node.clock.advance_seconds(2);
        let token = node.token(warm_up, node.clock.now());
        node.service().add("long", "other", 1, token).await.unwrap();
    }

    let retry = node
        .service()
        .add("long", "c", 5, node.token("a", written_at))
        .await
        .unwrap();
    assert!(retry.duplicate, "{retry:?}");
    assert_eq!(node.service().get("long", "c"), Ok(5));
}
