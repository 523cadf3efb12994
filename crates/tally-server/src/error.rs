//! Errors of the service layer, shared by every front end.

use std::borrow::Cow;
use tally_core::ValidationError;
use tally_core::fold::OutOfRange;
use tally_storage::StorageError;

/// The reason a request failed. Each variant states whether the change certainly did not happen: only
/// [`ServiceError::Unavailable`] after a write leaves the client unsure, and even then a retry
/// with the same token is safe, because a token is claimed only together with its event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// A field breaks a rule; nothing was written.
    #[error("{0}")]
    Invalid(#[from] ValidationError),

    /// The change would take the value out of the signed 64-bit range; nothing was written.
    #[error("{0}; the value is unchanged")]
    OutOfRange(String),

    #[error("namespace {0:?} not found")]
    NamespaceNotFound(String),

    #[error("counter {counter:?} not found in namespace {namespace:?}")]
    CounterNotFound { namespace: String, counter: String },

    /// The token was used before on this counter with another delta, kind or event time.
    #[error(
        "idempotency token {token:?} was already used on this counter for a different change ({existing}); nothing was written"
    )]
    TokenConflict { token: String, existing: String },

    /// A body, name or batch is over its size limit; nothing was read beyond the limit.
    #[error("{0}")]
    TooLarge(String),

    /// The write queue is full; nothing was written. Retry later with the same token.
    #[error(
        "server overloaded: the write queue is full; retry later with the same idempotency token"
    )]
    Overloaded,

    /// The storage failed; nothing was written, so a retry with the same token is safe.
    #[error(
        "storage failure: {0}; nothing was written, a retry with the same idempotency token is safe"
    )]
    Unavailable(String),
}

impl ServiceError {
    /// Returns a stable, machine-readable code, the same on every front end.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Invalid(_) => "invalid_argument",
            ServiceError::OutOfRange(_) => "out_of_range",
            ServiceError::NamespaceNotFound(_) => "namespace_not_found",
            ServiceError::CounterNotFound { .. } => "counter_not_found",
            ServiceError::TokenConflict { .. } => "token_conflict",
            ServiceError::TooLarge(_) => "too_large",
            ServiceError::Overloaded => "overloaded",
            ServiceError::Unavailable(_) => "unavailable",
        }
    }

    pub fn invalid(field: impl Into<Cow<'static, str>>, rule: impl Into<String>) -> Self {
        ServiceError::Invalid(ValidationError::new(field, rule))
    }

    /// Names an invalid field as part of the batch item at `index`. Other errors stay as they
    /// are, because a batch's results keep the order of its items.
    pub fn in_batch_item(self, index: usize) -> Self {
        match self {
            ServiceError::Invalid(error) => ServiceError::Invalid(error.in_batch_item(index)),
            other => other,
        }
    }
}

impl From<OutOfRange> for ServiceError {
    fn from(error: OutOfRange) -> Self {
        ServiceError::OutOfRange(error.to_string())
    }
}

impl From<StorageError> for ServiceError {
    fn from(error: StorageError) -> Self {
        ServiceError::Unavailable(error.to_string())
    }
}
