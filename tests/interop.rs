//! Shop's events as another language reads them: every topic read with `kcat`, every message
//! decoded by fastavro with the writer's schema found by its fingerprint alone
//! (`dev/avro/decode.py`), compared with what our own decoder saw and with what the API shows.
//! Also: the Python consumer docs/events.md prints, run as it is printed there; and a message
//! written with a pre-2026-12 fingerprint, still handled by the services.

mod common;

use std::collections::HashMap;

use common::events::Events;
use common::orders::{Ordering, products, state_becomes, uuid};
use common::{Shopper, env, wait_for_mails};
use serde_json::Value;
use shop_schemas::{Envelope, Event, PAYMENTS, known_schemas};
use uuid::Uuid;

/// The Python dev/test installed fastavro and confluent-kafka into.
fn python() -> String {
    std::env::var("SHOP_TEST_PYTHON")
        .expect("SHOP_TEST_PYTHON names a Python with fastavro: run this through dev/test")
}

/// Every message of `topic`, read with kcat and decoded by fastavro (one JSON object each).
async fn read_with_fastavro(topic: &str) -> Vec<Value> {
    let script = format!(
        "set -o pipefail; kcat -b \"$SHOP_KAFKA_BROKERS\" -C -o beginning -e -q -t {topic} \
         -f '%t %p %o %K %S\\n%k%s\\n' | {} dev/avro/decode.py schemas/avro",
        python()
    );
    let output = tokio::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .expect("kcat and python run");
    assert!(
        output.status.success(),
        "reading {topic}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("decode.py prints JSON lines"))
        .collect()
}

/// fastavro's reading of every message about `aggregate` (the message key), by event name.
fn about<'a>(decoded: &'a [Value], aggregate: &str) -> HashMap<String, &'a Value> {
    decoded
        .iter()
        .filter(|message| message["key"] == aggregate)
        .map(|message| {
            assert!(
                message["error"].is_null(),
                "fastavro could not read a message about {aggregate}: {message}"
            );
            (
                message["event"].as_str().unwrap_or_default().to_owned(),
                &message["fields"],
            )
        })
        .collect()
}

/// Asserts fastavro read `name` about `aggregate` exactly as our decoder did.
fn same_as_ours<'a>(
    theirs: &HashMap<String, &'a Value>,
    events: &Events,
    aggregate: Uuid,
    name: &str,
) -> &'a Value {
    let fields = theirs
        .get(name)
        .unwrap_or_else(|| panic!("fastavro read no {name} about {aggregate}: {theirs:?}"));
    let ours = events
        .about(aggregate)
        .into_iter()
        .find(|seen| seen.event.name() == name)
        .unwrap_or_else(|| panic!("we saw no {name} about {aggregate}"));
    assert_eq!(
        **fields,
        envelope_fields(&ours.event),
        "{name} as fastavro and as we read it"
    );
    fields
}

fn envelope_fields(event: &Envelope) -> Value {
    let fields = match event {
        Envelope::UserRegistered(e) => serde_json::to_value(e),
        Envelope::UserUpdated(e) => serde_json::to_value(e),
        Envelope::UserDeleted(e) => serde_json::to_value(e),
        Envelope::AccountMailRequested(e) => serde_json::to_value(e),
        Envelope::OrderPlaced(e) => serde_json::to_value(e),
        Envelope::OrderPaid(e) => serde_json::to_value(e),
        Envelope::OrderShipped(e) => serde_json::to_value(e),
        Envelope::OrderDelivered(e) => serde_json::to_value(e),
        Envelope::OrderCancelled(e) => serde_json::to_value(e),
        Envelope::PaymentSucceeded(e) => serde_json::to_value(e),
        Envelope::PaymentFailed(e) => serde_json::to_value(e),
        Envelope::PaymentRefunded(e) => serde_json::to_value(e),
        Envelope::ProductPriceChanged(e) => serde_json::to_value(e),
    };
    fields.expect("events serialize")
}

