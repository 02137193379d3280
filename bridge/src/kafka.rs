//! The Kafka side: the producer, the consumer, the topics, and the headers every message carries.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
pub use rdkafka::producer::FutureProducer;
use rdkafka::producer::FutureRecord;
use shop_config::KafkaSettings;
use shop_schemas::{TOPICS, dead_letter_topic};

pub const CONTENT_TYPE: &str = "application/vnd.apache.avro+binary; encoding=single-object";

/// The header names on every Shop message, readable with `kcat -J` without decoding.
pub mod header {
    pub const EVENT_TYPE: &str = "event-type";
    pub const EVENT_ID: &str = "event-id";
    pub const FINGERPRINT: &str = "schema-fingerprint";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const TRACE_ID: &str = "trace-id";
    /// The W3C trace context of the span that published the message.
    pub const TRACEPARENT: &str = shop_telemetry::TRACEPARENT;
    pub const DLQ_REASON: &str = "dlq-reason";
    pub const DLQ_TOPIC: &str = "dlq-original-topic";
    pub const DLQ_PARTITION: &str = "dlq-original-partition";
    pub const DLQ_OFFSET: &str = "dlq-original-offset";
    pub const DLQ_CONSUMER: &str = "dlq-consumer";
}

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("creating topic {topic}: {code}")]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("encoding an event: {0}")]
    Encode(#[from] shop_schemas::EncodeError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("publishing: {0}")]
    Publish(String),
    #[error("consumer group: {0}")]
    Group(String),
}

/// A message ready to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Outgoing {
    /// `event` as a message of its own topic, keyed by its aggregate id.
    pub fn event(
        event: &shop_schemas::Envelope,
        trace_id: Option<&str>,
    ) -> Result<Self, BridgeError> {
        let (payload, fingerprint) = event.encode()?;
        Ok(Self {
            topic: event.topic().to_owned(),
            key: event.aggregate_id().to_string(),
            payload,
            headers: event_headers(
                event.name(),
                &event.event_id().to_string(),
                &shop_schemas::fingerprint_hex(&fingerprint),
                trace_id,
            ),
        })
    }
}

/// The producer span of publishing one message of `event_type` to `topic`, continuing the trace
/// the event was written in (none when it was written outside of one).
pub fn publish_span(topic: &str, event_type: &str, trace: Option<&str>) -> tracing::Span {
    let Some(trace) = trace.filter(|trace| shop_telemetry::sampled(trace).is_some()) else {
        return tracing::Span::none();
    };
    let span = tracing::info_span!(
        target: shop_telemetry::SPANS_ONLY,
        "publish",
        otel.name = format!("publish {topic}"),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.destination.name = topic,
        event.type = event_type,
    );
    shop_telemetry::continue_trace(&span, trace);
    span
}

/// The consumer span of processing one message: a child of the span that published it (the
/// messaging conventions' "process" span), so the trace goes on across Kafka.
pub fn process_span(
    topic: &str,
    group: &str,
    partition: i32,
    offset: i64,
    traceparent: Option<&str>,
) -> tracing::Span {
    // Made for a trace not kept too: its log lines carry the trace id.
    let Some(traceparent) = traceparent else {
        return tracing::Span::none();
    };
    let span = tracing::info_span!(
        "process",
        otel.name = format!("process {topic}"),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        trace_id = shop_telemetry::trace_id_of(traceparent),
    );
    shop_telemetry::continue_trace(&span, traceparent);
    // Attributes for the trace store only, so the log's lines stay short.
    shop_telemetry::set_attributes(
        &span,
        [
            ("messaging.system", "kafka".to_owned()),
            ("messaging.operation.type", "process".to_owned()),
            ("messaging.destination.name", topic.to_owned()),
            ("messaging.consumer.group.name", group.to_owned()),
            ("messaging.destination.partition.id", partition.to_string()),
            ("messaging.kafka.offset", offset.to_string()),
        ],
    );
    span
}

/// The headers of an event message.
pub fn event_headers(
    event_type: &str,
    event_id: &str,
    fingerprint: &str,
    trace: Option<&str>,
) -> Vec<(String, String)> {
    let mut headers = vec![
        (header::EVENT_TYPE.to_owned(), event_type.to_owned()),
        (header::EVENT_ID.to_owned(), event_id.to_owned()),
        (header::FINGERPRINT.to_owned(), fingerprint.to_owned()),
        (header::CONTENT_TYPE.to_owned(), CONTENT_TYPE.to_owned()),
    ];
    // A trace context gives both headers; a bare id (stored before tracing, or with tracing
    // off the request id) only `trace-id`, for finding the request's log lines.
    if let Some(trace) = trace {
        match shop_telemetry::trace_id_of(trace) {
            Some(trace_id) => {
                headers.push((header::TRACE_ID.to_owned(), trace_id.to_owned()));
                headers.push((header::TRACEPARENT.to_owned(), trace.to_owned()));
            }
            None => headers.push((header::TRACE_ID.to_owned(), trace.to_owned())),
        }
    }
    headers
}

pub(crate) fn owned_headers(headers: &[(String, String)]) -> OwnedHeaders {
    headers
        .iter()
        .fold(OwnedHeaders::new(), |all, (key, value)| {
            all.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        })
}

