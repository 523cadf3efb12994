//! Recovery at start: rebuilding every durable counter's running state from its checkpoint and
//! the events of the unsealed tail.
//!
//! It streams: the tail is folded per counter as the scan visits it in key order, checkpoints
//! are found by binary search in the sorted list the store returns, and counters go from the
//! store's scan straight into the table. Nothing is kept per event, and nothing per counter
//! beyond the table itself and the folds of counters with a tail.

use crate::ServiceError;
use crate::counters::CounterEntry;
use crate::state::SharedState;
use hashbrown::HashMap;
use tally_core::{Event, EventTime, TailFold};
use tally_storage::{Checkpoint, CounterId, EventStore, NamespaceId, NamespaceRecord};

/// Rebuilds every durable counter's running state; returns the number of tail events replayed.
pub(crate) fn replay(
    store: &dyn EventStore,
    state: &SharedState,
    checkpoints: &[(CounterId, Checkpoint)],
    namespaces: &std::collections::HashMap<NamespaceId, NamespaceRecord>,
) -> Result<u64, ServiceError> {
    let (tails, num_events) = fold_tails(store, namespaces)?;
    let mut failure = None;
    store.scan_counters(&mut |namespace_id, name, id| {
        let durable = namespaces
            .get(&namespace_id)
            .is_some_and(|namespace| namespace.config.counter_type.is_durable());
        if !durable || failure.is_some() {
            return;
        }
        let checkpoint = checkpoints
            .binary_search_by_key(&id, |(counter_id, _)| *counter_id)
            .map(|index| checkpoints[index].1.fold)
            .unwrap_or_default();
        let tail = tails.get(&id).copied().unwrap_or_default();
        match tail.state_after(checkpoint) {
            Ok(counter_state) => state.counters.insert(
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
    match failure {
        Some(error) => Err(error),
        None => Ok(num_events),
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
