//! The bridge actor: the service's one door to Kafka.
//!
//! Out: it publishes what the outbox relay hands it, with the service's one idempotent producer.
//! In: its consumer (in the group named after the service) reads the topics its subscribers care
//! about, decodes each message, and delivers the event to every subscribed actor as an actor
//! message with a reply port. Up to 64 messages are in flight at once, but a key's messages
//! (one aggregate's events) one after another, in order. A partition's offset is committed only
//! once every subscriber has answered `Done` for every message before it. `Retry` redelivers
//! after a backoff; `Reject`, too many retries, or a message that does not decode go to
//! `<topic>.dlq` with the reason, and the consumer moves on (the loop is in `consume.rs`).
//!
//! The bridge also watches its consumer (`health.rs`): one that is stuck — out of its group, or
//! lagging without progress, while the cluster answers — makes the bridge fail, and its
//! supervisor starts it again with a fresh consumer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureProducer;
use shop_config::KafkaSettings;
use shop_schemas::{Envelope, Event};
use tokio::task::AbortHandle;

use crate::consume::{self, ClosedOffThread, Context};
use crate::health::{self, BridgeContext, ConsumerHealth, Phase, StuckReason, Watchdog};
use crate::kafka::{self, BridgeError, Outgoing};
use crate::metrics;

/// A subscriber's answer to a delivered event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// Handled (or seen before): the offset may move on.
    Done,
    /// Not now (something failed that may pass): deliver again after a backoff, at most
    /// `SHOP_EVENT_MAX_ATTEMPTS` times in all.
    Retry(String),
    /// A store the subscriber needs is down: deliver again after a backoff for as long as it
    /// stays down. Not counted against the attempts, which are for messages that keep failing:
    /// an outage longer than the attempts' backoff must not dead-letter valid events.
    Unavailable(String),
    /// Never: the message goes to the dead-letter topic.
    Reject(String),
}

impl Ack {
    /// Deliver again: without counting the attempt when `store_down` (see [`Ack::Unavailable`]).
    pub fn retry(store_down: bool, reason: impl Into<String>) -> Self {
        if store_down {
            Ack::Unavailable(reason.into())
        } else {
            Ack::Retry(reason.into())
        }
    }
}

/// An event delivered to a subscriber, who answers on `reply`.
pub struct Delivery {
    pub event: Envelope,
    /// The trace it came in: the consumer span's W3C `traceparent` (with tracing off, the
    /// message's bare `trace-id`), for the subscriber's handling span and what it writes.
    pub trace_id: Option<String>,
    pub reply: RpcReplyPort<Ack>,
}

impl Delivery {
    /// The span of `actor` handling this delivery, in the trace its event came in.
    pub fn span(&self, actor: ActorCell) -> tracing::Span {
        shop_actors::meta::handling_span(actor, self.event.name(), self.trace_id.as_deref())
    }
}

type Deliver = dyn Fn(&ActorCell, Delivery) -> bool + Send + Sync;

/// An actor, found by name at each delivery (so it may restart), and how to wrap an event in its
/// message type.
#[derive(Clone)]
pub struct Subscriber {
    pub(crate) actor: String,
    pub(crate) deliver: Arc<Deliver>,
}

impl Subscriber {
    pub fn new<M: ractor::Message>(
        actor: impl Into<String>,
        message: impl Fn(Delivery) -> M + Send + Sync + 'static,
    ) -> Self {
        Self {
            actor: actor.into(),
            deliver: Arc::new(move |cell, delivery| {
                let actor: ActorRef<M> = cell.clone().into();
                actor.send_message(message(delivery)).is_ok()
            }),
        }
    }
}

impl Subscriber {
    /// An actor whose messages are the deliveries themselves.
    pub fn deliveries(actor: impl Into<String>) -> Self {
        Self::new(actor, |delivery: Delivery| delivery)
    }
}

/// Which actors hear which events.
#[derive(Clone, Default)]
pub struct Subscriptions {
    pub(crate) by_event: HashMap<&'static str, Vec<Subscriber>>,
    topics: Vec<&'static str>,
    /// How long the broker may hold a fetch to gather more messages (zero: answer at once).
    gather: Duration,
}

