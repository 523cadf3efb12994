//! Bloom filters of the idempotency tokens that the store may contain.
//!
//! Nearly every token that a client sends is new, yet the writer had to look each one up in the
//! store's token index before it could apply the change. In the embedded store that lookup
//! searches fjall's memtables, and with a token on every add it took a quarter of the server's
//! CPU samples. The filter reports most new tokens as absent without reading the store, and the
//! writer looks up only the tokens that the filter may contain. A false positive costs one
//! lookup. A Bloom filter has no false negatives, so the filter never lets a retry count twice.
//!
//! The filter is a list of Bloom filters (generations). The writer adds each token it claims to
//! the newest one. A generation is dropped once every token in it is older than the maximum
//! idempotency window of all namespaces, after which the store may forget them too. After a
//! start, a loader thread reads the tokens already stored into generations of their own, one
//! per quarter of the window, which leave memory as the window moves on. Until the writer has
//! them, it looks every token up in the store as before.
//!
//! NOTE: the filter contains only the tokens that this process wrote or found at its start,
//! which is enough while one node owns the store. Nodes that share one store (PostgreSQL, not
//! built yet) would have to look every token up, or share the filters' updates.

use fastbloom::BloomFilter;
use hashbrown::DefaultHashBuilder;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;
use tally_core::EventTime;
use tally_storage::{CounterId, EventStore, NamespaceId, StorageError, TokenEstimate};
use tracing::{info, warn};

/// Tokens in a generation that the writer opens when it has no recent one to size it by.
const MIN_CAPACITY: usize = 1 << 16;

/// False positive rate of each generation when full: the share of new tokens that are still
/// looked up in the store.
const FALSE_POSITIVE_RATE: f64 = 0.01;

/// The writer opens a new generation at least this many times per idempotency window, so that
/// expired tokens leave memory in steps of at most a quarter of the window.
const GENERATIONS_PER_WINDOW: i64 = 4;

/// Seconds between two checks for expired generations and for the loader's result.
const MAINTENANCE_INTERVAL_SECONDS: i64 = 1;

/// The tokens of the store that the writer may find, summarised.
pub struct TokenFilter {
    hasher: DefaultHashBuilder,
    /// The tokens that this process claimed.
    generations: Generations,
    /// The tokens that the store held at the start, once the loader has read them.
    stored_generations: Generations,
    stored: StoredTokens,
    /// The maximum idempotency window of all namespaces, as of the last maintenance.
    window_seconds: i64,
    /// The writer's clock at the last maintenance.
    now: EventTime,
    next_maintenance: EventTime,
}

/// The tokens stored before the start, as far as the loader has read them.
enum StoredTokens {
    Loading(mpsc::Receiver<Result<Generations, StorageError>>),
    Loaded,
    /// The loader failed: every token is looked up in the store.
    Unknown,
}

impl TokenFilter {
    /// Starts reading the stored tokens on a thread of its own. Until it is done,
    /// [`Self::may_contain`] returns true for every token.
    pub fn start(store: Arc<dyn EventStore>, window_seconds: i64, now: EventTime) -> Self {
        let hasher = DefaultHashBuilder::default();
        let (sender, receiver) = mpsc::channel();
        let loader_hasher = hasher.clone();
        let spawned = std::thread::Builder::new()
            .name("tally-token-load".into())
            .spawn(move || {
                let loaded = load(store.as_ref(), &loader_hasher, window_seconds, now);
                let _ = sender.send(loaded);
            });
        let stored = match spawned {
            Ok(_) => StoredTokens::Loading(receiver),
            Err(error) => {
                warn!(%error, "failed to start the thread that reads the stored tokens, so every token is looked up in the store");
                StoredTokens::Unknown
            }
        };
        Self::with_stored(hasher, stored, window_seconds, now)
    }

    /// Reads the stored tokens before it returns, for tests that need the filter loaded.
    #[cfg(test)]
    pub(crate) fn loaded(store: &dyn EventStore, window_seconds: i64, now: EventTime) -> Self {
        let hasher = DefaultHashBuilder::default();
        let loaded =
            load(store, &hasher, window_seconds, now).expect("the stored tokens can be read");
        let mut filter = Self::with_stored(hasher, StoredTokens::Loaded, window_seconds, now);
        filter.stored_generations = loaded;
        filter
    }

