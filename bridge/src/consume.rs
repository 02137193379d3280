//! The consuming side of the bridge: the loop that reads its consumer, delivers each event to
//! the subscribed actors (up to 64 at once, each key's in order), stores each partition's offset
//! once every message before it was handled, dead-letters what cannot be handled, and measures
//! the lag.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use shop_schemas::{Envelope, dead_letter_topic, decode};
use tracing::Instrument;

use crate::bridge::{Ack, Delivery, SharedProducer, Subscriber, Subscriptions, current};
use crate::health::{BridgeContext, ConsumerHealth};
use crate::kafka::{self, Outgoing, header};
use crate::metrics;

/// The bridge's consumer, whose librdkafka callbacks feed its health.
pub(crate) type BridgeConsumer = StreamConsumer<BridgeContext>;

/// What the consuming tasks share.
pub(crate) struct Context {
    pub service: &'static str,
    pub consumer: ClosedOffThread,
    pub producer: SharedProducer,
    pub settings: shop_config::KafkaSettings,
    pub subscriptions: Subscriptions,
    pub max_attempts: u32,
    pub health: Arc<ConsumerHealth>,
}

/// The consumer, closed on a thread of its own when the last task holding it ends. Closing
/// leaves the group and commits the stored offsets; with a wedged coordinator that can take
/// minutes, and must not hold up a runtime thread or the fresh consumer that replaces it.
pub(crate) struct ClosedOffThread {
    consumer: Option<BridgeConsumer>,
    closed: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ClosedOffThread {
    /// The consumer, and what resolves once it is closed.
    pub fn new(consumer: BridgeConsumer) -> (Self, tokio::sync::oneshot::Receiver<()>) {
        let (closed, on_closed) = tokio::sync::oneshot::channel();
        let owner = Self {
            consumer: Some(consumer),
            closed: Some(closed),
        };
        (owner, on_closed)
    }
}

impl std::ops::Deref for ClosedOffThread {
    type Target = BridgeConsumer;

    fn deref(&self) -> &BridgeConsumer {
        self.consumer
            .as_ref()
            .expect("the consumer is only taken when its owner is dropped")
    }
}

impl Drop for ClosedOffThread {
    fn drop(&mut self) {
        let (Some(consumer), closed) = (self.consumer.take(), self.closed.take()) else {
            return;
        };
        let close = move || {
            let started = Instant::now();
            let group = consumer.context().group;
            drop(consumer);
            let took = started.elapsed();
            if took > Duration::from_secs(5) {
                tracing::warn!(
                    group,
                    took_s = took.as_secs(),
                    "closing the old kafka consumer took long"
                );
            }
            if let Some(closed) = closed {
                let _ = closed.send(());
            }
        };
        if let Err(error) = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(close)
        {
            tracing::warn!(%error, "no thread to close the kafka consumer on");
        }
    }
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
pub(crate) async fn consume(context: Arc<Context>) -> String {
    let mut in_flight = FuturesUnordered::new();
    let mut positions = Positions::default();
    let mut failures = 0_u64;
    let mut last_reported: Option<Instant> = None;
    loop {
        let room = in_flight.len() + positions.waiting_count < IN_FLIGHT;
        context.health.polling(room);
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
                    Ok(message) => {
                        context.health.received();
                        message.detach()
                    }
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
    let header_value = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let traceparent = header_value(header::TRACEPARENT)
        .filter(|traceparent| shop_telemetry::trace_id_of(traceparent).is_some());
    let span = kafka::process_span(
        message.topic(),
        context.service,
        message.partition(),
        message.offset(),
        traceparent.as_deref(),
    );
    // The subscriber's actor continues from this span; with tracing off, the trace id travels
    // on as it came, for the logs.
    let trace = shop_telemetry::traceparent(&span)
        .or(traceparent)
        .or_else(|| header_value(header::TRACE_ID));
    let payload = message.payload().unwrap_or_default();
    let outcome = match decode(payload) {
        Err(error) => Outcome::DeadLetter(format!("undecodable: {error}")),
        Ok(decoded) => {
            shop_telemetry::set_attributes(
                &span,
                [("event.type", decoded.event.name().to_owned())],
            );
            deliver(&context, decoded.event, trace)
                .instrument(span.clone())
                .await
        }
    };
    if matches!(outcome, Outcome::DeadLetter(_)) {
        span.record("otel.status_code", "ERROR");
    }
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

/// How often the consumer's lag is measured, for `/metrics` and its health.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Measures, per assigned partition, how far the consumer is behind the partition's end: the
/// high watermark (asked of the broker, off the async threads: a stalled fetcher does not
/// update its own idea of it) less the consumer's position, or its committed offset where it
/// has read nothing since the assignment. A partition neither is known for is left out.
pub(crate) async fn report_lag(context: Arc<Context>) {
    let mut tick = tokio::time::interval(LAG_INTERVAL);
    loop {
        tick.tick().await;
        let context = context.clone();
        let measured = tokio::task::spawn_blocking(move || {
            let Ok(position) = context.consumer.position() else {
                return;
            };
            let committed = context.health.view().committed;
            let mut total = 0;
            for element in position.elements() {
                let (topic, partition) = (element.topic(), element.partition());
                let at = match element.offset() {
                    Offset::Offset(at) => at,
                    _ => match committed.get(&(topic.to_owned(), partition)) {
                        Some(&at) => at,
                        None => continue,
                    },
                };
                let Ok((_, high)) =
                    context
                        .consumer
                        .fetch_watermarks(topic, partition, Duration::from_secs(1))
                else {
                    // The broker did not answer: the lag is unknown, not zero.
                    return;
                };
                let lag = (high - at).max(0);
                total += lag;
                metrics::CONSUMER_LAG
                    .with_label_values(&[context.service, topic, &partition.to_string()])
                    .set(lag);
            }
            context.health.lag(total);
        })
        .await;
        if let Err(error) = measured {
            tracing::debug!(%error, "measuring the consumer lag failed");
        }
    }
}

/// How long a subscriber may take to answer one delivery before it counts as "retry".
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

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
