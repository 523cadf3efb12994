//! Tally's domain: names, events, namespace configuration, validation and the fold that turns
//! events into a counter value. Nothing here performs I/O.
//!
//! - [`names`]: [`NamespaceName`] and [`CounterName`], validated on construction.
//! - [`delta`]: strict parsing of a delta from text ([`parse_delta`]).
//! - [`time`]: [`EventTime`], microseconds since the Unix epoch, and RFC 3339 parsing.
//! - [`token`]: [`IdempotencyToken`], the client's retry key.
//! - [`namespace`]: [`NamespaceConfig`] with its defaults and rules.
//! - [`event`]: [`Event`], [`EventKind`] and [`EventKey`], the order of the log.
//! - [`fold`]: [`Fold`] and [`CounterState`], the arithmetic of values, checkpoints and clears.
//! - [`error`]: [`ValidationError`], which names the field and the rule it breaks.

pub mod delta;
pub mod error;
pub mod event;
pub mod fold;
pub mod names;
pub mod namespace;
pub mod time;
pub mod token;

pub use delta::parse_delta;
pub use error::ValidationError;
pub use event::{Event, EventId, EventKey, EventKind};
pub use fold::{CounterState, Fold, TailFold};
pub use names::{CounterName, NamespaceName};
pub use namespace::{CounterType, NamespaceConfig, NamespaceConfigPatch};
pub use time::EventTime;
pub use token::IdempotencyToken;
