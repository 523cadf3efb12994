//! The arithmetic that turns events into values.
//!
//! A counter's value is the sum of the deltas of its adds ordered after its latest clear, with
//! events ordered by [`EventKey`]. [`Fold`] computes that in one pass over sorted events and is
//! what rollups store in checkpoints. [`CounterState`] is the running value a single node keeps
//! in memory, which accepts events in arrival order, not event-time order.

use crate::{Event, EventKey, EventKind};

/// The fold of a run of events in [`EventKey`] order.
///
/// The sum is an `i128`: the value of a counter always fits in `i64`, but the sum of a prefix of
/// its events in time order need not, because events arrive out of time order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fold {
    /// The sum of the adds after the latest clear of the run (or of the whole run).
    pub sum: i128,
    /// Whether the run contains a clear, so that the fold replaces what came before it.
    pub cleared: bool,
}

impl Fold {
    pub fn apply(&mut self, kind: EventKind) {
        match kind {
            EventKind::Add { delta } => self.sum += i128::from(delta),
            EventKind::Clear => {
                self.sum = 0;
                self.cleared = true;
            }
        }
    }

    /// Combines this fold with the fold of a run of events that all come after it.
    pub fn then(self, later: Fold) -> Fold {
        if later.cleared {
            later
        } else {
            Fold {
                sum: self.sum + later.sum,
                cleared: self.cleared,
            }
        }
    }

    /// Returns the fold of `events` (in any order) after the fold `self`. Every event must lie
    /// after the events that `self` covers.
    pub fn with_events(mut self, events: &[Event]) -> Self {
        let mut sorted = events.to_vec();
        sorted.sort_by_key(|event| event.key);
        for event in sorted {
            self.apply(event.kind);
        }
        self
    }
}

/// The result of a change that would take a value out of the `i64` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the change would take the value to {would_be}, outside the signed 64-bit range")]
pub struct OutOfRange {
    pub would_be: i128,
}

/// A counter's running state on a single node: the exact value plus what is needed to place
/// an event that arrives out of time order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterState {
    pub value: i64,
    /// The latest clear among the events held in the unsealed tail, if any.
    pub latest_clear: Option<EventKey>,
    /// The greatest key of the counter's events in the unsealed tail, if any.
    pub latest_event: Option<EventKey>,
}

/// A counter's unsealed tail, folded one event at a time in [`EventKey`] order, so that a
/// restart can rebuild the state without holding the tail's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TailFold {
    fold: Fold,
    latest_clear: Option<EventKey>,
    latest_event: Option<EventKey>,
}

impl TailFold {
    /// Adds the next event; events must come in increasing key order.
    pub fn push(&mut self, event: Event) {
        debug_assert!(
            self.latest_event < Some(event.key),
            "events out of key order"
        );
        self.fold.apply(event.kind);
        if event.kind == EventKind::Clear {
            self.latest_clear = Some(event.key);
        }
        self.latest_event = Some(event.key);
    }

    /// Returns the state of a counter with this tail after `checkpoint`.
    pub fn state_after(self, checkpoint: Fold) -> Result<CounterState, OutOfRange> {
        let sum = checkpoint.then(self.fold).sum;
        let value = i64::try_from(sum).map_err(|_| OutOfRange { would_be: sum })?;
        Ok(CounterState {
            value,
            latest_clear: self.latest_clear,
            latest_event: self.latest_event,
        })
    }
}

/// The effect of a clear on a counter, decided from the in-memory state alone where possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearEffect {
    /// A later clear exists: the value does not change.
    Superseded,
    /// No event lies after the clear: the value becomes 0.
    ResetsToZero,
    /// Some adds lie after the clear: the value becomes their sum, which the caller must
    /// compute from the log.
    NeedsSumAfter,
}

