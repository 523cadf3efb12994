//! Checkpoints in blocks of consecutive counter IDs, the embedded store's layout since format 4.
//!
//! A start reads the checkpoint of every counter. Stored one per key, each checkpoint cost a
//! step of the LSM tree's merge over all its tables, and reading them took about half of a
//! restart. A block holds the checkpoints of up to [`BLOCK_LEN`] counters with consecutive IDs
//! in one record, so a start takes that many times fewer steps, and it reads about 6 bytes per
//! checkpoint that one rollup wrote instead of 41. The price is paid by rollups: a rollup reads
//! and rewrites the whole block of each counter it checkpoints.
//!
//! A record's key is the block number (the ID without its low [`BLOCK_BITS`] bits), big-endian.
//! Its value lists the block's checkpoints in increasing offset (the ID's low bits). Each
//! starts with the offset (1 byte) and flags (1 byte: cleared, wide sum). The sum follows as a
//! zigzag varint, or as 16 big-endian bytes when it does not fit 64 bits. Last come
//! `sealed_until` in microseconds and `last_event_id`, each as a zigzag varint of its wrapping
//! difference from the entry before (from 0 for the first entry). Checkpoints written by one
//! rollup share `sealed_until`, so that difference takes one byte.

use crate::StorageError;
use crate::encoding::{Reader, put_varint, unzigzag, zigzag};
use crate::error::read_failed;
use crate::types::{Checkpoint, CounterId};
use fjall::{Keyspace, OwnedWriteBatch};
use tally_core::{EventTime, Fold};

/// Number of low ID bits that give a counter's place in its block.
const BLOCK_BITS: u32 = 5;

/// Counters per block. 32 keeps the rewrite of a full block for one changed counter near 200
/// bytes.
const BLOCK_LEN: u64 = 1 << BLOCK_BITS;

/// A write reads the requested blocks that lie at most this many blocks apart in one range scan.
const MAX_BLOCK_GAP_IN_SCAN: u64 = 2;

const KEYSPACE: &str = "checkpoint_blocks";
const FLAG_CLEARED: u8 = 1;
const FLAG_WIDE_SUM: u8 = 2;

/// The checkpoints of one block by offset, in increasing offset.
type BlockEntries = Vec<(u8, Checkpoint)>;

fn block_of(id: CounterId) -> u64 {
    id >> BLOCK_BITS
}

fn offset_of(id: CounterId) -> u8 {
    (id & (BLOCK_LEN - 1)) as u8
}

fn id_of(block: u64, offset: u8) -> CounterId {
    (block << BLOCK_BITS) | u64::from(offset)
}

fn block_key(block: u64) -> [u8; 8] {
    block.to_be_bytes()
}

/// Encodes a block's checkpoints, given in increasing offset.
fn encode_block(entries: &[(u8, Checkpoint)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 12);
    let (mut sealed_before, mut event_before) = (0i64, 0u64);
    for (offset, checkpoint) in entries {
        out.push(*offset);
        let narrow_sum = i64::try_from(checkpoint.fold.sum).ok();
        let mut flags = 0;
        if checkpoint.fold.cleared {
            flags |= FLAG_CLEARED;
        }
        if narrow_sum.is_none() {
            flags |= FLAG_WIDE_SUM;
        }
        out.push(flags);
        match narrow_sum {
            Some(sum) => put_varint(&mut out, zigzag(sum)),
            None => out.extend_from_slice(&checkpoint.fold.sum.to_be_bytes()),
        }
        let sealed_until = checkpoint.sealed_until.as_micros();
        put_varint(&mut out, zigzag(sealed_until.wrapping_sub(sealed_before)));
        let event_change = checkpoint.last_event_id.wrapping_sub(event_before) as i64;
        put_varint(&mut out, zigzag(event_change));
        (sealed_before, event_before) = (sealed_until, checkpoint.last_event_id);
    }
    out
}