    fn with_stored(
        hasher: DefaultHashBuilder,
        stored: StoredTokens,
        window_seconds: i64,
        now: EventTime,
    ) -> Self {
        Self {
            hasher,
            generations: Generations::default(),
            stored_generations: Generations::default(),
            stored,
            window_seconds,
            now,
            next_maintenance: now,
        }
    }

    /// Returns true once the writer uses the loader's result, so that [`Self::may_contain`]
    /// can return false.
    pub fn is_loaded(&self) -> bool {
        matches!(self.stored, StoredTokens::Loaded)
    }

    /// Returns the hash that identifies a token of a counter in the filter.
    pub fn hash(&self, namespace_id: NamespaceId, counter_id: CounterId, token: &str) -> u64 {
        token_hash(&self.hasher, namespace_id, counter_id, token)
    }

    /// Returns false only if the store certainly contains no token with this hash.
    pub fn may_contain(&self, hash: u64) -> bool {
        match self.stored {
            StoredTokens::Loaded => {
                self.generations.contains(hash) || self.stored_generations.contains(hash)
            }
            StoredTokens::Loading(_) | StoredTokens::Unknown => true,
        }
    }

    /// Records a token that the writer claims, with its event time.
    pub fn insert(&mut self, hash: u64, event_time: EventTime) {
        let span = (self.window_seconds / GENERATIONS_PER_WINDOW).max(1);
        self.generations.insert(hash, event_time, self.now, span);
    }

    /// Takes the loader's result when it is ready, and drops the generations whose tokens have
    /// all left the idempotency window. `window_seconds` returns the maximum window of all
    /// namespaces, and is called at most once per [`MAINTENANCE_INTERVAL_SECONDS`].
    pub fn maintain(&mut self, now: EventTime, window_seconds: impl FnOnce() -> i64) {
        self.now = now;
        if now < self.next_maintenance {
            return;
        }
        self.next_maintenance = now.plus_seconds(MAINTENANCE_INTERVAL_SECONDS);
        self.window_seconds = window_seconds();
        self.take_loaded();
        let oldest_kept = now.minus_seconds(self.window_seconds);
        self.generations.retain_newer_than(oldest_kept);
        self.stored_generations.retain_newer_than(oldest_kept);
    }

    fn take_loaded(&mut self) {
        let StoredTokens::Loading(receiver) = &self.stored else {
            return;
        };
        self.stored = match receiver.try_recv() {
            Ok(Ok(loaded)) => {
                self.stored_generations = loaded;
                StoredTokens::Loaded
            }
            Err(mpsc::TryRecvError::Empty) => return,
            Ok(Err(error)) => {
                warn!(%error, "failed to read the stored tokens, so every token is looked up in the store");
                StoredTokens::Unknown
            }
            Err(mpsc::TryRecvError::Disconnected) => {
                warn!(
                    "the thread that reads the stored tokens stopped early, so every token is looked up in the store"
                );
                StoredTokens::Unknown
            }
        };
    }

    /// Bytes of memory that the generations take.
    pub fn memory_bytes(&self) -> usize {
        self.generations.memory_bytes() + self.stored_generations.memory_bytes()
    }
}

fn token_hash(
    hasher: &DefaultHashBuilder,
    namespace_id: NamespaceId,
    counter_id: CounterId,
    token: &str,
) -> u64 {
    hasher.hash_one((namespace_id, counter_id, token))
}

