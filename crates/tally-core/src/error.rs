//! Validation errors: each names the field and the rule it breaks.

use std::borrow::Cow;

/// A request field that breaks a rule. The message is meant for the client as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {rule}")]
pub struct ValidationError {
    /// The request field, as the client spells it (`delta`, `counter`, `idempotency_token.token`,
    /// `items[2].delta`).
    pub field: Cow<'static, str>,
    /// The rule, with the offending value where it is safe to repeat.
    pub rule: String,
}

impl ValidationError {
    pub fn new(field: impl Into<Cow<'static, str>>, rule: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }

    /// Names the field as part of the batch item at `index`: `delta` becomes `items[2].delta`.
    pub fn in_batch_item(self, index: usize) -> Self {
        Self {
            field: format!("items[{index}].{}", self.field).into(),
            rule: self.rule,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_item_fields_carry_the_index() {
        let error = ValidationError::new("idempotency_token.token", "is required").in_batch_item(7);
        assert_eq!(error.field, "items[7].idempotency_token.token");
        assert_eq!(
            error.to_string(),
            "invalid items[7].idempotency_token.token: is required"
        );
    }
}
