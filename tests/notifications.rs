//! Notifications end to end: the real notification service hears the real events and sends
//! mail through SMTP to Mailpit, whose API the tests read.

mod common;

use std::time::Duration;

use common::events::{Events, publish};
use common::orders::{Ordering, products, state_becomes, uuid};
use common::{Shopper, client, get_json, mails_to, problem, url, wait_for_mails};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shop_schemas::PaymentRefunded;
use uuid::Uuid;

fn euros(minor: i64) -> String {
    format!("€{}.{:02}", minor / 100, minor % 100)
}

async fn my_notifications(shopper: &Shopper) -> Vec<Value> {
    let page = get_json(
        &shopper.client,
        url("/notifications/me?per_page=100"),
        Some(&shopper.token),
    )
    .await;
    page["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_purchase_mails_welcome_confirmation_receipt_and_shipping_once_each() {
    let events = Events::watch().await;
    let shopper = Shopper::customer().await;
    let admin = Shopper::admin().await;
    let shelf = products(&[5]).await;
    shopper.put_in_cart(&shelf[0], 2).await;
    let order = shopper.checkout("pm_card_visa").await;
    assert_eq!(order["currency"], "EUR");
    let id = order["id"].as_str().unwrap();
    let total = order["total"].as_i64().unwrap();
    state_becomes(&shopper, id, "paid").await;
    let shipped = admin
        .post(&format!(
            "/orders/{id}/ship?carrier=DHL&tracking_number=TRACK-42"
        ))
        .await;
    assert_eq!(shipped.status(), StatusCode::OK);

    let short = &uuid(&order["id"]).simple().to_string()[..8];
    let mut subjects = wait_for_mails(&shopper.email, 4).await;
    subjects.sort();
    let mut expected = vec![
        format!("Receipt for order {short} — {} paid", euros(total)),
        format!("Welcome to Shop, {}", shopper_name(&shopper).await),
        format!("Your order {short} is on its way"),
        format!("Your order {short} — {}", euros(total)),
    ];
    expected.sort();
    assert_eq!(subjects, expected);

    // The delivery log shows each as sent, once.
    let log = my_notifications(&shopper).await;
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(
        log.iter()
            .all(|delivery| delivery["status"] == "sent" && delivery["channel"] == "email")
    );

    // OrderShipped delivered again: nothing more is sent.
    let again = events
        .wait_for(uuid(&order["id"]), "OrderShipped")
        .await
        .event;
    publish(again.clone()).await;
    publish(again).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(mails_to(&shopper.email).await.len(), 4);
    assert_eq!(my_notifications(&shopper).await.len(), 4);
}

async fn shopper_name(shopper: &Shopper) -> String {
    let me = get_json(&shopper.client, url("/users/me"), Some(&shopper.token)).await;
    me["name"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_customer_who_opted_out_of_email_gets_none() {
    let events = Events::watch().await;
    let shopper = Shopper::customer().await;
    wait_for_mails(&shopper.email, 1).await;
    let opted_out = shopper
        .client
        .put(url("/notifications/preferences"))
        .bearer_auth(&shopper.token)
        .json(&json!({ "email_opt_out": true, "sms_opt_out": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(opted_out.status(), StatusCode::OK);
    let preferences = get_json(
        &shopper.client,
        url("/notifications/preferences"),
        Some(&shopper.token),
    )
    .await;
    assert_eq!(preferences["email_opt_out"], true);

    let shelf = products(&[3]).await;
    shopper.put_in_cart(&shelf[0], 1).await;
    let order = shopper.checkout("pm_card_chargeDeclined").await;
    state_becomes(&shopper, order["id"].as_str().unwrap(), "cancelled").await;
    events.wait_for(uuid(&order["id"]), "OrderCancelled").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        mails_to(&shopper.email).await.len(),
        1,
        "only the welcome, from before"
    );
    let log = my_notifications(&shopper).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["template"], "welcome");
}

#[tokio::test]
async fn a_failed_notification_is_logged_and_an_admin_can_retry_it() {
    // A refund of an order this service never heard of: nobody to write to.
    let refunded = PaymentRefunded {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        payment_id: Uuid::new_v4(),
        order_id: Uuid::new_v4(),
        amount: 100,
        currency: "EUR".to_owned(),
    };
    let event_id = refunded.event_id;
    publish(refunded).await;
    let admin = Shopper::admin().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let page = get_json(
            &admin.client,
            url("/notifications?status=failed&event_type=PaymentRefunded&per_page=100"),
            Some(&admin.token),
        )
        .await;
        if let Some(found) = page["items"].as_array().and_then(|items| {
            items
                .iter()
                .find(|item| item["event_id"] == event_id.to_string())
        }) {
            break found.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never logged: {page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("no order known"),
        "{failed}"
    );
    let id = failed["id"].as_str().unwrap();

    let customer = Shopper::customer().await;
    problem(
        customer.post(&format!("/notifications/{id}/retry")).await,
        403,
    )
    .await;
    let retried = admin.post(&format!("/notifications/{id}/retry")).await;
    assert_eq!(retried.status(), StatusCode::OK);
    // Still nobody to write to: failed again, after one more try.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = get_json(
            &admin.client,
            url(&format!("/notifications/{id}")),
            Some(&admin.token),
        )
        .await;
        if now["status"] == "failed" && now["attempts"] == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{now}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let conflict = problem(
        admin
            .post(&format!("/notifications/{}/retry", Uuid::new_v4()))
            .await,
        404,
    )
    .await;
    assert!(conflict["detail"].is_string());
}

#[tokio::test]
async fn bad_notification_requests_answer_problems() {
    let shopper = Shopper::customer().await;
    let other = Shopper::customer().await;
    let admin = Shopper::admin().await;
    problem(
        client().get(url("/notifications/me")).send().await.unwrap(),
        401,
    )
    .await;
    problem(shopper.get("/notifications").await, 403).await;
    problem(shopper.get("/notifications/me?per_page=0").await, 422).await;
    problem(admin.get("/notifications?status=bogus").await, 400).await;
    problem(
        shopper
            .get(&format!("/notifications/{}", Uuid::new_v4()))
            .await,
        404,
    )
    .await;
    problem(shopper.get("/notifications/not-a-uuid").await, 400).await;
    let bad = shopper
        .client
        .put(url("/notifications/preferences"))
        .bearer_auth(&shopper.token)
        .json(&json!({ "email_opt_out": "yes" }))
        .send()
        .await
        .unwrap();
    problem(bad, 400).await;

    // Someone else's notification is not found; a sent one cannot be retried.
    wait_for_mails(&shopper.email, 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let welcome = loop {
        let log = my_notifications(&shopper).await;
        if let Some(sent) = log
            .into_iter()
            .find(|delivery| delivery["status"] == "sent")
        {
            break sent;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the welcome was never marked sent"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let path = format!("/notifications/{}", welcome["id"].as_str().unwrap());
    problem(other.get(&path).await, 404).await;
    assert_eq!(
        get_json(&admin.client, url(&path), Some(&admin.token)).await["id"],
        welcome["id"]
    );
    let conflict = problem(admin.post(&format!("{path}/retry")).await, 409).await;
    assert_eq!(conflict["notification_status"], "sent");
}
