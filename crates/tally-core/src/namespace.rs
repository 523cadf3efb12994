//! Namespace configuration: counter type, time limits and retention, with their defaults.

use crate::ValidationError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

const HOUR_SECONDS: i64 = 3600;
const DAY_SECONDS: i64 = 24 * HOUR_SECONDS;

/// The storage of a namespace's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterType {
    /// Event log plus rollups. On a single node reads are exact; with several nodes they may lag
    /// by the rollup interval.
    Eventual,
    /// Event log plus rollups; reads add the live sum of the unsealed tail to the checkpoint.
    Accurate,
    /// In memory only: no log, no idempotency, lost on restart.
    BestEffort,
}

impl CounterType {
    pub const fn is_durable(self) -> bool {
        !matches!(self, CounterType::BestEffort)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            CounterType::Eventual => "eventual",
            CounterType::Accurate => "accurate",
            CounterType::BestEffort => "best_effort",
        }
    }
}

impl fmt::Display for CounterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CounterType {
    type Err = ValidationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "eventual" => Ok(CounterType::Eventual),
            "accurate" => Ok(CounterType::Accurate),
            "best_effort" => Ok(CounterType::BestEffort),
            _ => Err(ValidationError::new(
                "counter_type",
                format!("must be one of eventual, accurate, best_effort, got {text:?}"),
            )),
        }
    }
}

/// The configuration of one namespace. All durations are whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceConfig {
    pub counter_type: CounterType,
    /// How far in the past an event time may lie. Older events are rejected, so windows older
    /// than this are sealed and rolled up.
    pub accept_limit_seconds: i64,
    /// How far in the future an event time may lie, to absorb client clock drift.
    pub max_clock_skew_seconds: i64,
    /// How long events stay in the log after they are rolled up, for recounts and audits.
    pub event_retention_seconds: i64,
    /// How long a token is remembered, counted from its event time.
    pub idempotency_window_seconds: i64,
}

/// Limits on the configuration values, with the reason for each.
pub mod limits {
    /// Restart replays the unsealed tail, which spans the accept limit: one week at most.
    pub const MAX_ACCEPT_LIMIT_SECONDS: i64 = 7 * super::DAY_SECONDS;
    /// A clock further off than one hour is a broken clock, not drift.
    pub const MAX_CLOCK_SKEW_SECONDS: i64 = super::HOUR_SECONDS;
    /// Ten years of raw events.
    pub const MAX_EVENT_RETENTION_SECONDS: i64 = 3650 * super::DAY_SECONDS;
    /// Every token costs disk space until it expires: thirty days at most.
    pub const MAX_IDEMPOTENCY_WINDOW_SECONDS: i64 = 30 * super::DAY_SECONDS;
}

impl Default for NamespaceConfig {
    /// Defaults:
    /// - `eventual`: durable, and exact on a single node.
    /// - accept limit 10 minutes: covers client retries with backoff and ordinary clock drift,
    ///   while restart replays at most about ten minutes of events.
    /// - clock skew 1 minute: NTP-synchronised clocks differ by far less.
    /// - retention 7 days: a week of raw events allows a recount after an incident.
    /// - idempotency window 1 hour: retries arriving up to an hour late still succeed without
    ///   counting twice; it is at least the accept limit, so an expired token's event time
    ///   is always rejected as too old and can never be counted a second time.
    fn default() -> Self {
        Self {
            counter_type: CounterType::Eventual,
            accept_limit_seconds: 600,
            max_clock_skew_seconds: 60,
            event_retention_seconds: 7 * DAY_SECONDS,
            idempotency_window_seconds: HOUR_SECONDS,
        }
    }
}

/// A change to a namespace's configuration: unset fields keep their current value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceConfigPatch {
    pub counter_type: Option<CounterType>,
    pub accept_limit_seconds: Option<i64>,
    pub max_clock_skew_seconds: Option<i64>,
    pub event_retention_seconds: Option<i64>,
    pub idempotency_window_seconds: Option<i64>,
}

