//! The write path: one thread applies changes in group commits.
//!
//! Requests queue on a bounded channel. The writer takes every request waiting, checks each
//! one against the state (token, event time, range), assigns event IDs, writes the whole group
//! in one atomic, synced batch, and only then updates the in-memory state and replies. Because
//! one thread decides every change, two requests with the same token can never both apply.

use crate::ServiceError;
use crate::clock::Clock;
use crate::counters::{CounterEntry, Location};
use crate::slow_commits::{CommitTiming, SlowCommitLog};
use crate::state::{CounterKey, NamespaceEntry, SharedState};
use crate::token_filter::TokenFilter;
use hashbrown::{Equivalent, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;
use tally_core::{
    CounterName, CounterState, EventId, EventKey, EventKind, EventTime, IdempotencyToken,
    NamespaceConfig,
};
use tally_storage::{AppendBatch, CounterId, CounterRecord, EventStore, StoredEvent, TokenRecord};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

/// Maximum number of changes in one group commit.
const MAX_CHANGES_PER_COMMIT: usize = 8192;

/// One add or clear, validated except for what needs the state.
pub struct ChangeRequest {
    pub namespace: Arc<NamespaceEntry>,
    pub counter: CounterName,
    pub kind: EventKind,
    /// `None` when the client sent no token: the event is stored without one, and the change
    /// cannot be recognised on retry.
    pub token: Option<IdempotencyToken>,
    /// The event time to use when there is no token.
    pub received_at: EventTime,
}

/// One step of a submission: a change, or a read of a counter's value at that point.
pub enum Operation {
    Change(ChangeRequest),
    /// Applies the change (a clear, as `DEL` sends it) only if the counter exists at that
    /// point, and otherwise fails with [`ServiceError::CounterNotFound`].
    IfExists(ChangeRequest),
    /// Reads the counter's value after the steps before it, with nothing from other
    /// submissions in between. Its outcome carries the value, with event ID 0.
    Read {
        namespace: Arc<NamespaceEntry>,
        counter: CounterName,
    },
}

impl Operation {
    fn target(&self) -> (&Arc<NamespaceEntry>, &CounterName) {
        match self {
            Operation::Change(change) | Operation::IfExists(change) => {
                (&change.namespace, &change.counter)
            }
            Operation::Read { namespace, counter } => (namespace, counter),
        }
    }
}

/// The result of an applied (or already applied) change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeOutcome {
    pub event_id: EventId,
    /// The counter's value after the change.
    pub value: i64,
    /// True when the token had been applied before and nothing changed now.
    pub duplicate: bool,
}

pub enum WriteCommand {
    Changes {
        operations: Vec<Operation>,
        reply: oneshot::Sender<Vec<Result<ChangeOutcome, ServiceError>>>,
    },
    /// Replies once every change queued before it is committed or rejected.
    Barrier { reply: oneshot::Sender<()> },
}

/// The sending side of the write queue.
#[derive(Clone)]
pub struct WriterHandle {
    sender: mpsc::Sender<WriteCommand>,
}

impl WriterHandle {
    /// Queues changes and reads, and waits for their outcomes, one per operation. The writer
    /// never splits one submission across group commits. Fails fast with
    /// [`ServiceError::Overloaded`] when the queue is full.
    pub async fn submit(
        &self,
        operations: Vec<Operation>,
    ) -> Result<Vec<Result<ChangeOutcome, ServiceError>>, ServiceError> {
        let (reply, outcome) = oneshot::channel();
        self.sender
            .try_send(WriteCommand::Changes { operations, reply })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => ServiceError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => stopped(),
            })?;
        outcome.await.map_err(|_| stopped())
    }

    /// Waits until everything queued before this call is committed or rejected.
    pub async fn barrier(&self) -> Result<(), ServiceError> {
        let (reply, done) = oneshot::channel();
        self.sender
            .send(WriteCommand::Barrier { reply })
            .await
            .map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())
    }
}

fn stopped() -> ServiceError {
    ServiceError::Unavailable("the writer has stopped because the server is shutting down".into())
}

