//! Shared by the bridge's tests: real Kafka and PostgreSQL (as dev/test starts them), a database
//! of the tests' own for the outbox and inbox, and subscriber actors that record what they get.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use shop_bridge::{Ack, Delivery, Subscriber, Subscriptions};
use shop_config::Settings;
use shop_schemas::{Envelope, UserRegistered};
use sqlx::PgPool;
use uuid::Uuid;

pub fn settings() -> Settings {
    Settings::from_env().expect("the settings dev/test exports are valid")
}

/// The bridge tests' own database, with the outbox and inbox tables and a table of effects.
pub async fn database(settings: &Settings) -> PgPool {
    let pool = shop_web::postgres::connect(
        &settings.postgres,
        "shop_bridge_test",
        &[&shop_bridge::migrator()],
    )
    .await
    .expect("the test database");
    sqlx::query(
        "create table if not exists effects (event_id uuid not null, effect text not null)",
    )
    .execute(&pool)
    .await
    .expect("the effects table");
    pool
}

/// A name no other test of this run uses (actor names and consumer groups are global).
pub fn unique(prefix: &str) -> &'static str {
    Box::leak(format!("{prefix}-{}", Uuid::new_v4().simple()).into_boxed_str())
}

pub fn user_registered(name: &str) -> UserRegistered {
    UserRegistered {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        user_id: Uuid::new_v4(),
        email: format!("{}@bridge.test", Uuid::new_v4().simple()),
        name: name.to_owned(),
        phone: None,
        verification_token: None,
        verification_expires_at: None,
    }
}

/// What a recorder answers an event with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Done,
    /// Keep the reply port of events whose user has this name and never answer them
    /// (answer the rest).
    Hold(&'static str),
    /// Record the effect through the inbox, then answer Done.
    OnceThroughTheInbox,
}

/// Events whose user has this name find the recorder's store down: it answers
/// `Ack::Unavailable` to the first [`outage_deliveries`] deliveries of each.
pub const STORE_DOWN: &str = "store down";

/// Deliveries of a [`STORE_DOWN`] event answered "unavailable": more than the attempts a retried
/// message gets before the dead-letter topic.
pub fn outage_deliveries() -> usize {
    settings().kafka.max_attempts as usize + 2
}

/// A subscriber that records every event it gets, answering per `answer`. Events whose user
/// is named `reject me` are rejected.
pub struct Recorder;

pub struct RecorderArgs {
    pub seen: Arc<Mutex<Vec<Envelope>>>,
    pub answer: Answer,
    pub pool: Option<PgPool>,
    pub consumer: &'static str,
}

pub struct RecorderState {
    args: RecorderArgs,
    held: Vec<RpcReplyPort<Ack>>,
}

pub enum RecorderMsg {
    Event(Delivery),
}

impl Actor for Recorder {
    type Msg = RecorderMsg;
    type State = RecorderState;
    type Arguments = RecorderArgs;

    async fn pre_start(
        &self,
        _: ActorRef<RecorderMsg>,
        args: RecorderArgs,
    ) -> Result<RecorderState, ActorProcessingErr> {
        Ok(RecorderState {
            args,
            held: Vec::new(),
        })
    }

    async fn handle(
        &self,
        _: ActorRef<RecorderMsg>,
        RecorderMsg::Event(delivery): RecorderMsg,
        state: &mut RecorderState,
    ) -> Result<(), ActorProcessingErr> {
        state
            .args
            .seen
            .lock()
            .expect("the lock")
            .push(delivery.event.clone());
        if let Envelope::UserRegistered(event) = &delivery.event
            && event.name == "reject me"
        {
            let _ = delivery.reply.send(Ack::Reject("told to reject".into()));
            return Ok(());
        }
        if let Envelope::UserRegistered(event) = &delivery.event
            && event.name == STORE_DOWN
        {
            let seen = state.args.seen.lock().expect("the lock");
            let deliveries = seen
                .iter()
                .filter(|seen| seen.event_id() == event.event_id)
                .count();
            if deliveries <= outage_deliveries() {
                let _ = delivery
                    .reply
                    .send(Ack::Unavailable("the store is down".into()));
                return Ok(());
            }
        }
        match state.args.answer {
            Answer::Done => {
                let _ = delivery.reply.send(Ack::Done);
            }
            Answer::Hold(name) => {
                let hold = matches!(&delivery.event, Envelope::UserRegistered(e) if e.name == name);
                if hold {
                    state.held.push(delivery.reply);
                } else {
                    let _ = delivery.reply.send(Ack::Done);
                }
            }
            Answer::OnceThroughTheInbox => {
                let pool = state.args.pool.as_ref().expect("a pool for the inbox");
                let mut transaction = pool.begin().await?;
                let event_id = delivery.event.event_id();
                if shop_bridge::inbox::first_time(&mut transaction, state.args.consumer, event_id)
                    .await?
                {
                    sqlx::query("insert into effects (event_id, effect) values ($1, 'welcome')")
                        .bind(event_id)
                        .execute(&mut *transaction)
                        .await?;
                }
                transaction.commit().await?;
                let _ = delivery.reply.send(Ack::Done);
            }
        }
        Ok(())
    }
}