impl NamespaceConfig {
    /// Applies `patch` to `current` (or to the defaults for a new namespace) and validates
    /// the result. The counter type of an existing namespace cannot change, because its
    /// counters live in different stores.
    pub fn apply_patch(
        current: Option<&NamespaceConfig>,
        patch: &NamespaceConfigPatch,
    ) -> Result<NamespaceConfig, ValidationError> {
        let base = current.copied().unwrap_or_default();
        if let (Some(current), Some(requested)) = (current, patch.counter_type)
            && requested != current.counter_type
        {
            return Err(ValidationError::new(
                "counter_type",
                format!(
                    "cannot change after the namespace is created (it is {}, the request asks for {requested})",
                    current.counter_type
                ),
            ));
        }

        let config = NamespaceConfig {
            counter_type: patch.counter_type.unwrap_or(base.counter_type),
            accept_limit_seconds: patch
                .accept_limit_seconds
                .unwrap_or(base.accept_limit_seconds),
            max_clock_skew_seconds: patch
                .max_clock_skew_seconds
                .unwrap_or(base.max_clock_skew_seconds),
            event_retention_seconds: patch
                .event_retention_seconds
                .unwrap_or(base.event_retention_seconds),
            idempotency_window_seconds: patch
                .idempotency_window_seconds
                .unwrap_or(base.idempotency_window_seconds),
        };
        config
            .validate()
            .map_err(|error| explain_unset_field(error, patch, current.is_some()))?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        check_range(
            "accept_limit_seconds",
            self.accept_limit_seconds,
            1,
            limits::MAX_ACCEPT_LIMIT_SECONDS,
        )?;
        check_range(
            "max_clock_skew_seconds",
            self.max_clock_skew_seconds,
            0,
            limits::MAX_CLOCK_SKEW_SECONDS,
        )?;
        check_range(
            "event_retention_seconds",
            self.event_retention_seconds,
            self.accept_limit_seconds,
            limits::MAX_EVENT_RETENTION_SECONDS,
        )?;
        check_range(
            "idempotency_window_seconds",
            self.idempotency_window_seconds,
            self.accept_limit_seconds,
            limits::MAX_IDEMPOTENCY_WINDOW_SECONDS,
        )
    }
}

/// Explains a range error on a field that the patch left unset: its value came from the
/// namespace or the defaults, not from the client.
fn explain_unset_field(
    mut error: ValidationError,
    patch: &NamespaceConfigPatch,
    exists: bool,
) -> ValidationError {
    let set_by_patch = match error.field.as_ref() {
        "accept_limit_seconds" => patch.accept_limit_seconds.is_some(),
        "max_clock_skew_seconds" => patch.max_clock_skew_seconds.is_some(),
        "event_retention_seconds" => patch.event_retention_seconds.is_some(),
        "idempotency_window_seconds" => patch.idempotency_window_seconds.is_some(),
        _ => true,
    };
    if !set_by_patch {
        let origin = if exists {
            "the namespace's current value"
        } else {
            "the default"
        };
        error.rule = format!(
            "{} ({origin}, which the request did not set; set {} too)",
            error.rule, error.field
        );
    }
    error
}

fn check_range(field: &'static str, value: i64, min: i64, max: i64) -> Result<(), ValidationError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    let rule = if min > 1 && field != "accept_limit_seconds" {
        format!("must be from {min} (the accept limit) to {max}, got {value}")
    } else {
        format!("must be from {min} to {max}, got {value}")
    };
    Err(ValidationError::new(field, rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(NamespaceConfig::default().validate(), Ok(()));
    }

    #[test]
    fn patch_keeps_unset_fields() {
        let patch = NamespaceConfigPatch {
            accept_limit_seconds: Some(30),
            ..Default::default()
        };
        let config = NamespaceConfig::apply_patch(None, &patch).unwrap();
        assert_eq!(config.accept_limit_seconds, 30);
        assert_eq!(
            config.event_retention_seconds,
            NamespaceConfig::default().event_retention_seconds
        );
    }

    #[test]
    fn idempotency_window_covers_accept_limit() {
        let patch = NamespaceConfigPatch {
            accept_limit_seconds: Some(7200),
            idempotency_window_seconds: Some(3600),
            ..Default::default()
        };
        let error = NamespaceConfig::apply_patch(None, &patch).unwrap_err();
        assert_eq!(error.field, "idempotency_window_seconds");
    }

    #[test]
    fn unset_field_error_names_its_origin() {
        let patch = NamespaceConfigPatch {
            accept_limit_seconds: Some(7200),
            ..Default::default()
        };
        let for_new = NamespaceConfig::apply_patch(None, &patch).unwrap_err();
        assert_eq!(for_new.field, "idempotency_window_seconds");
        assert!(
            for_new.rule.contains("got 3600 (the default"),
            "{}",
            for_new.rule
        );
        assert!(
            for_new.rule.contains("set idempotency_window_seconds too"),
            "{}",
            for_new.rule
        );

        let current = NamespaceConfig::default();
        let for_existing = NamespaceConfig::apply_patch(Some(&current), &patch).unwrap_err();
        assert!(
            for_existing.rule.contains("(the namespace's current value"),
            "{}",
            for_existing.rule
        );

        let explicit = NamespaceConfigPatch {
            idempotency_window_seconds: Some(3600),
            ..patch
        };
        let for_explicit = NamespaceConfig::apply_patch(None, &explicit).unwrap_err();
        assert!(
            !for_explicit.rule.contains("did not set"),
            "{}",
            for_explicit.rule
        );
    }

    #[test]
    fn counter_type_is_fixed() {
        let current = NamespaceConfig::default();
        let patch = NamespaceConfigPatch {
            counter_type: Some(CounterType::BestEffort),
            ..Default::default()
        };
        let error = NamespaceConfig::apply_patch(Some(&current), &patch).unwrap_err();
        assert_eq!(error.field, "counter_type");
    }
}
