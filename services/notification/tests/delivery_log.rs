//! The HTTP channels against local servers that check each request the way SendGrid's and
//! Twilio's APIs do, and the delivery log against the real PostgreSQL: a provider's refusal and
//! a template that does not render both end as `failed` with the reason, and nothing crashes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Request, Response, Route, handler};
use ractor::Actor;
use serde_json::{Value, json};
use shop_config::Settings;
use shop_notification::channels::{EmailSender, SendError, SendGrid, SmsSender, Twilio};
use shop_notification::deliveries::{MessageActor, MessageArgs, MessageMsg, Senders};
use shop_notification::templates::{Email, Templates};
use shop_schemas::{Envelope, UserRegistered};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: String,
    content_type: String,
    body: Vec<u8>,
}

/// A local provider answering every request with `status` and `body`, recording what it saw.
#[derive(Clone)]
struct Local {
    seen: Arc<Mutex<Vec<Seen>>>,
    status: u16,
    body: Value,
}

#[handler]
async fn provider(request: &Request, body: Vec<u8>, local: Data<&Local>) -> Response {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    local.seen.lock().unwrap().push(Seen {
        path: request.uri().path().to_owned(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body,
    });
    Response::builder()
        .status(poem::http::StatusCode::from_u16(local.status).unwrap())
        .header("X-Message-Id", "sg-message-1")
        .content_type("application/json")
        .body(local.body.to_string())
}

async fn local(status: u16, body: Value) -> (Arc<Mutex<Vec<Seen>>>, String) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let address = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let app = Route::new().at("/*path", provider).data(Local {
        seen: seen.clone(),
        status,
        body,
    });
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    (seen, format!("http://{address}"))
}

fn email() -> Email {
    Email {
        subject: "Your order 1a2b3c4d — €19.99".to_owned(),
        text: "Hello Ada".to_owned(),
        html: "<p>Hello Ada</p>".to_owned(),
    }
}

#[tokio::test]
async fn sendgrid_gets_a_bearer_key_and_the_mail_as_json() {
    let (seen, base) = local(202, json!(null)).await;
    let sendgrid = SendGrid::new(&base, "SG.local-key", "Shop <shop@shop.test>").unwrap();
    let sent = sendgrid.send("Ada", "ada@shop.test", &email()).await;
    assert_eq!(sent, Ok("sg-message-1".to_owned()));
    let seen = seen.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/v3/mail/send");
    assert_eq!(seen.authorization, "Bearer SG.local-key");
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body["personalizations"][0]["to"][0]["email"],
        "ada@shop.test"
    );
    assert_eq!(body["from"]["email"], "shop@shop.test");
    assert_eq!(body["subject"], "Your order 1a2b3c4d — €19.99");
    assert_eq!(body["content"][0]["type"], "text/plain");
    assert_eq!(body["content"][1]["value"], "<p>Hello Ada</p>");
}

#[tokio::test]
async fn a_sendgrid_4xx_is_final_with_its_reason_and_a_429_is_not() {
    let refusal = json!({ "errors": [{ "message": "The from address does not match a verified Sender Identity.", "field": "from" }] });
    let (_, base) = local(400, refusal).await;
    let sendgrid = SendGrid::new(&base, "SG.local-key", "shop@shop.test").unwrap();
    assert!(matches!(
        sendgrid.send("Ada", "ada@shop.test", &email()).await,
        Err(SendError::Permanent(reason)) if reason.contains("verified Sender Identity")
    ));
    let (_, busy) = local(
        429,
        json!({ "errors": [{ "message": "too many requests" }] }),
    )
    .await;
    let sendgrid = SendGrid::new(&busy, "SG.local-key", "shop@shop.test").unwrap();
    assert!(matches!(
        sendgrid.send("Ada", "ada@shop.test", &email()).await,
        Err(SendError::Transient(_))
    ));
}

