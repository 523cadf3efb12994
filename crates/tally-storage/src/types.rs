//! The records that a store keeps.

use tally_core::fold::Fold;
use tally_core::{
    CounterName, EventId, EventKey, EventKind, EventTime, NamespaceConfig, NamespaceName,
};

/// A namespace's number, assigned at creation; keys of the store use it in place of the name.
pub type NamespaceId = u32;

/// A counter's number, assigned when its first event is written.
pub type CounterId = u64;

/// Length of a time slice. Within a bucket, the embedded store writes the events of one group
/// commit that fall into the same slice as one record. A commit then costs a few writes instead
/// of one per event, and a range scan still reads only the slices it needs.
pub const SLICE_SECONDS: i64 = 1;

/// Length of a time bucket. The log of each namespace is split into buckets of this length
/// by event time, so retention drops whole buckets and a range scan touches few of them.
pub const BUCKET_SECONDS: i64 = 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRecord {
    pub id: NamespaceId,
    pub name: NamespaceName,
    pub config: NamespaceConfig,
    /// Events with an earlier time are folded into checkpoints; no new event may lie before it.
    pub sealed_until: EventTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterRecord {
    pub id: CounterId,
    pub namespace_id: NamespaceId,
    pub name: CounterName,
}

/// A counter as a start reads it: its identity and the checkpoint of its latest rollup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedCounter<'a> {
    pub id: CounterId,
    pub namespace_id: NamespaceId,
    pub name: &'a str,
    /// `None` until a rollup has sealed some of the counter's events.
    pub checkpoint: Option<Checkpoint>,
}

/// A stored token as a scan of the token index reads it, without copying the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedToken<'a> {
    pub namespace_id: NamespaceId,
    pub counter_id: CounterId,
    pub token: &'a str,
    pub event_time: EventTime,
}

/// An estimate, from the store's metadata, of how many tokens have event times in
/// `[from, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenEstimate {
    pub from: EventTime,
    pub until: EventTime,
    pub approximate_len: usize,
}

/// One event of the log with what identifies its counter and its retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub counter_id: CounterId,
    pub key: EventKey,
    pub kind: EventKind,
    /// The client's idempotency token, or `None` when the client sent none. Only client tokens
    /// are indexed, because a client cannot retry with a token it never received.
    pub token: Option<Box<str>>,
}

/// The change that claimed a token, kept to tell a retry from a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRecord {
    pub event_id: EventId,
    pub event_time: EventTime,
    pub kind: EventKind,
}

/// The fold of a counter's events with times before `sealed_until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub fold: Fold,
    pub sealed_until: EventTime,
    /// The greatest event ID folded in, for audits; events are selected by time, not by ID.
    pub last_event_id: EventId,
}

/// One group commit: events with their tokens, and the counters they create, written
/// atomically.
#[derive(Debug, Clone, Default)]
pub struct AppendBatch {
    pub events: Vec<(NamespaceId, StoredEvent)>,
    pub new_counters: Vec<CounterRecord>,
    /// The greatest event ID assigned so far, including this batch.
    pub last_event_id: EventId,
    /// The greatest counter ID assigned so far, including this batch.
    pub last_counter_id: CounterId,
}

/// The state a server loads at start, before it visits checkpoints and counters and replays
/// the unsealed tail.
#[derive(Debug, Clone, Default)]
pub struct RecoveredState {
    pub namespaces: Vec<NamespaceRecord>,
    pub last_event_id: EventId,
    pub last_counter_id: CounterId,
}

/// Returns the start of the bucket that contains `time`.
pub fn bucket_of(time: EventTime) -> EventTime {
    time.floor_to(BUCKET_SECONDS)
}

/// Returns the start of the slice that contains `time`.
pub fn slice_of(time: EventTime) -> EventTime {
    time.floor_to(SLICE_SECONDS)
}
