//! The service layer: every front end maps its calls onto [`Service`], so the same request
//! gives the same result and the same class of error everywhere.

use crate::ServiceError;
use crate::clock::Clock;
use crate::rollup::{Rollup, RollupReport};
use crate::state::{NamespaceEntry, SharedState};
use crate::writer::{self, ChangeOutcome, ChangeRequest, Operation, WriterHandle};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tally_core::{
    CounterName, CounterType, EventKind, EventTime, IdempotencyToken, NamespaceConfig,
    NamespaceConfigPatch, NamespaceName, ValidationError,
};
use tally_storage::{EventStore, NamespaceId, NamespaceRecord};
use tracing::info;

/// Maximum number of items in one batch add.
pub const MAX_BATCH_ITEMS: usize = 1000;

/// Default and maximum page size of a counter listing.
pub const DEFAULT_LIST_LIMIT: usize = 1000;

/// Returns the page size of a counter listing: the default when `limit` is `None`, else
/// `limit` when it lies from 1 to the default.
fn list_limit(limit: Option<u64>) -> Result<usize, ValidationError> {
    let Some(limit) = limit else {
        return Ok(DEFAULT_LIST_LIMIT);
    };
    usize::try_from(limit)
        .ok()
        .filter(|limit| (1..=DEFAULT_LIST_LIMIT).contains(limit))
        .ok_or_else(|| invalid_list_limit(limit))
}

/// One page of a counter listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterPage {
    pub counters: Vec<String>,
    /// The `after` of the next page: the last name of this page, or `None` on the last page.
    pub next_after: Option<String>,
}

impl CounterPage {
    /// Cuts `names`, sorted, to `limit`; a name beyond it means that another page follows.
    fn new(mut names: Vec<String>, limit: usize) -> Self {
        let more = names.len() > limit;
        names.truncate(limit);
        let next_after = if more { names.last().cloned() } else { None };
        Self {
            counters: names,
            next_after,
        }
    }
}

/// Returns the error for a listing limit outside 1 to [`DEFAULT_LIST_LIMIT`], or not an
/// integer, with the value as the client sent it.
pub fn invalid_list_limit(value: impl std::fmt::Display) -> ValidationError {
    ValidationError::new(
        "limit",
        format!("must be an integer from 1 to {DEFAULT_LIST_LIMIT}, got {value}"),
    )
}

/// Default capacity of the write queue, in requests. A full queue rejects new writes with
/// [`ServiceError::Overloaded`] instead of letting memory and latency grow.
pub const DEFAULT_WRITE_QUEUE_CAPACITY: usize = 4096;

/// A token as it arrives from a client, before validation.
#[derive(Debug, Clone, Default)]
pub struct TokenInput {
    pub token: String,
    /// RFC 3339; `None` or empty means the time the server receives the request.
    pub generation_time: Option<String>,
}

/// One item of a batch add.
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub counter: String,
    pub delta: i64,
    pub token: Option<TokenInput>,
}

/// One change of a mixed batch, as pipelined Redis-protocol commands produce them.
#[derive(Debug, Clone)]
pub struct BatchChange {
    pub counter: String,
    pub kind: EventKind,
    pub token: Option<TokenInput>,
}

/// One step of a transaction: a change, or a read of a counter's value at that point.
#[derive(Debug, Clone)]
pub enum Step {
    Change(BatchChange),
    Read(String),
    /// Clears the counter if it exists at that point, as `DEL` does, and otherwise fails with
    /// [`ServiceError::CounterNotFound`].
    ClearIfExists(String),
}

/// Maximum number of counters that one step of [`Service::scan_counters`] returns.
pub const MAX_SCAN_COUNT: usize = 10_000;

/// One step of [`Service::scan_counters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterScan {
    /// Cursor of the next step, or 0 once every counter has been visited.
    pub cursor: u64,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceView {
    pub name: String,
    pub config: NamespaceConfig,
}

