//! The source of "now", replaceable in tests.

use std::sync::atomic::{AtomicI64, Ordering};
use tally_core::EventTime;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> EventTime;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> EventTime {
        EventTime::now()
    }
}

/// A clock that moves only when a test moves it.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: EventTime) -> Self {
        Self(AtomicI64::new(start.as_micros()))
    }

    pub fn advance_seconds(&self, seconds: i64) {
        self.0.fetch_add(seconds * 1_000_000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> EventTime {
        EventTime::from_micros(self.0.load(Ordering::SeqCst))
    }
}
