//! Recovery at start: rebuilding every durable counter's running state from its checkpoint and
//! the events of the unsealed tail.
//!
//! It streams. The tail is folded per counter as the scan visits it in key order, checkpoint
//! folds go into an array indexed by counter ID (IDs are dense), and counters go from the
//! store's scan straight into the table. Nothing is kept per event, and once recovery ends,
//! nothing per counter but the table.

use crate::ServiceError;
use crate::counters::CounterEntry;
use crate::state::SharedState;
use hashbrown::HashMap;
use tally_core::{Event, EventTime, Fold, TailFold};
use tally_storage::{CounterId, EventStore, NamespaceId, NamespaceRecord};
use tracing::debug;

/// Rebuilds every durable counter's running state; returns the number of tail events replayed.
pub(crate) fn replay(
    store: &dyn EventStore,
    state: &SharedState,
    last_counter_id: CounterId,
    namespaces: &std::collections::HashMap<NamespaceId, NamespaceRecord>,
) -> Result<u64, ServiceError> {
    let started = std::time::Instant::now();
    let (tails, num_events) = fold_tails(store, namespaces)?;
    let tail_ms = started.elapsed().as_millis() as u64;
    let checkpoints = checkpoint_folds(store, last_counter_id)?;
    let checkpoint_ms = started.elapsed().as_millis() as u64 - tail_ms;
    state
        .counters
        .reserve(usize::try_from(last_counter_id).unwrap_or(0));
    let mut failure = None;
    // Counters come ordered by namespace, so the previous counter's namespace is nearly always
    // this one's.
    let mut last_namespace = None;
    store.scan_counters(&mut |namespace_id, name, id| {
        let durable = match last_namespace {
            Some((known, durable)) if known == namespace_id => durable,
            _ => {
                let durable = namespaces
                    .get(&namespace_id)
                    .is_some_and(|namespace| namespace.config.counter_type.is_durable());
                last_namespace = Some((namespace_id, durable));
                durable
            }
        };
        if !durable || failure.is_some() {
            return;
        }
        let checkpoint = usize::try_from(id)
            .ok()
            .and_then(|index| checkpoints.get(index).copied())
            .unwrap_or_default();
        let tail = tails.get(&id).copied().unwrap_or_default();
        match tail.state_after(checkpoint) {
            Ok(counter_state) => state.counters.insert_new(
                namespace_id,
                name,
                CounterEntry {
                    id,
                    state: counter_state,
                },
            ),
            Err(error) => {
                failure = Some(ServiceError::Unavailable(format!(
                    "counter {name} cannot be rebuilt: {error}"
                )));
            }
        }
    })?;
    debug!(
        tail_ms,
        checkpoint_ms,
        counter_ms = started.elapsed().as_millis() as u64 - tail_ms - checkpoint_ms,
        "recovery steps"
    );
    match failure {
        Some(error) => Err(error),
        None => Ok(num_events),
    }
}

/// Returns the checkpoint fold of every counter, indexed by counter ID.
fn checkpoint_folds(
    store: &dyn EventStore,
    last_counter_id: CounterId,
) -> Result<Vec<Fold>, ServiceError> {
    let len = usize::try_from(last_counter_id)
        .ok()
        .and_then(|last| last.checked_add(1))
        .ok_or_else(|| {
            ServiceError::Unavailable(format!("counter ID {last_counter_id} is out of range"))
        })?;
    let mut folds = vec![Fold::default(); len];
    let mut stray = None;
    store.scan_checkpoints(&mut |id, checkpoint| match usize::try_from(id)
        .ok()
        .and_then(|id| folds.get_mut(id))
    {
        Some(slot) => *slot = checkpoint.fold,
        None => stray = stray.or(Some(id)),
    })?;
    match stray {
        Some(id) => Err(ServiceError::Unavailable(format!(
            "invalid store: found a checkpoint of counter {id}, beyond the last assigned counter ID {last_counter_id}"
        ))),
        None => Ok(folds),
    }
}

/// Folds the unsealed tail of every namespace per counter.
fn fold_tails(
    store: &dyn EventStore,
    namespaces: &std::collections::HashMap<NamespaceId, NamespaceRecord>,
) -> Result<(HashMap<CounterId, TailFold>, u64), ServiceError> {
    let mut tails: HashMap<CounterId, TailFold> = HashMap::new();
    let mut num_events = 0;
    for record in namespaces.values() {
        if !record.config.counter_type.is_durable() {
            continue;
        }
        store.scan_events(
            record.id,
            record.sealed_until,
            EventTime::from_micros(i64::MAX),
            &mut |event| {
                num_events += 1;
                tails.entry(event.counter_id).or_default().push(Event {
                    key: event.key,
                    kind: event.kind,
                });
            },
        )?;
    }
    Ok((tails, num_events))
}