#[tokio::test]
async fn twilio_gets_basic_auth_and_a_form_and_a_bad_number_is_final() {
    let (seen, base) = local(201, json!({ "sid": "SM123", "status": "queued" })).await;
    let twilio = Twilio::new(&base, "AC123", "token-1", "+15005550006").unwrap();
    assert_eq!(
        twilio.send("+4915112345678", "Shop: order shipped.").await,
        Ok("SM123".to_owned())
    );
    let seen = seen.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/2010-04-01/Accounts/AC123/Messages.json");
    assert_eq!(seen.authorization, "Basic QUMxMjM6dG9rZW4tMQ==");
    assert_eq!(seen.content_type, "application/x-www-form-urlencoded");
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&seen.body).unwrap();
    assert!(form.contains(&("To".to_owned(), "+4915112345678".to_owned())));
    assert!(form.contains(&("From".to_owned(), "+15005550006".to_owned())));
    assert!(form.contains(&("Body".to_owned(), "Shop: order shipped.".to_owned())));

    let (_, base) = local(
        400,
        json!({ "code": 21211, "message": "The 'To' number is not a valid phone number." }),
    )
    .await;
    let twilio = Twilio::new(&base, "AC123", "token-1", "+15005550006").unwrap();
    assert!(matches!(
        twilio.send("12", "x").await,
        Err(SendError::Permanent(reason)) if reason.contains("not a valid phone number")
    ));
}

async fn database() -> PgPool {
    let settings = Settings::from_env().expect("the settings dev/test exports are valid");
    shop_web::postgres::connect(
        &settings.postgres,
        "shop_notification_log_test",
        &[
            &shop_notification::store::MIGRATOR,
            &shop_bridge::migrator(),
        ],
    )
    .await
    .expect("the test database")
}

fn registered(name: &str) -> UserRegistered {
    UserRegistered {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        user_id: Uuid::new_v4(),
        email: format!("{}@shop.test", Uuid::new_v4().simple()),
        name: name.to_owned(),
        phone: None,
        verification_token: None,
        verification_expires_at: None,
    }
}

