//! Byte layout of the embedded store. Integers are big-endian so that byte order is numeric
//! order; signed integers have their sign bit flipped for the same reason.
//!
//! | keyspace | key | value |
//! | --- | --- | --- |
//! | `meta` | `format`, `last_event_id`, `last_counter_id` | u32 / u64 |
//! | `namespaces` | name | id u32, sealed_until i64, counter type u8, four durations i64 |
//! | `counters` | namespace id u32, name | counter id u64 |
//! | `checkpoints` | counter id u64 | sum i128, cleared u8, sealed_until i64, last event ID u64 |
//! | `tokens` | namespace id u32, counter id u64, token | event time i64, event ID u64, kind u8, delta i64 |
//! | `events_{namespace id}_{bucket start}` | event time i64, event ID u64 | counter id u64, kind u8, delta i64, token |

use crate::StorageError;
use crate::types::{Checkpoint, CounterId, NamespaceId, NamespaceRecord, StoredEvent, TokenRecord};
use tally_core::fold::Fold;
use tally_core::{CounterType, EventKey, EventKind, EventTime, NamespaceConfig, NamespaceName};

const KIND_ADD: u8 = 1;
const KIND_CLEAR: u8 = 2;

/// Reads big-endian fields from a value, failing with [`StorageError::Corrupt`] when it is short.
pub struct Reader<'a> {
    bytes: &'a [u8],
    keyspace: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(keyspace: &'static str, bytes: &'a [u8]) -> Self {
        Self { bytes, keyspace }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], StorageError> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<N>() else {
            return Err(self.corrupt(format!("record ends early, expected {N} more bytes")));
        };
        self.bytes = rest;
        Ok(*head)
    }

    pub fn u8(&mut self) -> Result<u8, StorageError> {
        Ok(self.take::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32, StorageError> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    pub fn u64(&mut self) -> Result<u64, StorageError> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    pub fn i64(&mut self) -> Result<i64, StorageError> {
        Ok(decode_ordered_i64(self.take()?))
    }

    pub fn i128(&mut self) -> Result<i128, StorageError> {
        Ok(i128::from_be_bytes(self.take()?))
    }

    pub fn rest_utf8(self) -> Result<&'a str, StorageError> {
        std::str::from_utf8(self.bytes).map_err(|_| self.corrupt("text is not valid UTF-8".into()))
    }

    pub fn corrupt(&self, detail: String) -> StorageError {
        StorageError::Corrupt {
            keyspace: self.keyspace.to_owned(),
            detail,
        }
    }
}

pub fn encode_ordered_i64(value: i64) -> [u8; 8] {
    ((value as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn decode_ordered_i64(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

fn encode_kind(kind: EventKind, out: &mut Vec<u8>) {
    match kind {
        EventKind::Add { delta } => {
            out.push(KIND_ADD);
            out.extend_from_slice(&delta.to_be_bytes());
        }
        EventKind::Clear => {
            out.push(KIND_CLEAR);
            out.extend_from_slice(&0i64.to_be_bytes());
        }
    }
}

fn decode_kind(reader: &mut Reader<'_>) -> Result<EventKind, StorageError> {
    let tag = reader.u8()?;
    let delta = i64::from_be_bytes(reader.take()?);
    match tag {
        KIND_ADD => Ok(EventKind::Add { delta }),
        KIND_CLEAR => Ok(EventKind::Clear),
        other => Err(reader.corrupt(format!("unknown event kind {other}"))),
    }
}

pub fn event_key(key: EventKey) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&encode_ordered_i64(key.time.as_micros()));
    bytes[8..].copy_from_slice(&key.id.to_be_bytes());
    bytes
}

pub fn time_prefix(time: EventTime) -> [u8; 8] {
    encode_ordered_i64(time.as_micros())
}

pub fn event_value(event: &StoredEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + event.token.len());
    out.extend_from_slice(&event.counter_id.to_be_bytes());
    encode_kind(event.kind, &mut out);
    out.extend_from_slice(event.token.as_bytes());
    out
}

pub fn decode_event(key: &[u8], value: &[u8]) -> Result<StoredEvent, StorageError> {
    let mut key_reader = Reader::new("events", key);
    let time = EventTime::from_micros(key_reader.i64()?);
    let id = key_reader.u64()?;
    let mut reader = Reader::new("events", value);
    let counter_id = reader.u64()?;
    let kind = decode_kind(&mut reader)?;
    let token = reader.rest_utf8()?.into();
    Ok(StoredEvent {
        counter_id,
        key: EventKey { time, id },
        kind,
        token,
    })
}

pub fn counter_key(namespace_id: NamespaceId, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + name.len());
    out.extend_from_slice(&namespace_id.to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out
}

pub fn token_key(namespace_id: NamespaceId, counter_id: CounterId, token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + token.len());
    out.extend_from_slice(&namespace_id.to_be_bytes());
    out.extend_from_slice(&counter_id.to_be_bytes());
    out.extend_from_slice(token.as_bytes());
    out
}

pub fn token_value(record: &TokenRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(25);
    out.extend_from_slice(&encode_ordered_i64(record.event_time.as_micros()));
    out.extend_from_slice(&record.event_id.to_be_bytes());
    encode_kind(record.kind, &mut out);
    out
}

