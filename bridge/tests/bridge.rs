//! The bridge against the real Kafka and PostgreSQL dev/test started.

mod common;

use std::time::Duration;

use common::{Answer, enqueue, unique, user_registered, wait_for};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use shop_bridge::Outgoing;
use shop_bridge::kafka::header;
use shop_schemas::{Envelope, Event, USERS, encode, fingerprint_hex};

fn is_event(id: uuid::Uuid) -> impl Fn(&Envelope) -> bool {
    move |event| event.event_id() == id
}

#[tokio::test]
async fn an_event_written_to_the_outbox_reaches_a_subscribed_actor() {
    let settings = common::settings();
    let pool = common::database(&settings).await;
    let (bridge, seen) = common::recording_bridge(&settings).await;
    common::relay(unique("relay"), pool.clone(), bridge, &settings).await;

    let event = user_registered("Round Trip");
    enqueue(&pool, &event).await;

    assert!(
        wait_for(&seen, 1, is_event(event.event_id)).await,
        "the event never arrived"
    );
    let arrived = seen
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.event_id() == event.event_id)
        .cloned()
        .unwrap();
    assert_eq!(arrived, Envelope::UserRegistered(event.clone()));
    let sent: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select sent_at from outbox where event_id = $1")
            .bind(event.event_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(sent.is_some(), "the relay marked the row sent");
}

#[tokio::test]
async fn the_same_event_delivered_twice_has_its_effect_once() {
    let settings = common::settings();
    let pool = common::database(&settings).await;
    let (bridge, seen) = common::consumer_through_the_inbox(&settings, &pool).await;

    // The same message twice, as Kafka may deliver it (a relay that published, then died before
    // marking the row).
    let event = user_registered("Twice");
    let (payload, fingerprint) = encode(&event).unwrap();
    let message = Outgoing {
        topic: USERS.to_owned(),
        key: event.aggregate_id().to_string(),
        payload,
        headers: shop_bridge::kafka::event_headers(
            USER_REGISTERED,
            &event.event_id.to_string(),
            &fingerprint_hex(&fingerprint),
            None,
        ),
    };
    shop_bridge::publish_via(bridge, vec![message.clone(), message])
        .await
        .unwrap();

    assert!(
        wait_for(&seen, 2, is_event(event.event_id)).await,
        "both deliveries arrive"
    );
    let effects: i64 = sqlx::query_scalar("select count(*) from effects where event_id = $1")
        .bind(event.event_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(effects, 1);
}

const USER_REGISTERED: &str = <shop_schemas::UserRegistered as Event>::NAME;

/// Messages of `topic` whose key is `key` and that `from` (a header pair, if given) marks, read
/// from the start by a group of its own.
async fn messages_with_key(
    settings: &shop_config::Settings,
    topic: &str,
    key: &str,
    from: Option<(&str, &str)>,
    count: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: StreamConsumer =
        shop_bridge::kafka::consumer(&settings.kafka, unique("reader")).unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while found.len() < count && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await
            && message.key() == Some(key.as_bytes())
        {
            let message = message.detach();
            let marked = from
                .is_none_or(|(name, value)| header_of(&message, name).as_deref() == Some(value));
            if marked {
                found.push(message);
            }
        }
    }
    found
}

fn header_of(message: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| {
            h.value
                .map(|value| String::from_utf8_lossy(value).into_owned())
        })
}

#[tokio::test]
async fn undecodable_and_rejected_messages_go_to_the_dead_letter_topic_and_the_next_is_handled() {
    let settings = common::settings();
    let recorder = unique("recorder");
    let (_, seen) = common::recorder(recorder, Answer::Done, None).await;
    let bridge = unique("bridge");
    let group = unique("group");
    common::bridge(bridge, group, &settings, common::subscriptions(recorder)).await;

    // Three messages on one key (one partition, in this order): garbage, an event the
    // subscriber rejects, a good event.
    let key = uuid::Uuid::new_v4().to_string();
    let rejected = user_registered("reject me");
    let good = user_registered("Good");
    let outgoing = |payload: Vec<u8>| Outgoing {
        topic: USERS.to_owned(),
        key: key.clone(),
        payload,
        headers: vec![],
    };
    let garbage = outgoing(b"not avro at all".to_vec());
    shop_bridge::publish_via(bridge, vec![garbage])
        .await
        .unwrap();
    shop_bridge::publish_via(bridge, vec![outgoing(encode(&rejected).unwrap().0)])
        .await
        .unwrap();
    shop_bridge::publish_via(bridge, vec![outgoing(encode(&good).unwrap().0)])
        .await
        .unwrap();

    assert!(
        wait_for(&seen, 1, is_event(good.event_id)).await,
        "the next message was handled"
    );
    // Every consumer of the topic dead-letters these; this test's bridge signs its own.
    let dead = messages_with_key(
        &settings,
        &shop_schemas::dead_letter_topic(USERS),
        &key,
        Some((header::DLQ_CONSUMER, group)),
        2,
    )
    .await;
    assert_eq!(dead.len(), 2, "both bad messages are in the DLQ");
    let reasons: Vec<String> = dead
        .iter()
        .filter_map(|m| header_of(m, header::DLQ_REASON))
        .collect();
    assert!(reasons[0].starts_with("undecodable"), "{reasons:?}");
    assert!(
        reasons[1].contains("rejected by") && reasons[1].contains("told to reject"),
        "{reasons:?}"
    );
    for message in &dead {
        assert_eq!(
            header_of(message, header::DLQ_TOPIC).as_deref(),
            Some(USERS)
        );
        assert!(header_of(message, header::DLQ_OFFSET).is_some());
        assert!(header_of(message, header::DLQ_PARTITION).is_some());
    }
    assert_eq!(dead[0].payload(), Some(&b"not avro at all"[..]));
}

