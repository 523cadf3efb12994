//! Property test of the service on the embedded store: a counter's value is a pure function of
//! its events, whatever the interleaving of duplicates, conflicts, clears, rollups and restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use tally_core::fold::Fold;
use tally_core::{EventKey, EventKind, EventTime, NamespaceConfigPatch};
use tally_server::clock::ManualClock;
use tally_server::service::TokenInput;
use tally_server::{Service, ServiceError};
use tally_storage::{Durability, EmbeddedStore};

const NAMESPACE: &str = "prop";
const ACCEPT_LIMIT_SECONDS: i64 = 3;

#[derive(Debug, Clone)]
enum Op {
    Add {
        counter: u8,
        delta: i64,
        token: u8,
        age_seconds: i64,
    },
    Clear {
        counter: u8,
        token: u8,
        age_seconds: i64,
    },
    AdvanceClock {
        seconds: i64,
    },
    Rollup,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let delta = prop_oneof![
        -3i64..=5,
        Just(i64::MAX),
        Just(i64::MIN),
        Just(i64::MAX - 2)
    ];
    prop_oneof![
        8 => (0u8..3, delta, 0u8..8, 0i64..=ACCEPT_LIMIT_SECONDS + 1)
            .prop_map(|(counter, delta, token, age_seconds)| Op::Add { counter, delta, token, age_seconds }),
        2 => (0u8..3, 0u8..8, 0i64..=ACCEPT_LIMIT_SECONDS)
            .prop_map(|(counter, token, age_seconds)| Op::Clear { counter, token, age_seconds }),
        2 => (1i64..=3).prop_map(|seconds| Op::AdvanceClock { seconds }),
        1 => Just(Op::Rollup),
        1 => Just(Op::Restart),
    ]
}

/// The test's record of every event the service acknowledged and every token it claimed.
#[derive(Default)]
struct Model {
    events: HashMap<u8, Vec<(EventKey, EventKind)>>,
    tokens: HashMap<(u8, u8), (EventKind, EventTime, u64)>,
}

impl Model {
    fn value(&self, counter: u8) -> Option<i128> {
        let events = self.events.get(&counter)?;
        let mut sorted = events.clone();
        sorted.sort_by_key(|(key, _)| *key);
        let mut fold = Fold::default();
        for (_, kind) in sorted {
            fold.apply(kind);
        }
        Some(fold.sum)
    }
}

struct Harness {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    service: Option<(Service, std::thread::JoinHandle<()>)>,
}

impl Harness {
    fn open(&mut self) {
        let store = EmbeddedStore::open(self.dir.path(), Durability::OsBuffer).unwrap();
        self.service = Some(Service::open(Arc::new(store), self.clock.clone(), 64).unwrap());
    }

    fn service(&self) -> &Service {
        &self.service.as_ref().unwrap().0
    }

    fn close(&mut self) {
        if let Some((service, writer)) = self.service.take() {
            drop(service);
            writer.join().unwrap();
        }
    }
}

fn token_input(token: u8, time: EventTime) -> Option<TokenInput> {
    Some(TokenInput {
        token: format!("t{token}"),
        generation_time: Some(time.to_string()),
    })
}

