//! Distributed tracing, read back from the trace store (Jaeger, which dev/test runs) through the
//! observer's `/admin/traces`: one checkout is one trace across the six services, Kafka and
//! the actors; a redelivered message goes on in the same trace; the observer page draws it.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::orders::{Ordering, products, state_becomes};
use common::{Shopper, env, get, url};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

/// The names a span has in a trace, for assertion messages.
fn outline(trace: &Value) -> String {
    let mut lines: Vec<String> = spans(trace)
        .iter()
        .map(|span| format!("{} {} {}", span["start_us"], span["service"], span["name"]))
        .collect();
    lines.sort();
    lines.join("\n")
}

fn spans(trace: &Value) -> &Vec<Value> {
    trace["spans"].as_array().expect("a trace has spans")
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a str {
    span["attributes"][key].as_str().unwrap_or_default()
}

/// A span of `service` named `name` (and, if given, about `event`).
fn has(trace: &Value, service: &str, name: &str, event: Option<&str>) -> bool {
    spans(trace).iter().any(|span| {
        span["service"] == service
            && span["name"] == name
            && event.is_none_or(|event| attribute(span, "event.type") == event)
    })
}

/// Waits (up to 30 s) until the order's trace holds what `complete` wants: spans reach the
/// store in batches, each service's about half a second after it ends.
async fn trace_of_order(
    admin: &Shopper,
    order_id: &str,
    complete: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = get(
            &admin.client,
            url(&format!("/admin/traces?order_id={order_id}")),
            Some(&admin.token),
        )
        .await;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        if status.is_success() && complete(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the order's trace never became whole ({status}):\n{}",
            if status.is_success() {
                outline(&body)
            } else {
                body.to_string()
            }
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn checkout_is_whole(trace: &Value) -> bool {
    has(trace, "order", "publish shop.orders", Some("OrderPlaced"))
        && has(trace, "payment", "process shop.orders", Some("OrderPlaced"))
        && has(
            trace,
            "payment",
            "publish shop.payments",
            Some("PaymentSucceeded"),
        )
        && has(
            trace,
            "order",
            "process shop.payments",
            Some("PaymentSucceeded"),
        )
        && has(trace, "order", "order handled PaymentSucceeded", None)
        && has(trace, "notification", "send email", None)
}

#[tokio::test]
async fn one_checkout_is_one_trace_across_services_kafka_and_actors() {
    let shelf = products(&[5]).await;
    let shopper = Shopper::customer().await;
    shopper.put_in_cart(&shelf[0], 1).await;
    let placed = shopper
        .checkout_with(&uuid::Uuid::new_v4().to_string(), "pm_card_visa")
        .await;
    assert_eq!(placed.status(), reqwest::StatusCode::CREATED);
    let request_id = placed.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let order: Value = placed.json().await.unwrap();
    let order_id = order["id"].as_str().unwrap();
    state_becomes(&shopper, order_id, "paid").await;

    let admin = Shopper::admin().await;
    let trace = trace_of_order(&admin, order_id, checkout_is_whole).await;
    let spans = spans(&trace);

    // One trace, and the request's id is its id: a request id from a log line finds it.
    assert_eq!(
        trace["trace_id"],
        request_id.as_str(),
        "{}",
        outline(&trace)
    );
    let services: HashSet<&str> = spans
        .iter()
        .filter_map(|span| span["service"].as_str())
        .collect();
    for service in common::SERVICES {
        assert!(
            services.contains(service),
            "no span of {service}:\n{}",
            outline(&trace)
        );
    }
    // The checkout is the root; every other span's parent is in the trace, and began first.
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .map(|span| (span["span_id"].as_str().unwrap(), span))
        .collect();
    let roots: Vec<&Value> = spans
        .iter()
        .filter(|span| span["parent_id"].is_null())
        .collect();
    assert_eq!(roots.len(), 1, "one root:\n{}", outline(&trace));
    assert_eq!(roots[0]["name"], "POST /orders");
    assert_eq!(roots[0]["service"], "order");
    for span in spans {
        let Some(parent) = span["parent_id"].as_str() else {
            continue;
        };
        let parent = by_id
            .get(parent)
            .unwrap_or_else(|| panic!("the parent of {span} is not in the trace"));
        // One machine, one clock: a child never starts before its parent (1 ms for rounding).
        assert!(
            span["start_us"].as_i64() >= parent["start_us"].as_i64().map(|start| start - 1000),
            "{} starts before its parent {}",
            span["name"],
            parent["name"]
        );
    }
    // Kafka in the trace: each consumer's span is a child of the producer's, later than it.
    let publish = |event: &str| {
        spans
            .iter()
            .find(|span| {
                span["name"].as_str().unwrap().starts_with("publish")
                    && attribute(span, "event.type") == event
            })
            .unwrap()
    };
    for (event, consumer) in [("OrderPlaced", "payment"), ("PaymentSucceeded", "order")] {
        let produced = publish(event);
        let consumed = spans
            .iter()
            .find(|span| {
                span["service"] == consumer
                    && attribute(span, "event.type") == event
                    && span["kind"] == "consumer"
            })
            .unwrap();
        assert_eq!(consumed["parent_id"], produced["span_id"], "{event}");
        assert_eq!(attribute(consumed, "messaging.system"), "kafka");
        assert_eq!(
            attribute(consumed, "messaging.consumer.group.name"),
            consumer
        );
    }
    // The order's actor handled the payment in it, named and kinded.
    let handled = spans
        .iter()
        .find(|span| span["name"] == "order handled PaymentSucceeded")
        .unwrap();
    assert_eq!(
        attribute(handled, "actor.name"),
        format!("order:{order_id}")
    );
    assert_eq!(attribute(handled, "actor.kind"), "order");
    // A problem answer carries the trace id beside the request id.
    let refused = get(
        &shopper.client,
        url("/orders/not-an-id"),
        Some(&shopper.token),
    )
    .await;
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["trace_id"], problem["request_id"], "{problem}");

    // The observer's trace view draws it (headless Chromium); the screenshot is kept.
    let seen = common::traces_page(order_id, "trace-view.png").await;
    assert!(
        seen["rows"].as_u64().unwrap() >= spans.len() as u64 / 2,
        "{seen}"
    );
    let drawn: HashSet<&str> = seen["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        drawn.contains("order") && drawn.contains("notification"),
        "{seen}"
    );
}

/// The message of `event_type` about `key` on `topic`, as it is stored in Kafka.
fn find_message(topic: &str, key: &str, event_type: &str) -> rdkafka::message::OwnedMessage {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", env("SHOP_KAFKA_BROKERS"))
        .set("group.id", format!("tracing-test-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    consumer.subscribe(&[topic]).expect("subscribed");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let kind = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|header| header.key == "event-type")
                .and_then(|header| header.value)
                .map(|value| String::from_utf8_lossy(value).into_owned())
        });
        if message.key() == Some(key.as_bytes()) && kind.as_deref() == Some(event_type) {
            return message.detach();
        }
    }
    panic!("no {event_type} about {key} on {topic}");
}

/// The payment service's consumer span of an `OrderPlaced`.
fn placed_in_payment(span: &Value) -> bool {
    span["service"] == "payment"
        && span["name"] == "process shop.orders"
        && attribute(span, "event.type") == "OrderPlaced"
}

#[tokio::test]
async fn a_redelivered_message_goes_on_in_the_trace_it_came_from() {
    let shelf = products(&[5]).await;
    let shopper = Shopper::customer().await;
    shopper.put_in_cart(&shelf[0], 1).await;
    let order = shopper.checkout("pm_card_visa").await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    state_becomes(&shopper, &order_id, "paid").await;
    let admin = Shopper::admin().await;
    let first = trace_of_order(&admin, &order_id, checkout_is_whole).await;
    let consumed_once = |trace: &Value| {
        spans(trace)
            .iter()
            .filter(|span| placed_in_payment(span))
            .count()
    };
    assert_eq!(consumed_once(&first), 1);

    // Kafka delivers at least once: the same message again (as after a consumer's crash before
    // its commit), headers and all.
    let message = tokio::task::spawn_blocking({
        let order_id = order_id.clone();
        move || find_message("shop.orders", &order_id, "OrderPlaced")
    })
    .await
    .unwrap();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", env("SHOP_KAFKA_BROKERS"))
        .create()
        .expect("a producer");
    let mut again = FutureRecord::to("shop.orders")
        .key(message.key().unwrap())
        .payload(message.payload().unwrap());
    if let Some(headers) = message.headers() {
        again = again.headers(headers.clone());
    }
    producer
        .send(again, Duration::from_secs(10))
        .await
        .expect("the message is sent again");

    let twice = trace_of_order(&admin, &order_id, |trace| consumed_once(trace) == 2).await;
    assert_eq!(twice["trace_id"], first["trace_id"]);
    let redelivered: Vec<&Value> = spans(&twice)
        .iter()
        .filter(|span| placed_in_payment(span))
        .collect();
    // Both deliveries are children of the one publish, at two offsets.
    assert_eq!(redelivered[0]["parent_id"], redelivered[1]["parent_id"]);
    assert_ne!(
        attribute(redelivered[0], "messaging.kafka.offset"),
        attribute(redelivered[1], "messaging.kafka.offset")
    );
    // And it is still one charge: the duplicate was recognised.
    assert_eq!(
        common::charges_of(uuid::Uuid::parse_str(&order_id).unwrap()).await,
        1
    );
}

#[tokio::test]
async fn the_trace_view_is_for_admins_and_says_what_is_wrong() {
    let customer = Shopper::customer().await;
    let admin = Shopper::admin().await;
    let traces = |path: &str| url(&format!("/admin/traces{path}"));
    common::problem(get(&customer.client, traces("/recent"), None).await, 401).await;
    let refused = get(&customer.client, traces("/recent"), Some(&customer.token)).await;
    common::problem(refused, 403).await;
    for (path, status) in [
        ("", 422),
        ("?order_id=not-a-uuid", 422),
        ("/not-a-trace-id", 422),
        ("?request_id=%3Cscript%3E", 422),
        // Well formed, and nowhere.
        ("/0123456789abcdef0123456789abcdef", 404),
        (&format!("?order_id={}", uuid::Uuid::new_v4()), 404),
    ] {
        let answer = get(&admin.client, traces(path), Some(&admin.token)).await;
        let body = common::problem(answer, status).await;
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|detail| !detail.is_empty()),
            "{path}: {body}"
        );
    }
    // The recent slow requests: a list, newest first (this test's own requests reach the
    // store within a second, in case it runs first on a new system).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let recent = loop {
        let recent = common::get_json(
            &admin.client,
            traces("/recent?min_duration_ms=0&limit=5"),
            Some(&admin.token),
        )
        .await;
        if recent["traces"]
            .as_array()
            .is_some_and(|listed| !listed.is_empty())
            || tokio::time::Instant::now() > deadline
        {
            break recent;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let listed = recent["traces"].as_array().expect("a list");
    assert!(!listed.is_empty() && listed.len() <= 5, "{recent}");
    let starts: Vec<i64> = listed
        .iter()
        .map(|trace| trace["start_us"].as_i64().unwrap())
        .collect();
    assert!(starts.windows(2).all(|pair| pair[0] >= pair[1]), "{recent}");
}