/// The counter service.
#[derive(Clone)]
pub struct Service {
    store: Arc<dyn EventStore>,
    state: Arc<SharedState>,
    clock: Arc<dyn Clock>,
    writer: WriterHandle,
    namespace_lock: Arc<tokio::sync::Mutex<()>>,
    started: Instant,
}

impl Service {
    /// Loads the store, replays the unsealed tail and starts the writer thread. Returns the
    /// service and the writer thread, which ends after the last service clone is dropped.
    pub fn open(
        store: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        write_queue_capacity: usize,
    ) -> Result<(Self, std::thread::JoinHandle<()>), ServiceError> {
        let recovered = store.recover()?;
        let state = Arc::new(SharedState::default());
        let started = std::time::Instant::now();

        let mut namespace_ids = HashMap::new();
        for record in &recovered.namespaces {
            namespace_ids.insert(record.id, record.clone());
            state.insert_namespace(Arc::new(NamespaceEntry::new(record.clone())));
        }
        if !recovered
            .namespaces
            .iter()
            .any(|record| record.name.as_str() == "default")
        {
            let record = NamespaceRecord {
                id: recovered
                    .namespaces
                    .iter()
                    .map(|record| record.id)
                    .max()
                    .unwrap_or(0)
                    + 1,
                name: NamespaceName::parse("default")?,
                config: NamespaceConfig::default(),
                sealed_until: EventTime::MIN,
            };
            store.put_namespace(&record)?;
            state.insert_namespace(Arc::new(NamespaceEntry::new(record)));
        }

        let num_events = crate::recovery::replay(
            store.as_ref(),
            &state,
            recovered.last_counter_id,
            &namespace_ids,
        )?;
        info!(
            num_namespaces = state.all_namespaces().len(),
            num_counters = state.counters.len(),
            num_tail_events = num_events,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "recovered state"
        );

        state
            .last_counter_id
            .store(recovered.last_counter_id, Ordering::Release);
        let (writer, thread) = writer::start(
            Arc::clone(&store),
            Arc::clone(&state),
            Arc::clone(&clock),
            recovered.last_event_id,
            recovered.last_counter_id,
            write_queue_capacity,
        )
        .map_err(|error| {
            ServiceError::Unavailable(format!("cannot start the writer thread: {error}"))
        })?;

        let service = Self {
            store,
            state,
            clock,
            writer,
            namespace_lock: Arc::new(tokio::sync::Mutex::new(())),
            started: Instant::now(),
        };
        Ok((service, thread))
    }

    pub fn rollup(&self) -> Rollup {
        Rollup {
            store: Arc::clone(&self.store),
            state: Arc::clone(&self.state),
            clock: Arc::clone(&self.clock),
            writer: self.writer.clone(),
            namespace_lock: Arc::clone(&self.namespace_lock),
        }
    }

    /// Runs one rollup of everything sealed, with retention and token expiry.
    pub async fn roll_up_now(&self) -> Result<RollupReport, ServiceError> {
        self.rollup().run_once(true).await
    }

    /// Syncs the store; used at shutdown after the last commit.
    pub fn sync(&self) -> Result<(), ServiceError> {
        Ok(self.store.sync()?)
    }

    // ---- namespaces ----

    pub async fn put_namespace(
        &self,
        name: &str,
        patch: &NamespaceConfigPatch,
    ) -> Result<NamespaceView, ServiceError> {
        let name = NamespaceName::parse(name)?;
        let _guard = self.namespace_lock.lock().await;
        let existing = self.state.namespace(&name);
        let current = existing.as_ref().map(|entry| entry.record());
        let config =
            NamespaceConfig::apply_patch(current.as_ref().map(|record| &record.config), patch)?;

        let record = match current {
            Some(current) => NamespaceRecord {
                config,
                ..NamespaceRecord::clone(&current)
            },
            None => NamespaceRecord {
                id: self.next_namespace_id(),
                name: name.clone(),
                config,
                sealed_until: EventTime::MIN,
            },
        };
        let store = Arc::clone(&self.store);
        let to_store = record.clone();
        run_blocking(move || store.put_namespace(&to_store)).await?;

        match existing {
            Some(entry) => entry.set_record(record),
            None => {
                info!(namespace = %name, counter_type = %config.counter_type, "created namespace");
                self.state
                    .insert_namespace(Arc::new(NamespaceEntry::new(record)));
            }
        }
        Ok(NamespaceView {
            name: name.to_string(),
            config,
        })
    }