pub fn decode_token(value: &[u8]) -> Result<TokenRecord, StorageError> {
    let mut reader = Reader::new("tokens", value);
    let event_time = EventTime::from_micros(reader.i64()?);
    let event_id = reader.u64()?;
    let kind = decode_kind(&mut reader)?;
    Ok(TokenRecord {
        event_id,
        event_time,
        kind,
    })
}

pub fn checkpoint_value(checkpoint: &Checkpoint) -> Vec<u8> {
    let mut out = Vec::with_capacity(33);
    out.extend_from_slice(&checkpoint.fold.sum.to_be_bytes());
    out.push(u8::from(checkpoint.fold.cleared));
    out.extend_from_slice(&encode_ordered_i64(checkpoint.sealed_until.as_micros()));
    out.extend_from_slice(&checkpoint.last_event_id.to_be_bytes());
    out
}

pub fn decode_checkpoint(value: &[u8]) -> Result<Checkpoint, StorageError> {
    let mut reader = Reader::new("checkpoints", value);
    let sum = reader.i128()?;
    let cleared = reader.u8()? != 0;
    let sealed_until = EventTime::from_micros(reader.i64()?);
    let last_event_id = reader.u64()?;
    Ok(Checkpoint {
        fold: Fold { sum, cleared },
        sealed_until,
        last_event_id,
    })
}

pub fn namespace_value(namespace: &NamespaceRecord) -> Vec<u8> {
    let config = &namespace.config;
    let counter_type = match config.counter_type {
        CounterType::Eventual => 1u8,
        CounterType::Accurate => 2,
        CounterType::BestEffort => 3,
    };
    let mut out = Vec::with_capacity(45);
    out.extend_from_slice(&namespace.id.to_be_bytes());
    out.extend_from_slice(&encode_ordered_i64(namespace.sealed_until.as_micros()));
    out.push(counter_type);
    for seconds in [
        config.accept_limit_seconds,
        config.max_clock_skew_seconds,
        config.event_retention_seconds,
        config.idempotency_window_seconds,
    ] {
        out.extend_from_slice(&encode_ordered_i64(seconds));
    }
    out
}

pub fn decode_namespace(name: &[u8], value: &[u8]) -> Result<NamespaceRecord, StorageError> {
    let mut reader = Reader::new("namespaces", value);
    let name = std::str::from_utf8(name)
        .ok()
        .and_then(|text| NamespaceName::parse(text).ok())
        .ok_or_else(|| reader.corrupt("invalid namespace name".into()))?;
    let id = reader.u32()?;
    let sealed_until = EventTime::from_micros(reader.i64()?);
    let counter_type = match reader.u8()? {
        1 => CounterType::Eventual,
        2 => CounterType::Accurate,
        3 => CounterType::BestEffort,
        other => return Err(reader.corrupt(format!("unknown counter type {other}"))),
    };
    let config = NamespaceConfig {
        counter_type,
        accept_limit_seconds: reader.i64()?,
        max_clock_skew_seconds: reader.i64()?,
        event_retention_seconds: reader.i64()?,
        idempotency_window_seconds: reader.i64()?,
    };
    Ok(NamespaceRecord {
        id,
        name,
        config,
        sealed_until,
    })
}

/// Returns the keyspace name of a namespace's bucket, such as `events_3_1733306400`.
pub fn bucket_keyspace_name(namespace_id: NamespaceId, bucket_start: EventTime) -> String {
    format!(
        "events_{namespace_id}_{}",
        bucket_start.as_micros().div_euclid(1_000_000)
    )
}

/// Parses a bucket keyspace name back into its namespace ID and bucket start.
pub fn parse_bucket_keyspace_name(name: &str) -> Option<(NamespaceId, EventTime)> {
    let rest = name.strip_prefix("events_")?;
    let (namespace, start) = rest.split_once('_')?;
    let seconds: i64 = start.parse().ok()?;
    Some((
        namespace.parse().ok()?,
        EventTime::from_micros(seconds.checked_mul(1_000_000)?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_i64_keeps_order() {
        let values = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for pair in values.windows(2) {
            assert!(encode_ordered_i64(pair[0]) < encode_ordered_i64(pair[1]));
            assert_eq!(decode_ordered_i64(encode_ordered_i64(pair[0])), pair[0]);
        }
    }

    #[test]
    fn event_round_trips() {
        let event = StoredEvent {
            counter_id: 42,
            key: EventKey {
                time: EventTime::from_micros(-3),
                id: 9,
            },
            kind: EventKind::Add { delta: i64::MIN },
            token: "t\u{e4}".into(),
        };
        let decoded = decode_event(&event_key(event.key), &event_value(&event)).unwrap();
        assert_eq!(decoded, event);
    }

    #[test]
    fn short_record_is_corrupt() {
        let error = decode_checkpoint(&[1, 2, 3]).unwrap_err();
        assert!(matches!(error, StorageError::Corrupt { .. }));
    }

    #[test]
    fn bucket_name_round_trips() {
        let start = EventTime::from_micros(1_733_306_400_000_000);
        let name = bucket_keyspace_name(7, start);
        assert_eq!(parse_bucket_keyspace_name(&name), Some((7, start)));
    }
}