pub(crate) fn read_headers(
    headers: Option<&rdkafka::message::BorrowedHeaders>,
) -> Vec<(String, String)> {
    headers.map_or_else(Vec::new, |headers| {
        headers
            .iter()
            .map(|header| {
                (
                    header.key.to_owned(),
                    header
                        .value
                        .map(|value| String::from_utf8_lossy(value).into_owned())
                        .unwrap_or_default(),
                )
            })
            .collect()
    })
}

fn base_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.brokers);
    config.set("client.id", &settings.client_id);
    // Back within a second of a broker's return, rather than librdkafka's default of up to 10 s.
    config.set("reconnect.backoff.max.ms", "1000");
    if let Some(debug) = &settings.debug {
        config.set("debug", debug);
    }
    config
}

/// Whether the cluster answers a metadata request within `timeout`, asked through a client of
/// its own made for the question. Not through the service's producer: after a broker outage an
/// idle producer's connections can stay wedged (seen: the notification service's, which only
/// ever writes dead letters, failed every request for minutes while Kafka answered everyone
/// else), and a probe through it would blame the broker for a consumer that is stuck. Blocking.
pub fn cluster_answers(settings: &KafkaSettings, timeout: Duration) -> bool {
    let probe: Result<AdminClient<DefaultClientContext>, _> = base_config(settings).create();
    probe.is_ok_and(|probe| probe.inner().fetch_metadata(None, timeout).is_ok())
}

/// The service's producer: idempotent, every write acknowledged by all in-sync replicas.
pub fn producer(settings: &KafkaSettings) -> Result<FutureProducer, BridgeError> {
    Ok(base_config(settings)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "15000")
        .set("linger.ms", "2")
        .create()?)
}

/// The service's consumer in the group named after the service. An offset is *stored* only after
/// every subscriber acknowledged its message; librdkafka commits the stored offsets every 200 ms
/// and when the consumer closes or loses a partition. (A commit request per message floods the
/// group coordinator: at a few thousand events/s the requests queue up and time out.)
pub fn consumer(settings: &KafkaSettings, group: &str) -> Result<StreamConsumer, BridgeError> {
    Ok(consumer_config(settings, group).create()?)
}

/// The configuration of [`consumer`], for a consumer with a context of its own.
pub fn consumer_config(settings: &KafkaSettings, group: &str) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // A killed consumer's partitions wait this long for another. Not the broker's floor of
        // 6 s: right after a broker restart, with every group catching up on 2 cores, heartbeat
        // answers took longer than that, and each consumer that gave up on its session rejoined
        // as a new member, starting the next rebalance — groups never settled (the fault suite's
        // Kafka scenarios, 90 s without a whole group).
        .set(
            "session.timeout.ms",
            settings.session_timeout.as_millis().to_string(),
        )
        // Frequent heartbeats: a member hears of a rebalance within a second.
        .set("heartbeat.interval.ms", "1000");
    config
}

/// How long a consumer off the checkout's path lets the broker gather messages per fetch.
pub const GATHER: Duration = Duration::from_millis(50);

/// A consumer whose fetches the broker may hold up to `wait` to gather messages (none: every
/// fetch is answered as soon as one message is there).
pub fn gathering(mut config: ClientConfig, wait: Duration) -> ClientConfig {
    if !wait.is_zero() {
        config.set("fetch.min.bytes", "65536").set(
            "fetch.wait.max.ms",
            wait.as_millis().clamp(1, 500).to_string(),
        );
    }
    config
}

/// Creates every Shop topic and its dead-letter topic if absent.
pub async fn ensure_topics(settings: &KafkaSettings) -> Result<(), BridgeError> {
    let names: Vec<String> = TOPICS
        .iter()
        .flat_map(|topic| [(*topic).to_owned(), dead_letter_topic(topic)])
        .collect();
    create_topics(settings, &names).await
}

/// Creates these topics if absent, with the configured partitions and replication.
pub async fn create_topics(settings: &KafkaSettings, names: &[String]) -> Result<(), BridgeError> {
    let admin: AdminClient<DefaultClientContext> = base_config(settings).create()?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                i32::try_from(settings.partitions).unwrap_or(3),
                TopicReplication::Fixed(i32::try_from(settings.replication).unwrap_or(1)),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(BridgeError::Topic { topic, code }),
        }
    }
    Ok(())
}

/// Deletes these topics (benchmarks and tests clean up after themselves).
pub async fn delete_topics(settings: &KafkaSettings, names: &[&str]) -> Result<(), BridgeError> {
    let admin: AdminClient<DefaultClientContext> = base_config(settings).create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.delete_topics(names, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => return Err(BridgeError::Topic { topic, code }),
        }
    }
    Ok(())
}

impl BridgeError {
    /// A message that waited longer than the producer's `message.timeout.ms` for the broker.
    pub fn timed_out(&self) -> bool {
        matches!(
            self,
            BridgeError::Kafka(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut
            ))
        )
    }
}

/// Publishes one message and waits until Kafka has it.
pub async fn publish(producer: &FutureProducer, message: &Outgoing) -> Result<(), BridgeError> {
    let record = FutureRecord::to(&message.topic)
        .key(&message.key)
        .payload(&message.payload)
        .headers(owned_headers(&message.headers));
    producer
        .send(record, Duration::from_secs(15))
        .await
        .map(|_| ())
        .map_err(|(error, _)| BridgeError::Kafka(error))
}