    fn next_namespace_id(&self) -> tally_storage::NamespaceId {
        let max = self
            .state
            .all_namespaces()
            .iter()
            .map(|entry| entry.id())
            .max();
        max.unwrap_or(0) + 1
    }

    pub fn get_namespace(&self, name: &str) -> Result<NamespaceView, ServiceError> {
        let entry = self.namespace(name)?;
        let record = entry.record();
        Ok(NamespaceView {
            name: record.name.to_string(),
            config: record.config,
        })
    }

    pub fn list_namespaces(&self) -> Vec<NamespaceView> {
        self.state
            .all_namespaces()
            .iter()
            .map(|entry| {
                let record = entry.record();
                NamespaceView {
                    name: record.name.to_string(),
                    config: record.config,
                }
            })
            .collect()
    }

    /// Returns the names after `after` in byte order, at most `limit` of them (the default
    /// when `None`), and where the next page starts if there are more.
    pub async fn list_counters(
        &self,
        namespace: &str,
        after: Option<&str>,
        limit: Option<u64>,
    ) -> Result<CounterPage, ServiceError> {
        let limit = list_limit(limit)?;
        let entry = self.namespace(namespace)?;
        let record = entry.record();
        // One name beyond the page shows whether another page follows.
        let names = if record.config.counter_type.is_durable() {
            let store = Arc::clone(&self.store);
            let after = after.map(str::to_owned);
            run_blocking(move || store.list_counters(record.id, after.as_deref(), limit + 1))
                .await?
        } else {
            self.best_effort_names(record.id, after)
        };
        Ok(CounterPage::new(names, limit))
    }

    /// Number of counters in the namespace.
    pub fn count_counters(&self, namespace: &str) -> Result<usize, ServiceError> {
        let record = self.namespace(namespace)?.record();
        if record.config.counter_type.is_durable() {
            return Ok(self.state.counters.count_in(record.id));
        }
        let best_effort = &self.state.best_effort;
        Ok(best_effort
            .iter()
            .filter(|item| item.key().0 == record.id)
            .count())
    }

    /// Returns one step of a walk over the namespace's counters in ID order: the names of the
    /// counters with IDs above `cursor`, about `count` of them, and the cursor of the next step.
    /// A counter that exists during the whole walk is returned once, and one created meanwhile
    /// may or may not be. A step reads at most `64 * count` IDs, so in a namespace that contains
    /// few of the node's counters it may return none and a cursor to go on from. `best_effort`
    /// counters have no IDs, so the first step returns them all.
    pub async fn scan_counters(
        &self,
        namespace: &str,
        cursor: u64,
        count: usize,
    ) -> Result<CounterScan, ServiceError> {
        let record = self.namespace(namespace)?.record();
        if !record.config.counter_type.is_durable() {
            let names = self.best_effort_names(record.id, None);
            return Ok(CounterScan { cursor: 0, names });
        }
        let last_id = self.state.last_counter_id.load(Ordering::Acquire);
        let count = count.clamp(1, MAX_SCAN_COUNT) as u64;
        let store = Arc::clone(&self.store);
        run_blocking(move || {
            let until = cursor.saturating_add(64 * count).min(last_id);
            let mut covered = cursor;
            let mut names = Vec::new();
            while covered < until && (names.len() as u64) < count {
                let end = covered.saturating_add(count).min(until);
                store.scan_counters(covered + 1..=end, &mut |counter| {
                    if counter.namespace_id == record.id {
                        names.push(counter.name.to_owned());
                    }
                })?;
                covered = end;
            }
            let cursor = if covered >= last_id { 0 } else { covered };
            Ok(CounterScan { cursor, names })
        })
        .await
    }