/// Decodes a block written by [`encode_block`] into `out`, replacing its contents.
fn decode_block(value: &[u8], out: &mut BlockEntries) -> Result<(), StorageError> {
    out.clear();
    let mut reader = Reader::new(KEYSPACE, value);
    let (mut sealed_until, mut last_event_id) = (0i64, 0u64);
    while !reader.is_empty() {
        let offset = reader.u8()?;
        if u64::from(offset) >= BLOCK_LEN || out.last().is_some_and(|(last, _)| *last >= offset) {
            return Err(reader.corrupt(format!(
                "checkpoint offset {offset} is out of order or beyond the block"
            )));
        }
        let flags = reader.u8()?;
        if flags & !(FLAG_CLEARED | FLAG_WIDE_SUM) != 0 {
            return Err(reader.corrupt(format!("unknown checkpoint flags {flags:#04x}")));
        }
        let sum = if flags & FLAG_WIDE_SUM == 0 {
            i128::from(unzigzag(reader.varint()?))
        } else {
            reader.i128()?
        };
        sealed_until = sealed_until.wrapping_add(unzigzag(reader.varint()?));
        last_event_id = last_event_id.wrapping_add(unzigzag(reader.varint()?) as u64);
        let fold = Fold {
            sum,
            cleared: flags & FLAG_CLEARED != 0,
        };
        out.push((
            offset,
            Checkpoint {
                fold,
                sealed_until: EventTime::from_micros(sealed_until),
                last_event_id,
            },
        ));
    }
    Ok(())
}

/// The checkpoints stored in blocks, in one keyspace.
pub struct CheckpointBlocks {
    keyspace: Keyspace,
}

impl CheckpointBlocks {
    pub const KEYSPACE: &'static str = KEYSPACE;

    pub fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    pub fn new(keyspace: Keyspace) -> Self {
        Self { keyspace }
    }

    /// Returns the checkpoint of one counter.
    pub fn get(&self, id: CounterId) -> Result<Option<Checkpoint>, StorageError> {
        let Some(value) = self
            .keyspace
            .get(block_key(block_of(id)))
            .map_err(read_failed)?
        else {
            return Ok(None);
        };
        let mut entries = BlockEntries::new();
        decode_block(&value, &mut entries)?;
        Ok(find(&entries, offset_of(id)))
    }

    /// Returns the checkpoints of the counters `first..=last`, in ID order, none when
    /// `first > last`.
    pub fn range(&self, first: CounterId, last: CounterId) -> CheckpointRange {
        let (first_block, last_block) = (block_of(first), block_of(last).max(block_of(first)));
        CheckpointRange {
            blocks: self
                .keyspace
                .range(block_key(first_block)..=block_key(last_block)),
            first,
            last,
            block: 0,
            entries: BlockEntries::new(),
            next: 0,
            done: first > last,
        }
    }

    /// Adds to `batch` the blocks that contain `checkpoints`, given in increasing ID order, each
    /// with the block's other stored checkpoints kept. The caller keeps other writers of these
    /// blocks out until the batch is committed.
    ///
    /// NOTE: a rollup has just read the same blocks through `read_checkpoints`, so each block
    /// is read twice per rollup. Merging the two reads would need a store call that computes
    /// the new checkpoints itself.
    pub fn write(
        &self,
        batch: &mut OwnedWriteBatch,
        checkpoints: &[(CounterId, Checkpoint)],
    ) -> Result<(), StorageError> {
        debug_assert!(checkpoints.is_sorted_by_key(|(id, _)| *id));
        let mut stored = BlockEntries::new();
        let near = |a: &(CounterId, Checkpoint), b: &(CounterId, Checkpoint)| {
            block_of(b.0).saturating_sub(block_of(a.0)) <= MAX_BLOCK_GAP_IN_SCAN
        };
        for run in checkpoints.chunk_by(near) {
            let (first, last) = (block_of(run[0].0), block_of(run[run.len() - 1].0));
            let mut existing = self
                .keyspace
                .range(block_key(first)..=block_key(last))
                .map(|item| {
                    let (key, value) = item.into_inner().map_err(read_failed)?;
                    Ok((block_number(&key)?, value))
                })
                .peekable();
            for changed in run.chunk_by(|a, b| block_of(a.0) == block_of(b.0)) {
                let block = block_of(changed[0].0);
                stored.clear();
                while let Some(item) = existing.next_if(|item: &Result<_, StorageError>| {
                    item.as_ref().map_or(true, |(found, _)| *found <= block)
                }) {
                    let (found, value) = item?;
                    if found == block {
                        decode_block(&value, &mut stored)?;
                    }
                }
                let merged = merge(&stored, changed);
                batch.insert(&self.keyspace, block_key(block), encode_block(&merged));
            }
        }
        Ok(())
    }
}

