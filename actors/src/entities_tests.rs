use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use uuid::Uuid;

use super::*;
use crate::testing::wait_until;

/// An entity that counts how often it started, answers pings, and fails when told.
#[derive(Default)]
struct Counter;

enum CounterMsg {
    Ping(RpcReplyPort<usize>),
    Fail,
    Passivate(Idle),
}

impl Actor for Counter {
    type Msg = CounterMsg;
    type State = Arc<AtomicUsize>;
    type Arguments = Arc<AtomicUsize>;

    async fn pre_start(
        &self,
        _: ActorRef<CounterMsg>,
        starts: Arc<AtomicUsize>,
    ) -> Result<Arc<AtomicUsize>, ActorProcessingErr> {
        starts.fetch_add(1, AtomicOrdering::SeqCst);
        Ok(starts)
    }

    async fn handle(
        &self,
        myself: ActorRef<CounterMsg>,
        message: CounterMsg,
        starts: &mut Arc<AtomicUsize>,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CounterMsg::Ping(reply) => {
                let _ = reply.send(starts.load(AtomicOrdering::SeqCst));
            }
            CounterMsg::Fail => return Err("told to fail".into()),
            CounterMsg::Passivate(idle) => {
                if idle.still() {
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
}

impl EntityKind for CounterKind {
    type Actor = Counter;
    type Msg = CounterMsg;
    type Args = Arc<AtomicUsize>;
    const KIND: &'static str = "counter";

    fn args(&self, _: Uuid) -> Arc<AtomicUsize> {
        self.starts.clone()
    }

    fn passivate(idle: Idle) -> CounterMsg {
        CounterMsg::Passivate(idle)
    }
}

async fn registry(idle: Duration) -> (Entities<CounterMsg>, Arc<AtomicUsize>) {
    let name = format!("counters-{}", Uuid::new_v4().simple());
    let starts = Arc::new(AtomicUsize::new(0));
    let entities = Entities::new(CounterKind::KIND, name.clone(), Duration::from_secs(2));
    let args = RegistryArgs {
        kind: CounterKind {
            starts: starts.clone(),
        },
        entities: entities.clone(),
        idle_timeout: idle,
    };
    Actor::spawn(Some(name), EntityRegistry::<CounterKind>::default(), args)
        .await
        .expect("the registry starts");
    (entities, starts)
}

async fn ping(entities: &Entities<CounterMsg>, id: Uuid) -> usize {
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
