//! Warnings about slow group commits. Every client whose change is in a group commit waits
//! for the whole commit, so one slow commit shows as a latency spike on every front end.

use std::time::{Duration, Instant};
use tracing::warn;

/// A group commit that takes at least this long logs a warning.
const SLOW_GROUP_COMMIT: Duration = Duration::from_millis(100);

/// Shortest time between two warnings. The next warning counts the slow commits in between.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// How long each phase of one group commit took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitTiming {
    /// Changes and reads that the commit decided. Barriers do not count.
    pub num_operations: usize,
    /// Looking up counters and tokens, and deciding every change.
    pub decide: Duration,
    /// Writing the batch to the store, with its sync.
    pub write: Duration,
    /// Publishing the new counter states and sending the replies.
    pub publish: Duration,
}

impl CommitTiming {
    pub fn total(&self) -> Duration {
        self.decide + self.write + self.publish
    }
}

/// A slow commit to log, with the number of slow commits since the last warning that were
/// not logged.
#[derive(Debug, PartialEq, Eq)]
pub struct SlowCommitWarning {
    pub timing: CommitTiming,
    pub num_unlogged: u64,
}

/// Decides which slow commits to log, at most one per [`WARNING_INTERVAL`].
#[derive(Debug, Default)]
pub struct SlowCommitLog {
    last_warning: Option<Instant>,
    num_unlogged: u64,
}

impl SlowCommitLog {
    /// Logs a warning for `timing` when the commit was slow and no warning was logged within
    /// the last [`WARNING_INTERVAL`].
    pub fn observe(&mut self, timing: CommitTiming) {
        if let Some(warning) = self.record(timing, Instant::now()) {
            warning.log();
        }
    }

    /// Returns the warning to log for a commit that finished at `now`, if any.
    fn record(&mut self, timing: CommitTiming, now: Instant) -> Option<SlowCommitWarning> {
        if timing.total() < SLOW_GROUP_COMMIT {
            return None;
        }
        let recently_warned = self
            .last_warning
            .is_some_and(|last| now.duration_since(last) < WARNING_INTERVAL);
        if recently_warned {
            self.num_unlogged += 1;
            return None;
        }
        self.last_warning = Some(now);
        Some(SlowCommitWarning {
            timing,
            num_unlogged: std::mem::take(&mut self.num_unlogged),
        })
    }
}

impl SlowCommitWarning {
    fn log(&self) {
        let timing = self.timing;
        warn!(
            num_operations = timing.num_operations,
            decide_ms = timing.decide.as_millis() as u64,
            write_and_sync_ms = timing.write.as_millis() as u64,
            publish_ms = timing.publish.as_millis() as u64,
            num_unlogged_slow_commits = self.num_unlogged,
            "a group commit took {} ms, so its clients waited that long. A long write_and_sync_ms \
             points to the disk, and a long decide_ms or publish_ms to CPU or memory pressure",
            timing.total().as_millis()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(decide_ms: u64, write_ms: u64) -> CommitTiming {
        CommitTiming {
            num_operations: 10,
            decide: Duration::from_millis(decide_ms),
            write: Duration::from_millis(write_ms),
            publish: Duration::from_millis(1),
        }
    }

    #[test]
    fn fast_commit_not_logged() {
        let mut log = SlowCommitLog::default();
        let now = Instant::now();

        assert_eq!(log.record(timing(1, 97), now), None);
        assert_eq!(log.num_unlogged, 0);
    }

    #[test]
    fn slow_commit_logged_with_phases() {
        let mut log = SlowCommitLog::default();
        let slow = timing(2, 150);

        let warning = log.record(slow, Instant::now());

        assert_eq!(
            warning,
            Some(SlowCommitWarning {
                timing: slow,
                num_unlogged: 0
            })
        );
        assert_eq!(slow.total(), Duration::from_millis(153));
    }

    #[test]
    fn warnings_limited_per_interval() {
        let mut log = SlowCommitLog::default();
        let start = Instant::now();
        let slow = timing(120, 0);

        assert!(log.record(slow, start).is_some());
        assert_eq!(log.record(slow, start + Duration::from_secs(1)), None);
        assert_eq!(
            log.record(timing(1, 1), start + Duration::from_secs(2)),
            None
        );
        assert_eq!(log.record(slow, start + Duration::from_secs(9)), None);

        let next = log.record(slow, start + WARNING_INTERVAL);
        assert_eq!(next.map(|warning| warning.num_unlogged), Some(2));
        assert_eq!(log.num_unlogged, 0);
    }
}
