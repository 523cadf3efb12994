//! Rollups: folding sealed windows of the log into checkpoints, then applying retention.
//!
//! A window is sealed once its events are older than the namespace's accept limit, because the
//! write path rejects such events. A rollup first raises the namespace's sealing bound and waits
//! for the writer to drain what it had already accepted. It then folds the events between the
//! previous `sealed_until` and the new one into the checkpoints of their counters. Finally it
//! writes the checkpoints together with the new `sealed_until` atomically. Each event is
//! therefore folded exactly once, and a restart replays only events at or after `sealed_until`.

use crate::ServiceError;
use crate::clock::Clock;
use crate::state::{NamespaceEntry, SharedState};
use crate::writer::WriterHandle;
use std::collections::HashMap;
use std::sync::Arc;
use tally_core::fold::Fold;
use tally_core::{EventId, EventTime};
use tally_storage::{Checkpoint, CounterId, EventStore, NamespaceRecord};
use tracing::{debug, info};

/// Sealing moves in whole steps of this many seconds, so checkpoints are not rewritten for
/// every few events.
const SEAL_STEP_SECONDS: i64 = 1;

/// Counts from one rollup pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupReport {
    pub num_namespaces: usize,
    pub num_events: u64,
    pub num_checkpoints: usize,
    pub num_buckets_dropped: usize,
    pub num_tokens_expired: usize,
}

pub struct Rollup {
    pub store: Arc<dyn EventStore>,
    pub state: Arc<SharedState>,
    pub clock: Arc<dyn Clock>,
    pub writer: WriterHandle,
    /// Serialises changes of namespace records with namespace updates from the API.
    pub namespace_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Rollup {
    /// Rolls up every durable namespace, then drops expired buckets and, when
    /// `expire_tokens` is set, expired tokens.
    pub async fn run_once(&self, expire_tokens: bool) -> Result<RollupReport, ServiceError> {
        let mut report = RollupReport::default();
        for namespace in self.state.all_namespaces() {
            if !namespace.record().config.counter_type.is_durable() {
                continue;
            }
            self.roll_up_namespace(&namespace, expire_tokens, &mut report)
                .await?;
            report.num_namespaces += 1;
        }
        Ok(report)
    }

    async fn roll_up_namespace(
        &self,
        namespace: &Arc<NamespaceEntry>,
        expire_tokens: bool,
        report: &mut RollupReport,
    ) -> Result<(), ServiceError> {
        let _guard = self.namespace_lock.lock().await;
        let now = self.clock.now();
        let config = namespace.record().config;
        let target = now
            .minus_seconds(config.accept_limit_seconds)
            .floor_to(SEAL_STEP_SECONDS);

        if target > namespace.record().sealed_until {
            // IMPORTANT: raise the bound first, then drain the writer, then read the window.
            namespace.raise_sealing_bound(target);
            self.writer.barrier().await?;
            let (num_events, num_checkpoints) = self.seal_window(namespace, target).await?;
            report.num_events += num_events;
            report.num_checkpoints += num_checkpoints;
        }

        let record = namespace.record();
        let retention_bound = now
            .minus_seconds(config.event_retention_seconds)
            .min(record.sealed_until);
        let token_bound = now.minus_seconds(config.idempotency_window_seconds);
        let store = Arc::clone(&self.store);
        let (num_buckets, num_tokens) = tokio::task::spawn_blocking(move || {
            let num_buckets = store.drop_buckets_before(record.id, retention_bound)?;
            let num_tokens = if expire_tokens {
                store.expire_tokens(record.id, token_bound)?
            } else {
                0
            };
            Ok::<_, tally_storage::StorageError>((num_buckets, num_tokens))
        })
        .await
        .map_err(|error| ServiceError::Unavailable(format!("retention task failed: {error}")))??;
        report.num_buckets_dropped += num_buckets;
        report.num_tokens_expired += num_tokens;
        Ok(())
    }

    /// Folds the events in `[sealed_until, target)` into checkpoints and records `target`.
    async fn seal_window(
        &self,
        namespace: &Arc<NamespaceEntry>,
        target: EventTime,
    ) -> Result<(u64, usize), ServiceError> {
        let started = std::time::Instant::now();
        let store = Arc::clone(&self.store);
        let mut record = NamespaceRecord::clone(&namespace.record());
        let from = record.sealed_until;
        record.sealed_until = target;
        let new_record = record.clone();

        let (num_events, checkpoints) = tokio::task::spawn_blocking(move || {
            let (num_events, folds) = fold_window(store.as_ref(), record.id, from, target)?;
            let mut folds: Vec<_> = folds.into_iter().collect();
            folds.sort_unstable_by_key(|(counter_id, _)| *counter_id);
            let counter_ids: Vec<CounterId> = folds.iter().map(|(id, _)| *id).collect();
            let previous = store.read_checkpoints(&counter_ids)?;
            let checkpoints: Vec<_> = folds
                .into_iter()
                .zip(previous)
                .map(|((counter_id, (fold, last_event_id)), previous)| {
                    let next = next_checkpoint(previous, fold, last_event_id, target);
                    (counter_id, next)
                })
                .collect();
            store.write_rollup(&record, &checkpoints)?;
            Ok::<_, tally_storage::StorageError>((num_events, checkpoints.len()))
        })
        .await
        .map_err(|error| ServiceError::Unavailable(format!("rollup task failed: {error}")))??;

        namespace.set_record(new_record.clone());
        if num_events > 0 {
            self.state
                .counters
                .release_sealed_tails(new_record.id, target);
            let elapsed_ms = started.elapsed().as_millis() as u64;
            info!(namespace = %new_record.name, num_events, num_checkpoints = checkpoints, sealed_until = %target, elapsed_ms, "rollup sealed window");
        } else {
            debug!(namespace = %new_record.name, sealed_until = %target, "rollup sealed an empty window");
        }
        Ok((num_events, checkpoints))
    }
}

/// Per counter: the fold of its events in a window and the greatest event ID among them.
pub type WindowFolds = HashMap<CounterId, (Fold, EventId)>;

/// Folds each counter's events in `[from, until)`; returns the number of events and the folds.
pub fn fold_window(
    store: &dyn EventStore,
    namespace_id: tally_storage::NamespaceId,
    from: EventTime,
    until: EventTime,
) -> Result<(u64, WindowFolds), tally_storage::StorageError> {
    let mut folds = WindowFolds::new();
    let mut num_events = 0u64;
    // The scan is in (time, event ID) order, so each counter's events arrive in order too.
    store.scan_events(namespace_id, from, until, &mut |event| {
        num_events += 1;
        let (fold, last_event_id) = folds.entry(event.counter_id).or_default();
        fold.apply(event.kind);
        *last_event_id = (*last_event_id).max(event.key.id);
    })?;
    Ok((num_events, folds))
}

fn next_checkpoint(
    previous: Option<Checkpoint>,
    window: Fold,
    last_event_id: EventId,
    sealed_until: EventTime,
) -> Checkpoint {
    let (base, previous_last_id) =
        previous.map_or((Fold::default(), 0), |c| (c.fold, c.last_event_id));
    Checkpoint {
        fold: base.then(window),
        sealed_until,
        last_event_id: previous_last_id.max(last_event_id),
    }
}