/// The order's one payment, as its customer sees it.
async fn payment_of(shopper: &Shopper, order_id: &str) -> Value {
    let page: Value = shopper
        .get(&format!("/payments?order_id={order_id}"))
        .await
        .json()
        .await
        .expect("a page of payments");
    page["items"][0].clone()
}

#[tokio::test]
async fn every_event_type_read_by_fastavro_by_fingerprint_alone_matches_the_api() {
    let events = Events::watch().await;
    let shopper = Shopper::customer().await;
    let admin = Shopper::admin().await;
    let shelf = products(&[10, 10, 10]).await;

    // Paid, shipped, delivered.
    shopper.put_in_cart(&shelf[0], 2).await;
    let delivered = shopper.checkout("pm_card_visa").await;
    let delivered_id = delivered["id"].as_str().unwrap_or_default().to_owned();
    state_becomes(&shopper, &delivered_id, "paid").await;
    let ship = admin
        .post(&format!(
            "/orders/{delivered_id}/ship?carrier=DHL&tracking_number=TRACK-AVRO"
        ))
        .await;
    assert!(ship.status().is_success(), "{}", ship.status());
    let deliver = admin.post(&format!("/orders/{delivered_id}/deliver")).await;
    assert!(deliver.status().is_success(), "{}", deliver.status());
    // Declined: PaymentFailed, then cancelled.
    shopper.put_in_cart(&shelf[1], 1).await;
    let declined = shopper
        .checkout("pm_card_chargeDeclinedInsufficientFunds")
        .await;
    let declined_id = declined["id"].as_str().unwrap_or_default().to_owned();
    state_becomes(&shopper, &declined_id, "cancelled").await;
    // Paid, then cancelled: refunded.
    shopper.put_in_cart(&shelf[2], 3).await;
    let refunded = shopper.checkout("pm_card_visa").await;
    let refunded_id = refunded["id"].as_str().unwrap_or_default().to_owned();
    state_becomes(&shopper, &refunded_id, "paid").await;
    let cancel = shopper.post(&format!("/orders/{refunded_id}/cancel")).await;
    assert!(cancel.status().is_success(), "{}", cancel.status());
    state_becomes(&shopper, &refunded_id, "refunded").await;

    // A price change: ProductPriceChanged on shop.products.
    let repriced = admin
        .client
        .patch(common::url(&format!("/products/{}", shelf[0])))
        .bearer_auth(&admin.token)
        .json(&serde_json::json!({ "price": { "amount": 1234, "currency": "EUR" } }))
        .send()
        .await
        .expect("the gateway answers");
    assert!(repriced.status().is_success(), "{}", repriced.status());
    let product_uuid = uuid(&Value::String(shelf[0].clone()));
    events.wait_for(product_uuid, "ProductPriceChanged").await;

    let (user, delivered_uuid, declined_uuid, refunded_uuid) = (
        shopper.uuid(),
        uuid(&delivered["id"]),
        uuid(&declined["id"]),
        uuid(&refunded["id"]),
    );
    for (aggregate, names) in [
        (user, &["UserRegistered"][..]),
        (
            delivered_uuid,
            &[
                "OrderPlaced",
                "PaymentSucceeded",
                "OrderPaid",
                "OrderShipped",
                "OrderDelivered",
            ],
        ),
        (declined_uuid, &["PaymentFailed", "OrderCancelled"]),
        (refunded_uuid, &["OrderCancelled", "PaymentRefunded"]),
    ] {
        for name in names {
            events.wait_for(aggregate, name).await;
        }
    }

    let users = read_with_fastavro(shop_schemas::USERS).await;
    let orders = read_with_fastavro(shop_schemas::ORDERS).await;
    let payments = read_with_fastavro(PAYMENTS).await;
    let catalogue = read_with_fastavro(shop_schemas::PRODUCTS).await;

    // The account, as GET /users/me shows it.
    let me: Value = shopper.get("/users/me").await.json().await.expect("me");
    let registered = same_as_ours(
        &about(&users, &user.to_string()),
        &events,
        user,
        "UserRegistered",
    );
    assert_eq!(registered["user_id"], me["id"]);
    assert_eq!(registered["email"], me["email"]);
    assert_eq!(registered["name"], me["name"]);

    // The delivered order, as GET /orders/{id} and its payment show it.
    let order = shopper.order(&delivered_id).await;
    let payment = payment_of(&shopper, &delivered_id).await;
    let on_orders = about(&orders, &delivered_id);
    let on_payments = about(&payments, &delivered_id);
    let placed = same_as_ours(&on_orders, &events, delivered_uuid, "OrderPlaced");
    assert_eq!(placed["order_id"], order["id"]);
    assert_eq!(placed["customer_id"], order["customer_id"]);
    assert_eq!(placed["total"], order["total"]);
    assert_eq!(placed["currency"], order["currency"]);
    assert_eq!(placed["payment_method"], "pm_card_visa");
    assert_eq!(
        placed["lines"][0]["product_id"],
        order["lines"][0]["product_id"]
    );
    assert_eq!(
        placed["lines"][0]["quantity"],
        order["lines"][0]["quantity"]
    );
    assert_eq!(
        placed["lines"][0]["unit_price"],
        order["lines"][0]["unit_price"]
    );
    // OrderPlaced v2: the address, method and money as the order stores them.
    assert_eq!(placed["subtotal"], order["subtotal"]);
    assert_eq!(placed["tax"], order["tax"]);
    assert_eq!(placed["shipping"], order["shipping"]["cost"]);
    assert_eq!(placed["shipping_method"], order["shipping"]["method"]);
    for field in ["line1", "city", "postal_code", "country"] {
        assert_eq!(
            placed["shipping_address"][field], order["shipping"]["address"][field],
            "{field}"
        );
    }
    let succeeded = same_as_ours(&on_payments, &events, delivered_uuid, "PaymentSucceeded");
    assert_eq!(succeeded["payment_id"], payment["id"]);
    assert_eq!(succeeded["amount"], order["total"]);
    let paid = same_as_ours(&on_orders, &events, delivered_uuid, "OrderPaid");
    assert_eq!(paid["payment_id"], order["payment_id"]);
    assert_eq!(paid["amount"], order["total"]);
    let shipped = same_as_ours(&on_orders, &events, delivered_uuid, "OrderShipped");
    assert_eq!(shipped["tracking_number"], order["tracking_number"]);
    assert_eq!(shipped["tracking_number"], "TRACK-AVRO");
    let arrived = same_as_ours(&on_orders, &events, delivered_uuid, "OrderDelivered");
    assert_eq!(arrived["customer_id"], shopper.id.as_str());

    // The declined order.
    let order = shopper.order(&declined_id).await;
    let failed = same_as_ours(
        &about(&payments, &declined_id),
        &events,
        declined_uuid,
        "PaymentFailed",
    );
    assert_eq!(failed["amount"], order["total"]);
    assert_eq!(
        failed["payment_id"],
        payment_of(&shopper, &declined_id).await["id"]
    );
    let cancelled = same_as_ours(
        &about(&orders, &declined_id),
        &events,
        declined_uuid,
        "OrderCancelled",
    );
    assert_eq!(cancelled["was_paid"], false);

    // The refunded order.
    let order = shopper.order(&refunded_id).await;
    let cancelled = same_as_ours(
        &about(&orders, &refunded_id),
        &events,
        refunded_uuid,
        "OrderCancelled",
    );
    assert_eq!(cancelled["was_paid"], true);
    let refund = same_as_ours(
        &about(&payments, &refunded_id),
        &events,
        refunded_uuid,
        "PaymentRefunded",
    );
    assert_eq!(refund["amount"], order["total"]);
    assert_eq!(refund["payment_id"], order["payment_id"]);

    // The price change, as the catalogue shows it.
    let product: Value = shopper
        .get(&format!("/products/{}", shelf[0]))
        .await
        .json()
        .await
        .expect("the product");
    let changed = same_as_ours(
        &about(&catalogue, &shelf[0]),
        &events,
        product_uuid,
        "ProductPriceChanged",
    );
    assert_eq!(changed["old_price"], 1000);
    assert_eq!(changed["new_price"], product["price"]["amount"]);
    assert_eq!(changed["currency"], product["price"]["currency"]);

    // Every message fastavro read names its writer by the specification's fingerprint; what it
    // could not read is a test's deliberate garbage or a pre-2026-12 fingerprint.
    let legacy: Vec<String> = known_schemas()
        .iter()
        .map(|known| shop_schemas::fingerprint_hex(&known.legacy_fingerprint))
        .collect();
    for message in users
        .iter()
        .chain(&orders)
        .chain(&payments)
        .chain(&catalogue)
    {
        if let Some(error) = message["error"].as_str() {
            let pre_change = error
                .strip_prefix("unknown fingerprint ")
                .is_some_and(|fingerprint| legacy.iter().any(|old| old == fingerprint));
            assert!(
                pre_change || error == "not single-object encoded",
                "{message}"
            );
        }
    }
}

