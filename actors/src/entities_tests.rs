use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use uuid::Uuid;

use super::*;
use crate::testing::wait_until;

/// An entity that counts how often it started and how many pings it answered (carried across
/// hibernation in its record), and fails when told.
#[derive(Default)]
struct Counter;

enum CounterMsg {
    /// Answers (starts so far, pings answered by this entity so far, this one included).
    Ping(RpcReplyPort<(usize, u64)>),
    Fail,
    /// Answers like Ping, then ends the entity, its work done.
    Finish(RpcReplyPort<(usize, u64)>),
    Passivate(Idle<u64>),
}

struct CounterState {
    starts: Arc<AtomicUsize>,
    pings: u64,
}

impl Actor for Counter {
    type Msg = CounterMsg;
    type State = CounterState;
    type Arguments = (Arc<AtomicUsize>, Option<u64>);

    async fn pre_start(
        &self,
        _: ActorRef<CounterMsg>,
        (starts, woken_with): (Arc<AtomicUsize>, Option<u64>),
    ) -> Result<CounterState, ActorProcessingErr> {
        starts.fetch_add(1, AtomicOrdering::SeqCst);
        Ok(CounterState {
            starts,
            pings: woken_with.unwrap_or(0),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<CounterMsg>,
        message: CounterMsg,
        state: &mut CounterState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CounterMsg::Ping(reply) => {
                state.pings += 1;
                let _ = reply.send((state.starts.load(AtomicOrdering::SeqCst), state.pings));
            }
            CounterMsg::Fail => return Err("told to fail".into()),
            CounterMsg::Finish(reply) => {
                state.pings += 1;
                let _ = reply.send((state.starts.load(AtomicOrdering::SeqCst), state.pings));
                finish(&myself);
            }
            CounterMsg::Passivate(idle) => {
                let record = idle.hibernates().then_some(state.pings);
                if idle.leave(record) {
                    myself.stop(None)
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
struct CounterKind {
    starts: Arc<AtomicUsize>,
    retired: Arc<AtomicUsize>,
}

impl EntityKind for CounterKind {
    type Actor = Counter;
    type Msg = CounterMsg;
    type Args = (Arc<AtomicUsize>, Option<u64>);
    type Dormant = u64;
    const KIND: &'static str = "counter";

    fn args(&self, _: Uuid, dormant: Option<u64>) -> Self::Args {
        (self.starts.clone(), dormant)
    }

    fn passivate(idle: Idle<u64>) -> CounterMsg {
        CounterMsg::Passivate(idle)
    }

    fn retire(&self, _: Uuid, _: u64) {
        self.retired.fetch_add(1, AtomicOrdering::SeqCst);
    }
}

struct Registry {
    entities: Entities<CounterMsg, u64>,
    starts: Arc<AtomicUsize>,
    retired: Arc<AtomicUsize>,
}

async fn registry_with(idleness: Idleness) -> Registry {
    let name = format!("counters-{}", Uuid::new_v4().simple());
    let kind = CounterKind {
        starts: Arc::new(AtomicUsize::new(0)),
        retired: Arc::new(AtomicUsize::new(0)),
    };
    let entities = Entities::new(CounterKind::KIND, name.clone(), Duration::from_secs(2));
    let args = RegistryArgs {
        kind: kind.clone(),
        entities: entities.clone(),
        idleness,
    };
    Actor::spawn(Some(name), EntityRegistry::<CounterKind>::default(), args)
        .await
        .expect("the registry starts");
    Registry {
        entities,
        starts: kind.starts,
        retired: kind.retired,
    }
}

async fn registry(idle: Duration) -> (Entities<CounterMsg, u64>, Arc<AtomicUsize>) {
    let registry = registry_with(Idleness::passivate_after(idle)).await;
    (registry.entities, registry.starts)
}

async fn ping(entities: &Entities<CounterMsg, u64>, id: Uuid) -> usize {
    pings(entities, id).await.0
}

async fn pings(entities: &Entities<CounterMsg, u64>, id: Uuid) -> (usize, u64) {
    entities
        .call(id, CounterMsg::Ping)
        .await
        .expect("the entity answers")
}

#[tokio::test]
async fn an_entity_is_started_once_on_demand_and_reused() {
    let (entities, starts) = registry(Duration::from_secs(60)).await;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(ping(&entities, first).await, 1);
    assert_eq!(ping(&entities, first).await, 1, "the same actor");
    assert_eq!(ping(&entities, second).await, 2, "one actor per id");
    let name = format!("counter:{first}");
    assert!(ractor::registry::where_is(name).is_some());
    assert_eq!(starts.load(AtomicOrdering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_entity_is_restarted_until_it_fails_too_often() {
    let (entities, starts) = registry(Duration::from_secs(60)).await;
    let id = Uuid::new_v4();
    assert_eq!(ping(&entities, id).await, 1);
    for restarts in 1..=CounterKind::MAX_RESTARTS {
        assert!(entities.send_if_running(id, CounterMsg::Fail));
        let restarted = wait_until(Duration::from_secs(2), || {
            starts.load(AtomicOrdering::SeqCst) == 1 + restarts
        })
        .await;
        assert!(restarted, "restart {restarts} happened at once");
    }
    // One failure too many within the window: left stopped...
    assert!(entities.send_if_running(id, CounterMsg::Fail));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        starts.load(AtomicOrdering::SeqCst),
        1 + CounterKind::MAX_RESTARTS
    );
    assert!(
        !entities.send_if_running(id, CounterMsg::Passivate(Idle::regardless())),
        "not running"
    );
    // ...until its next message starts it again.
    assert_eq!(ping(&entities, id).await, 2 + CounterKind::MAX_RESTARTS);
}

#[tokio::test]
async fn an_idle_entity_is_stopped_and_comes_back_on_its_next_message() {
    let (entities, starts) = registry(Duration::from_millis(300)).await;
    let id = Uuid::new_v4();
    assert_eq!(ping(&entities, id).await, 1);
    let name = format!("counter:{id}");
    let stopped = wait_until(Duration::from_secs(3), || {
        ractor::registry::where_is(name.clone()).is_none()
    })
    .await;
    assert!(stopped, "passivated after the idle time");
    assert_eq!(ping(&entities, id).await, 2, "started again");
    assert_eq!(starts.load(AtomicOrdering::SeqCst), 2);
}

#[tokio::test]
async fn a_hibernated_entity_wakes_from_its_record_until_the_record_is_forgotten() {
    let idleness = Idleness::hibernate_after(Duration::from_millis(300), Duration::from_secs(3));
    let registry = registry_with(idleness).await;
    let entities = &registry.entities;
    let id = Uuid::new_v4();
    for expected in 1..=3 {
        assert_eq!(pings(entities, id).await, (1, expected));
    }
    let hibernated = wait_until(Duration::from_secs(3), || entities.counts() == (0, 1)).await;
    assert!(
        hibernated,
        "hibernated after its idle time: {:?}",
        entities.counts()
    );
    assert_eq!(
        pings(entities, id).await,
        (2, 4),
        "woken from its record: started again, the count kept"
    );
    assert_eq!(entities.counts(), (1, 0), "awake again, no record left");

    let forgotten = wait_until(Duration::from_secs(8), || {
        registry.retired.load(AtomicOrdering::SeqCst) == 1
    })
    .await;
    assert!(
        forgotten,
        "the record is forgotten after the longer idle time"
    );
    assert_eq!(entities.counts(), (0, 0));
    assert_eq!(pings(entities, id).await, (3, 1), "started from nothing");
}

/// Callers racing entities that hibernate all the time: no request is lost or refused, and no
/// entity loses what its record carried (the count of pings answered stays exact).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_hibernation_are_all_answered_and_nothing_is_lost() {
    let idleness = Idleness::hibernate_after(Duration::from_millis(1), Duration::from_secs(60));
    let registry = registry_with(idleness).await;
    let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let callers: Vec<_> = (0..16)
        .map(|caller| {
            let (entities, id) = (registry.entities.clone(), ids[caller % ids.len()]);
            tokio::spawn(async move {
                let (mut answered, until) = (Vec::new(), Instant::now() + Duration::from_secs(2));
                let mut round = 0u64;
                while Instant::now() < until {
                    round += 1;
                    if (round + caller as u64) % 3 == 0 {
                        // Pauses, so that sweeps (every 250 ms) find the entities idle.
                        tokio::time::sleep(Duration::from_millis(1 + round % 7)).await;
                    }
                    answered.push(entities.call(id, CounterMsg::Ping).await);
                }
                answered
            })
        })
        .collect();
    let mut answers = 0u64;
    for caller in callers {
        for answer in caller.await.expect("the caller finishes") {
            answer.expect("every request is answered");
            answers += 1;
        }
    }
    let mut counted = 0;
    for id in &ids {
        // This ping is counted too.
        counted += pings(&registry.entities, *id).await.1 - 1;
    }
    assert_eq!(
        counted, answers,
        "every ping counted once, across every wake"
    );
    assert!(
        registry.starts.load(AtomicOrdering::SeqCst) > ids.len(),
        "the entities did hibernate and wake meanwhile"
    );
}

#[tokio::test]
async fn requests_queued_behind_an_entity_that_finishes_are_all_answered() {
    let (entities, starts) = registry(Duration::from_secs(60)).await;
    let id = Uuid::new_v4();
    // Many callers at once, each asking the entity to finish: those queued behind the first
    // are handled before it ends, the later ones by the entity started again. None is "busy".
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let entities = entities.clone();
            tokio::spawn(async move { entities.call(id, CounterMsg::Finish).await })
        })
        .collect();
    let mut answered = 0;
    for call in calls {
        let answer = call.await.expect("the caller's task");
        assert!(answer.is_ok(), "an answer, not {answer:?}");
        answered += 1;
    }
    assert_eq!(answered, 40);
    assert!(
        starts.load(AtomicOrdering::SeqCst) >= 1,
        "started at least once"
    );
}