/// Starts the writer thread. It stops when every [`WriterHandle`] is dropped and the queue is
/// empty; join the returned handle to wait for the last commit.
pub fn start(
    store: Arc<dyn EventStore>,
    state: Arc<SharedState>,
    clock: Arc<dyn Clock>,
    last_event_id: EventId,
    last_counter_id: CounterId,
    queue_capacity: usize,
) -> std::io::Result<(WriterHandle, std::thread::JoinHandle<()>)> {
    let token_filter = TokenFilter::start(
        Arc::clone(&store),
        maximum_idempotency_window(&state),
        clock.now(),
    );
    start_with_filter(
        store,
        state,
        clock,
        (last_event_id, last_counter_id),
        queue_capacity,
        token_filter,
    )
}

fn start_with_filter(
    store: Arc<dyn EventStore>,
    state: Arc<SharedState>,
    clock: Arc<dyn Clock>,
    (last_event_id, last_counter_id): (EventId, CounterId),
    queue_capacity: usize,
    token_filter: TokenFilter,
) -> std::io::Result<(WriterHandle, std::thread::JoinHandle<()>)> {
    let (sender, receiver) = mpsc::channel(queue_capacity);
    let mut writer = Writer {
        store,
        state,
        clock,
        token_filter,
        last_event_id,
        last_counter_id,
        slow_commits: SlowCommitLog::default(),
    };
    let thread = std::thread::Builder::new()
        .name("tally-writer".into())
        .spawn(move || writer.run(receiver))?;
    Ok((WriterHandle { sender }, thread))
}

struct Writer {
    store: Arc<dyn EventStore>,
    state: Arc<SharedState>,
    clock: Arc<dyn Clock>,
    /// Filters of the tokens that the store may contain, so that new tokens skip the lookup.
    token_filter: TokenFilter,
    last_event_id: EventId,
    last_counter_id: CounterId,
    slow_commits: SlowCommitLog,
}

/// The decisions of one group commit so far, not yet visible to readers.
#[derive(Default)]
struct PendingCommit {
    batch: AppendBatch,
    /// Counter states after the pending changes, with the counter's position in the table
    /// (`None` for a counter that this commit creates).
    counters: HashMap<CounterKey, (CounterEntry, Option<Location>)>,
    /// Tokens claimed by the pending changes.
    tokens: HashMap<(CounterId, String), TokenRecord>,
    /// The namespaces of the commit, each read once.
    namespaces: Vec<(Arc<NamespaceEntry>, NamespaceView)>,
}

/// The parts of a namespace that deciding a change needs, read once per namespace and commit.
/// A rollup that raises the sealing bound meanwhile waits for this commit through its barrier.
#[derive(Clone, Copy)]
struct NamespaceView {
    id: tally_storage::NamespaceId,
    config: tally_core::NamespaceConfig,
    sealing_bound: EventTime,
}

impl PendingCommit {
    /// Sized for `num_changes` changes, so that the maps do not grow while the writer decides.
    fn with_capacity(num_changes: usize) -> Self {
        let mut pending = Self {
            counters: HashMap::with_capacity(num_changes),
            ..Self::default()
        };
        pending.batch.events.reserve(num_changes);
        pending
    }

    fn namespace_view(&mut self, entry: &Arc<NamespaceEntry>) -> NamespaceView {
        let known = self
            .namespaces
            .iter()
            .find(|(known, _)| Arc::ptr_eq(known, entry));
        if let Some((_, view)) = known {
            return *view;
        }
        let record = entry.record();
        let view = NamespaceView {
            id: record.id,
            config: record.config,
            sealing_bound: entry.sealing_bound(),
        };
        self.namespaces.push((Arc::clone(entry), view));
        view
    }
}

/// A borrowed [`CounterKey`], to look up pending counters without copying the name. It hashes
/// exactly as the owned key does.
#[derive(Clone, Copy)]
struct CounterKeyRef<'a>(tally_storage::NamespaceId, &'a str);

impl Hash for CounterKeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0, self.1).hash(state);
    }
}

