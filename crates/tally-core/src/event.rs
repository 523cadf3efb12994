//! Events: the immutable changes that make up the log.

use crate::EventTime;

/// A server-assigned, strictly increasing sequence number of the log.
pub type EventId = u64;

/// The change an event makes to its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Add { delta: i64 },
    Clear,
}

/// The position of an event in its counter's history: events are ordered by event time, and
/// events with equal times by event ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey {
    pub time: EventTime,
    pub id: EventId,
}

/// One change of one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub key: EventKey,
    pub kind: EventKind,
}
