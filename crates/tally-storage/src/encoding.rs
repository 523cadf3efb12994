//! Byte layout of the embedded store. Integers are big-endian so that byte order is numeric
//! order; signed integers have their sign bit flipped for the same reason.
//!
//! | keyspace | key | value |
//! | --- | --- | --- |
//! | `meta` | `format`, `last_event_id`, `last_counter_id` | u32 / u64 |
//! | `namespaces` | name | id u32, sealed_until i64, counter type u8, four durations i64 |
//! | `counter_names` | namespace id u32, name | counter id u64 |
//! | `counter_runs` | first counter id u64 | the counters with consecutive IDs that one group commit created, see [`counter_run_value`] |
//! | `checkpoints` | counter id u64 | sum i128, cleared u8, sealed_until i64, last event ID u64 |
//! | `tokens` | namespace id u32, counter id u64, token | event time i64, event ID u64, kind u8, delta i64 |
//! | `events_{namespace id}_{bucket start}` | slice start i64, first event ID u64 | the slice's events of one group commit, see [`slice_record_value`] |

use crate::StorageError;
use crate::types::{
    Checkpoint, CounterId, CounterRecord, NamespaceId, NamespaceRecord, StoredEvent, TokenRecord,
};
use tally_core::fold::Fold;
use tally_core::{
    CounterType, EventId, EventKey, EventKind, EventTime, NamespaceConfig, NamespaceName,
};

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

    #[inline]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], StorageError> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<N>() else {
            return Err(self.ended_early(N));
        };
        self.bytes = rest;
        Ok(*head)
    }

    /// Builds the error of a record that ends `expected` bytes too early. Kept out of line so
    /// that the readers of single fields stay small enough to inline: a restart decodes every
    /// event of the unsealed tail with them.
    #[cold]
    #[inline(never)]
    fn ended_early(&self, expected: usize) -> StorageError {
        self.corrupt(format!("record ends early, expected {expected} more bytes"))
    }

    #[inline]
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

    /// Reads an unsigned LEB128 varint of at most ten bytes. Bits beyond the 64th are dropped.
    #[inline]
    pub fn varint(&mut self) -> Result<u64, StorageError> {
        if let Some((&byte, rest)) = self.bytes.split_first()
            && byte < 0x80
        {
            self.bytes = rest;
            return Ok(u64::from(byte));
        }
        self.longer_varint()
    }

    /// Reads a varint of any length. [`Self::varint`] reads the one-byte ones itself.
    fn longer_varint(&mut self) -> Result<u64, StorageError> {
        let mut value = 0u64;
        for (index, &byte) in self.bytes.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                self.bytes = &self.bytes[index + 1..];
                return Ok(value);
            }
        }
        if self.bytes.len() < 10 {
            self.bytes = &[];
            return Err(self.ended_early(1));
        }
        Err(self.corrupt("varint is longer than ten bytes".into()))
    }

    /// Reads `len` bytes of UTF-8 text.
    pub fn utf8(&mut self, len: usize) -> Result<&'a str, StorageError> {
        if len > self.bytes.len() {
            return Err(self.corrupt(format!("record ends early, expected {len} more bytes")));
        }
        let (text, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        std::str::from_utf8(text).map_err(|_| self.corrupt("text is not valid UTF-8".into()))
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
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

/// Returns the key of a slice record: the slice start and the first event ID of the record.
/// Records of one slice sort together, and slices sort by time.
pub fn slice_record_key(slice_start: EventTime, first_event_id: EventId) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&encode_ordered_i64(slice_start.as_micros()));
    bytes[8..].copy_from_slice(&first_event_id.to_be_bytes());
    bytes
}

/// Returns the slice start of a slice record key.
pub fn decode_slice_record_key(key: &[u8]) -> Result<EventTime, StorageError> {
    Ok(EventTime::from_micros(Reader::new("events", key).i64()?))
}

pub fn time_prefix(time: EventTime) -> [u8; 8] {
    encode_ordered_i64(time.as_micros())
}

const EVENT_FLAG_TOKEN: u8 = 0x80;