impl Subscriptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// `subscriber` hears every `E`.
    pub fn on<E: Event>(self, subscriber: Subscriber) -> Self {
        self.on_topic::<E>(E::TOPIC, subscriber)
    }

    /// `subscriber` hears every `E` on `topic` rather than the event's own topic (benchmarks).
    pub fn on_topic<E: Event>(mut self, topic: &'static str, subscriber: Subscriber) -> Self {
        self.by_event.entry(E::NAME).or_default().push(subscriber);
        if !self.topics.contains(&topic) {
            self.topics.push(topic);
        }
        self
    }

    /// Subscribers off the checkout's path (mail, stock sales, carts): the broker may hold each
    /// fetch up to `wait` to answer it with more messages. Every fetch answered costs the broker
    /// and the consumer a round; at a few hundred events a second, answering each at once is
    /// most of the broker's work.
    pub fn gathering(mut self, wait: Duration) -> Self {
        self.gather = wait;
        self
    }

    fn is_empty(&self) -> bool {
        self.by_event.is_empty()
    }
}

pub struct Bridge;

pub struct BridgeArgs {
    /// The consumer group: the service's name.
    pub service: &'static str,
    pub settings: KafkaSettings,
    pub subscriptions: Subscriptions,
}

pub enum BridgeMsg {
    /// Publish these, and answer once Kafka has them all.
    Publish(Vec<Outgoing>, RpcReplyPort<Result<(), String>>),
    /// The consuming task ended: the actor fails, and its supervisor starts a new one.
    ConsumerStopped(String),
    /// The watchdog found the consumer stuck: the actor fails, and its supervisor starts a new
    /// one with a fresh consumer.
    ConsumerStuck(StuckReason, String),
    /// Messages timed out in the producer (the broker was away): start a fresh producer.
    RenewProducer,
}

/// The service's producer, shared by publishing and dead-lettering, and replaced when it
/// wedges.
pub(crate) type SharedProducer = Arc<std::sync::RwLock<FutureProducer>>;

