//! Recovery at start: rebuilding every durable counter's running state from its checkpoint and
//! the events of the unsealed tail.

use crate::ServiceError;
use crate::counters::CounterEntry;
use crate::state::SharedState;
use std::collections::HashMap;
use tally_core::{CounterState, Event, EventTime};
use tally_storage::{EventStore, NamespaceRecord};

/// Rebuilds every durable counter's running state from its checkpoint and the unsealed tail.
pub(crate) fn replay(
    store: &dyn EventStore,
    state: &SharedState,
    recovered: &tally_storage::RecoveredState,
    namespaces: &HashMap<tally_storage::NamespaceId, NamespaceRecord>,
) -> Result<u64, ServiceError> {
    let mut tails: HashMap<tally_storage::CounterId, Vec<Event>> = HashMap::new();
    let mut num_events = 0;
    for record in namespaces.values() {
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
    let checkpoints: HashMap<_, _> = recovered.checkpoints.iter().copied().collect();
    for counter in &recovered.counters {
        let Some(namespace) = namespaces.get(&counter.namespace_id) else {
            continue;
        };
        if !namespace.config.counter_type.is_durable() {
            continue;
        }
        let checkpoint = checkpoints
            .get(&counter.id)
            .map(|c| c.fold)
            .unwrap_or_default();
        let tail = tails.remove(&counter.id).unwrap_or_default();
        let counter_state =
            CounterState::from_checkpoint_and_tail(checkpoint, &tail).map_err(|error| {
                ServiceError::Unavailable(format!(
                    "counter {} cannot be rebuilt: {error}",
                    counter.name
                ))
            })?;
        state.counters.insert(
            counter.namespace_id,
            counter.name.as_str(),
            CounterEntry {
                id: counter.id,
                state: counter_state,
            },
        );
    }
    Ok(num_events)
}
