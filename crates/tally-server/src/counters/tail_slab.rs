//! The keys of the latest events of the counters that have events in the unsealed tail.

use tally_core::{CounterState, EventKey, EventTime};
use tally_storage::NamespaceId;

/// Keys of a counter's latest events, kept while it has events in the unsealed tail.
#[derive(Clone, Copy)]
pub(super) struct TailKeys {
    pub namespace_id: NamespaceId,
    pub latest_clear: Option<EventKey>,
    pub latest_event: Option<EventKey>,
}

impl TailKeys {
    /// Returns the tail keys of a state, or `None` when it has no events in the tail.
    pub fn of(namespace_id: NamespaceId, state: CounterState) -> Option<Self> {
        (state.latest_clear.is_some() || state.latest_event.is_some()).then_some(Self {
            namespace_id,
            latest_clear: state.latest_clear,
            latest_event: state.latest_event,
        })
    }

    fn is_free(&self) -> bool {
        self.latest_clear.is_none() && self.latest_event.is_none()
    }
}

/// A reference to an entry of a [`TailSlab`] as a slot stores it: the entry's index plus one,
/// so that 0 means none.
pub(super) type TailRef = u32;

/// One shard's tail keys, each at a fixed place that the counter's slot refers to, so that a
/// lookup reads it directly instead of hashing the counter ID. Freed places are reused.
#[derive(Default)]
pub(super) struct TailSlab {
    entries: Vec<TailEntry>,
    free: Vec<u32>,
}

#[derive(Clone, Copy)]
struct TailEntry {
    /// Both keys `None` while the place is free.
    keys: TailKeys,
    /// Hash of the counter's slot, to find the slot when a rollup frees the entry.
    slot_hash: u64,
}

impl TailSlab {
    pub fn get(&self, tail: TailRef) -> Option<&TailKeys> {
        let index = usize::try_from(tail).ok()?.checked_sub(1)?;
        Some(&self.entries.get(index)?.keys)
    }

    /// Stores the tail keys of the counter whose slot has `slot_hash` and returns where.
    pub fn insert(&mut self, keys: TailKeys, slot_hash: u64) -> TailRef {
        let entry = TailEntry { keys, slot_hash };
        if let Some(index) = self.free.pop() {
            self.entries[index as usize] = entry;
            return index + 1;
        }
        self.entries.push(entry);
        // A shard contains far fewer than 2^32 counters with tails: its table would not fit in
        // memory.
        self.entries.len() as TailRef
    }

    pub fn replace(&mut self, tail: TailRef, keys: TailKeys) {
        self.entries[tail as usize - 1].keys = keys;
    }

    pub fn remove(&mut self, tail: TailRef) {
        let index = tail - 1;
        let keys = &mut self.entries[index as usize].keys;
        keys.latest_clear = None;
        keys.latest_event = None;
        self.free.push(index);
    }

    pub fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    pub fn reserve(&mut self, additional: usize) {
        self.entries
            .reserve(additional.saturating_sub(self.free.len()));
    }

    /// Frees the entries of the namespace whose latest event lies before `sealed_until`, and
    /// returns the slot hash and reference of each, so that the shard clears their slots.
    pub fn release_sealed(
        &mut self,
        namespace_id: NamespaceId,
        sealed_until: EventTime,
    ) -> Vec<(u64, TailRef)> {
        let mut released = Vec::new();
        for (index, entry) in self.entries.iter().enumerate() {
            let keys = entry.keys;
            let sealed = keys.latest_event.is_none_or(|key| key.time < sealed_until);
            if !keys.is_free() && keys.namespace_id == namespace_id && sealed {
                released.push((entry.slot_hash, index as TailRef + 1));
            }
        }
        for &(_, tail) in &released {
            self.remove(tail);
        }
        released
    }
}
