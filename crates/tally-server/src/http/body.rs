//! Parsing of JSON request bodies, with errors that name the field and the rule.

use crate::ServiceError;
use crate::service::{BatchItem, TokenInput};
use serde_json::{Map, Value};
use std::borrow::Cow;
use tally_core::{CounterType, NamespaceConfigPatch, parse_delta};

type Object = Map<String, Value>;

fn parse_object(body: &[u8], allow_empty: bool) -> Result<Object, ServiceError> {
    if allow_empty && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Object::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ServiceError::invalid("body", "must be a JSON object")),
        Err(error) => Err(ServiceError::invalid(
            "body",
            format!("is not valid JSON: {error}"),
        )),
    }
}

fn reject_unknown(
    object: &Object,
    known: &[&str],
    context: impl Into<Cow<'static, str>>,
) -> Result<(), ServiceError> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(unknown) => Err(ServiceError::invalid(
            context,
            format!(
                "unknown field {unknown:?}; the known fields are {}",
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// Reads a delta: a JSON integer, or a string of an optional '-' and decimal digits.
fn parse_delta_value(field: &'static str, value: Option<&Value>) -> Result<i64, ServiceError> {
    let rule = || format!("must be an integer from {} to {}", i64::MIN, i64::MAX);
    match value {
        None => Err(ServiceError::invalid(field, "is required")),
        Some(Value::Number(number)) => number
            .as_i64()
            .ok_or_else(|| ServiceError::invalid(field, rule())),
        Some(Value::String(text)) => {
            parse_delta(text.as_bytes()).map_err(|error| ServiceError::invalid(field, error.rule))
        }
        Some(_) => Err(ServiceError::invalid(field, rule())),
    }
}

fn parse_token_value(value: Option<&Value>) -> Result<Option<TokenInput>, ServiceError> {
    let object = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(object)) => object,
        Some(_) => {
            return Err(ServiceError::invalid(
                "idempotency_token",
                "must be an object {\"token\": string, \"generation_time\": RFC 3339 string}",
            ));
        }
    };
    reject_unknown(object, &["token", "generation_time"], "idempotency_token")?;
    let token = match object.get("token") {
        Some(Value::String(token)) => token.clone(),
        Some(_) => {
            return Err(ServiceError::invalid(
                "idempotency_token.token",
                "must be a string",
            ));
        }
        None => {
            return Err(ServiceError::invalid(
                "idempotency_token.token",
                "is required",
            ));
        }
    };
    let generation_time = match object.get("generation_time") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            return Err(ServiceError::invalid(
                "idempotency_token.generation_time",
                "must be an RFC 3339 string",
            ));
        }
    };
    Ok(Some(TokenInput {
        token,
        generation_time,
    }))
}

pub fn parse_add_body(body: &[u8]) -> Result<(i64, Option<TokenInput>), ServiceError> {
    let object = parse_object(body, false)?;
    reject_unknown(&object, &["delta", "idempotency_token"], "body")?;
    let delta = parse_delta_value("delta", object.get("delta"))?;
    let token = parse_token_value(object.get("idempotency_token"))?;
    Ok((delta, token))
}

pub fn parse_clear_body(body: &[u8]) -> Result<Option<TokenInput>, ServiceError> {
    let object = parse_object(body, true)?;
    reject_unknown(&object, &["idempotency_token"], "body")?;
    parse_token_value(object.get("idempotency_token"))
}

/// Parses a batch body. A malformed item becomes an error in its own place, so the other items
/// are still applied. Only a malformed body or an oversized batch fails the whole request.
pub fn parse_batch_body(body: &[u8]) -> Result<Vec<Result<BatchItem, ServiceError>>, ServiceError> {
    let object = parse_object(body, false)?;
    reject_unknown(&object, &["items"], "body")?;
    let Some(Value::Array(items)) = object.get("items") else {
        return Err(ServiceError::invalid(
            "items",
            "is required and must be an array",
        ));
    };
    if items.len() > crate::service::MAX_BATCH_ITEMS {
        return Err(ServiceError::TooLarge(format!(
            "items: a batch contains at most {} items, got {}",
            crate::service::MAX_BATCH_ITEMS,
            items.len()
        )));
    }
    Ok(items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_batch_item(index, item))
        .collect())
}