impl CounterState {
    /// Rebuilds the state from a checkpoint sum and the unsealed tail (in any order).
    pub fn from_checkpoint_and_tail(checkpoint: Fold, tail: &[Event]) -> Result<Self, OutOfRange> {
        let mut sorted = tail.to_vec();
        sorted.sort_by_key(|event| event.key);
        let mut fold = TailFold::default();
        for event in sorted {
            fold.push(event);
        }
        fold.state_after(checkpoint)
    }

    /// Returns the state after an add, or the range error that rejects it.
    pub fn with_add(self, key: EventKey, delta: i64) -> Result<Self, OutOfRange> {
        let counts = self.latest_clear.is_none_or(|clear| key > clear);
        let value = if counts {
            self.value.checked_add(delta).ok_or(OutOfRange {
                would_be: i128::from(self.value) + i128::from(delta),
            })?
        } else {
            self.value
        };
        Ok(Self {
            value,
            latest_clear: self.latest_clear,
            latest_event: self.latest_event.max(Some(key)),
        })
    }

    pub fn clear_effect(&self, key: EventKey) -> ClearEffect {
        if self.latest_clear.is_some_and(|clear| clear > key) {
            ClearEffect::Superseded
        } else if self.latest_event.is_none_or(|latest| latest < key) {
            ClearEffect::ResetsToZero
        } else {
            ClearEffect::NeedsSumAfter
        }
    }