    /// Returns the sorted names of a `best_effort` namespace's counters, after `after` if given.
    fn best_effort_names(&self, namespace_id: NamespaceId, after: Option<&str>) -> Vec<String> {
        let mut names: Vec<String> = self
            .state
            .best_effort
            .iter()
            .filter(|item| item.key().0 == namespace_id)
            .map(|item| item.key().1.to_string())
            .filter(|name| after.is_none_or(|after| name.as_str() > after))
            .collect();
        names.sort();
        names
    }

    /// Returns the time since the service started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn namespace(&self, name: &str) -> Result<Arc<NamespaceEntry>, ServiceError> {
        let parsed = NamespaceName::parse(name)?;
        self.state
            .namespace(&parsed)
            .ok_or_else(|| ServiceError::NamespaceNotFound(name.to_owned()))
    }

    // ---- counters ----

    /// Number of durable counters that hold events in the unsealed tail, for which the node
    /// keeps the keys of their latest events.
    pub fn num_tail_counters(&self) -> usize {
        self.state.counters.num_tails()
    }

    /// Returns the counter's exact value; a counter that was never written is not found.
    pub fn get(&self, namespace: &str, counter: &str) -> Result<i64, ServiceError> {
        let entry = self.namespace(namespace)?;
        let name = CounterName::parse(counter)?;
        let record = entry.record();
        let value = if record.config.counter_type.is_durable() {
            self.state
                .counters
                .get(record.id, name.as_str())
                .map(|entry| entry.state.value)
        } else {
            self.state
                .best_effort
                .get(&(record.id, name))
                .map(|value| *value)
        };
        value.ok_or_else(|| ServiceError::CounterNotFound {
            namespace: namespace.to_owned(),
            counter: counter.to_owned(),
        })
    }

    pub async fn add(
        &self,
        namespace: &str,
        counter: &str,
        delta: i64,
        token: Option<TokenInput>,
    ) -> Result<ChangeOutcome, ServiceError> {
        self.change(namespace, counter, EventKind::Add { delta }, token)
            .await
    }

    pub async fn clear(
        &self,
        namespace: &str,
        counter: &str,
        token: Option<TokenInput>,
    ) -> Result<ChangeOutcome, ServiceError> {
        self.change(namespace, counter, EventKind::Clear, token)
            .await
    }

    /// Applies one add or clear: a batch of one, so single calls and batches share one path.
    async fn change(
        &self,
        namespace: &str,
        counter: &str,
        kind: EventKind,
        token: Option<TokenInput>,
    ) -> Result<ChangeOutcome, ServiceError> {
        let change = BatchChange {
            counter: counter.to_owned(),
            kind,
            token,
        };
        let mut outcomes = self.apply_changes(namespace, vec![change]).await?;
        outcomes.pop().unwrap_or_else(|| {
            Err(ServiceError::Unavailable(
                "the writer returned no outcome".into(),
            ))
        })
    }

    /// Applies many adds to one namespace. Each item succeeds or fails on its own; the call
    /// fails as a whole only for an unknown namespace or an oversized batch.
    pub async fn add_batch(
        &self,
        namespace: &str,
        items: Vec<BatchItem>,
    ) -> Result<Vec<Result<ChangeOutcome, ServiceError>>, ServiceError> {
        if items.len() > MAX_BATCH_ITEMS {
            return Err(ServiceError::TooLarge(format!(
                "items: a batch contains at most {MAX_BATCH_ITEMS} items, got {}",
                items.len()
            )));
        }
        let changes = items
            .into_iter()
            .map(|item| BatchChange {
                counter: item.counter,
                kind: EventKind::Add { delta: item.delta },
                token: item.token,
            })
            .collect();
        self.apply_changes(namespace, changes).await
    }

    /// Applies adds and clears to one namespace in order. Each change succeeds or fails on its
    /// own, and those that apply share one group commit, so they become durable together or
    /// not at all.
    pub async fn apply_changes(
        &self,
        namespace: &str,
        changes: Vec<BatchChange>,
    ) -> Result<Vec<Result<ChangeOutcome, ServiceError>>, ServiceError> {
        let prepared = self.prepare_steps(namespace, changes.into_iter().map(Step::Change))?;
        self.submit_prepared(prepared).await
    }

    /// Applies changes and reads to one namespace in order, as `MULTI` and `EXEC` need them.
    /// The changes share one group commit, and no change of another request comes between the
    /// steps, so a read returns the value after the steps before it (in its outcome's
    /// `value`). A read of a missing counter fails with [`ServiceError::CounterNotFound`].
    pub async fn apply_steps(
        &self,
        namespace: &str,
        steps: Vec<Step>,
    ) -> Result<Vec<Result<ChangeOutcome, ServiceError>>, ServiceError> {
        let prepared = self.prepare_steps(namespace, steps.into_iter())?;
        self.submit_prepared(prepared).await
    }

    /// Validates every step. Only valid steps of durable counters go on to the writer.
    fn prepare_steps(
        &self,
        namespace: &str,
        steps: impl ExactSizeIterator<Item = Step>,
    ) -> Result<PreparedSteps, ServiceError> {
        let entry = self.namespace(namespace)?;
        let now = self.clock.now();
        let durable = entry.record().config.counter_type.is_durable();
        let mut prepared = PreparedSteps {
            results: Vec::with_capacity(steps.len()),
            positions: Vec::new(),
            operations: Vec::new(),
        };
        for (position, step) in steps.enumerate() {
            let step = match step {
                Step::Change(change) => self.prepare_change(&entry, change, now, durable),
                Step::Read(counter) => self.prepare_read(&entry, namespace, counter, durable),
                Step::ClearIfExists(counter) => {
                    self.prepare_clear_if_exists(&entry, namespace, counter, now, durable)
                }
            };
            match step {
                Prepared::Done(result) => prepared.results.push(Some(result)),
                Prepared::Submit(operation) => {
                    prepared.results.push(None);
                    prepared.positions.push(position);
                    prepared.operations.push(operation);
                }
            }
        }
        Ok(prepared)
    }

    /// Sends the operations to the writer and returns every step's outcome, in order.
    async fn submit_prepared(
        &self,
        prepared: PreparedSteps,
    ) -> Result<Vec<Result<ChangeOutcome, ServiceError>>, ServiceError> {
        let PreparedSteps {
            mut results,
            positions,
            operations,
        } = prepared;
        if !operations.is_empty() {
            let outcomes = self.writer.submit(operations).await?;
            for (position, outcome) in positions.into_iter().zip(outcomes) {
                results[position] = Some(outcome);
            }
        }
        Ok(results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| Err(ServiceError::Unavailable("missing outcome".into())))
            })
            .collect())
    }

    /// Validates a change. A best-effort change is applied here, and a durable one is returned
    /// for the writer.
    fn prepare_change(
        &self,
        entry: &Arc<NamespaceEntry>,
        change: BatchChange,
        now: EventTime,
        durable: bool,
    ) -> Prepared {
        let token = parse_token(change.token.as_ref(), now);
        let parsed = CounterName::parse_owned(change.counter)
            .map_err(ServiceError::from)
            .and_then(|name| Ok((name, token?)));
        match parsed {
            Err(error) => Prepared::Done(Err(error)),
            Ok((name, _)) if !durable => {
                Prepared::Done(self.change_best_effort(entry, name, change.kind))
            }
            Ok((name, token)) => Prepared::Submit(Operation::Change(ChangeRequest {
                namespace: Arc::clone(entry),
                counter: name,
                kind: change.kind,
                token,
                received_at: now,
            })),
        }
    }

    /// Validates a read. A best-effort counter is read here, and a durable one by the writer.
    fn prepare_read(
        &self,
        entry: &Arc<NamespaceEntry>,
        namespace: &str,
        counter: String,
        durable: bool,
    ) -> Prepared {
        if !durable {
            let value = self.get(namespace, &counter);
            return Prepared::Done(value.map(|value| ChangeOutcome {
                event_id: 0,
                value,
                duplicate: false,
            }));
        }
        match CounterName::parse_owned(counter) {
            Ok(counter) => Prepared::Submit(Operation::Read {
                namespace: Arc::clone(entry),
                counter,
            }),
            Err(error) => Prepared::Done(Err(error.into())),
        }
    }

    /// Validates a clear of a counter that may not exist. A best-effort counter is cleared
    /// here, and a durable one by the writer, which checks that it exists.
    fn prepare_clear_if_exists(
        &self,
        entry: &Arc<NamespaceEntry>,
        namespace: &str,
        counter: String,
        now: EventTime,
        durable: bool,
    ) -> Prepared {
        let change = BatchChange {
            counter,
            kind: EventKind::Clear,
            token: None,
        };
        if !durable {
            return match self.get(namespace, &change.counter) {
                Ok(_) => self.prepare_change(entry, change, now, durable),
                Err(error) => Prepared::Done(Err(error)),
            };
        }
        match self.prepare_change(entry, change, now, durable) {
            Prepared::Submit(Operation::Change(change)) => {
                Prepared::Submit(Operation::IfExists(change))
            }
            other => other,
        }
    }

    /// Best-effort counters live in memory only: no log, no tokens, lost on restart.
    fn change_best_effort(
        &self,
        entry: &NamespaceEntry,
        name: CounterName,
        kind: EventKind,
    ) -> Result<ChangeOutcome, ServiceError> {
        let key = (entry.id(), name);
        let value = match kind {
            EventKind::Clear => {
                self.state.best_effort.insert(key, 0);
                0
            }
            EventKind::Add { delta } => {
                let mut slot = self.state.best_effort.entry(key).or_insert(0);
                let next = slot.checked_add(delta).ok_or_else(|| {
                    ServiceError::OutOfRange(format!(
                        "adding {delta} to {} would leave the signed 64-bit range",
                        *slot
                    ))
                })?;
                *slot = next;
                next
            }
        };
        Ok(ChangeOutcome {
            event_id: 0,
            value,
            duplicate: false,
        })
    }

    pub fn counter_type(&self, namespace: &str) -> Result<CounterType, ServiceError> {
        Ok(self.namespace(namespace)?.record().config.counter_type)
    }
}

/// The steps of one call, validated: the outcomes known so far, and the operations for the
/// writer with the positions of their steps.
struct PreparedSteps {
    results: Vec<Option<Result<ChangeOutcome, ServiceError>>>,
    positions: Vec<usize>,
    operations: Vec<Operation>,
}

/// A validated step of [`Service::apply_steps`].
enum Prepared {
    /// Decided without the writer: an invalid step, or one of a best-effort namespace.
    Done(Result<ChangeOutcome, ServiceError>),
    Submit(Operation),
}

fn parse_token(
    token: Option<&TokenInput>,
    now: EventTime,
) -> Result<Option<IdempotencyToken>, ServiceError> {
    let Some(token) = token else { return Ok(None) };
    let generation_time = token
        .generation_time
        .as_deref()
        .filter(|text| !text.is_empty());
    Ok(Some(IdempotencyToken::parse(
        &token.token,
        generation_time,
        now,
    )?))
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, tally_storage::StorageError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ServiceError::Unavailable(format!("storage task failed: {error}")))?
        .map_err(ServiceError::from)
}