async fn apply(harness: &mut Harness, model: &mut Model, op: Op) {
    let now = harness.clock.now_for_test();
    match op {
        Op::Add {
            counter,
            delta,
            token,
            age_seconds,
        } => {
            let time = now.minus_seconds(age_seconds);
            let kind = EventKind::Add { delta };
            let result = harness
                .service()
                .add(
                    NAMESPACE,
                    &format!("c{counter}"),
                    delta,
                    token_input(token, time),
                )
                .await;
            check_change(model, counter, token, kind, time, age_seconds, result);
        }
        Op::Clear {
            counter,
            token,
            age_seconds,
        } => {
            let time = now.minus_seconds(age_seconds);
            let result = harness
                .service()
                .clear(NAMESPACE, &format!("c{counter}"), token_input(token, time))
                .await;
            check_change(
                model,
                counter,
                token,
                EventKind::Clear,
                time,
                age_seconds,
                result,
            );
        }
        Op::AdvanceClock { seconds } => harness.clock.advance_seconds(seconds),
        Op::Rollup => {
            harness.service().roll_up_now().await.unwrap();
        }
        Op::Restart => {
            harness.close();
            harness.open();
        }
    }

    // After every step, each counter equals the fold of its acknowledged events.
    for counter in 0..3u8 {
        let read = harness.service().get(NAMESPACE, &format!("c{counter}"));
        match model.value(counter) {
            None => assert!(
                matches!(read, Err(ServiceError::CounterNotFound { .. })),
                "c{counter}: {read:?}"
            ),
            Some(expected) => assert_eq!(read.map(i128::from), Ok(expected), "c{counter}"),
        }
    }
}

fn check_change(
    model: &mut Model,
    counter: u8,
    token: u8,
    kind: EventKind,
    time: EventTime,
    age_seconds: i64,
    result: Result<tally_server::writer::ChangeOutcome, ServiceError>,
) {
    match (model.tokens.get(&(counter, token)).copied(), result) {
        (Some((claimed_kind, claimed_time, event_id)), Ok(outcome)) => {
            assert!(outcome.duplicate, "a claimed token applied again");
            assert_eq!(outcome.event_id, event_id);
            assert_eq!(
                (claimed_kind, claimed_time),
                (kind, time),
                "a different change matched a token"
            );
        }
        (Some((claimed_kind, claimed_time, _)), Err(error)) => {
            assert!(
                matches!(error, ServiceError::TokenConflict { .. }),
                "{error}"
            );
            assert_ne!(
                (claimed_kind, claimed_time),
                (kind, time),
                "a true retry was rejected"
            );
        }
        (None, Ok(outcome)) => {
            assert!(!outcome.duplicate);
            assert!(
                age_seconds <= ACCEPT_LIMIT_SECONDS,
                "an event older than the accept limit was accepted"
            );
            model
                .tokens
                .insert((counter, token), (kind, time, outcome.event_id));
            let key = EventKey {
                time,
                id: outcome.event_id,
            };
            model.events.entry(counter).or_default().push((key, kind));
            let value = model.value(counter).unwrap();
            assert!(
                i64::try_from(value).is_ok(),
                "accepted change left the range: {value}"
            );
        }
        (None, Err(ServiceError::OutOfRange(_))) => {
            let mut events = model.events.get(&counter).cloned().unwrap_or_default();
            events.push((EventKey { time, id: u64::MAX }, kind));
            let mut trial = Model::default();
            trial.events.insert(counter, events);
            let value = trial.value(counter).unwrap();
            assert!(
                i64::try_from(value).is_err(),
                "rejected a change that stays in range ({value})"
            );
        }
        (None, Err(ServiceError::Invalid(error))) => {
            assert_eq!(error.field, "idempotency_token.generation_time", "{error}");
        }
        (None, Err(error)) => panic!("unexpected error: {error}"),
    }
}

trait NowForTest {
    fn now_for_test(&self) -> EventTime;
}

impl NowForTest for ManualClock {
    fn now_for_test(&self) -> EventTime {
        tally_server::clock::Clock::now(self)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn value_is_function_of_events(ops in prop::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let mut harness = Harness {
                dir: tempfile::tempdir().unwrap(),
                clock: Arc::new(ManualClock::new(EventTime::from_micros(1_800_000_000_000_000))),
                service: None,
            };
            harness.open();
            let patch = NamespaceConfigPatch {
                accept_limit_seconds: Some(ACCEPT_LIMIT_SECONDS),
                ..NamespaceConfigPatch::default()
            };
            harness.service().put_namespace(NAMESPACE, &patch).await.unwrap();
            let mut model = Model::default();
            for op in ops {
                apply(&mut harness, &mut model, op).await;
            }
            harness.close();
        });
    }
}