/// Encodes the events of one slice, all with times at or after `slice_start` and IDs at or
/// after `first_id`. Each event starts with its time after the slice start (µs) and its ID after
/// `first_id`, both as LEB128 varints. The counter ID (varint) and a tag byte follow, where the
/// tag is the kind plus `EVENT_FLAG_TOKEN` when a client token follows. Last come the delta
/// of an add (zigzag varint) and the token (varint length, UTF-8).
pub fn slice_record_value(
    slice_start: EventTime,
    first_id: EventId,
    events: &[&StoredEvent],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + events.len() * 16);
    put_varint(&mut out, events.len() as u64);
    put_varint(&mut out, first_id);
    for event in events {
        debug_assert!(event.key.time >= slice_start && event.key.id >= first_id);
        let offset = event.key.time.as_micros() - slice_start.as_micros();
        put_varint(&mut out, offset as u64);
        put_varint(&mut out, event.key.id - first_id);
        put_varint(&mut out, event.counter_id);
        let flag = if event.token.is_some() {
            EVENT_FLAG_TOKEN
        } else {
            0
        };
        match event.kind {
            EventKind::Add { delta } => {
                out.push(KIND_ADD | flag);
                put_varint(&mut out, zigzag(delta));
            }
            EventKind::Clear => out.push(KIND_CLEAR | flag),
        }
        if let Some(token) = &event.token {
            put_varint(&mut out, token.len() as u64);
            out.extend_from_slice(token.as_bytes());
        }
    }
    out
}

