//! Payments end to end, through nginx, real Kafka and the payment service with its simulated
//! provider: the whole purchase, declines, redelivered orders, refunds, webhooks.

mod common;

use std::time::Duration;

use common::events::{Events, order_placed, publish};
use common::orders::{Ordering, order_until, products, state_becomes, stock, stock_until, uuid};
use common::{Shopper, charges_of, client, get_json, problem, url};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

/// The webhook secret dev/test runs with (the dev default).
fn webhook_secret() -> String {
    std::env::var("SHOP_STRIPE_WEBHOOK_SECRET")
        .unwrap_or_else(|_| "whsec_dev_only_secret".to_owned())
}

/// `GET /payments?order_id=…` as `who`.
async fn payments_page(who: &Shopper, order_id: &str) -> Value {
    get_json(
        &who.client,
        url(&format!("/payments?order_id={order_id}")),
        Some(&who.token),
    )
    .await
}

/// The payment of an order, as `who` sees it.
async fn payment_of(who: &Shopper, order_id: &str) -> Value {
    let page = payments_page(who, order_id).await;
    assert_eq!(page["total"], 1, "one payment per order: {page}");
    page["items"][0].clone()
}

/// Waits (up to 30 s) until the order's payment is in `status`.
async fn payment_becomes(who: &Shopper, order_id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = payments_page(who, order_id).await;
        if page["items"][0]["status"] == status {
            return page["items"][0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the payment never became {status}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn named(events: &Events, aggregate: Uuid, name: &str) -> usize {
    events
        .about(aggregate)
        .iter()
        .filter(|seen| seen.event.name() == name)
        .count()
}

async fn refund(admin: &Shopper, payment_id: &str, body: Value) -> reqwest::Response {
    admin
        .client
        .post(url(&format!("/payments/{payment_id}/refunds")))
        .bearer_auth(&admin.token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Signed webhooks the payment service refused for not matching their payment, so far.
async fn refused_webhooks() -> f64 {
    common::metric_sum(
        &common::env("SHOP_PAYMENT_URL"),
        "shop_payment_webhooks_refused_total",
    )
    .await
}

async fn webhook(body: &str, signature: Option<String>) -> reqwest::Response {
    let mut request = client()
        .post(url("/payments/webhooks/stripe"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("Stripe-Signature", signature);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_whole_purchase_is_charged_once_then_shipped_with_its_stock_sold_and_the_cart_empty() {
    let events = Events::watch().await;
    let shopper = Shopper::customer().await;
    let admin = Shopper::admin().await;
    let shelf = products(&[10, 10]).await;

    // Browse, fill the cart, check out with Stripe's test Visa.
    let listed = get_json(
        &shopper.client,
        url(&format!("/products/{}", shelf[0])),
        None,
    )
    .await;
    assert_eq!(listed["id"], shelf[0].as_str());
    shopper.put_in_cart(&shelf[0], 2).await;
    shopper.put_in_cart(&shelf[1], 1).await;
    let order = shopper.checkout("pm_card_visa").await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(order["state"], "pending");

    let paid = state_becomes(&shopper, id, "paid").await;
    let payment = payment_of(&shopper, id).await;
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(payment["amount"], order["total"]);
    assert_eq!(payment["currency"], order["currency"]);
    assert_eq!(payment["provider"], "simulated");
    assert_eq!(payment["attempts"], 1);
    assert_eq!(paid["payment_id"], payment["id"]);
    assert!(
        payment["provider_reference"]
            .as_str()
            .unwrap()
            .starts_with("pi_")
    );
    assert_eq!(charges_of(uuid(&order["id"])).await, 1);

    let shipped = admin
        .post(&format!(
            "/orders/{id}/ship?carrier=DHL&tracking_number=T-1"
        ))
        .await;
    assert_eq!(shipped.status(), StatusCode::OK);
    state_becomes(&shopper, id, "shipped").await;

    // Sold: on hand down by what was ordered, nothing left reserved; the cart is empty.
    stock_until(&shelf[0], 8, 0).await;
    stock_until(&shelf[1], 9, 0).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while shopper.cart().await["items"]
        .as_array()
        .is_some_and(|items| !items.is_empty())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cart was never emptied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let order_id = uuid(&order["id"]);
    events.wait_for(order_id, "OrderShipped").await;
    assert_eq!(named(&events, order_id, "PaymentSucceeded"), 1);
    assert_eq!(named(&events, order_id, "PaymentFailed"), 0);
}

#[tokio::test]
async fn a_declined_card_cancels_the_order_and_gives_its_stock_back() {
    let events = Events::watch().await;
    let shopper = Shopper::customer().await;
    let shelf = products(&[5]).await;
    shopper.put_in_cart(&shelf[0], 3).await;
    let order = shopper
        .checkout("pm_card_chargeDeclinedInsufficientFunds")
        .await;
    let id = order["id"].as_str().unwrap();

    let cancelled = state_becomes(&shopper, id, "cancelled").await;
    assert!(
        cancelled["cancel_reason"]
            .as_str()
            .unwrap()
            .contains("insufficient funds"),
        "{cancelled}"
    );
    let payment = payment_of(&shopper, id).await;
    assert_eq!(payment["status"], "failed");
    assert_eq!(payment["failure_code"], "insufficient_funds");
    stock_until(&shelf[0], 5, 0).await;
    let failed = events.wait_for(uuid(&order["id"]), "PaymentFailed").await;
    let shop_schemas::Envelope::PaymentFailed(failed) = failed.event else {
        panic!("not a PaymentFailed");
    };
    assert_eq!(failed.code.as_deref(), Some("insufficient_funds"));
    assert_eq!(named(&events, uuid(&order["id"]), "PaymentSucceeded"), 0);
}

#[tokio::test]
async fn an_unknown_payment_method_fails_the_payment_with_the_providers_reason() {
    let shopper = Shopper::customer().await;
    let shelf = products(&[5]).await;
    shopper.put_in_cart(&shelf[0], 1).await;
    let order = shopper.checkout("pm_card_nonsense").await;
    let id = order["id"].as_str().unwrap();
    state_becomes(&shopper, id, "cancelled").await;
    let payment = payment_of(&shopper, id).await;
    assert_eq!(payment["status"], "failed");
    assert_eq!(payment["failure_code"], "resource_missing");
}

#[tokio::test]
async fn order_placed_delivered_again_charges_nothing_more_and_publishes_no_second_outcome() {
    let events = Events::watch().await;
    let shopper = Shopper::customer().await;
    let shelf = products(&[5]).await;
    shopper.put_in_cart(&shelf[0], 1).await;
    let order = shopper.checkout("pm_card_mastercard").await;
    let id = order["id"].as_str().unwrap();
    let order_id = uuid(&order["id"]);
    state_becomes(&shopper, id, "paid").await;

    let placed = events.wait_for(order_id, "OrderPlaced").await.event;
    publish(placed.clone()).await;
    publish(placed).await;
    // The same order placed again under a new event id: still the one payment.
    let shop_schemas::Envelope::OrderPlaced(mut again) =
        events.wait_for(order_id, "OrderPlaced").await.event
    else {
        panic!("not an OrderPlaced");
    };
    again.event_id = Uuid::new_v4();
    publish(*again).await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(charges_of(order_id).await, 1);
    let payment = payment_of(&shopper, id).await;
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(payment["attempts"], 1);
    assert_eq!(named(&events, order_id, "PaymentSucceeded"), 1);
}

#[tokio::test]
async fn an_admin_refunds_in_parts_and_more_than_is_left_is_422() {
    let events = Events::watch().await;
    let shopper = Shopper::customer().await;
    let admin = Shopper::admin().await;
    let shelf = products(&[5]).await;
    shopper.put_in_cart(&shelf[0], 2).await;
    let order = shopper.checkout("pm_card_visa").await;
    let id = order["id"].as_str().unwrap();
    state_becomes(&shopper, id, "paid").await;
    let payment = payment_of(&shopper, id).await;
    let payment_id = payment["id"].as_str().unwrap();
    let total = payment["amount"].as_i64().unwrap();

    // A customer may not refund, not even their own payment.
    let refused = shopper
        .client
        .post(url(&format!("/payments/{payment_id}/refunds")))
        .bearer_auth(&shopper.token)
        .json(&json!({ "amount": 100 }))
        .send()
        .await
        .unwrap();
    problem(refused, 403).await;

    let part = refund(
        &admin,
        payment_id,
        json!({ "amount": 300, "reason": "scratched" }),
    )
    .await;
    assert_eq!(part.status(), StatusCode::OK);
    let part: Value = part.json().await.unwrap();
    assert_eq!(part["status"], "succeeded");
    assert_eq!(part["amount"], 300);

    let too_much = problem(
        refund(&admin, payment_id, json!({ "amount": total })).await,
        422,
    )
    .await;
    assert_eq!(too_much["refundable"], total - 300);
    problem(
        refund(&admin, payment_id, json!({ "amount": 0 })).await,
        422,
    )
    .await;
    problem(
        refund(&admin, payment_id, json!({ "amount": "all" })).await,
        400,
    )
    .await;

    let after_part = payment_of(&shopper, id).await;
    assert_eq!(after_part["status"], "succeeded");
    assert_eq!(after_part["amount_refunded"], 300);
    assert_eq!(after_part["refundable"], total - 300);

    // The rest (no amount: everything left), then nothing is left.
    let rest: Value = refund(&admin, payment_id, json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["amount"], total - 300);
    let refunded = payment_of(&shopper, id).await;
    assert_eq!(refunded["status"], "refunded");
    assert_eq!(refunded["amount_refunded"], total);
    assert_eq!(refunded["refunds"].as_array().unwrap().len(), 2);
    let again = problem(
        refund(&admin, payment_id, json!({ "amount": 1 })).await,
        409,
    )
    .await;
    assert_eq!(again["payment_status"], "refunded");

    let order_id = uuid(&order["id"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while named(&events, order_id, "PaymentRefunded") < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "two PaymentRefunded never came"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_customer_cancelling_a_paid_order_gets_all_the_money_back() {
    let events = Events::watch().await;
    let shopper = Shopper::customer().await;
    let shelf = products(&[4]).await;
    shopper.put_in_cart(&shelf[0], 1).await;
    let order = shopper.checkout("pm_card_visa").await;
    let id = order["id"].as_str().unwrap();
    state_becomes(&shopper, id, "paid").await;

    let cancelled = shopper.post(&format!("/orders/{id}/cancel")).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    state_becomes(&shopper, id, "refunded").await;
    let payment = payment_becomes(&shopper, id, "refunded").await;
    assert_eq!(payment["amount_refunded"], order["total"]);
    assert_eq!(payment["refunds"][0]["requested_by"], "system");
    stock_until(&shelf[0], 4, 0).await;
    let order_id = uuid(&order["id"]);
    events.wait_for(order_id, "PaymentRefunded").await;
    assert_eq!(charges_of(order_id).await, 1);
    assert_eq!(named(&events, order_id, "PaymentRefunded"), 1);
}

#[tokio::test]
async fn a_signed_webhook_settles_a_waiting_charge_once_and_a_bad_or_stale_one_changes_nothing() {
    let events = Events::watch().await;
    let shopper = Shopper::customer().await;
    let shelf = products(&[3]).await;
    shopper.put_in_cart(&shelf[0], 1).await;
    // 3-D Secure: the charge waits for the customer; Stripe reports the outcome by webhook.
    let order = shopper.checkout("pm_card_authenticationRequired").await;
    let id = order["id"].as_str().unwrap();
    let order_id = uuid(&order["id"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let reference = loop {
        let page = payments_page(&shopper, id).await;
        if let Some(reference) = page["items"][0]["provider_reference"].as_str() {
            assert_eq!(page["items"][0]["status"], "processing");
            break reference.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the charge never reached the provider"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The storefront finishes 3-D Secure with Stripe.js: the customer — nobody else — reads
    // what it needs from the payment.
    let payment_id = payment_of(&shopper, id).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine: Value = shopper
        .get(&format!("/payments/{payment_id}"))
        .await
        .json()
        .await
        .unwrap();
    let action = &mine["customer_action"];
    assert!(
        action["client_secret"]
            .as_str()
            .is_some_and(|secret| secret.starts_with(&format!("{reference}_secret_"))),
        "{mine}"
    );
    assert_eq!(action["next_action"]["type"], "use_stripe_sdk");
    let admin = Shopper::admin().await;
    let seen_by_admin: Value = admin
        .get(&format!("/payments/{payment_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen_by_admin["id"], payment_id.as_str());
    assert!(
        seen_by_admin.get("customer_action").is_none(),
        "{seen_by_admin}"
    );
    let listed = payments_page(&shopper, id).await;
    assert!(
        listed["items"][0].get("customer_action").is_none(),
        "{listed}"
    );
    let stranger = Shopper::customer().await;
    problem(stranger.get(&format!("/payments/{payment_id}")).await, 404).await;

    let total = order["total"].as_i64().unwrap();
    let event = |intent: &str, amount: i64, currency: &str| {
        json!({
            "id": format!("evt_{}", Uuid::new_v4().simple()),
            "object": "event",
            "type": "payment_intent.succeeded",
            "data": { "object": {
                "id": intent, "object": "payment_intent", "status": "succeeded",
                "amount": amount, "currency": currency,
                "metadata": { "order_id": id }
            }}
        })
        .to_string()
    };
    let body = event(&reference, total, "eur");
    let now = chrono::Utc::now().timestamp();
    let secret = webhook_secret();

    problem(webhook(&body, None).await, 400).await;
    let forged = shop_payment::webhook::sign("whsec_not_ours", now, body.as_bytes());
    problem(webhook(&body, Some(forged)).await, 400).await;
    let stale = shop_payment::webhook::sign(&secret, now - 301, body.as_bytes());
    problem(webhook(&body, Some(stale)).await, 400).await;
    let tampered = shop_payment::webhook::sign(&secret, now, b"{}");
    problem(webhook(&body, Some(tampered)).await, 400).await;
    assert_eq!(payment_of(&shopper, id).await["status"], "processing");
    assert_eq!(shopper.order(id).await["state"], "pending");

    // Signed, but not about this payment as stored: another intent, another amount, another
    // currency. Answered 200 (Stripe would retry a 4xx for days), nothing changes, counted.
    let refused_before = refused_webhooks().await;
    for wrong in [
        event("pi_of_another_order", total, "eur"),
        event(&reference, total - 1, "eur"),
        event(&reference, total, "usd"),
    ] {
        let signed = shop_payment::webhook::sign(&secret, now, wrong.as_bytes());
        let answer = webhook(&wrong, Some(signed)).await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(
            answer.json::<Value>().await.unwrap()["applied"],
            false,
            "{wrong}"
        );
    }
    assert_eq!(refused_webhooks().await - refused_before, 3.0);
    assert_eq!(payment_of(&shopper, id).await["status"], "processing");
    assert_eq!(shopper.order(id).await["state"], "pending");
    assert_eq!(named(&events, order_id, "PaymentSucceeded"), 0);

    let signed = shop_payment::webhook::sign(&secret, now, body.as_bytes());
    let applied = webhook(&body, Some(signed.clone())).await;
    assert_eq!(applied.status(), StatusCode::OK);
    assert_eq!(applied.json::<Value>().await.unwrap()["applied"], true);
    state_becomes(&shopper, id, "paid").await;

    let replayed = webhook(&body, Some(signed)).await;
    assert_eq!(replayed.status(), StatusCode::OK);
    assert_eq!(replayed.json::<Value>().await.unwrap()["applied"], false);
    events.wait_for(order_id, "PaymentSucceeded").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(named(&events, order_id, "PaymentSucceeded"), 1);
    assert_eq!(payment_of(&shopper, id).await["status"], "succeeded");
    let settled: Value = shopper
        .get(&format!("/payments/{payment_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        settled.get("customer_action").is_none(),
        "cleared once settled: {settled}"
    );

    // Signed, but not JSON: 400, not a 500.
    let garbage = shop_payment::webhook::sign(&secret, now, b"not json");
    problem(webhook("not json", Some(garbage)).await, 400).await;
}

#[tokio::test]
async fn payments_are_shown_to_their_customer_and_admins_only() {
    let shopper = Shopper::customer().await;
    let other = Shopper::customer().await;
    let admin = Shopper::admin().await;
    let shelf = products(&[3]).await;
    shopper.put_in_cart(&shelf[0], 1).await;
    let order = shopper.checkout("pm_card_visa").await;
    let id = order["id"].as_str().unwrap();
    let payment = payment_becomes(&shopper, id, "succeeded").await;
    let path = format!("/payments/{}", payment["id"].as_str().unwrap());

    assert_eq!(
        get_json(&admin.client, url(&path), Some(&admin.token)).await["id"],
        payment["id"]
    );
    problem(other.get(&path).await, 404).await;
    problem(client().get(url(&path)).send().await.unwrap(), 401).await;
    problem(
        shopper.get(&format!("/payments/{}", Uuid::new_v4())).await,
        404,
    )
    .await;
    problem(shopper.get("/payments/not-a-uuid").await, 400).await;
    let theirs = payments_page(&other, id).await;
    assert_eq!(theirs["total"], 0);
    problem(
        other
            .get(&format!("/payments?customer_id={}", shopper.uuid()))
            .await,
        403,
    )
    .await;
    problem(shopper.get("/payments?per_page=0").await, 422).await;
    let all = get_json(
        &admin.client,
        url(&format!("/payments?customer_id={}", shopper.uuid())),
        Some(&admin.token),
    )
    .await;
    assert_eq!(all["total"], 1);
    let unpaid = stock(&shelf[0]).await;
    assert_eq!(unpaid["reserved"], 0, "{unpaid}");
    // A failed payment cannot be refunded.
    shopper.put_in_cart(&shelf[0], 1).await;
    let declined = shopper.checkout("pm_card_chargeDeclined").await;
    let declined_payment =
        payment_becomes(&shopper, declined["id"].as_str().unwrap(), "failed").await;
    let conflict = problem(
        refund(&admin, declined_payment["id"].as_str().unwrap(), json!({})).await,
        409,
    )
    .await;
    assert_eq!(conflict["payment_status"], "failed");
    order_until(
        &shopper,
        declined["id"].as_str().unwrap(),
        "cancelled",
        |order| order["state"] == "cancelled",
    )
    .await;
}

#[tokio::test]
async fn an_order_cancelled_while_its_charge_waits_calls_the_charge_off() {
    let events = Events::watch().await;
    let shopper = Shopper::customer().await;
    let shelf = products(&[2]).await;
    shopper.put_in_cart(&shelf[0], 1).await;
    let order = shopper.checkout("pm_card_authenticationRequired").await;
    let id = order["id"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = payments_page(&shopper, id).await;
        if page["items"][0]["provider_reference"].is_string() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the charge never reached the provider"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let cancelled = shopper.post(&format!("/orders/{id}/cancel")).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    let payment = payment_becomes(&shopper, id, "canceled").await;
    assert_eq!(payment["failure_code"], "canceled");
    assert_eq!(payment["amount_refunded"], 0);
    stock_until(&shelf[0], 2, 0).await;
    let order_id = uuid(&order["id"]);
    assert_eq!(
        charges_of(order_id).await,
        1,
        "one charge request, never completed"
    );
    assert_eq!(named(&events, order_id, "PaymentSucceeded"), 0);
    assert_eq!(named(&events, order_id, "PaymentRefunded"), 0);
}

#[tokio::test]
async fn an_order_heard_after_its_payment_window_is_not_charged() {
    let events = Events::watch().await;
    let shopper = Shopper::customer().await;
    // As the order service announces an order, heard by the payment service only after the
    // order's payment window ended (a Kafka outage, a backlog): the order has cancelled itself.
    let late = shop_schemas::OrderPlaced {
        occurred_at: shop_schemas::now_millis() - 61_000,
        pay_by: Some(shop_schemas::now_millis() - 1_000),
        ..order_placed(shopper.uuid(), Uuid::new_v4(), "pm_card_visa")
    };
    let order_id = late.order_id;
    publish(late).await;

    let id = order_id.to_string();
    let payment = payment_becomes(&shopper, &id, "canceled").await;
    assert_eq!(payment["failure_code"], "expired", "{payment}");
    assert_eq!(payment["attempts"], 0, "{payment}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        charges_of(order_id).await,
        0,
        "the provider never heard of it"
    );
    assert_eq!(named(&events, order_id, "PaymentSucceeded"), 0);
    assert_eq!(named(&events, order_id, "PaymentFailed"), 0);
}
