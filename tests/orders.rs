//! Orders end to end, through nginx and real Kafka: checkout, payment events (published here as
//! the payment service publishes them), shipping, cancelling, expiry, idempotency, races.
//!
//! Orders here are placed with a payment method that makes the simulated provider wait for a
//! webhook that never comes, so the payment events these tests publish are the only ones; the
//! real charging is tested in `payments.rs`.

mod common;

use std::time::Duration;

use common::events::{Events, order_placed, payment_succeeded, publish};
use common::orders::{Ordering, order_until, products, state_becomes, stock, stock_until, uuid};
use common::{Shopper, client, get, get_json, problem, url};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shop_schemas::{Envelope, PaymentFailed, PaymentRefunded};
use uuid::Uuid;

/// Stripe's 3-D Secure test card: the charge waits for the customer, who never comes.
const AWAITING_PAYMENT: &str = "pm_card_authenticationRequired";

#[tokio::test]
async fn a_whole_checkout_goes_from_cart_to_delivered() {
    let events = Events::watch().await;
    let ids = products(&[10, 5]).await;
    let shopper = Shopper::customer().await;
    shopper.put_in_cart(&ids[0], 2).await;
    shopper.put_in_cart(&ids[1], 1).await;

    let order = shopper.checkout(AWAITING_PAYMENT).await;
    assert_eq!(order["state"], "pending");
    assert_eq!(order["customer_id"], shopper.id);
    assert_eq!(order["currency"], "EUR");
    // The goods, and 4.90 for standard shipping within Germany (below 50 EUR of goods).
    assert_eq!(order["subtotal"], 2 * 1000 + 1001);
    assert_eq!(order["shipping"]["cost"], 490);
    assert_eq!(order["total"], 3001 + 490);
    assert_eq!(order["lines"].as_array().unwrap().len(), 2);
    let id = order["id"].as_str().unwrap().to_owned();
    let order_id = uuid(&order["id"]);

    // OrderPlaced is published with everything the payment and notification services need.
    let placed = events.wait_for(order_id, "OrderPlaced").await;
    let Envelope::OrderPlaced(placed) = placed.event else {
        unreachable!()
    };
    assert_eq!(placed.total, 3491);
    assert_eq!(placed.shipping, Some(490));
    assert_eq!(
        placed.shipping_address.as_ref().map(|a| a.city.as_str()),
        Some("Berlin")
    );
    assert_eq!(placed.customer_id, shopper.uuid());
    assert!(placed.customer_email.ends_with("@shop.test") || placed.customer_email.contains('@'));
    assert_eq!(placed.payment_method, AWAITING_PAYMENT);
    assert_eq!(placed.lines.len(), 2);
    // v3: the payment window, which the payment service holds a late charge to.
    let pay_by: chrono::DateTime<chrono::Utc> = order["pay_by"].as_str().unwrap().parse().unwrap();
    assert_eq!(placed.pay_by, Some(pay_by.timestamp_millis()));

    // Stock is held; the cart service heard OrderPlaced and took the lines out.
    assert_eq!(stock(&ids[0]).await["reserved"], 2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let cart = get_json(&shopper.client, url("/carts/me"), Some(&shopper.token)).await;
        if cart["items"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cart was never emptied: {cart}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Paid: the reservation becomes a sale.
    publish(payment_succeeded(order_id, 3491)).await;
    let paid = state_becomes(&shopper, &id, "paid").await;
    assert!(paid["payment_id"].is_string());
    events.wait_for(order_id, "OrderPaid").await;
    stock_until(&ids[0], 8, 0).await;
    stock_until(&ids[1], 4, 0).await;

    // Shipping and delivery are for admins.
    let refused = shopper.post(&format!("/orders/{id}/ship")).await;
    problem(refused, 403).await;
    let admin = Shopper::admin().await;
    let shipped: Value = admin
        .post(&format!(
            "/orders/{id}/ship?carrier=DHL&tracking_number=TRACK-123"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shipped["state"], "shipped");
    assert_eq!(shipped["tracking_number"], "TRACK-123");
    let shipped_event = events.wait_for(order_id, "OrderShipped").await;
    let Envelope::OrderShipped(shipped_event) = shipped_event.event else {
        unreachable!()
    };
    assert_eq!(shipped_event.tracking_number.as_deref(), Some("TRACK-123"));

    let delivered: Value = admin
        .post(&format!("/orders/{id}/deliver"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(delivered["state"], "delivered");
    events.wait_for(order_id, "OrderDelivered").await;

    let order = shopper.order(&id).await;
    let history: Vec<&str> = order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["to"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["pending", "paid", "shipped", "delivered"]);
    assert_eq!(order["history"][1]["by"], "payment");

    // Listed first among the customer's orders.
    let mine = get_json(&shopper.client, url("/orders"), Some(&shopper.token)).await;
    assert_eq!(mine["total"], 1);
    assert_eq!(mine["items"][0]["id"], id);
}

#[tokio::test]
async fn the_same_idempotency_key_answers_the_same_order_and_another_body_is_refused() {
    let ids = products(&[20]).await;
    let shopper = Shopper::customer().await;
    shopper.put_in_cart(&ids[0], 1).await;
    let key = Uuid::new_v4().to_string();

    // Eight identical requests at once: one order.
    let attempts = (0..8).map(|_| shopper.checkout_with(&key, AWAITING_PAYMENT));
    let answers = futures::future::join_all(attempts).await;
    let mut ids_seen = std::collections::HashSet::new();
    let mut created = 0;
    for answer in answers {
        let status = answer.status();
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "{status}"
        );
        if status == StatusCode::CREATED {
            created += 1;
        } else {
            assert_eq!(answer.headers()["idempotent-replayed"], "true");
        }
        let body: Value = answer.json().await.unwrap();
        ids_seen.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids_seen.len(), 1, "one order for one key");
    assert_eq!(created, 1);
    stock_until(&ids[0], 20, 1).await;

    let again = shopper.checkout_with(&key, AWAITING_PAYMENT).await;
    assert_eq!(again.status(), StatusCode::OK);
    let other_body = shopper.checkout_with(&key, "pm_card_mastercard").await;
    let body = problem(other_body, 422).await;
    assert!(body["detail"].as_str().unwrap().contains("Idempotency-Key"));
    let listed = get_json(&shopper.client, url("/orders"), Some(&shopper.token)).await;
    assert_eq!(listed["total"], 1);
}

#[tokio::test]
async fn bad_checkouts_and_order_requests_answer_problems() {
    let ids = products(&[5]).await;
    let shopper = Shopper::customer().await;

    // An empty cart (none at all, then an emptied one).
    problem(
        shopper.checkout_with("k-empty-1", AWAITING_PAYMENT).await,
        422,
    )
    .await;
    shopper.put_in_cart(&ids[0], 1).await;
    let emptied = shopper
        .client
        .delete(url("/carts/me"))
        .bearer_auth(&shopper.token)
        .send()
        .await
        .unwrap();
    assert_eq!(emptied.status(), StatusCode::OK);
    problem(
        shopper.checkout_with("k-empty-2", AWAITING_PAYMENT).await,
        422,
    )
    .await;
    shopper.put_in_cart(&ids[0], 1).await;

    // No key; a key that is not visible ASCII; no or empty payment method; unknown fields.
    let no_key = shopper
        .client
        .post(url("/orders"))
        .bearer_auth(&shopper.token)
        .json(&json!({ "payment_method": AWAITING_PAYMENT }))
        .send()
        .await
        .unwrap();
    problem(no_key, 400).await;
    problem(
        shopper.checkout_with("bad key", AWAITING_PAYMENT).await,
        422,
    )
    .await;
    problem(shopper.checkout_with("k-2", "").await, 422).await;
    let unknown = shopper
        .client
        .post(url("/orders"))
        .bearer_auth(&shopper.token)
        .header("idempotency-key", "k-3")
        .json(&json!({ "payment_method": AWAITING_PAYMENT, "total": 1 }))
        .send()
        .await
        .unwrap();
    problem(unknown, 400).await;
    let not_json = shopper
        .client
        .post(url("/orders"))
        .bearer_auth(&shopper.token)
        .header("idempotency-key", "k-4")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    problem(not_json, 400).await;

    // Anonymous; unknown ids; someone else's order; pages out of range.
    let anonymous = client()
        .post(url("/orders"))
        .header("idempotency-key", "k-5")
        .json(&json!({ "payment_method": AWAITING_PAYMENT }))
        .send()
        .await
        .unwrap();
    problem(anonymous, 401).await;
    problem(get(&shopper.client, url("/orders"), None).await, 401).await;
    let missing = format!("/orders/{}", Uuid::new_v4());
    problem(
        get(&shopper.client, url(&missing), Some(&shopper.token)).await,
        404,
    )
    .await;
    problem(
        get(
            &shopper.client,
            url("/orders/not-a-uuid"),
            Some(&shopper.token),
        )
        .await,
        400,
    )
    .await;
    problem(shopper.post(&format!("{missing}/cancel")).await, 404).await;
    let order = shopper.checkout(AWAITING_PAYMENT).await;
    let id = order["id"].as_str().unwrap();
    let stranger = Shopper::customer().await;
    problem(
        get(
            &stranger.client,
            url(&format!("/orders/{id}")),
            Some(&stranger.token),
        )
        .await,
        404,
    )
    .await;
    problem(stranger.post(&format!("/orders/{id}/cancel")).await, 404).await;
    let others = format!("/orders?customer_id={}", shopper.id);
    problem(
        get(&stranger.client, url(&others), Some(&stranger.token)).await,
        403,
    )
    .await;
    problem(
        get(
            &shopper.client,
            url("/orders?per_page=0"),
            Some(&shopper.token),
        )
        .await,
        422,
    )
    .await;
    problem(
        get(&shopper.client, url("/orders?page=0"), Some(&shopper.token)).await,
        422,
    )
    .await;
    problem(
        get(
            &shopper.client,
            url("/orders?state=lost"),
            Some(&shopper.token),
        )
        .await,
        400,
    )
    .await;

    // An admin sees it, and can filter by customer and state.
    let admin = Shopper::admin().await;
    let filtered: Value = admin
        .get(&format!("/orders?customer_id={}&state=pending", shopper.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["total"], 1);
    assert_eq!(filtered["items"][0]["id"], id);
    let long_tracking = format!(
        "/orders/{id}/ship?carrier=DHL&tracking_number={}",
        "x".repeat(101)
    );
    problem(admin.post(&long_tracking).await, 422).await;
}

#[tokio::test]
async fn a_short_line_is_409_naming_the_product_and_reserves_nothing() {
    let ids = products(&[3, 1]).await;
    let shopper = Shopper::customer().await;
    shopper.put_in_cart(&ids[0], 2).await;
    shopper.put_in_cart(&ids[1], 1).await;
    // Someone else buys the last unit of the second product first.
    let rival = Shopper::customer().await;
    rival.put_in_cart(&ids[1], 1).await;
    rival.checkout(AWAITING_PAYMENT).await;

    let refused = shopper.checkout_with("short-1", AWAITING_PAYMENT).await;
    let body = problem(refused, 409).await;
    assert!(body["detail"].as_str().unwrap().contains(&ids[1]), "{body}");
    assert_eq!(body["short"][0]["product_id"], ids[1]);
    assert_eq!(stock(&ids[0]).await["reserved"], 0, "all or nothing");
    let listed = get_json(&shopper.client, url("/orders"), Some(&shopper.token)).await;
    assert_eq!(listed["total"], 0);
}

#[tokio::test]
async fn a_customer_cancels_before_payment_and_the_stock_comes_back() {
    let events = Events::watch().await;
    let ids = products(&[4]).await;
    let shopper = Shopper::customer().await;
    shopper.put_in_cart(&ids[0], 3).await;
    let order = shopper.checkout(AWAITING_PAYMENT).await;
    let id = order["id"].as_str().unwrap();
    stock_until(&ids[0], 4, 3).await;

    let cancelled = shopper.post(&format!("/orders/{id}/cancel")).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "cancelled by the customer");
    let event = events.wait_for(uuid(&order["id"]), "OrderCancelled").await;
    let Envelope::OrderCancelled(event) = event.event else {
        unreachable!()
    };
    assert!(!event.was_paid);
    stock_until(&ids[0], 4, 0).await;

    // A payment that arrives after the cancel changes nothing here.
    publish(payment_succeeded(uuid(&order["id"]), 3003)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(shopper.order(id).await["state"], "cancelled");
    let again = shopper.post(&format!("/orders/{id}/cancel")).await;
    let body = problem(again, 409).await;
    assert_eq!(body["state"], "cancelled");
}

#[tokio::test]
async fn a_paid_order_cancelled_before_shipping_returns_its_stock_and_is_refunded() {
    let events = Events::watch().await;
    let ids = products(&[6]).await;
    let shopper = Shopper::customer().await;
    shopper.put_in_cart(&ids[0], 2).await;
    let order = shopper.checkout(AWAITING_PAYMENT).await;
    let (id, order_id) = (order["id"].as_str().unwrap(), uuid(&order["id"]));
    let payment = payment_succeeded(order_id, 2000);
    publish(payment.clone()).await;
    state_becomes(&shopper, id, "paid").await;
    stock_until(&ids[0], 4, 0).await;

    let cancelled: Value = shopper
        .post(&format!("/orders/{id}/cancel"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["state"], "cancelled");
    let cancelled_event = events.wait_for(order_id, "OrderCancelled").await.event;
    let Envelope::OrderCancelled(event) = &cancelled_event else {
        unreachable!()
    };
    assert!(event.was_paid, "a paid order's cancel asks for a refund");
    stock_until(&ids[0], 6, 0).await;

    // Both events delivered to the product service again move no stock.
    publish(events.wait_for(order_id, "OrderPaid").await.event).await;
    publish(cancelled_event).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = stock(&ids[0]).await;
    assert_eq!(
        (now["on_hand"].as_i64(), now["reserved"].as_i64()),
        (Some(6), Some(0))
    );

    publish(PaymentRefunded {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        payment_id: payment.payment_id,
        order_id,
        amount: 2000,
        currency: "EUR".to_owned(),
    })
    .await;
    state_becomes(&shopper, id, "refunded").await;
}

#[tokio::test]
async fn a_failed_payment_cancels_the_order_and_releases_its_stock() {
    let ids = products(&[5]).await;
    let shopper = Shopper::customer().await;
    shopper.put_in_cart(&ids[0], 5).await;
    let order = shopper.checkout(AWAITING_PAYMENT).await;
    let (id, order_id) = (order["id"].as_str().unwrap(), uuid(&order["id"]));
    stock_until(&ids[0], 5, 5).await;
    publish(PaymentFailed {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        payment_id: Uuid::new_v4(),
        order_id,
        amount: 5000,
        currency: "EUR".to_owned(),
        reason: "Your card was declined.".to_owned(),
        code: Some("card_declined".to_owned()),
    })
    .await;
    let cancelled = state_becomes(&shopper, id, "cancelled").await;
    assert_eq!(
        cancelled["cancel_reason"],
        "payment failed: Your card was declined."
    );
    stock_until(&ids[0], 5, 0).await;
}

#[tokio::test]
async fn an_unpaid_order_is_cancelled_by_its_timer_when_the_grace_period_ends() {
    let ids = products(&[2]).await;
    let shopper = Shopper::customer().await;
    shopper.put_in_cart(&ids[0], 2).await;
    let order = shopper.checkout(AWAITING_PAYMENT).await;
    let id = order["id"].as_str().unwrap();
    // dev/test sets a 15 s grace period.
    let pay_by: chrono::DateTime<chrono::Utc> = order["pay_by"].as_str().unwrap().parse().unwrap();
    let created: chrono::DateTime<chrono::Utc> =
        order["created_at"].as_str().unwrap().parse().unwrap();
    assert!((pay_by - created).num_seconds() <= 16);
    let cancelled = order_until(&shopper, id, "cancelled by its timer", |order| {
        order["state"] == "cancelled"
    })
    .await;
    assert_eq!(cancelled["history"][1]["by"], "system");
    assert!(chrono::Utc::now() >= pay_by);
    stock_until(&ids[0], 2, 0).await;
}

#[tokio::test]
async fn a_payment_event_delivered_twice_moves_the_order_once() {
    let ids = products(&[5]).await;
    let shopper = Shopper::customer().await;
    shopper.put_in_cart(&ids[0], 1).await;
    let order = shopper.checkout(AWAITING_PAYMENT).await;
    let (id, order_id) = (order["id"].as_str().unwrap(), uuid(&order["id"]));
    let payment = payment_succeeded(order_id, 1000);
    publish(payment.clone()).await;
    publish(payment.clone()).await;
    state_becomes(&shopper, id, "paid").await;
    // And a second, different success for the same order is not a second payment.
    publish(payment_succeeded(order_id, 1000)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let order = shopper.order(id).await;
    let paid = order["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["to"] == "paid")
        .count();
    assert_eq!(paid, 1, "{order}");
    assert_eq!(order["payment_id"], payment.payment_id.to_string());
    stock_until(&ids[0], 4, 0).await;
}

#[tokio::test]
async fn sixty_four_customers_checking_out_the_last_ten_units_get_ten_orders() {
    let ids = products(&[10]).await;
    let mut shoppers = Vec::new();
    for _ in 0..64 {
        let shopper = Shopper::customer().await;
        shopper.put_in_cart(&ids[0], 1).await;
        shoppers.push(shopper);
    }
    let checkouts = shoppers
        .iter()
        .map(|shopper| shopper.checkout_with("race", AWAITING_PAYMENT));
    let answers = futures::future::join_all(checkouts).await;
    let mut created = 0;
    let mut refused = 0;
    for answer in answers {
        match answer.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                let body = problem(answer, 409).await;
                assert_eq!(body["short"][0]["product_id"], ids[0]);
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", answer.text().await.unwrap()),
        }
    }
    assert_eq!((created, refused), (10, 54));
    let now = stock(&ids[0]).await;
    assert_eq!(
        (now["on_hand"].as_i64(), now["reserved"].as_i64()),
        (Some(10), Some(10))
    );
    assert_eq!(now["available"], 0);
}

#[tokio::test]
async fn an_illegal_transition_is_409_with_the_current_state() {
    let ids = products(&[5]).await;
    let shopper = Shopper::customer().await;
    shopper.put_in_cart(&ids[0], 1).await;
    let order = shopper.checkout(AWAITING_PAYMENT).await;
    let id = order["id"].as_str().unwrap();
    let admin = Shopper::admin().await;
    let admin_post = |path: String| {
        let admin = &admin;
        async move { admin.post(&path).await }
    };

    for (action, state) in [
        ("deliver", "pending"),
        ("ship?carrier=DHL&tracking_number=T-9", "pending"),
    ] {
        let body = problem(admin_post(format!("/orders/{id}/{action}")).await, 409).await;
        assert_eq!(body["state"], state, "{action}");
    }
    publish(payment_succeeded(uuid(&order["id"]), 1000)).await;
    state_becomes(&shopper, id, "paid").await;
    let body = problem(admin_post(format!("/orders/{id}/deliver")).await, 409).await;
    assert_eq!(body["state"], "paid");
    assert_eq!(
        admin_post(format!("/orders/{id}/ship?carrier=DHL&tracking_number=T-9"))
            .await
            .status(),
        StatusCode::OK
    );
    let body = problem(shopper.post(&format!("/orders/{id}/cancel")).await, 409).await;
    assert_eq!(body["state"], "shipped", "no cancel after shipping");
    assert_eq!(
        admin_post(format!("/orders/{id}/deliver")).await.status(),
        StatusCode::OK
    );
    for action in ["ship?carrier=DHL&tracking_number=T-9", "deliver", "cancel"] {
        let body = problem(admin_post(format!("/orders/{id}/{action}")).await, 409).await;
        assert_eq!(body["state"], "delivered", "{action}");
    }
}

#[tokio::test]
async fn order_placed_delivered_twice_takes_the_ordered_lines_out_of_the_cart_once() {
    let ids = products(&[10, 10]).await;
    let shopper = Shopper::customer().await;
    shopper.put_in_cart(&ids[0], 3).await;
    shopper.put_in_cart(&ids[1], 2).await;
    // One unit of the first product was ordered (as the order service would announce it).
    let placed = order_placed(shopper.uuid(), ids[0].parse().unwrap(), AWAITING_PAYMENT);
    publish(placed.clone()).await;
    publish(placed).await;

    let quantity = |cart: &Value, product: &str| {
        cart["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|line| line["product_id"] == product)
            .map_or(0, |line| line["quantity"].as_i64().unwrap())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let cart = get_json(&shopper.client, url("/carts/me"), Some(&shopper.token)).await;
        if quantity(&cart, &ids[0]) == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the line never went down: {cart}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cart = get_json(&shopper.client, url("/carts/me"), Some(&shopper.token)).await;
    assert_eq!(quantity(&cart, &ids[0]), 2, "taken out once: {cart}");
    assert_eq!(
        quantity(&cart, &ids[1]),
        2,
        "a line not ordered stays: {cart}"
    );
}

#[tokio::test]
async fn checking_out_twice_in_a_row_orders_the_cart_once() {
    let product = &products(&[10]).await[0];
    let shopper = Shopper::customer().await;
    shopper.put_in_cart(product, 2).await;
    shopper.checkout("pm_card_authenticationRequired").await;
    // The ordered lines left the cart before the first checkout answered: nothing to order.
    let again = shopper
        .checkout_with(
            &Uuid::new_v4().to_string(),
            "pm_card_authenticationRequired",
        )
        .await;
    problem(again, 422).await;
    assert_eq!(shopper.cart().await["items"], json!([]));
    stock_until(product, 10, 2).await;
}
