//! The bridge actor: the service's one door to Kafka.
//!
//! Out: it publishes what the outbox relay hands it, with the service's one idempotent producer.
//! In: its consumer (in the group named after the service) reads the topics its subscribers care
//! about, decodes each message, and delivers the event to every subscribed actor as an actor
//! message with a reply port. Up to 64 messages are in flight at once, but a key's messages
//! (one aggregate's events) one after another, in order. A partition's offset is committed only
//! once every subscriber has answered `Done` for every message before it. `Retry` redelivers after a backoff; `Reject`, too many retries, or a message that does
//! not decode go to `<topic>.dlq` with the reason, and the consumer moves on.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use shop_config::KafkaSettings;
use shop_schemas::{Envelope, Event, dead_letter_topic, decode};
use tokio::task::AbortHandle;

use crate::kafka::{self, BridgeError, Outgoing, header};
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
    pub trace_id: Option<String>,
    pub reply: RpcReplyPort<Ack>,
}

type Deliver = dyn Fn(&ActorCell, Delivery) -> bool + Send + Sync;

/// An actor, found by name at each delivery (so it may restart), and how to wrap an event in its
/// message type.
#[derive(Clone)]
pub struct Subscriber {
    actor: String,
    deliver: Arc<Deliver>,
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
    by_event: HashMap<&'static str, Vec<Subscriber>>,
    topics: Vec<&'static str>,
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
    /// Messages timed out in the producer (the broker was away): start a fresh producer.
    RenewProducer,
}

/// The service's producer, shared by publishing and dead-lettering, and replaced when it
/// wedges.
type SharedProducer = Arc<std::sync::RwLock<FutureProducer>>;