/// Reads the block number of a record's key.
fn block_number(key: &[u8]) -> Result<u64, StorageError> {
    let bytes = key.try_into().map_err(|_| StorageError::Corrupt {
        keyspace: KEYSPACE.into(),
        detail: format!("key of {} bytes, expected 8", key.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn find(entries: &[(u8, Checkpoint)], offset: u8) -> Option<Checkpoint> {
    entries
        .binary_search_by_key(&offset, |(found, _)| *found)
        .ok()
        .map(|index| entries[index].1)
}

/// Merges the stored checkpoints of a block with changed ones of the same block, given in
/// increasing ID order. A changed checkpoint replaces the stored one, and of two changed
/// checkpoints of one counter the later wins.
fn merge(stored: &[(u8, Checkpoint)], changed: &[(CounterId, Checkpoint)]) -> BlockEntries {
    let mut merged: BlockEntries = Vec::with_capacity(stored.len() + changed.len());
    let mut stored = stored.iter().peekable();
    for (id, checkpoint) in changed {
        let offset = offset_of(*id);
        while let Some(entry) = stored.next_if(|(found, _)| *found < offset) {
            merged.push(*entry);
        }
        stored.next_if(|(found, _)| *found == offset);
        match merged.last_mut() {
            Some(last) if last.0 == offset => last.1 = *checkpoint,
            _ => merged.push((offset, *checkpoint)),
        }
    }
    merged.extend(stored);
    merged
}

/// The checkpoints of a range of counter IDs, in ID order, read block by block.
pub struct CheckpointRange {
    blocks: fjall::Iter,
    first: CounterId,
    last: CounterId,
    block: u64,
    entries: BlockEntries,
    next: usize,
    done: bool,
}

impl CheckpointRange {
    /// Decodes the next block into `entries`, and returns false after the last one.
    fn next_block(&mut self) -> Result<bool, StorageError> {
        let Some(item) = self.blocks.next() else {
            return Ok(false);
        };
        let (key, value) = item.into_inner().map_err(read_failed)?;
        self.block = block_number(&key)?;
        decode_block(&value, &mut self.entries)?;
        self.next = 0;
        Ok(true)
    }
}

impl Iterator for CheckpointRange {
    type Item = Result<(CounterId, Checkpoint), StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if let Some(&(offset, checkpoint)) = self.entries.get(self.next) {
                self.next += 1;
                let id = id_of(self.block, offset);
                if id > self.last {
                    self.done = true;
                } else if id >= self.first {
                    return Some(Ok((id, checkpoint)));
                }
                continue;
            }
            match self.next_block() {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(sum: i128, cleared: bool, micros: i64, last_event_id: u64) -> Checkpoint {
        Checkpoint {
            fold: Fold { sum, cleared },
            sealed_until: EventTime::from_micros(micros),
            last_event_id,
        }
    }

    #[test]
    fn block_round_trips() {
        let entries = vec![
            (0, checkpoint(0, false, 0, 0)),
            (1, checkpoint(-1, true, -5, 1)),
            (
                7,
                checkpoint(i128::from(i64::MAX), false, i64::MAX, u64::MAX),
            ),
            (8, checkpoint(i128::from(i64::MIN) - 1, true, i64::MIN, 3)),
            (30, checkpoint(i128::MAX, false, 1_764_000_000_000_000, 42)),
            (31, checkpoint(i128::MIN, true, 1_764_000_000_000_000, 41)),
        ];
        let mut decoded = BlockEntries::new();
        decode_block(&encode_block(&entries), &mut decoded).unwrap();
        assert_eq!(decoded, entries);
    }

    #[test]
    fn rollup_block_is_compact() {
        let entries: Vec<(u8, Checkpoint)> = (0..32)
            .map(|offset| {
                let sum = i128::from(offset) * 3;
                let last_event_id = 1_200_000_000 + u64::from(offset) * 17;
                (
                    offset,
                    checkpoint(sum, false, 1_764_000_000_000_000, last_event_id),
                )
            })
            .collect();
        let value = encode_block(&entries);
        // The first entry takes 16 bytes with its full time and event ID. The others take 5 or 6
        // bytes each, depending on the length of their sum.
        assert!(value.len() <= 16 + 31 * 6, "{} bytes", value.len());
        let mut decoded = BlockEntries::new();
        decode_block(&value, &mut decoded).unwrap();
        assert_eq!(decoded, entries);
    }

    #[test]
    fn damaged_blocks_are_corrupt() {
        let one = encode_block(&[(3, checkpoint(5, false, 10, 2))]);
        let mut twice = one.clone();
        twice.extend_from_slice(&one);
        let mut beyond = one.clone();
        beyond[0] = BLOCK_LEN as u8;
        let mut flags = one.clone();
        flags[1] = 4;
        let mut entries = BlockEntries::new();
        for (name, value) in [
            ("repeated offset", twice),
            ("offset beyond the block", beyond),
            ("unknown flag", flags),
            ("cut short", one[..one.len() - 1].to_vec()),
        ] {
            let result = decode_block(&value, &mut entries);
            assert!(
                matches!(result, Err(StorageError::Corrupt { .. })),
                "{name}: {result:?}"
            );
        }
    }

    #[test]
    fn range_reads_only_requested_ids() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let keyspace = db
            .keyspace(KEYSPACE, fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let blocks = CheckpointBlocks::new(keyspace);
        let written: Vec<(CounterId, Checkpoint)> = [3, 31, 32, 33, 95, 200]
            .into_iter()
            .map(|id| (id, checkpoint(i128::from(id), false, 1, id)))
            .collect();
        let mut batch = db.batch();
        blocks.write(&mut batch, &written).unwrap();
        batch.commit().unwrap();

        let ids = |first, last| -> Vec<CounterId> {
            blocks
                .range(first, last)
                .map(|item| item.unwrap().0)
                .collect()
        };
        assert_eq!(ids(0, CounterId::MAX), [3, 31, 32, 33, 95, 200]);
        assert_eq!(ids(4, 32), [31, 32]);
        assert_eq!(ids(33, 199), [33, 95]);
        assert_eq!(ids(96, 199), Vec::<CounterId>::new());
        assert_eq!(ids(40, 10), Vec::<CounterId>::new());
        assert_eq!(blocks.get(95).unwrap(), Some(written[4].1));
        assert_eq!(blocks.get(94).unwrap(), None);
    }

    #[test]
    fn merge_keeps_stored_and_replaces_changed() {
        let stored = [
            (1, checkpoint(1, false, 0, 0)),
            (4, checkpoint(4, false, 0, 0)),
            (9, checkpoint(9, false, 0, 0)),
        ];
        let changed = [
            (id_of(2, 0), checkpoint(100, false, 0, 0)),
            (id_of(2, 4), checkpoint(99, true, 0, 0)),
            (id_of(2, 4), checkpoint(104, true, 0, 0)),
            (id_of(2, 31), checkpoint(131, false, 0, 0)),
        ];
        let merged = merge(&stored, &changed);
        let sums: Vec<(u8, i128)> = merged
            .iter()
            .map(|(offset, checkpoint)| (*offset, checkpoint.fold.sum))
            .collect();
        assert_eq!(sums, [(0, 100), (1, 1), (4, 104), (9, 9), (31, 131)]);
    }
}