/// Reads the stored tokens of the idempotency window into one generation per quarter of the
/// window, by event time, so that they leave memory in steps as the window moves on after the
/// start. Each generation is sized to its tokens, as the store estimates them, or else as a
/// first pass counts them. Tokens older than the window are left out: no namespace needs them.
fn load(
    store: &dyn EventStore,
    hasher: &DefaultHashBuilder,
    window_seconds: i64,
    now: EventTime,
) -> Result<Generations, StorageError> {
    let started = Instant::now();
    let bands = TimeBands::new(window_seconds, now);
    let counts = match store.estimate_tokens()? {
        Some(estimates) => bands.estimate(&estimates),
        None => bands.count(store)?,
    };
    let mut bloom_bands: Vec<Generation> = counts
        .iter()
        .map(|&count| Generation::new(count.max(1), now))
        .collect();
    store.scan_tokens(&mut |token| {
        if let Some(band) = bands.of(token.event_time) {
            let hash = token_hash(hasher, token.namespace_id, token.counter_id, token.token);
            bloom_bands[band].insert(hash, token.event_time);
        }
    })?;
    let generations = Generations(
        bloom_bands
            .into_iter()
            .filter(|generation| generation.len > 0)
            .collect(),
    );
    info!(
        tokens = generations.len(),
        memory_bytes = generations.memory_bytes(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "read the stored tokens into the token filter"
    );
    Ok(generations)
}

/// The quarters of the idempotency window that end at a start, by event time.
struct TimeBands {
    oldest: EventTime,
    span_micros: i64,
}

impl TimeBands {
    const COUNT: usize = GENERATIONS_PER_WINDOW as usize;

    fn new(window_seconds: i64, now: EventTime) -> Self {
        let oldest = now.minus_seconds(window_seconds);
        let span_micros = (now.as_micros() - oldest.as_micros()) / GENERATIONS_PER_WINDOW;
        Self {
            oldest,
            span_micros: span_micros.max(1),
        }
    }

    /// Counts the stored tokens of each band in a pass over them.
    fn count(&self, store: &dyn EventStore) -> Result<[usize; Self::COUNT], StorageError> {
        let mut counts = [0; Self::COUNT];
        store.scan_tokens(&mut |token| {
            if let Some(band) = self.of(token.event_time) {
                counts[band] += 1;
            }
        })?;
        Ok(counts)
    }

    /// Adds up the store's estimates per band. A span that reaches into several bands counts
    /// in each of them, which can make a band's filter larger than it needs.
    fn estimate(&self, estimates: &[TokenEstimate]) -> [usize; Self::COUNT] {
        let mut counts = [0; Self::COUNT];
        for estimate in estimates {
            let last_micro = EventTime::from_micros(estimate.until.as_micros().saturating_sub(1));
            let Some(last) = self.of(last_micro) else {
                continue;
            };
            let first = self.of(estimate.from).unwrap_or(0);
            for count in &mut counts[first..=last] {
                *count += estimate.approximate_len;
            }
        }
        counts
    }

    /// Returns the band of a token's event time, or `None` for a time before the window. A time
    /// after the start (within the clock skew) belongs to the last band.
    fn of(&self, event_time: EventTime) -> Option<usize> {
        if event_time < self.oldest {
            return None;
        }
        let offset = event_time
            .as_micros()
            .saturating_sub(self.oldest.as_micros());
        let band = usize::try_from(offset / self.span_micros).unwrap_or(usize::MAX);
        Some(band.min(Self::COUNT - 1))
    }
}

/// Bloom filters, oldest first. The last one takes new tokens.
#[derive(Default)]
struct Generations(Vec<Generation>);

struct Generation {
    bloom: BloomFilter,
    capacity: usize,
    len: usize,
    opened_at: EventTime,
    /// The latest event time of a token in the generation.
    newest: EventTime,
}

impl Generation {
    fn new(capacity: usize, opened_at: EventTime) -> Self {
        Self {
            bloom: BloomFilter::with_false_pos(FALSE_POSITIVE_RATE).expected_items(capacity),
            capacity,
            len: 0,
            opened_at,
            newest: EventTime::from_micros(i64::MIN),
        }
    }

    fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    fn insert(&mut self, hash: u64, event_time: EventTime) {
        self.bloom.insert_hash(hash);
        self.len += 1;
        self.newest = self.newest.max(event_time);
    }
}

impl Generations {
    /// Adds a token to the newest generation. A new generation is opened when the newest is
    /// full or older than `span_seconds` at `now`, and is sized by the one before it.
    fn insert(&mut self, hash: u64, event_time: EventTime, now: EventTime, span_seconds: i64) {
        let open = match self.0.last() {
            None => Some(MIN_CAPACITY),
            Some(last) if last.is_full() => Some(last.capacity.saturating_mul(2)),
            Some(last) if now >= last.opened_at.plus_seconds(span_seconds) => {
                Some((last.len + last.len / 4).max(MIN_CAPACITY))
            }
            Some(_) => None,
        };
        if let Some(capacity) = open {
            self.0.push(Generation::new(capacity, now));
        }
        if let Some(newest) = self.0.last_mut() {
            newest.insert(hash, event_time);
        }
    }

    fn contains(&self, hash: u64) -> bool {
        self.0
            .iter()
            .rev()
            .any(|generation| generation.bloom.contains_hash(hash))
    }

    fn retain_newer_than(&mut self, oldest_kept: EventTime) {
        self.0.retain(|generation| generation.newest >= oldest_kept);
    }

    fn len(&self) -> usize {
        self.0.iter().map(|generation| generation.len).sum()
    }

    fn memory_bytes(&self) -> usize {
        self.0
            .iter()
            .map(|generation| generation.bloom.num_bits() / 8)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::{EventKey, EventKind};
    use tally_storage::{AppendBatch, MemoryStore, StoredEvent};

    const START: EventTime = EventTime::from_micros(1_700_000_000_000_000);

    fn loaded_filter() -> TokenFilter {
        TokenFilter::with_stored(
            DefaultHashBuilder::default(),
            StoredTokens::Loaded,
            3600,
            START,
        )
    }

    #[test]
    fn inserted_tokens_are_reported() {
        let mut filter = loaded_filter();
        let hashes: Vec<u64> = (0..200_000u64)
            .map(|i| filter.hash(1, i % 1000, &format!("token-{i}")))
            .collect();
        for &hash in &hashes {
            filter.insert(hash, START);
        }

        assert!(hashes.iter().all(|&hash| filter.may_contain(hash)));
        assert!(
            filter.generations.0.len() >= 2,
            "200,000 tokens should fill the first generation of {MIN_CAPACITY}"
        );
    }

    #[test]
    fn new_tokens_mostly_absent() {
        let mut filter = loaded_filter();
        for i in 0..100_000u64 {
            let hash = filter.hash(1, 7, &format!("stored-{i}"));
            filter.insert(hash, START);
        }

        let num_new = 100_000;
        let false_positives = (0..num_new)
            .filter(|i| filter.may_contain(filter.hash(1, 7, &format!("new-{i}"))))
            .count();
        // Two generations at 1% each give about 2%; allow for chance.
        assert!(
            false_positives < num_new / 25,
            "{false_positives} of {num_new} new tokens were reported as possibly stored"
        );
    }

    #[test]
    fn hash_scoped_to_namespace_and_counter() {
        let mut filter = loaded_filter();
        let hash = filter.hash(1, 2, "t");
        filter.insert(hash, START);

        assert_ne!(filter.hash(1, 3, "t"), hash);
        assert_ne!(filter.hash(2, 2, "t"), hash);
        assert_ne!(filter.hash(1, 2, "u"), hash);
    }

    #[test]
    fn unloaded_filter_reports_every_token() {
        let (_sender, receiver) = mpsc::channel();
        let mut filter = TokenFilter::with_stored(
            DefaultHashBuilder::default(),
            StoredTokens::Loading(receiver),
            3600,
            START,
        );
        filter.maintain(START, || 3600);

        assert!(filter.may_contain(filter.hash(1, 1, "never-written")));
    }

    #[test]
    fn generations_expire_after_maximum_window() {
        let mut filter = loaded_filter();
        filter.maintain(START, || 3600);
        let old = filter.hash(1, 1, "old");
        filter.insert(old, START);
        // A quarter of the window later the writer opens a new generation.
        let later = START.plus_seconds(900);
        filter.maintain(later, || 3600);
        let recent = filter.hash(1, 1, "recent");
        filter.insert(recent, later);
        assert_eq!(filter.generations.0.len(), 2);

        // One window after the old token the first generation may go, but not before.
        filter.maintain(START.plus_seconds(3600), || 3600);
        assert!(filter.may_contain(old));
        filter.maintain(START.plus_seconds(3602), || 3600);
        assert_eq!(filter.generations.0.len(), 1);
        assert_eq!(filter.generations.0[0].newest, later);
        assert!(filter.may_contain(recent));

        // A longer window keeps the rest.
        filter.maintain(later.plus_seconds(3700), || 7200);
        assert!(filter.may_contain(recent));
    }

    #[test]
    fn full_generation_doubles_capacity() {
        let mut generations = Generations::default();
        for i in 0..(MIN_CAPACITY as u64 * 3) {
            generations.insert(i, START, START, i64::MAX);
        }

        let capacities: Vec<usize> = generations.0.iter().map(|g| g.capacity).collect();
        assert_eq!(capacities, vec![MIN_CAPACITY, MIN_CAPACITY * 2]);
        assert_eq!(generations.len(), MIN_CAPACITY * 3);
    }

    /// Returns a memory store holding one add per `(token, seconds after START)`.
    fn store_with_tokens(tokens: &[(&str, i64)]) -> Arc<dyn EventStore> {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let events = tokens
            .iter()
            .zip(1u64..)
            .map(|(&(token, seconds), id)| {
                let event = StoredEvent {
                    counter_id: 9,
                    key: EventKey {
                        time: START.plus_seconds(seconds),
                        id,
                    },
                    kind: EventKind::Add { delta: 1 },
                    token: Some(token.into()),
                };
                (1, event)
            })
            .collect();
        let batch = AppendBatch {
            events,
            last_event_id: tokens.len() as u64,
            last_counter_id: 9,
            ..AppendBatch::default()
        };
        store.append(&batch).unwrap();
        store
    }

    #[test]
    fn loader_thread_reads_stored_tokens() {
        let store = store_with_tokens(&[("a", -10), ("b", -5)]);

        let mut filter = TokenFilter::start(store, 3600, START);
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let mut now = START;
        while !filter.is_loaded() {
            assert!(Instant::now() < deadline, "the loader did not finish");
            now = now.plus_seconds(1);
            filter.maintain(now, || 3600);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }

        assert!(filter.may_contain(filter.hash(1, 9, "a")));
        assert!(filter.may_contain(filter.hash(1, 9, "b")));
        assert_eq!(filter.stored_generations.len(), 2);
    }

    /// A span of the store's estimate counts in every quarter that it reaches into, and not at
    /// all when it ends before the window.
    #[test]
    fn estimates_count_in_each_quarter_they_reach() {
        let bands = TimeBands::new(3600, START);
        let span = |from: i64, until: i64, approximate_len| TokenEstimate {
            from: START.plus_seconds(from),
            until: START.plus_seconds(until),
            approximate_len,
        };
        let estimates = [
            span(-4000, -3600, 1),
            span(-3620, -3560, 10),
            span(-2000, -1900, 100),
            span(-1830, -1770, 1000),
            span(-60, 0, 10_000),
            span(0, 60, 100_000),
        ];

        assert_eq!(
            bands.estimate(&estimates),
            [10, 100 + 1000, 1000, 10_000 + 100_000]
        );
    }

    /// The loader puts stored tokens into one generation per quarter of the window, so that
    /// they leave memory in steps, and leaves out tokens older than the window.
    #[test]
    fn stored_tokens_expire_by_quarter() {
        let store = store_with_tokens(&[
            ("outside", -4000),
            ("first-quarter", -3000),
            ("last-quarter", -100),
            ("ahead", 2),
        ]);

        let mut filter = TokenFilter::loaded(store.as_ref(), 3600, START);

        let newest: Vec<EventTime> = filter
            .stored_generations
            .0
            .iter()
            .map(|g| g.newest)
            .collect();
        assert_eq!(newest, [START.minus_seconds(3000), START.plus_seconds(2)]);
        assert_eq!(filter.stored_generations.len(), 3);
        for token in ["first-quarter", "last-quarter", "ahead"] {
            assert!(filter.may_contain(filter.hash(1, 9, token)), "{token}");
        }

        filter.maintain(START.plus_seconds(601), || 3600);
        assert_eq!(filter.stored_generations.0.len(), 1);
        assert!(filter.may_contain(filter.hash(1, 9, "last-quarter")));
    }
}