    /// Returns the state after a clear. `sum_after` is the sum of the deltas of the adds after
    /// `key`, needed only when [`Self::clear_effect`] is [`ClearEffect::NeedsSumAfter`].
    pub fn with_clear(
        self,
        key: EventKey,
        sum_after: impl FnOnce() -> i128,
    ) -> Result<Self, OutOfRange> {
        let value = match self.clear_effect(key) {
            ClearEffect::Superseded => self.value,
            ClearEffect::ResetsToZero => 0,
            ClearEffect::NeedsSumAfter => {
                let sum = sum_after();
                i64::try_from(sum).map_err(|_| OutOfRange { would_be: sum })?
            }
        };
        Ok(Self {
            value,
            latest_clear: self.latest_clear.max(Some(key)),
            latest_event: self.latest_event.max(Some(key)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventTime;
    use proptest::prelude::*;

    fn key(time: i64, id: u64) -> EventKey {
        EventKey {
            time: EventTime::from_micros(time),
            id,
        }
    }

    /// Computes a value by its definition: the sum of the adds after the latest clear, in key order.
    fn value_by_definition(events: &[Event]) -> i128 {
        Fold::default().with_events(events).sum
    }

    /// Applies events in arrival order to a `CounterState` and rejects out-of-range changes as the
    /// write path does. Returns the state and the events that were accepted.
    fn apply_in_arrival_order(events: &[Event]) -> (CounterState, Vec<Event>) {
        let mut state = CounterState::default();
        let mut accepted: Vec<Event> = Vec::new();
        for event in events {
            let next = match event.kind {
                EventKind::Add { delta } => state.with_add(event.key, delta),
                EventKind::Clear => state.with_clear(event.key, || {
                    accepted
                        .iter()
                        .filter(|e| e.key > event.key)
                        .map(|e| match e.kind {
                            EventKind::Add { delta } => i128::from(delta),
                            EventKind::Clear => 0,
                        })
                        .sum()
                }),
            };
            if let Ok(next) = next {
                state = next;
                accepted.push(*event);
            }
        }
        (state, accepted)
    }

    fn arbitrary_events() -> impl Strategy<Value = Vec<Event>> {
        let delta = prop_oneof![
            -10i64..10,
            Just(i64::MAX),
            Just(i64::MIN),
            Just(i64::MAX - 1),
            any::<i64>(),
        ];
        let kind = prop_oneof![
            8 => delta.prop_map(|delta| EventKind::Add { delta }),
            1 => Just(EventKind::Clear),
        ];
        prop::collection::vec((0i64..50, kind), 0..60).prop_map(|items| {
            items
                .into_iter()
                .enumerate()
                .map(|(index, (time, kind))| Event {
                    key: key(time, index as u64 + 1),
                    kind,
                })
                .collect()
        })
    }

    proptest! {
        /// Invariant "value is a pure function of the events": the running state equals the
        /// definition over the accepted events, whatever their arrival order.
        #[test]
        fn running_value_matches_definition(events in arbitrary_events()) {
            let (state, accepted) = apply_in_arrival_order(&events);
            prop_assert_eq!(i128::from(state.value), value_by_definition(&accepted));
        }

        /// Invariant "a checkpoint plus its tail equals the whole": folding a sealed prefix
        /// into a checkpoint and rebuilding from it gives the same value.
        #[test]
        fn checkpoint_split_preserves_value(events in arbitrary_events(), seal_at in 0i64..55) {
            let (state, accepted) = apply_in_arrival_order(&events);
            let (sealed, tail): (Vec<Event>, Vec<Event>) = accepted
                .iter()
                .partition(|event| event.key.time.as_micros() < seal_at);
            let checkpoint = Fold::default().with_events(&sealed);
            let rebuilt = CounterState::from_checkpoint_and_tail(checkpoint, &tail).unwrap();
            prop_assert_eq!(rebuilt.value, state.value);
        }

        /// Invariant "rollups compose": folding two consecutive runs separately and combining
        /// them equals folding both at once.
        #[test]
        fn folds_compose(events in arbitrary_events(), split_at in 0i64..55) {
            let (earlier, later): (Vec<Event>, Vec<Event>) = events
                .iter()
                .partition(|event| event.key.time.as_micros() < split_at);
            let combined = Fold::default()
                .with_events(&earlier)
                .then(Fold::default().with_events(&later));
            prop_assert_eq!(combined.sum, value_by_definition(&events));
        }

        /// Invariant "no wrap": every accepted state is in range and an add that overflows
        /// is rejected without changing the state.
        #[test]
        fn add_never_wraps(start in any::<i64>(), delta in any::<i64>()) {
            let state = CounterState { value: start, ..Default::default() };
            match state.with_add(key(1, 1), delta) {
                Ok(next) => prop_assert_eq!(i128::from(next.value), i128::from(start) + i128::from(delta)),
                Err(error) => prop_assert_eq!(error.would_be, i128::from(start) + i128::from(delta)),
            }
        }
    }

    #[test]
    fn clear_then_add_counts_only_after() {
        let state = CounterState::default()
            .with_add(key(1, 1), 6)
            .and_then(|s| s.with_clear(key(2, 2), || 0))
            .and_then(|s| s.with_add(key(3, 3), 6))
            .unwrap();
        assert_eq!(state.value, 6);
    }

    #[test]
    fn late_add_before_clear_does_not_count() {
        let state = CounterState::default()
            .with_clear(key(10, 1), || 0)
            .and_then(|s| s.with_add(key(5, 2), 7))
            .unwrap();
        assert_eq!(state.value, 0);
    }

    #[test]
    fn late_clear_keeps_later_adds() {
        let state = CounterState::default()
            .with_add(key(10, 1), 4)
            .and_then(|s| s.with_add(key(20, 2), 5))
            .unwrap();
        assert_eq!(state.clear_effect(key(15, 3)), ClearEffect::NeedsSumAfter);
        let cleared = state.with_clear(key(15, 3), || 5).unwrap();
        assert_eq!(cleared.value, 5);
    }

    #[test]
    fn maximum_does_not_wrap() {
        let state = CounterState::default()
            .with_add(key(1, 1), i64::MAX)
            .unwrap();
        assert!(state.with_add(key(2, 2), 1).is_err());
        let state = CounterState::default()
            .with_add(key(1, 1), i64::MIN)
            .unwrap();
        assert!(state.with_add(key(2, 2), -1).is_err());
    }
}