#[tokio::test]
async fn the_readmes_python_consumer_reads_the_events_as_printed() {
    let consumer = include_str!("../dev/avro/consume.py");
    let page = include_str!("../docs/events.md");
    assert!(
        page.contains(consumer.trim()),
        "docs/events.md prints dev/avro/consume.py as it is"
    );
    let shopper = Shopper::customer().await;
    let output = tokio::process::Command::new(python())
        .args([
            "dev/avro/consume.py",
            &env("SHOP_KAFKA_BROKERS"),
            &format!("test-readme-{}", Uuid::new_v4().simple()),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .expect("the consumer runs");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = printed
        .lines()
        .find(|line| line.contains(&shopper.email))
        .unwrap_or_else(|| {
            panic!(
                "no event about {} in {} lines",
                shopper.email,
                printed.lines().count()
            )
        });
    assert!(line.starts_with("shop.users "), "{line}");
    let fields: Value =
        serde_json::from_str(line.trim_start_matches("shop.users ")).expect("JSON fields");
    assert_eq!(fields["user_id"], shopper.id.as_str());
}

#[tokio::test]
async fn an_event_written_with_the_old_fingerprint_is_still_handled() {
    // A UserRegistered as a service built before 2026-12 wrote it.
    let email = format!("legacy-{}@shop.test", Uuid::new_v4().simple());
    let event = shop_schemas::UserRegistered {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        user_id: Uuid::new_v4(),
        email: email.clone(),
        name: "Old Fingerprint".to_owned(),
        phone: None,
        verification_token: None,
        verification_expires_at: None,
    };
    let mut message = shop_bridge::Outgoing::event(&event.clone().into_envelope(), None)
        .expect("the event encodes");
    let version = |version| {
        known_schemas()
            .iter()
            .find(|known| known.name == "UserRegistered" && known.version == version)
            .expect("a known version of UserRegistered")
    };
    assert_eq!(&message.payload[2..10], &version(3).fingerprint);
    // A v2 body is a v3 body without v3's two trailing nulls (one 0 byte each).
    message.payload.truncate(message.payload.len() - 2);
    message.payload[2..10].copy_from_slice(&version(2).legacy_fingerprint);
    let settings = shop_config::Settings::from_env().expect("the settings dev/test exports");
    let producer = shop_bridge::kafka::producer(&settings.kafka).expect("a producer");
    shop_bridge::kafka::publish(&producer, &message)
        .await
        .expect("Kafka takes it");
    // The notification service decodes it and welcomes the account.
    let mails = wait_for_mails(&email, 1).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
}