pub(crate) fn current(producer: &SharedProducer) -> FutureProducer {
    // A poisoned lock still holds a usable producer.
    producer
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

pub struct BridgeState {
    producer: SharedProducer,
    settings: KafkaSettings,
    /// The consumer group (the service's name).
    group: &'static str,
    /// Held for its `Drop`, which stops the consumer with the actor.
    consuming: Option<Consuming>,
    /// Resolves once the consumer has closed (left its group, committed what was stored).
    consumer_closed: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// The consuming tasks: the loop, the lag measurement and the watchdog.
struct Consuming(Vec<AbortHandle>);

impl Drop for Consuming {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Actor for Bridge {
    type Msg = BridgeMsg;
    type State = BridgeState;
    type Arguments = BridgeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<BridgeMsg>,
        args: BridgeArgs,
    ) -> Result<BridgeState, ActorProcessingErr> {
        // A consumer that keeps getting stuck is not cured by more restarts: past the budget the
        // bridge no longer starts, its supervisor gives up, and the service stops for its
        // process manager to start it afresh.
        let budget = args.settings.stuck_restarts_per_hour as usize;
        let recent = health::stuck_within(args.service, Duration::from_secs(3600));
        if !args.subscriptions.is_empty() && recent > budget {
            return Err(format!(
                "the {} consumer got stuck {recent} times within an hour (SHOP_KAFKA_STUCK_RESTARTS={budget}); giving up",
                args.service
            )
            .into());
        }
        let producer: SharedProducer =
            Arc::new(std::sync::RwLock::new(kafka::producer(&args.settings)?));
        // Topics are made in the background: a broker that is down at start delays them, and
        // must not fail the service.
        let settings = args.settings.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(500);
            while let Err(error) = kafka::ensure_topics(&settings).await {
                tracing::warn!(%error, "creating the topics failed; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        });
        let (consuming, consumer_closed) = if args.subscriptions.is_empty() {
            (None, None)
        } else {
            // Every restart reason is a series from the start, so a rate over it is defined.
            for reason in [
                StuckReason::OutOfGroup.label(),
                StuckReason::NoProgress.label(),
                "consumer_stopped",
            ] {
                metrics::CONSUMER_RESTARTS.with_label_values(&[args.service, reason]);
            }
            let health = ConsumerHealth::new();
            let context = BridgeContext {
                health: health.clone(),
                group: args.service,
            };
            let consumer: consume::BridgeConsumer = kafka::gathering(
                kafka::consumer_config(&args.settings, args.service),
                args.subscriptions.gather,
            )
            // The group state for the watchdog, every second.
            .set("statistics.interval.ms", "1000")
            .create_with_context(context)?;
            consumer.subscribe(&args.subscriptions.topics)?;
            let (consumer, closed) = ClosedOffThread::new(consumer);
            let context = Arc::new(Context {
                service: args.service,
                consumer,
                producer: producer.clone(),
                settings: args.settings.clone(),
                subscriptions: args.subscriptions,
                max_attempts: args.settings.max_attempts.max(1),
                health,
            });
            let lag = tokio::spawn(consume::report_lag(context.clone()));
            let watch = tokio::spawn(watch(
                context.clone(),
                myself.clone(),
                args.settings.stuck_after,
            ));
            let task = tokio::spawn(consume::consume(context));
            let abort = task.abort_handle();
            let bridge = myself.clone();
            tokio::spawn(async move {
                let why = match task.await {
                    Ok(why) => why,
                    Err(error) if error.is_cancelled() => return,
                    Err(error) => error.to_string(),
                };
                let _ = bridge.send_message(BridgeMsg::ConsumerStopped(why));
            });
            let tasks = Consuming(vec![abort, lag.abort_handle(), watch.abort_handle()]);
            (Some(tasks), Some(closed))
        };
        Ok(BridgeState {
            producer,
            settings: args.settings,
            group: args.service,
            consuming,
            consumer_closed,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<BridgeMsg>,
        message: BridgeMsg,
        state: &mut BridgeState,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        match message {
            BridgeMsg::Publish(messages, reply) => {
                // Off the mailbox: deliveries take a broker round trip.
                let producer = current(&state.producer);
                tokio::spawn(async move {
                    let sends = messages
                        .iter()
                        .map(|message| kafka::publish(&producer, message));
                    let results = futures::future::join_all(sends).await;
                    let published = results.iter().filter(|result| result.is_ok()).count();
                    metrics::PUBLISHED.inc_by(published as u64);
                    if results
                        .iter()
                        .any(|result| result.as_ref().is_err_and(kafka::BridgeError::timed_out))
                    {
                        let _ = myself.send_message(BridgeMsg::RenewProducer);
                    }
                    let outcome = match results.into_iter().find_map(Result::err) {
                        Some(error) => Err(error.to_string()),
                        None => Ok(()),
                    };
                    let _ = reply.send(outcome);
                });
                Ok(())
            }
            BridgeMsg::ConsumerStopped(why) => {
                metrics::CONSUMER_RESTARTS
                    .with_label_values(&[state.group, "consumer_stopped"])
                    .inc();
                let failure = format!("the consumer stopped: {why}");
                note_failure(&myself, &failure);
                Err(failure.into())
            }
            BridgeMsg::ConsumerStuck(reason, detail) => {
                health::record_stuck(state.group);
                metrics::CONSUMER_RESTARTS
                    .with_label_values(&[state.group, reason.label()])
                    .inc();
                tracing::error!(
                    group = state.group,
                    reason = reason.label(),
                    "kafka consumer stuck: {detail}; failing the bridge so that its supervisor starts a fresh consumer"
                );
                let failure = format!("consumer stuck: {detail}");
                note_failure(&myself, &failure);
                Err(failure.into())
            }
            BridgeMsg::RenewProducer => {
                // An idempotent producer whose messages timed out has a gap in its sequence
                // numbers; the broker, back, refuses everything after it (OutOfOrderSequence)
                // and librdkafka does not recover. A new producer starts a new sequence; the
                // outbox sends its rows again, and consumers' inboxes drop any duplicate.
                tracing::warn!("messages timed out in the producer; starting a new one");
                let fresh = kafka::producer(&state.settings)?;
                *state
                    .producer
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                Ok(())
            }
        }
    }

    async fn post_stop(
        &self,
        _: ActorRef<BridgeMsg>,
        state: &mut BridgeState,
    ) -> Result<(), ActorProcessingErr> {
        // A clean stop lets the consumer leave its group and commit what it stored, for a
        // while; a failed bridge (a stuck consumer) does not wait for that.
        drop(state.consuming.take());
        if let Some(closed) = state.consumer_closed.take()
            && tokio::time::timeout(CLOSE_PATIENCE, closed).await.is_err()
        {
            tracing::warn!(
                group = state.group,
                "the kafka consumer did not close in time"
            );
        }
        Ok(())
    }
}

/// How long a bridge that is stopped waits for its consumer to leave the group.
const CLOSE_PATIENCE: Duration = Duration::from_secs(10);

/// Records why this bridge fails, for the tree snapshot of the one that replaces it.
fn note_failure(myself: &ActorRef<BridgeMsg>, failure: &str) {
    if let Some(name) = myself.get_name() {
        shop_actors::meta::note_failure(&name, failure);
    }
}

/// How often the watchdog looks at the consumer.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How long the cluster may take to answer the watchdog's metadata request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Watches the consumer: publishes its state (on `/metrics` and in the tree snapshot) and tells
/// the bridge when it is stuck.
async fn watch(context: Arc<Context>, bridge: ActorRef<BridgeMsg>, stuck_after: Duration) {
    let group = context.service;
    let name = bridge.get_name();
    let mut watchdog = Watchdog::new(stuck_after);
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    let mut reported: Option<std::mem::Discriminant<Phase>> = None;
    loop {
        tick.tick().await;
        let now = Instant::now();
        let seen = context.health.view();
        let cluster_answers =
            !watchdog.needs_probe(&seen, now) || cluster_answers(&context.settings).await;
        let phase = watchdog.assess(&seen, now, cluster_answers);

        metrics::CONSUMER_MEMBER
            .with_label_values(&[group])
            .set(i64::from(seen.member(now)));
        metrics::CONSUMER_ASSIGNED
            .with_label_values(&[group])
            .set(i64::try_from(seen.assigned).unwrap_or(i64::MAX));
        let since_progress =
            now.saturating_duration_since(Watchdog::progress_at(&seen, &phase, now));
        metrics::CONSUMER_SINCE_PROGRESS
            .with_label_values(&[group])
            .set(i64::try_from(since_progress.as_secs()).unwrap_or(i64::MAX));
        let described = phase.describe(&seen, now);
        if let Some(name) = &name {
            shop_actors::meta::set_detail(name, &described);
        }
        // Said once per change into a phase worth an operator's attention.
        let kind = std::mem::discriminant(&phase);
        if reported != Some(kind)
            && matches!(phase, Phase::WaitingForBroker | Phase::Stalled { .. })
        {
            tracing::warn!(group, state = %described, "kafka consumer not reading");
        }
        reported = Some(kind);
        if let Phase::Stuck { reason, detail } = phase {
            let _ = bridge.send_message(BridgeMsg::ConsumerStuck(reason, detail));
            return;
        }
    }
}

/// Whether the cluster answers a metadata request (through a client made for the question, not
/// the consumer's connections): if it does not, the broker is away and a silent consumer is not
/// to blame.
async fn cluster_answers(settings: &KafkaSettings) -> bool {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || kafka::cluster_answers(&settings, PROBE_TIMEOUT))
        .await
        .unwrap_or(false)
}

/// Publishes through the bridge named `bridge` and waits until Kafka has every message.
pub async fn publish_via(bridge: &str, messages: Vec<Outgoing>) -> Result<(), BridgeError> {
    let cell = ractor::registry::where_is(bridge)
        .ok_or_else(|| BridgeError::Publish(format!("the bridge {bridge} is not running")))?;
    let bridge: ActorRef<BridgeMsg> = cell.into();
    match bridge
        .call(
            |reply| BridgeMsg::Publish(messages, reply),
            Some(Duration::from_secs(30)),
        )
        .await
    {
        Ok(ractor::rpc::CallResult::Success(Ok(()))) => Ok(()),
        Ok(ractor::rpc::CallResult::Success(Err(reason))) => Err(BridgeError::Publish(reason)),
        _ => Err(BridgeError::Publish("the bridge did not answer".into())),
    }
}