async fn only_delivery(pool: &PgPool, event_id: Uuid) -> shop_notification::store::Delivery {
    sqlx::query_as("select * from deliveries where event_id = $1")
        .bind(event_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_sendgrid_refusal_ends_the_delivery_failed_with_the_reason() {
    let pool = database().await;
    let refusal = json!({ "errors": [{ "message": "Does not contain a valid address." }] });
    let (_, base) = local(400, refusal).await;
    let event = registered("Ada");
    let ids =
        shop_notification::plan::plan(&pool, &Templates::new(None), &Envelope::from(event.clone()))
            .await
            .unwrap();
    assert_eq!(ids.len(), 1);
    let senders = Senders {
        email: EmailSender::SendGrid(SendGrid::new(&base, "SG.key", "shop@shop.test").unwrap()),
        sms: SmsSender::Log { masked: false },
    };
    let recorded = ids.into_iter().next().unwrap();
    let args = MessageArgs {
        id: recorded.id,
        pool: pool.clone(),
        senders: Arc::new(senders),
        max_attempts: 3,
    };
    let (actor, handle) = Actor::spawn(None, MessageActor, args).await.unwrap();
    actor
        .send_message(MessageMsg::SendClaimed(Box::new(recorded), None))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .unwrap()
        .unwrap();
    let delivery = only_delivery(&pool, event.event_id).await;
    assert_eq!(delivery.status, "failed");
    assert_eq!(delivery.attempts, 1);
    assert!(
        delivery
            .last_error
            .unwrap()
            .contains("Does not contain a valid address")
    );

    // The same event again records nothing more.
    let again = shop_notification::plan::plan(&pool, &Templates::new(None), &Envelope::from(event))
        .await
        .unwrap();
    assert!(again.is_empty());
}

#[tokio::test]
async fn a_template_that_does_not_render_is_a_failed_delivery_and_the_next_event_goes_on() {
    let pool = database().await;
    let dir = std::env::temp_dir().join(format!("shop-bad-templates-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("welcome.subject.txt"),
        "Welcome {{ name | nosuchfilter }}",
    )
    .unwrap();
    let broken = Templates::new(Some(&dir));

    let event = registered("Ada");
    let ids = shop_notification::plan::plan(&pool, &broken, &Envelope::from(event.clone()))
        .await
        .unwrap();
    assert!(ids.is_empty(), "nothing to send");
    let delivery = only_delivery(&pool, event.event_id).await;
    assert_eq!(delivery.status, "failed");
    let error = delivery.last_error.unwrap();
    assert!(error.contains("welcome.subject.txt"), "{error}");

    let next = registered("Grace");
    let ids =
        shop_notification::plan::plan(&pool, &Templates::new(None), &Envelope::from(next.clone()))
            .await
            .unwrap();
    assert_eq!(ids.len(), 1);
    let queued = only_delivery(&pool, next.event_id).await;
    assert_eq!(queued.status, "queued");
    assert_eq!(queued.subject.as_deref(), Some("Welcome to Shop, Grace"));
}

#[tokio::test]
async fn a_customer_with_a_phone_gets_an_sms_too_unless_opted_out() {
    let pool = database().await;
    let mut event = registered("Ada");
    event.phone = Some("+4915112345678".to_owned());
    let ids =
        shop_notification::plan::plan(&pool, &Templates::new(None), &Envelope::from(event.clone()))
            .await
            .unwrap();
    assert_eq!(ids.len(), 2, "an email and an SMS");
    let sms: shop_notification::store::Delivery =
        sqlx::query_as("select * from deliveries where event_id = $1 and channel = 'sms'")
            .bind(event.event_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(sms.recipient, "+4915112345678");
    assert_eq!(sms.body_text.as_deref(), Some("Welcome to Shop, Ada!"));

    shop_notification::store::set_preferences(
        &pool,
        event.user_id,
        shop_notification::store::Preferences {
            email_opt_out: false,
            sms_opt_out: true,
        },
    )
    .await
    .unwrap();
    let delivered = shop_schemas::OrderDelivered {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        order_id: Uuid::new_v4(),
        customer_id: event.user_id,
    };
    let ids =
        shop_notification::plan::plan(&pool, &Templates::new(None), &Envelope::from(delivered))
            .await
            .unwrap();
    assert_eq!(ids.len(), 1, "the email only");
}

#[tokio::test]
async fn a_recorded_message_is_sent_by_one_replica_only() {
    let pool = database().await;
    let event = registered("Claimed");
    let ids = shop_notification::plan::plan(&pool, &Templates::new(None), &Envelope::from(event))
        .await
        .unwrap();
    let id = ids[0].id;
    // Recorded means claimed by the recorder: another replica's sweep may not take it.
    assert!(!shop_notification::store::claim(&pool, id).await.unwrap());
    assert!(
        !shop_notification::store::due(&pool, 100_000)
            .await
            .unwrap()
            .contains(&id),
        "not due for the sweepers while claimed"
    );

    // The recorder died: once the claim has run out, exactly one of two replicas gets it.
    sqlx::query(
        "update deliveries set next_attempt_at = now() - interval '1 second' where id = $1",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    let (a, b) = tokio::join!(
        shop_notification::store::claim(&pool, id),
        shop_notification::store::claim(&pool, id),
    );
    assert_eq!(
        [a.unwrap(), b.unwrap()].iter().filter(|won| **won).count(),
        1,
        "exactly one claim takes"
    );
}

fn order_for(user_id: Uuid, email: &str, name: &str) -> shop_schemas::OrderPlaced {
    shop_schemas::OrderPlaced {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        order_id: Uuid::new_v4(),
        customer_id: user_id,
        customer_email: email.to_owned(),
        customer_name: name.to_owned(),
        lines: vec![shop_schemas::OrderLine {
            product_id: Uuid::new_v4(),
            name: "Mug".into(),
            quantity: 1,
            unit_price: 1299,
        }],
        total: 1299,
        currency: "EUR".into(),
        payment_method: "pm_card_visa".into(),
        idempotency_key: "k-1".into(),
        shipping_address: None,
        shipping_method: None,
        subtotal: None,
        shipping: None,
        tax: None,
        prices_include_tax: None,
        delivery_min_days: None,
        delivery_max_days: None,
        pay_by: None,
    }
}

async fn contact(pool: &PgPool, user_id: Uuid) -> Option<shop_notification::store::Recipient> {
    shop_notification::store::contact(pool, user_id)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_address_book_follows_the_account_and_forgets_a_deleted_customer_for_good() {
    let pool = database().await;
    let templates = Templates::new(None);
    let plan = |event: Envelope| {
        let (pool, templates) = (&pool, &templates);
        async move {
            shop_notification::plan::plan(pool, templates, &event)
                .await
                .unwrap()
        }
    };
    let mut registered = registered("Ada");
    registered.phone = Some("+4915100000001".into());
    let user_id = registered.user_id;
    plan(Envelope::from(registered.clone())).await;
    let updated = shop_schemas::UserUpdated {
        event_id: Uuid::new_v4(),
        occurred_at: registered.occurred_at + 10,
        user_id,
        email: "ada.new@shop.test".into(),
        name: "Ada King".into(),
        phone: None,
        email_verified: true,
    };
    plan(Envelope::from(updated.clone())).await;
    let now = contact(&pool, user_id).await.unwrap();
    assert_eq!(
        (now.email.as_str(), now.name.as_str(), now.phone),
        ("ada.new@shop.test", "Ada King", None),
        "a removed phone is removed"
    );

    // An older change applied late, and an order's snapshot, change nothing.
    let older = shop_schemas::UserUpdated {
        event_id: Uuid::new_v4(),
        occurred_at: registered.occurred_at + 5,
        phone: Some("+4915100000002".into()),
        ..updated.clone()
    };
    plan(Envelope::from(older)).await;
    plan(Envelope::from(order_for(
        user_id,
        "old@shop.test",
        "Old Name",
    )))
    .await;
    let now = contact(&pool, user_id).await.unwrap();
    assert_eq!((now.email.as_str(), now.phone), ("ada.new@shop.test", None));

    // Deleted: the log is erased, and a late order neither brings the address back nor sends.
    let deleted = shop_schemas::UserDeleted {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        user_id,
        by_admin: false,
    };
    plan(Envelope::from(deleted)).await;
    assert!(contact(&pool, user_id).await.is_none());
    let log: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as("select recipient, subject, body_text from deliveries where user_id = $1")
            .bind(user_id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(!log.is_empty());
    assert!(
        log.iter()
            .all(|row| row == &("erased".to_owned(), None, None)),
        "{log:?}"
    );
    let late = order_for(user_id, "ada.new@shop.test", "Ada King");
    let sent = plan(Envelope::from(late.clone())).await;
    assert!(sent.is_empty());
    assert!(contact(&pool, user_id).await.is_none());
    let recorded: i64 = sqlx::query_scalar("select count(*) from deliveries where event_id = $1")
        .bind(late.event_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(recorded, 0);
}

#[tokio::test]
async fn an_account_mail_goes_to_the_address_it_names_by_email_only_whatever_the_opt_outs() {
    let pool = database().await;
    let registered = registered("Ada");
    let user_id = registered.user_id;
    let templates = Templates::new(None).with_shop_url("https://shop.example");
    shop_notification::plan::plan(&pool, &templates, &Envelope::from(registered))
        .await
        .unwrap();
    shop_notification::store::set_preferences(
        &pool,
        user_id,
        shop_notification::store::Preferences {
            email_opt_out: true,
            sms_opt_out: true,
        },
    )
    .await
    .unwrap();
    let reset = shop_schemas::AccountMailRequested {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        user_id,
        kind: shop_schemas::AccountMailKind::PasswordReset,
        email: "elsewhere@shop.test".into(),
        name: "Ada".into(),
        token: Some("T0KEN".into()),
        expires_at: Some(shop_schemas::now_millis() + 1_800_000),
        new_email: None,
    };
    let sent = shop_notification::plan::plan(&pool, &templates, &Envelope::from(reset.clone()))
        .await
        .unwrap();
    assert_eq!(sent.len(), 1);
    let delivery = only_delivery(&pool, reset.event_id).await;
    assert_eq!(delivery.channel, "email");
    assert_eq!(delivery.recipient, "elsewhere@shop.test");
    assert!(
        delivery
            .body_text
            .unwrap()
            .contains("https://shop.example/account/reset-password?token=T0KEN")
    );
}