#[tokio::test]
async fn an_offset_is_committed_only_after_the_subscriber_acknowledged() {
    let settings = common::settings();
    let group = unique("group");
    let holder = unique("holder");
    let hold = unique("hold me");
    let (_, held) = common::recorder(holder, Answer::Hold(hold), None).await;
    let first = unique("bridge");
    let bridge = common::bridge(first, group, &settings, common::subscriptions(holder)).await;

    let event = user_registered(hold);
    let (payload, _) = encode(&event).unwrap();
    let message = Outgoing {
        topic: USERS.to_owned(),
        key: event.aggregate_id().to_string(),
        payload,
        headers: vec![],
    };
    shop_bridge::publish_via(first, vec![message])
        .await
        .unwrap();
    assert!(
        wait_for(&held, 1, is_event(event.event_id)).await,
        "the first delivery"
    );

    // The consumer dies between delivery and acknowledgement.
    bridge.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A new consumer in the same group gets the message again, and this time it is answered.
    let answerer = unique("answerer");
    let (_, seen) = common::recorder(answerer, Answer::Done, None).await;
    common::bridge(
        unique("bridge"),
        group,
        &settings,
        common::subscriptions(answerer),
    )
    .await;
    assert!(
        wait_for(&seen, 1, is_event(event.event_id)).await,
        "redelivered"
    );
}

#[tokio::test]
async fn a_held_message_holds_back_its_own_key_only() {
    let settings = common::settings();
    let holder = unique("holder");
    let hold = unique("hold me");
    let (_, seen) = common::recorder(holder, Answer::Hold(hold), None).await;
    let bridge = unique("bridge");
    common::bridge(
        bridge,
        unique("group"),
        &settings,
        common::subscriptions(holder),
    )
    .await;

    let held = user_registered(hold);
    let mut after = user_registered("after the held one");
    after.user_id = held.user_id;
    let other = user_registered("another key");
    let messages = [&held, &after, &other]
        .into_iter()
        .map(|event| {
            let (payload, _) = encode(event).unwrap();
            Outgoing {
                topic: USERS.to_owned(),
                key: event.aggregate_id().to_string(),
                payload,
                headers: vec![],
            }
        })
        .collect();
    shop_bridge::publish_via(bridge, messages).await.unwrap();

    // The other key's message overtakes the held one; the held key's next one waits for it.
    assert!(
        wait_for(&seen, 1, is_event(held.event_id)).await,
        "the held one"
    );
    assert!(
        wait_for(&seen, 1, is_event(other.event_id)).await,
        "the other key"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let early = seen
        .lock()
        .unwrap()
        .iter()
        .any(|event| event.event_id() == after.event_id);
    assert!(
        !early,
        "a key's second message was delivered before its first was answered"
    );
}

#[tokio::test]
async fn relays_of_several_replicas_publish_each_row_once_and_in_order() {
    let settings = common::settings();
    let pool = common::database(&settings).await;
    let (bridge, seen) = common::recording_bridge(&settings).await;
    // Three replicas' relays over one outbox, woken by every commit.
    for _ in 0..3 {
        common::relay(unique("relay"), pool.clone(), bridge, &settings).await;
    }

    // One key: Kafka keeps its messages in order only if they are published in order.
    let first = user_registered("one of many");
    let mut ids = Vec::new();
    for _ in 0..150 {
        let mut event = user_registered("one of many");
        event.user_id = first.user_id;
        ids.push(event.event_id);
        enqueue(&pool, &event).await;
    }

    let ours = |event: &Envelope| ids.contains(&event.event_id());
    assert!(wait_for(&seen, 150, ours).await, "every row arrived");
    // Duplicates would arrive right behind.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let arrived: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|event| ours(event))
        .map(Envelope::event_id)
        .collect();
    assert_eq!(arrived, ids, "each row once, in the order written");
}

#[tokio::test]
async fn a_subscriber_whose_store_is_down_gets_the_event_again_past_the_attempts() {
    let settings = common::settings();
    let (bridge, seen) = common::recording_bridge(&settings).await;
    let event = user_registered(common::STORE_DOWN);
    let message = Outgoing {
        topic: USERS.to_owned(),
        key: event.aggregate_id().to_string(),
        payload: encode(&event).unwrap().0,
        headers: vec![],
    };
    shop_bridge::publish_via(bridge, vec![message])
        .await
        .unwrap();

    // Counted as attempts, the event would have gone to the dead-letter topic after
    // `max_attempts` deliveries; an outage is waited out instead, and the delivery after it is
    // handled (and is the last).
    let deliveries = common::outage_deliveries() + 1;
    assert!(
        wait_for(&seen, deliveries, is_event(event.event_id)).await,
        "delivered again until the store was back"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivered = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|seen| seen.event_id() == event.event_id)
        .count();
    assert_eq!(delivered, deliveries);
}