impl Equivalent<CounterKey> for CounterKeyRef<'_> {
    fn equivalent(&self, key: &CounterKey) -> bool {
        self.0 == key.0 && self.1 == key.1.as_str()
    }
}

/// A borrowed key of [`PendingCommit::tokens`], to look a token up without copying it. It
/// hashes exactly as the owned key does.
#[derive(Clone, Copy)]
struct TokenKeyRef<'a>(CounterId, &'a str);

impl Hash for TokenKeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0, self.1).hash(state);
    }
}

impl Equivalent<(CounterId, String)> for TokenKeyRef<'_> {
    fn equivalent(&self, key: &(CounterId, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// The decision on one change before the commit.
enum Decision {
    /// Final now: a rejection, or a duplicate of a token committed earlier.
    Done(Result<ChangeOutcome, ServiceError>),
    /// Applied or duplicated within this commit: succeeds only if the commit does.
    Pending(ChangeOutcome),
}

impl Writer {
    fn run(&mut self, mut receiver: mpsc::Receiver<WriteCommand>) {
        while let Some(first) = receiver.blocking_recv() {
            let mut commands = vec![first];
            let mut num_changes = command_size(&commands[0]);
            while num_changes < MAX_CHANGES_PER_COMMIT {
                let Ok(next) = receiver.try_recv() else { break };
                num_changes += command_size(&next);
                commands.push(next);
            }
            self.commit_group(commands, num_changes);
        }
    }

    fn commit_group(&mut self, commands: Vec<WriteCommand>, num_changes: usize) {
        let decide_started = Instant::now();
        let now = self.clock.now();
        let state = &self.state;
        self.token_filter
            .maintain(now, || maximum_idempotency_window(state));
        let mut pending = PendingCommit::with_capacity(num_changes);
        let mut decided: Vec<(Vec<Decision>, oneshot::Sender<_>)> = Vec::new();
        let mut barriers = Vec::new();

        // Decide every change against the committed state plus the changes before it.
        let mut committed = self.look_up_counters(&commands, &mut pending).into_iter();
        for command in commands {
            match command {
                WriteCommand::Changes { operations, reply } => {
                    let decisions = operations
                        .into_iter()
                        .map(|operation| {
                            let found = committed.next().flatten();
                            self.decide_operation(operation, now, found, &mut pending)
                        })
                        .collect();
                    decided.push((decisions, reply));
                }
                WriteCommand::Barrier { reply } => barriers.push(reply),
            }
        }

        let write_started = Instant::now();
        // IMPORTANT: write and sync before any state becomes visible or any reply is sent.
        let commit_result = if pending.batch.events.is_empty() {
            Ok(())
        } else {
            pending.batch.last_event_id = self.last_event_id;
            pending.batch.last_counter_id = self.last_counter_id;
            self.store.append(&pending.batch)
        };

        let publish_started = Instant::now();
        let num_operations = decided.iter().map(|(decisions, _)| decisions.len()).sum();
        let failure = match commit_result {
            Ok(()) => {
                for ((namespace_id, name), (entry, location)) in pending.counters {
                    let counters = &self.state.counters;
                    match location {
                        Some(location) => {
                            counters.update_at(location, namespace_id, name.as_str(), entry)
                        }
                        None => counters.insert(namespace_id, name.as_str(), entry),
                    }
                }
                let last_counter_id = &self.state.last_counter_id;
                last_counter_id.store(self.last_counter_id, std::sync::atomic::Ordering::Release);
                None
            }
            Err(storage_error) => {
                error!(error = %storage_error, num_events = pending.batch.events.len(), "group commit failed");
                Some(ServiceError::from(storage_error))
            }
        };

        for (decisions, reply) in decided {
            let outcomes = decisions
                .into_iter()
                .map(|decision| match (decision, &failure) {
                    (Decision::Done(result), _) => result,
                    (Decision::Pending(outcome), None) => Ok(outcome),
                    (Decision::Pending(_), Some(error)) => Err(error.clone()),
                })
                .collect();
            // A client that went away no longer needs the reply.
            let _ = reply.send(outcomes);
        }
        for reply in barriers {
            let _ = reply.send(());
        }
        self.slow_commits.observe(CommitTiming {
            num_operations,
            decide: write_started - decide_started,
            write: publish_started - write_started,
            publish: publish_started.elapsed(),
        });
    }

    /// Looks up the committed entry of every change's counter, in the order of the changes,
    /// all at once.
    fn look_up_counters(
        &self,
        commands: &[WriteCommand],
        pending: &mut PendingCommit,
    ) -> Vec<Option<(CounterEntry, Location)>> {
        let mut keys = Vec::new();
        for command in commands {
            if let WriteCommand::Changes { operations, .. } = command {
                for operation in operations {
                    let (namespace, counter) = operation.target();
                    let namespace = pending.namespace_view(namespace);
                    keys.push((namespace.id, counter.as_str()));
                }
            }
        }
        self.state.counters.get_many_located(&keys)
    }

    /// Decides one operation of a submission. `committed` is its counter's committed entry,
    /// if any, found by [`Self::look_up_counters`].
    fn decide_operation(
        &mut self,
        operation: Operation,
        now: EventTime,
        committed: Option<(CounterEntry, Location)>,
        pending: &mut PendingCommit,
    ) -> Decision {
        match operation {
            Operation::Change(change) => self.decide(change, now, committed, pending),
            Operation::IfExists(change) => {
                let entry = current_entry(&change.namespace, &change.counter, committed, pending);
                match entry {
                    Some(_) => self.decide(change, now, committed, pending),
                    None => Decision::Done(Err(not_found(&change.namespace, &change.counter))),
                }
            }
            Operation::Read { namespace, counter } => {
                read(&namespace, &counter, committed, pending)
            }
        }
    }

    /// Decides a change. `committed` is its counter's committed entry, if any, found by
    /// [`Self::look_up_counters`].
    fn decide(
        &mut self,
        change: ChangeRequest,
        now: EventTime,
        committed: Option<(CounterEntry, Location)>,
        pending: &mut PendingCommit,
    ) -> Decision {
        match self.try_decide(change, now, committed, pending) {
            Ok(decision) => decision,
            Err(error) => Decision::Done(Err(error)),
        }
    }

    fn try_decide(
        &mut self,
        change: ChangeRequest,
        now: EventTime,
        committed: Option<(CounterEntry, Location)>,
        pending: &mut PendingCommit,
    ) -> Result<Decision, ServiceError> {
        let namespace = pending.namespace_view(&change.namespace);
        let key = CounterKeyRef(namespace.id, change.counter.as_str());
        // An earlier change of this commit wins over the committed entry.
        let (existing, location) = match pending.counters.get(&key) {
            Some((entry, location)) => (Some(*entry), *location),
            None => match committed {
                Some((entry, location)) => (Some(entry), Some(location)),
                None => (None, None),
            },
        };

        // A retried token is looked up before the time checks, so a retry of an applied change
        // succeeds even after its event time has aged past the accept limit.
        if let Some(decision) = self.decide_retry(namespace.id, &change, existing, pending)? {
            return Ok(decision);
        }

        let event_time = change
            .token
            .as_ref()
            .map_or(change.received_at, |token| token.event_time);
        check_event_time(&namespace, event_time, now)?;

        // Decide the new state before assigning any ID, so a rejection consumes nothing.
        let event_key = EventKey {
            time: event_time,
            id: self.last_event_id + 1,
        };
        let counter_id = existing.map_or(self.last_counter_id + 1, |entry| entry.id);
        let state = existing.map_or_else(CounterState::default, |entry| entry.state);
        let counter = (namespace.id, counter_id);
        let next_state = self.next_state(state, change.kind, event_key, counter, pending)?;

        let entry = CounterEntry {
            id: counter_id,
            state: next_state,
        };
        self.queue_event(
            change,
            namespace.id,
            (entry, location),
            existing.is_none(),
            event_key,
            pending,
        );
        Ok(Decision::Pending(ChangeOutcome {
            event_id: event_key.id,
            value: next_state.value,
            duplicate: false,
        }))
    }

    /// Returns the decision for a change whose token was claimed before: a duplicate, or a
    /// conflict when the change differs. Returns `None` for a token not seen on this counter.
    fn decide_retry(
        &self,
        namespace_id: tally_storage::NamespaceId,
        change: &ChangeRequest,
        existing: Option<CounterEntry>,
        pending: &PendingCommit,
    ) -> Result<Option<Decision>, ServiceError> {
        let (Some(entry), Some(token)) = (existing, &change.token) else {
            return Ok(None);
        };
        let Some((claimed, is_pending)) =
            self.find_token(namespace_id, entry.id, &token.token, pending)?
        else {
            return Ok(None);
        };

        let time_differs = token.client_time && claimed.event_time != token.event_time;
        if claimed.kind != change.kind || time_differs {
            return Err(ServiceError::TokenConflict {
                token: token.token.clone(),
                existing: describe(claimed),
            });
        }
        let outcome = ChangeOutcome {
            event_id: claimed.event_id,
            value: entry.state.value,
            duplicate: true,
        };
        Ok(Some(if is_pending {
            Decision::Pending(outcome)
        } else {
            Decision::Done(Ok(outcome))
        }))
    }

    /// Returns the counter's state after the change, or the range error that rejects it.
    fn next_state(
        &self,
        state: CounterState,
        kind: EventKind,
        event_key: EventKey,
        (namespace_id, counter_id): (tally_storage::NamespaceId, CounterId),
        pending: &PendingCommit,
    ) -> Result<CounterState, ServiceError> {
        match kind {
            EventKind::Add { delta } => Ok(state.with_add(event_key, delta)?),
            EventKind::Clear => {
                let mut scan_error = None;
                let next = state.with_clear(event_key, || {
                    self.sum_adds_after(namespace_id, counter_id, event_key, pending)
                        .unwrap_or_else(|error| {
                            scan_error = Some(error);
                            0
                        })
                });
                match scan_error {
                    Some(error) => Err(error),
                    None => Ok(next?),
                }
            }
        }
    }

    /// Claims the event ID (and the counter ID of a new counter) and the token, and adds the
    /// event to the pending commit.
    fn queue_event(
        &mut self,
        change: ChangeRequest,
        namespace_id: tally_storage::NamespaceId,
        (entry, location): (CounterEntry, Option<Location>),
        is_new: bool,
        event_key: EventKey,
        pending: &mut PendingCommit,
    ) {
        // NOTE: IDs are not handed back when the commit fails, so event IDs are strictly
        // increasing but may have gaps. Nothing depends on them being dense.
        self.last_event_id = event_key.id;
        if is_new {
            self.last_counter_id = entry.id;
            pending.batch.new_counters.push(CounterRecord {
                id: entry.id,
                namespace_id,
                name: change.counter.clone(),
            });
        }

        let token_text = match change.token {
            Some(token) => {
                let hash = self.token_filter.hash(namespace_id, entry.id, &token.token);
                self.token_filter.insert(hash, event_key.time);
                let record = TokenRecord {
                    event_id: event_key.id,
                    event_time: event_key.time,
                    kind: change.kind,
                };
                pending
                    .tokens
                    .insert((entry.id, token.token.clone()), record);
                Some(token.token.into_boxed_str())
            }
            // Nothing to index: without a token the change cannot be recognised on retry.
            None => None,
        };
        pending.batch.events.push((
            namespace_id,
            StoredEvent {
                counter_id: entry.id,
                key: event_key,
                kind: change.kind,
                token: token_text,
            },
        ));
        pending
            .counters
            .insert((namespace_id, change.counter), (entry, location));
    }

    /// Looks a token up among the pending changes, then in the store. The flag is true while the
    /// claim is still pending.
    fn find_token(
        &self,
        namespace_id: tally_storage::NamespaceId,
        counter_id: CounterId,
        token: &str,
        pending: &PendingCommit,
    ) -> Result<Option<(TokenRecord, bool)>, ServiceError> {
        if let Some(record) = pending.tokens.get(&TokenKeyRef(counter_id, token)) {
            return Ok(Some((*record, true)));
        }
        let hash = self.token_filter.hash(namespace_id, counter_id, token);
        if !self.token_filter.may_contain(hash) {
            return Ok(None);
        }
        let stored = self
            .store
            .find_token(namespace_id, counter_id, token)
            .map_err(|error| {
                warn!(%error, "token lookup failed");
                ServiceError::from(error)
            })?;
        Ok(stored.map(|record| (record, false)))
    }

    /// Sums the deltas of the counter's adds after `after`, from the log and the pending commit.
    /// Only an out-of-order clear needs this; the events it reads are all in the unsealed tail.
    fn sum_adds_after(
        &self,
        namespace_id: tally_storage::NamespaceId,
        counter_id: CounterId,
        after: EventKey,
        pending: &PendingCommit,
    ) -> Result<i128, ServiceError> {
        let mut events = Vec::new();
        self.store.scan_events(
            namespace_id,
            after.time,
            EventTime::from_micros(i64::MAX),
            &mut |event| {
                if event.counter_id == counter_id && event.key > after {
                    events.push(tally_core::Event {
                        key: event.key,
                        kind: event.kind,
                    });
                }
            },
        )?;
        events.extend(
            pending
                .batch
                .events
                .iter()
                .filter(|(_, event)| event.counter_id == counter_id && event.key > after)
                .map(|(_, event)| tally_core::Event {
                    key: event.key,
                    kind: event.kind,
                }),
        );
        Ok(tally_core::Fold::default().with_events(&events).sum)
    }
}

/// Decides a read: the counter's value after the changes decided so far in this group commit.
/// The value is reported only if the commit succeeds, like the changes before it.
fn read(
    namespace: &Arc<NamespaceEntry>,
    counter: &CounterName,
    committed: Option<(CounterEntry, Location)>,
    pending: &mut PendingCommit,
) -> Decision {
    match current_entry(namespace, counter, committed, pending) {
        Some(entry) => Decision::Pending(ChangeOutcome {
            event_id: 0,
            value: entry.state.value,
            duplicate: false,
        }),
        None => Decision::Done(Err(not_found(namespace, counter))),
    }
}

/// Returns the counter's entry after the changes decided so far in this group commit, or
/// `None` for a counter that does not exist.
fn current_entry(
    namespace: &Arc<NamespaceEntry>,
    counter: &CounterName,
    committed: Option<(CounterEntry, Location)>,
    pending: &mut PendingCommit,
) -> Option<CounterEntry> {
    let view = pending.namespace_view(namespace);
    let key = CounterKeyRef(view.id, counter.as_str());
    match pending.counters.get(&key) {
        Some((entry, _)) => Some(*entry),
        None => committed.map(|(entry, _)| entry),
    }
}

fn not_found(namespace: &NamespaceEntry, counter: &CounterName) -> ServiceError {
    ServiceError::CounterNotFound {
        namespace: namespace.record().name.to_string(),
        counter: counter.as_str().to_owned(),
    }
}

/// Returns the maximum idempotency window of all namespaces. Tokens older than that may be
/// forgotten everywhere.
fn maximum_idempotency_window(state: &SharedState) -> i64 {
    state
        .all_namespaces()
        .iter()
        .map(|entry| entry.record().config.idempotency_window_seconds)
        .max()
        .unwrap_or(NamespaceConfig::default().idempotency_window_seconds)
}

fn command_size(command: &WriteCommand) -> usize {
    match command {
        WriteCommand::Changes { operations, .. } => operations.len(),
        WriteCommand::Barrier { .. } => 1,
    }
}

fn describe(record: TokenRecord) -> String {
    match record.kind {
        EventKind::Add { delta } => format!("add of {delta} at {}", record.event_time),
        EventKind::Clear => format!("clear at {}", record.event_time),
    }
}

/// Rejects event times outside `[now - accept_limit, now + max_clock_skew]` or in a window
/// that is sealed already.
fn check_event_time(
    namespace: &NamespaceView,
    event_time: EventTime,
    now: EventTime,
) -> Result<(), ServiceError> {
    let config = namespace.config;
    let oldest = now.minus_seconds(config.accept_limit_seconds);
    let newest = now.plus_seconds(config.max_clock_skew_seconds);
    let field = "idempotency_token.generation_time";
    if event_time < oldest {
        return Err(ServiceError::invalid(
            field,
            format!(
                "{event_time} is older than the accept limit of {} s (the oldest accepted time is {oldest})",
                config.accept_limit_seconds
            ),
        ));
    }
    if event_time > newest {
        return Err(ServiceError::invalid(
            field,
            format!(
                "{event_time} is later than the maximum clock skew of {} s allows (the latest accepted time is {newest})",
                config.max_clock_skew_seconds
            ),
        ));
    }
    let sealed = namespace.sealing_bound;
    if event_time < sealed {
        return Err(ServiceError::invalid(
            field,
            format!(
                "{event_time} lies in a window that is already rolled up (events must be at or after {sealed})"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::state::NamespaceEntry;
    use tally_core::{NamespaceConfig, NamespaceName};
    use tally_storage::{MemoryStore, NamespaceRecord};

    const NOW: EventTime = EventTime::from_micros(1_700_000_000_000_000);

    /// Returns a memory store with the namespace `default` (ID 1), and its entry.
    fn store_with_namespace() -> (Arc<MemoryStore>, Arc<NamespaceEntry>) {
        let store = Arc::new(MemoryStore::new());
        let record = NamespaceRecord {
            id: 1,
            name: NamespaceName::parse("default").unwrap(),
            config: NamespaceConfig::default(),
            sealed_until: EventTime::from_micros(0),
        };
        store.put_namespace(&record).unwrap();
        (store, Arc::new(NamespaceEntry::new(record)))
    }

    /// Returns an add to `counter` in `namespace`, with a token if one is given.
    fn add(
        namespace: &Arc<NamespaceEntry>,
        counter: &str,
        delta: i64,
        token: Option<IdempotencyToken>,
    ) -> Operation {
        Operation::Change(ChangeRequest {
            namespace: Arc::clone(namespace),
            counter: CounterName::parse(counter).unwrap(),
            kind: EventKind::Add { delta },
            token,
            received_at: NOW,
        })
    }

    fn token(text: &str, client_time: bool) -> Option<IdempotencyToken> {
        Some(IdempotencyToken {
            token: text.into(),
            event_time: NOW,
            client_time,
        })
    }

    /// Submits each batch of operations in turn, then stops the writer, and returns the
    /// outcomes of every batch.
    fn submit_and_stop(
        (writer, thread): (WriterHandle, std::thread::JoinHandle<()>),
        batches: Vec<Vec<Operation>>,
    ) -> Vec<Vec<Result<ChangeOutcome, ServiceError>>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let outcomes = batches
            .into_iter()
            .map(|operations| runtime.block_on(writer.submit(operations)).unwrap())
            .collect();
        drop(writer);
        thread.join().unwrap();
        outcomes
    }

    #[test]
    fn borrowed_token_key_finds_owned_key() {
        let mut tokens: HashMap<(CounterId, String), u64> = HashMap::new();
        for i in 0..1_000u64 {
            tokens.insert((i % 7, format!("t{i}")), i);
        }
        for i in 0..1_000u64 {
            let token = format!("t{i}");
            assert_eq!(tokens.get(&TokenKeyRef(i % 7, &token)), Some(&i));
        }
        assert_eq!(tokens.get(&TokenKeyRef(1, "t0")), None);
        assert_eq!(tokens.get(&TokenKeyRef(0, "t")), None);
    }

    /// With the stored tokens loaded into the filter, a retry of a change made before the start
    /// is still recognised, a conflicting one is still rejected, and new tokens apply.
    #[test]
    fn stored_tokens_found_through_filter() {
        let (store, namespace) = store_with_namespace();
        let stored_key = EventKey { time: NOW, id: 1 };
        store
            .append(&AppendBatch {
                events: vec![(
                    1,
                    StoredEvent {
                        counter_id: 1,
                        key: stored_key,
                        kind: EventKind::Add { delta: 5 },
                        token: Some("before".into()),
                    },
                )],
                new_counters: vec![CounterRecord {
                    id: 1,
                    namespace_id: 1,
                    name: CounterName::parse("a").unwrap(),
                }],
                last_event_id: 1,
                last_counter_id: 1,
            })
            .unwrap();
        let state = Arc::new(SharedState::default());
        let counter_state = CounterState {
            value: 5,
            latest_clear: None,
            latest_event: Some(stored_key),
        };
        state.counters.insert(
            1,
            "a",
            CounterEntry {
                id: 1,
                state: counter_state,
            },
        );
        let filter = TokenFilter::loaded(store.as_ref(), 3600, NOW);
        let clock = Arc::new(ManualClock::new(NOW.plus_seconds(1)));
        let writer = start_with_filter(store, Arc::clone(&state), clock, (1, 1), 16, filter);

        let batch = vec![
            add(&namespace, "a", 5, token("before", true)),
            add(&namespace, "a", 6, token("before", true)),
            add(&namespace, "a", 2, token("after", true)),
        ];
        let outcomes = submit_and_stop(writer.unwrap(), vec![batch]).remove(0);

        let retry = outcomes[0].clone().unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.event_id, retry.value), (1, 5));
        assert!(matches!(
            outcomes[1],
            Err(ServiceError::TokenConflict { .. })
        ));
        let new = outcomes[2].clone().unwrap();
        assert!(!new.duplicate);
        assert_eq!(new.value, 7);
        assert_eq!(state.counters.get(1, "a").map(|e| e.state.value), Some(7));
    }

    /// A read returns the value after the operations before it in the same submission, and
    /// a read of a counter that does not exist yet fails with "not found".
    #[test]
    fn reads_follow_earlier_operations() {
        let (store, namespace) = store_with_namespace();
        let state = Arc::new(SharedState::default());
        let writer = start(store, state, Arc::new(ManualClock::new(NOW)), 0, 0, 16);
        let read = || Operation::Read {
            namespace: Arc::clone(&namespace),
            counter: CounterName::parse("a").unwrap(),
        };

        let batches = vec![
            vec![
                read(),
                add(&namespace, "a", 5, None),
                read(),
                add(&namespace, "a", -2, None),
                read(),
            ],
            vec![read()],
        ];
        let outcomes = submit_and_stop(writer.unwrap(), batches);

        assert!(matches!(
            outcomes[0][0],
            Err(ServiceError::CounterNotFound { .. })
        ));
        let values: Vec<i64> = outcomes[0][1..]
            .iter()
            .map(|outcome| outcome.clone().unwrap().value)
            .collect();
        assert_eq!(values, [5, 5, 3, 3]);
        assert_eq!(outcomes[1][0].clone().unwrap().value, 3);
    }

    /// A token sent twice in one group commit applies once. The same token on another counter
    /// is a different claim.
    #[test]
    fn token_repeated_within_one_commit_applies_once() {
        let (store, namespace) = store_with_namespace();
        let state = Arc::new(SharedState::default());
        let clock = Arc::new(ManualClock::new(NOW));
        let writer = start(store, Arc::clone(&state), clock, 0, 0, 16);

        let batch = vec![
            add(&namespace, "a", 5, token("t", false)),
            add(&namespace, "a", 5, token("t", false)),
            add(&namespace, "b", 3, token("t", false)),
        ];
        let outcomes = submit_and_stop(writer.unwrap(), vec![batch]).remove(0);

        let outcomes: Vec<ChangeOutcome> = outcomes.into_iter().map(Result::unwrap).collect();
        assert!(!outcomes[0].duplicate);
        assert_eq!(outcomes[0].value, 5);
        assert!(outcomes[1].duplicate);
        assert_eq!(outcomes[1].event_id, outcomes[0].event_id);
        assert_eq!(outcomes[1].value, 5);
        assert!(!outcomes[2].duplicate);
        assert_eq!(outcomes[2].value, 3);
        assert_ne!(outcomes[2].event_id, outcomes[0].event_id);
        let value = |name: &str| state.counters.get(1, name).map(|entry| entry.state.value);
        assert_eq!(value("a"), Some(5));
        assert_eq!(value("b"), Some(3));
    }
}