/// Starts a recorder named `name`; returns what it has seen.
pub async fn recorder(
    name: &str,
    answer: Answer,
    pool: Option<PgPool>,
) -> (ActorRef<RecorderMsg>, Arc<Mutex<Vec<Envelope>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let args = RecorderArgs {
        seen: seen.clone(),
        answer,
        pool,
        consumer: unique("consumer"),
    };
    let (actor, _) = Actor::spawn(Some(name.to_owned()), Recorder, args)
        .await
        .expect("the recorder starts");
    (actor, seen)
}

pub fn subscriptions(recorder: &str) -> Subscriptions {
    Subscriptions::new().on::<UserRegistered>(Subscriber::new(recorder, RecorderMsg::Event))
}

/// A recorder that applies each event through the inbox, and a bridge in a group of its own
/// delivering to it; the bridge's name and what the recorder saw.
pub async fn consumer_through_the_inbox(
    settings: &Settings,
    pool: &PgPool,
) -> (&'static str, Arc<Mutex<Vec<Envelope>>>) {
    let recorder_name = unique("recorder");
    let (_, seen) = recorder(
        recorder_name,
        Answer::OnceThroughTheInbox,
        Some(pool.clone()),
    )
    .await;
    let bridge_name = unique("bridge");
    bridge(
        bridge_name,
        unique("group"),
        settings,
        subscriptions(recorder_name),
    )
    .await;
    (bridge_name, seen)
}

/// Starts a bridge named `name` in consumer group `group`.
pub async fn bridge(
    name: &str,
    group: &'static str,
    settings: &Settings,
    subscriptions: Subscriptions,
) -> ActorRef<shop_bridge::BridgeMsg> {
    let args = shop_bridge::BridgeArgs {
        service: group,
        settings: settings.kafka.clone(),
        subscriptions,
    };
    let (actor, _) = Actor::spawn(Some(name.to_owned()), shop_bridge::Bridge, args)
        .await
        .expect("the bridge starts");
    actor
}

/// A recorder answering `Done` and a bridge in a consumer group of its own delivering to it:
/// the bridge's name, and what the recorder saw.
pub async fn recording_bridge(settings: &Settings) -> (&'static str, Arc<Mutex<Vec<Envelope>>>) {
    let recorder = unique("recorder");
    let (_, seen) = self::recorder(recorder, Answer::Done, None).await;
    let bridge = unique("bridge");
    self::bridge(bridge, unique("group"), settings, subscriptions(recorder)).await;
    (bridge, seen)
}

/// Starts an outbox relay over `pool` publishing through the bridge called `bridge`.
pub async fn relay(name: &str, pool: PgPool, bridge: &str, settings: &Settings) {
    let args = shop_bridge::RelayArgs {
        pool,
        bridge: bridge.to_owned(),
        poll: settings.kafka.outbox_poll,
    };
    Actor::spawn(Some(name.to_owned()), shop_bridge::OutboxRelay, args)
        .await
        .expect("the relay starts");
}

/// Writes `event` to the outbox in a transaction of its own.
pub async fn enqueue(pool: &PgPool, event: &UserRegistered) {
    let mut transaction = pool.begin().await.expect("a transaction");
    shop_bridge::outbox::enqueue(&mut transaction, event.clone(), Some("bridge-test"))
        .await
        .expect("the outbox row");
    shop_bridge::outbox::commit(transaction, pool)
        .await
        .expect("the commit");
}

/// Waits until `seen` holds events matching `count_of` at least `count` times.
pub async fn wait_for(
    seen: &Arc<Mutex<Vec<Envelope>>>,
    count: usize,
    matches: impl Fn(&Envelope) -> bool,
) -> bool {
    for _ in 0..1200 {
        let found = seen
            .lock()
            .expect("the lock")
            .iter()
            .filter(|e| matches(e))
            .count();
        if found >= count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