/// Parses the item at `index`; an error names its field with the index (`items[2].delta`).
fn parse_batch_item(index: usize, item: &Value) -> Result<BatchItem, ServiceError> {
    let item_field = || format!("items[{index}]");
    let Value::Object(object) = item else {
        return Err(ServiceError::invalid(item_field(), "must be an object"));
    };
    reject_unknown(
        object,
        &["counter", "delta", "idempotency_token"],
        item_field(),
    )?;
    parse_item_fields(object).map_err(|error| error.in_batch_item(index))
}

/// Reads an item's fields; the errors name them without the item's index.
fn parse_item_fields(object: &Object) -> Result<BatchItem, ServiceError> {
    let Some(Value::String(counter)) = object.get("counter") else {
        return Err(ServiceError::invalid(
            "counter",
            "is required and must be a string",
        ));
    };
    Ok(BatchItem {
        counter: counter.clone(),
        delta: parse_delta_value("delta", object.get("delta"))?,
        token: parse_token_value(object.get("idempotency_token"))?,
    })
}

pub fn parse_namespace_patch(body: &[u8]) -> Result<NamespaceConfigPatch, ServiceError> {
    let object = parse_object(body, true)?;
    let durations = [
        "accept_limit_seconds",
        "max_clock_skew_seconds",
        "event_retention_seconds",
        "idempotency_window_seconds",
    ];
    let mut known = vec!["counter_type", "name"];
    known.extend(durations);
    reject_unknown(&object, &known, "body")?;

    let counter_type = match object.get("counter_type") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.parse::<CounterType>()?),
        Some(_) => return Err(ServiceError::invalid("counter_type", "must be a string")),
    };
    let seconds = |field: &'static str| -> Result<Option<i64>, ServiceError> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(number)) => number
                .as_i64()
                .map(Some)
                .ok_or_else(|| ServiceError::invalid(field, "must be a whole number of seconds")),
            Some(_) => Err(ServiceError::invalid(
                field,
                "must be a whole number of seconds",
            )),
        }
    };
    Ok(NamespaceConfigPatch {
        counter_type,
        accept_limit_seconds: seconds("accept_limit_seconds")?,
        max_clock_skew_seconds: seconds("max_clock_skew_seconds")?,
        event_retention_seconds: seconds("event_retention_seconds")?,
        idempotency_window_seconds: seconds("idempotency_window_seconds")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_keeps_all_64_bits() {
        let (delta, _) = parse_add_body(br#"{"delta": 9007199254740993}"#).unwrap();
        assert_eq!(delta, 9_007_199_254_740_993);
        let (delta, _) = parse_add_body(br#"{"delta": "-9223372036854775808"}"#).unwrap();
        assert_eq!(delta, i64::MIN);
    }

    #[test]
    fn delta_rejects_non_integers() {
        for body in [
            r#"{"delta": 1.0}"#,
            r#"{"delta": 1e3}"#,
            r#"{"delta": 9223372036854775808}"#,
            r#"{"delta": -9223372036854775809}"#,
            r#"{"delta": "12abc"}"#,
            r#"{"delta": " 12"}"#,
            r#"{"delta": "0x10"}"#,
            r#"{"delta": true}"#,
            r#"{}"#,
        ] {
            let error = parse_add_body(body.as_bytes()).unwrap_err();
            assert!(
                matches!(&error, ServiceError::Invalid(e) if e.field == "delta"),
                "{body}: {error}"
            );
        }
    }

    #[test]
    fn batch_item_errors_stay_in_place() {
        let body = br#"{"items": [{"counter": "a", "delta": 1}, {"counter": "b", "delta": "x"},
            7, {"counter": "c", "delta": 1, "size": 2}, {"delta": 1},
            {"counter": "d", "delta": 1, "idempotency_token": {"token": 5}}]}"#;
        let items = parse_batch_body(body).unwrap();
        assert_eq!(items.len(), 6);
        assert!(items[0].is_ok());
        let fields: Vec<_> = items[1..]
            .iter()
            .map(|item| match item {
                Err(ServiceError::Invalid(error)) => error.field.to_string(),
                other => panic!("expected a validation error, got {other:?}"),
            })
            .collect();
        assert_eq!(
            fields,
            [
                "items[1].delta",
                "items[2]",
                "items[3]",
                "items[4].counter",
                "items[5].idempotency_token.token",
            ]
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let error = parse_add_body(br#"{"delta": 1, "detla": 2}"#).unwrap_err();
        assert!(error.to_string().contains("detla"));
    }
}