/// Decodes a slice record written by [`slice_record_value`], appending its events to `out`.
pub fn decode_slice_record(
    slice_start: EventTime,
    value: &[u8],
    out: &mut Vec<StoredEvent>,
) -> Result<(), StorageError> {
    let mut reader = Reader::new("events", value);
    let count = reader.varint()?;
    let first_id = reader.varint()?;
    out.reserve(usize::try_from(count).unwrap_or(0).min(value.len()));
    for _ in 0..count {
        let offset = reader.varint()?;
        let time = i64::try_from(offset)
            .ok()
            .and_then(|offset| slice_start.as_micros().checked_add(offset))
            .ok_or_else(|| reader.corrupt(format!("event time offset {offset} is out of range")))?;
        let id = first_id
            .checked_add(reader.varint()?)
            .ok_or_else(|| reader.corrupt("event ID is out of range".into()))?;
        let counter_id = reader.varint()?;
        let tag = reader.u8()?;
        let kind = match tag & !EVENT_FLAG_TOKEN {
            KIND_ADD => EventKind::Add {
                delta: unzigzag(reader.varint()?),
            },
            KIND_CLEAR => EventKind::Clear,
            other => return Err(reader.corrupt(format!("unknown event kind {other}"))),
        };
        let token = if tag & EVENT_FLAG_TOKEN != 0 {
            let len = usize::try_from(reader.varint()?).unwrap_or(usize::MAX);
            Some(reader.utf8(len)?.into())
        } else {
            None
        };
        out.push(StoredEvent {
            counter_id,
            key: EventKey {
                time: EventTime::from_micros(time),
                id,
            },
            kind,
            token,
        });
    }
    Ok(())
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(crate) fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

pub(crate) fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Encodes counters with consecutive IDs, the first of which is the record's key, as a varint
/// count and then, per counter, its namespace ID and name length as varints and its name. A
/// start reads counters from these records: one record per group commit costs far less to
/// read than one per counter.
pub fn counter_run_value(counters: &[CounterRecord]) -> Vec<u8> {
    let names_len: usize = counters
        .iter()
        .map(|counter| counter.name.as_str().len())
        .sum();
    let mut out = Vec::with_capacity(10 + 8 * counters.len() + names_len);
    put_varint(&mut out, counters.len() as u64);
    for counter in counters {
        put_varint(&mut out, u64::from(counter.namespace_id));
        put_varint(&mut out, counter.name.as_str().len() as u64);
        out.extend_from_slice(counter.name.as_str().as_bytes());
    }
    out
}

/// Visits the counters of a record written by [`counter_run_value`] as ID, namespace ID and
/// name, in ID order.
pub fn decode_counter_run<'a>(
    first_id: CounterId,
    value: &'a [u8],
    visit: &mut dyn FnMut(CounterId, NamespaceId, &'a str) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let mut reader = Reader::new("counter_runs", value);
    let count = reader.varint()?;
    for offset in 0..count {
        let namespace_id = NamespaceId::try_from(reader.varint()?)
            .map_err(|_| reader.corrupt("namespace ID is out of range".into()))?;
        let len = usize::try_from(reader.varint()?)
            .map_err(|_| reader.corrupt("name length is out of range".into()))?;
        let name = reader.utf8(len)?;
        let id = first_id
            .checked_add(offset)
            .ok_or_else(|| reader.corrupt("counter ID is out of range".into()))?;
        visit(id, namespace_id, name)?;
    }
    if !reader.bytes.is_empty() {
        return Err(reader.corrupt(format!(
            "{} bytes follow the last counter of the run",
            reader.bytes.len()
        )));
    }
    Ok(())
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

/// Splits a key made by [`token_key`] into its namespace, counter and token.
pub fn decode_token_key(key: &[u8]) -> Result<(NamespaceId, CounterId, &str), StorageError> {
    let mut reader = Reader::new("tokens", key);
    let namespace_id = reader.u32()?;
    let counter_id = reader.u64()?;
    Ok((namespace_id, counter_id, reader.rest_utf8()?))
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

/// Encodes a checkpoint as format 3 stored it, one per record. A store of format 4 keeps
/// checkpoints in blocks (`checkpoint_blocks`) and reads this layout only to convert a store.
pub fn checkpoint_value(checkpoint: &Checkpoint) -> Vec<u8> {
    let mut out = Vec::with_capacity(33);
    out.extend_from_slice(&checkpoint.fold.sum.to_be_bytes());
    out.push(u8::from(checkpoint.fold.cleared));
    out.extend_from_slice(&encode_ordered_i64(checkpoint.sealed_until.as_micros()));
    out.extend_from_slice(&checkpoint.last_event_id.to_be_bytes());
    out
}

/// Decodes a checkpoint written by [`checkpoint_value`].
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
    use tally_core::CounterName;

    #[test]
    fn ordered_i64_keeps_order() {
        let values = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for pair in values.windows(2) {
            assert!(encode_ordered_i64(pair[0]) < encode_ordered_i64(pair[1]));
            assert_eq!(decode_ordered_i64(encode_ordered_i64(pair[0])), pair[0]);
        }
    }

    fn stored(
        counter_id: u64,
        micros: i64,
        id: u64,
        kind: EventKind,
        token: Option<&str>,
    ) -> StoredEvent {
        StoredEvent {
            counter_id,
            key: EventKey {
                time: EventTime::from_micros(micros),
                id,
            },
            kind,
            token: token.map(Into::into),
        }
    }

    #[test]
    fn slice_record_round_trips() {
        let slice = EventTime::from_micros(-1_000_000);
        let events = vec![
            stored(
                42,
                -3,
                9,
                EventKind::Add { delta: i64::MIN },
                Some("t\u{e4}"),
            ),
            stored(
                u64::MAX,
                -1_000_000,
                7,
                EventKind::Add { delta: i64::MAX },
                None,
            ),
            stored(1, -999_999, u64::MAX, EventKind::Clear, Some("")),
            stored(0, -500_000, 8, EventKind::Add { delta: -1 }, None),
        ];
        let refs: Vec<&StoredEvent> = events.iter().collect();
        let value = slice_record_value(slice, 7, &refs);
        let mut decoded = Vec::new();
        decode_slice_record(slice, &value, &mut decoded).unwrap();
        assert_eq!(decoded, events);
    }

    #[test]
    fn truncated_slice_record_is_corrupt() {
        let slice = EventTime::from_micros(0);
        let events = [stored(
            3,
            5,
            1,
            EventKind::Add { delta: 300 },
            Some("token"),
        )];
        let value = slice_record_value(slice, 1, &[&events[0]]);
        for len in 0..value.len() {
            let error = decode_slice_record(slice, &value[..len], &mut Vec::new()).unwrap_err();
            assert!(
                matches!(error, StorageError::Corrupt { .. }),
                "length {len}"
            );
        }
    }

    #[test]
    fn slice_record_keys_sort_by_slice_then_id() {
        let keys = [
            slice_record_key(EventTime::from_micros(-1_000_000), 5),
            slice_record_key(EventTime::from_micros(0), 1),
            slice_record_key(EventTime::from_micros(0), 2),
            slice_record_key(EventTime::from_micros(1_000_000), 0),
        ];
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(
            decode_slice_record_key(&keys[0]).unwrap(),
            EventTime::from_micros(-1_000_000)
        );
    }

    #[test]
    fn varints_round_trip() {
        let values = [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ];
        let mut bytes = Vec::new();
        for value in values {
            put_varint(&mut bytes, value);
        }
        bytes.push(0xab);

        let mut reader = Reader::new("test", &bytes);
        for value in values {
            assert_eq!(reader.varint().unwrap(), value);
        }
        assert_eq!(reader.u8().unwrap(), 0xab);
    }

    #[test]
    fn damaged_varints_are_corrupt() {
        let detail = |bytes: &[u8]| match Reader::new("test", bytes).varint() {
            Err(StorageError::Corrupt { detail, .. }) => detail,
            other => panic!("{bytes:?} decoded as {other:?}"),
        };

        assert_eq!(detail(&[]), "record ends early, expected 1 more bytes");
        assert_eq!(
            detail(&[0x80, 0xff]),
            "record ends early, expected 1 more bytes"
        );
        assert_eq!(detail(&[0xff; 11]), "varint is longer than ten bytes");
    }

    #[test]
    fn short_record_is_corrupt() {
        let error = decode_checkpoint(&[1, 2, 3]).unwrap_err();
        assert!(matches!(error, StorageError::Corrupt { .. }));
    }

    fn decoded_run(first_id: CounterId, value: &[u8]) -> Result<Vec<CounterRecord>, StorageError> {
        let mut counters = Vec::new();
        decode_counter_run(first_id, value, &mut |id, namespace_id, name| {
            counters.push(CounterRecord {
                id,
                namespace_id,
                name: CounterName::parse(name).unwrap(),
            });
            Ok(())
        })?;
        Ok(counters)
    }

    #[test]
    fn counter_run_round_trips() {
        let counters: Vec<CounterRecord> = [(7, "visits"), (300, "zähler"), (u32::MAX, "x")]
            .into_iter()
            .zip(41..)
            .map(|((namespace_id, name), id)| CounterRecord {
                id,
                namespace_id,
                name: CounterName::parse(name).unwrap(),
            })
            .collect();

        let value = counter_run_value(&counters);

        assert_eq!(decoded_run(41, &value).unwrap(), counters);
        assert_eq!(decoded_run(1, &counter_run_value(&[])).unwrap(), []);
    }

    #[test]
    fn damaged_counter_run_is_corrupt() {
        let counters = [CounterRecord {
            id: 1,
            namespace_id: 1,
            name: CounterName::parse("visits").unwrap(),
        }];
        let value = counter_run_value(&counters);
        let mut longer = value.clone();
        longer.push(0);

        for damaged in [&value[..value.len() - 1], &longer[..], &[5][..]] {
            let error = decoded_run(1, damaged).unwrap_err();
            assert!(matches!(error, StorageError::Corrupt { .. }), "{error:?}");
        }
        let error = decoded_run(
            u64::MAX,
            &counter_run_value(&[counters[0].clone(), counters[0].clone()]),
        )
        .unwrap_err();
        assert!(matches!(error, StorageError::Corrupt { .. }), "{error:?}");
    }

    #[test]
    fn bucket_name_round_trips() {
        let start = EventTime::from_micros(1_733_306_400_000_000);
        let name = bucket_keyspace_name(7, start);
        assert_eq!(parse_bucket_keyspace_name(&name), Some((7, start)));
    }
}