fn current(producer: &SharedProducer) -> FutureProducer {
    // A poisoned lock still holds a usable producer.
    producer
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

pub struct BridgeState {
    producer: SharedProducer,
    settings: KafkaSettings,
    /// Held for its `Drop`, which stops the consumer with the actor.
    _consuming: Option<Consuming>,
}

struct Consuming(Vec<AbortHandle>);

impl Drop for Consuming {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// How often the consumer's lag is measured for `/metrics`.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Publishes, per assigned partition, how far the consumer is behind the partition's end: the
/// high watermark (asked of the broker, off the async threads) less the consumer's position.
async fn report_lag(context: Arc<Context>) {
    let mut tick = tokio::time::interval(LAG_INTERVAL);
    loop {
        tick.tick().await;
        let context = context.clone();
        let measured = tokio::task::spawn_blocking(move || {
            let Ok(position) = context.consumer.position() else {
                return;
            };
            for element in position.elements() {
                let (topic, partition) = (element.topic(), element.partition());
                let Ok((low, high)) =
                    context
                        .consumer
                        .fetch_watermarks(topic, partition, Duration::from_secs(1))
                else {
                    continue;
                };
                // Nothing read from the partition yet: all of it is still to come.
                let at = match element.offset() {
                    Offset::Offset(at) => at,
                    _ => low,
                };
                metrics::CONSUMER_LAG
                    .with_label_values(&[context.service, topic, &partition.to_string()])
                    .set((high - at).max(0));
            }
        })
        .await;
        if let Err(error) = measured {
            tracing::debug!(%error, "measuring the consumer lag failed");
        }
    }
}

/// How long a subscriber may take to answer one delivery before it counts as "retry".
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

impl Actor for Bridge {
    type Msg = BridgeMsg;
    type State = BridgeState;
    type Arguments = BridgeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<BridgeMsg>,
        args: BridgeArgs,
    ) -> Result<BridgeState, ActorProcessingErr> {
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
        let consuming = if args.subscriptions.is_empty() {
            None
        } else {
            let consumer = kafka::consumer(&args.settings, args.service)?;
            consumer.subscribe(&args.subscriptions.topics)?;
            let context = Arc::new(Context {
                service: args.service,
                consumer,
                producer: producer.clone(),
                subscriptions: args.subscriptions,
                max_attempts: args.settings.max_attempts.max(1),
            });
            let lag = tokio::spawn(report_lag(context.clone()));
            let task = tokio::spawn(consume(context));
            let abort = task.abort_handle();
            tokio::spawn(async move {
                let why = match task.await {
                    Ok(why) => why,
                    Err(error) if error.is_cancelled() => return,
                    Err(error) => error.to_string(),
                };
                let _ = myself.send_message(BridgeMsg::ConsumerStopped(why));
            });
            Some(Consuming(vec![abort, lag.abort_handle()]))
        };
        Ok(BridgeState {
            producer,
            settings: args.settings,
            _consuming: consuming,
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
            BridgeMsg::ConsumerStopped(why) => Err(format!("the consumer stopped: {why}").into()),
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
}

struct Context {
    service: &'static str,
    consumer: StreamConsumer,
    producer: SharedProducer,
    subscriptions: Subscriptions,
    max_attempts: u32,
}

enum Outcome {
    Handled,
    DeadLetter(String),
}

/// Messages handled at once. Each key's messages are still handled one after another, in order.
const IN_FLIGHT: usize = 64;

/// A message whose handling finished (delivered, or dead-lettered).
struct Finished {
    topic: String,
    partition: i32,
    offset: i64,
    key: (String, Vec<u8>),
}

/// Where each partition's offsets stand: handled or not, in order, from the oldest not stored;
/// which keys have a message being handled, and the messages waiting behind them.
#[derive(Default)]
struct Positions {
    partitions: HashMap<(String, i32), BTreeMap<i64, bool>>,
    busy_keys: HashSet<(String, Vec<u8>)>,
    waiting: HashMap<(String, Vec<u8>), VecDeque<OwnedMessage>>,
    waiting_count: usize,
}

impl Positions {
    /// Takes `message` in: the message to handle now, or `None` when its key is busy and it
    /// waits for the one before it.
    fn take(&mut self, message: OwnedMessage, key: (String, Vec<u8>)) -> Option<OwnedMessage> {
        self.partitions
            .entry((message.topic().to_owned(), message.partition()))
            .or_default()
            .insert(message.offset(), false);
        if self.busy_keys.contains(&key) {
            self.waiting.entry(key).or_default().push_back(message);
            self.waiting_count += 1;
            return None;
        }
        self.busy_keys.insert(key);
        Some(message)
    }

    /// Marks `finished` handled. Returns the offset to store (after the longest handled run
    /// from the oldest, never past a message still being handled) and the key's next message.
    fn finish(&mut self, finished: &Finished) -> (Option<i64>, Option<OwnedMessage>) {
        let next_of_key = match self.waiting.get_mut(&finished.key) {
            Some(queue) => {
                let next = queue.pop_front();
                if queue.is_empty() {
                    self.waiting.remove(&finished.key);
                }
                next
            }
            None => None,
        };
        if next_of_key.is_some() {
            self.waiting_count -= 1;
        } else {
            self.busy_keys.remove(&finished.key);
        }
        let Some(offsets) = self
            .partitions
            .get_mut(&(finished.topic.clone(), finished.partition))
        else {
            return (None, next_of_key);
        };
        offsets.insert(finished.offset, true);
        let mut next = None;
        while let Some(entry) = offsets.first_entry() {
            if !*entry.get() {
                break;
            }
            next = Some(*entry.key() + 1);
            entry.remove();
        }
        (next, next_of_key)
    }
}

/// How often a consumer that keeps failing to read says so.
const ERROR_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Reads and delivers messages, several at once but each key's in order, and stores each
/// partition's offset once every message before it was handled.
async fn consume(context: Arc<Context>) -> String {
    let mut in_flight = FuturesUnordered::new();
    let mut positions = Positions::default();
    let mut failures = 0_u64;
    let mut last_reported: Option<Instant> = None;
    loop {
        let room = in_flight.len() + positions.waiting_count < IN_FLIGHT;
        tokio::select! {
            Some(finished) = in_flight.next(), if !in_flight.is_empty() => {
                match store_position(&context, &mut positions, &finished) {
                    Ok(Some(next)) => {
                        let key = finished.key;
                        in_flight.push(handle(context.clone(), next, key));
                    }
                    Ok(None) => {}
                    Err(why) => return why,
                }
            }
            received = context.consumer.recv(), if room => {
                let message = match received {
                    Ok(message) => message.detach(),
                    Err(error) => {
                        // No pause per error: librdkafka puts its errors ahead of other events,
                        // and with a broker back but one connection still retrying, one error a
                        // second paced by a one-second pause starved the rebalance that assigns
                        // the consumer its partitions — it never read again.
                        failures += 1;
                        if last_reported.is_none_or(|at| at.elapsed() >= ERROR_REPORT_INTERVAL) {
                            tracing::warn!(%error, failures, "reading from kafka failed; going on");
                            last_reported = Some(Instant::now());
                            failures = 0;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let key = (
                    message.topic().to_owned(),
                    message.key().map(<[u8]>::to_vec).unwrap_or_default(),
                );
                if let Some(message) = positions.take(message, key.clone()) {
                    in_flight.push(handle(context.clone(), message, key));
                }
            }
        }
    }
}

/// Records `finished`, stores the partition's offset if it moved; the key's next message.
fn store_position(
    context: &Context,
    positions: &mut Positions,
    finished: &Finished,
) -> Result<Option<OwnedMessage>, String> {
    metrics::CONSUMED.inc();
    let (offset, next_of_key) = positions.finish(finished);
    let Some(next) = offset else {
        return Ok(next_of_key);
    };
    let mut position = TopicPartitionList::new();
    position
        .add_partition_offset(&finished.topic, finished.partition, Offset::Offset(next))
        .map_err(|error| format!("recording the offset: {error}"))?;
    // Stored, and committed with the next periodic commit: never before the acknowledgement.
    if let Err(error) = context.consumer.store_offsets(&position) {
        tracing::warn!(%error, "storing an offset failed; the message may come again");
    }
    Ok(next_of_key)
}

/// Decodes and delivers one message, or sends it to the dead-letter topic.
async fn handle(context: Arc<Context>, message: OwnedMessage, key: (String, Vec<u8>)) -> Finished {
    let headers = kafka::read_headers(message.headers().map(|h| h.as_borrowed()));
    let trace_id = headers
        .iter()
        .find(|(key, _)| key == header::TRACE_ID)
        .map(|(_, value)| value.clone());
    let payload = message.payload().unwrap_or_default();
    let outcome = match decode(payload) {
        Err(error) => Outcome::DeadLetter(format!("undecodable: {error}")),
        Ok(decoded) => deliver(&context, decoded.event, trace_id).await,
    };
    if let Outcome::DeadLetter(reason) = outcome {
        let dead = Outgoing {
            topic: dead_letter_topic(message.topic()),
            key: message
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned())
                .unwrap_or_default(),
            payload: payload.to_vec(),
            headers: headers
                .into_iter()
                .chain([
                    (header::DLQ_REASON.to_owned(), reason.clone()),
                    (header::DLQ_TOPIC.to_owned(), message.topic().to_owned()),
                    (
                        header::DLQ_PARTITION.to_owned(),
                        message.partition().to_string(),
                    ),
                    (header::DLQ_OFFSET.to_owned(), message.offset().to_string()),
                    (header::DLQ_CONSUMER.to_owned(), context.service.to_owned()),
                ])
                .collect(),
        };
        tracing::warn!(topic = message.topic(), offset = message.offset(), %reason, "message sent to the dead-letter topic");
        // Not finished until the dead letter is safe: otherwise it would be lost.
        let mut wait = Duration::from_millis(200);
        while let Err(error) = kafka::publish(&current(&context.producer), &dead).await {
            tracing::warn!(%error, "publishing a dead letter failed; trying again");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
        metrics::DEAD_LETTERS.inc();
    }
    Finished {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key,
    }
}

/// Delivers `event` to each subscriber until each has answered `Done`.
async fn deliver(context: &Context, event: Envelope, trace_id: Option<String>) -> Outcome {
    let Some(subscribers) = context.subscriptions.by_event.get(event.name()) else {
        return Outcome::Handled;
    };
    for subscriber in subscribers {
        let (mut attempt, mut outage) = (0, 0u32);
        loop {
            attempt += 1;
            match ask(subscriber, &event, trace_id.clone()).await {
                Ack::Done => break,
                Ack::Reject(reason) => {
                    return Outcome::DeadLetter(format!(
                        "rejected by {}: {reason}",
                        subscriber.actor
                    ));
                }
                Ack::Retry(reason) if attempt >= context.max_attempts => {
                    return Outcome::DeadLetter(format!(
                        "{} asked to retry {attempt} times: {reason}",
                        subscriber.actor
                    ));
                }
                Ack::Retry(reason) => {
                    let wait = Duration::from_millis(100 * (1 << attempt.min(6)));
                    tracing::info!(subscriber = %subscriber.actor, attempt, %reason, "redelivering after a backoff");
                    tokio::time::sleep(wait).await;
                }
                Ack::Unavailable(reason) => {
                    attempt -= 1;
                    outage += 1;
                    let wait = Duration::from_millis(100 * (1 << outage.min(5)));
                    tracing::warn!(subscriber = %subscriber.actor, waits = outage, %reason, "a store is unavailable; redelivering when it may be back");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
    Outcome::Handled
}

async fn ask(subscriber: &Subscriber, event: &Envelope, trace_id: Option<String>) -> Ack {
    let Some(cell) = ractor::registry::where_is(subscriber.actor.clone()) else {
        return Ack::Retry(format!("{} is not running", subscriber.actor));
    };
    let (sender, answer) = ractor::concurrency::oneshot();
    let delivery = Delivery {
        event: event.clone(),
        trace_id,
        reply: sender.into(),
    };
    if !(subscriber.deliver)(&cell, delivery) {
        return Ack::Retry(format!("{} did not take the delivery", subscriber.actor));
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
        Ok(Ok(ack)) => ack,
        Ok(Err(_)) => Ack::Retry(format!("{} stopped before answering", subscriber.actor)),
        Err(_) => Ack::Retry(format!("{} did not answer in time", subscriber.actor)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(partition: i32, offset: i64, key: &str) -> (OwnedMessage, (String, Vec<u8>)) {
        let message = OwnedMessage::new(
            None,
            Some(key.as_bytes().to_vec()),
            "shop.test".to_owned(),
            rdkafka::Timestamp::NotAvailable,
            partition,
            offset,
            None,
        );
        (message, ("shop.test".to_owned(), key.as_bytes().to_vec()))
    }

    fn finished(partition: i32, offset: i64, key: &str) -> Finished {
        Finished {
            topic: "shop.test".to_owned(),
            partition,
            offset,
            key: ("shop.test".to_owned(), key.as_bytes().to_vec()),
        }
    }

    fn take(positions: &mut Positions, partition: i32, offset: i64, key: &str) -> bool {
        let (message, key) = message(partition, offset, key);
        positions.take(message, key).is_some()
    }

    #[test]
    fn the_stored_offset_never_passes_a_message_still_being_handled() {
        let mut positions = Positions::default();
        assert!(take(&mut positions, 0, 10, "a"));
        assert!(take(&mut positions, 0, 11, "b"));
        assert!(take(&mut positions, 0, 12, "c"));
        assert_eq!(positions.finish(&finished(0, 11, "b")).0, None);
        assert_eq!(positions.finish(&finished(0, 12, "c")).0, None);
        assert_eq!(positions.finish(&finished(0, 10, "a")).0, Some(13));
        assert!(positions.busy_keys.is_empty());
    }

    #[test]
    fn a_keys_next_message_waits_and_is_handed_out_when_the_one_before_finishes() {
        let mut positions = Positions::default();
        assert!(take(&mut positions, 0, 1, "a"));
        assert!(!take(&mut positions, 0, 2, "a"), "waits behind offset 1");
        assert!(take(&mut positions, 0, 3, "b"), "another key goes ahead");
        assert_eq!(positions.waiting_count, 1);
        assert_eq!(positions.finish(&finished(0, 3, "b")).0, None);
        let (offset, next) = positions.finish(&finished(0, 1, "a"));
        assert_eq!(offset, Some(2));
        assert_eq!(next.map(|message| message.offset()), Some(2));
        assert_eq!(positions.waiting_count, 0);
        let (offset, next) = positions.finish(&finished(0, 2, "a"));
        assert_eq!(offset, Some(4));
        assert!(next.is_none());
        assert!(positions.busy_keys.is_empty());
    }

    #[test]
    fn partitions_move_on_independently() {
        let mut positions = Positions::default();
        assert!(take(&mut positions, 0, 5, "a"));
        assert!(take(&mut positions, 1, 7, "b"));
        assert!(take(&mut positions, 0, 6, "c"));
        assert_eq!(positions.finish(&finished(1, 7, "b")).0, Some(8));
        assert_eq!(positions.finish(&finished(0, 6, "c")).0, None);
        assert_eq!(positions.finish(&finished(0, 5, "a")).0, Some(7));
    }
}
