//! Validation errors: each names the field and the rule it breaks.

/// A request field that breaks a rule. The message is meant for the client as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {rule}")]
pub struct ValidationError {
    /// The request field, as the client spells it (`delta`, `counter`, `idempotency_token.token`).
    pub field: &'static str,
    /// The rule, with the offending value where it is safe to repeat.
    pub rule: String,
}

impl ValidationError {
    pub fn new(field: &'static str, rule: impl Into<String>) -> Self {
        Self {
            field,
            rule: rule.into(),
        }
    }
}
