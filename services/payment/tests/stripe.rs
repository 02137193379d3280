//! The Stripe client against a local server that checks each request the way Stripe's API does
//! and answers with Stripe's documented response shapes; and the payment actor driving it
//! through server errors and rate limits to one charge, against the real PostgreSQL.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Request, Response, Route, handler};
use ractor::{Actor, RpcReplyPort};
use serde_json::{Value, json};
use shop_bridge::{Ack, Delivery};
use shop_config::Settings;
use shop_payment::actor::{PaymentActor, PaymentArgs, PaymentMsg};
use shop_payment::provider::{
    ChargeRequest, Charged, Provider, ProviderError, RefundRequest, Refunded, StripeClient,
};
use shop_schemas::{OrderLine, OrderPlaced};
use uuid::Uuid;

const SECRET_KEY: &str = "sk_test_local_4eC39HqLyjWDarjtT1zdp7dc";

/// A request as the local Stripe saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: String,
    idempotency_key: Option<String>,
    form: HashMap<String, String>,
}

/// The local Stripe: answers from a script (then success), records every request, and replays
/// the saved answer for a repeated Idempotency-Key, as Stripe does.
#[derive(Clone, Default)]
struct LocalStripe {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<(u16, Value)>>>,
    saved: Arc<Mutex<HashMap<String, (u16, Value)>>>,
}

fn intent(id: &str, status: &str) -> Value {
    json!({ "id": id, "object": "payment_intent", "status": status, "amount": 2000, "currency": "eur" })
}

fn card_error(decline_code: &str, message: &str) -> Value {
    json!({ "error": {
        "type": "card_error", "code": "card_declined", "decline_code": decline_code,
        "message": message,
        "payment_intent": { "id": "pi_declined", "object": "payment_intent", "status": "requires_payment_method" }
    }})
}

fn api_error(kind: &str, message: &str) -> Value {
    json!({ "error": { "type": kind, "message": message } })
}

#[handler]
async fn stripe_api(request: &Request, body: Vec<u8>, stripe: Data<&LocalStripe>) -> Response {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let seen = Seen {
        path: request.uri().path().to_owned(),
        authorization: header("authorization").unwrap_or_default(),
        idempotency_key: header("idempotency-key"),
        form,
    };
    stripe.seen.lock().unwrap().push(seen.clone());
    let reply = |status: u16, body: &Value, replayed: bool| {
        let mut response = Response::builder()
            .status(poem::http::StatusCode::from_u16(status).unwrap())
            .content_type("application/json");
        if replayed {
            response = response.header("Idempotent-Replayed", "true");
        }
        response.body(body.to_string())
    };
    if seen.authorization != format!("Bearer {SECRET_KEY}") {
        return reply(
            401,
            &api_error("invalid_request_error", "Invalid API Key provided"),
            false,
        );
    }
    if let Some(key) = &seen.idempotency_key
        && let Some((status, body)) = stripe.saved.lock().unwrap().get(key)
    {
        return reply(*status, body, true);
    }
    let (status, body) = stripe
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| {
            if seen.path == "/v1/refunds" {
                (
                    200,
                    json!({ "id": "re_local_1", "object": "refund", "status": "succeeded" }),
                )
            } else {
                (200, intent("pi_local_1", "succeeded"))
            }
        });
    // Stripe saves the result of a request that ran; not rate limits or server errors.
    if status != 429
        && status < 500
        && let Some(key) = seen.idempotency_key
    {
        stripe
            .saved
            .lock()
            .unwrap()
            .insert(key, (status, body.clone()));
    }
    reply(status, &body, false)
}

/// Starts the local Stripe with `script`; returns it and its base URL.
async fn local_stripe(script: Vec<(u16, Value)>) -> (LocalStripe, String) {
    let stripe = LocalStripe::default();
    stripe.script.lock().unwrap().extend(script);
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let address = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let app = Route::new().at("/*path", stripe_api).data(stripe.clone());
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    (stripe, format!("http://{address}"))
}

fn charge(key: &str, order_id: Uuid) -> ChargeRequest<'_> {
    ChargeRequest {
        idempotency_key: key,
        order_id,
        payment_id: Uuid::new_v4(),
        amount: 2000,
        currency: "EUR",
        payment_method: "pm_card_visa",
    }
}

#[tokio::test]
async fn a_charge_is_a_confirmed_payment_intent_sent_form_encoded_with_key_and_secret() {
    let (stripe, base) = local_stripe(vec![]).await;
    let client = StripeClient::new(&base, SECRET_KEY).unwrap();
    let order_id = Uuid::new_v4();
    let charged = client.charge(&charge("shop-order-1", order_id)).await;
    assert_eq!(
        charged,
        Ok(Charged::Succeeded {
            reference: "pi_local_1".to_owned()
        })
    );
    let seen = stripe.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/v1/payment_intents");
    assert_eq!(seen.idempotency_key.as_deref(), Some("shop-order-1"));
    assert_eq!(seen.form["amount"], "2000");
    assert_eq!(seen.form["currency"], "eur");
    assert_eq!(seen.form["payment_method"], "pm_card_visa");
    assert_eq!(seen.form["confirm"], "true");
    assert_eq!(seen.form["metadata[order_id]"], order_id.to_string());
}

#[tokio::test]
async fn a_decline_is_final_and_carries_the_decline_code() {
    let (_, base) = local_stripe(vec![(
        402,
        card_error("insufficient_funds", "Your card has insufficient funds."),
    )])
    .await;
    let client = StripeClient::new(&base, SECRET_KEY).unwrap();
    let charged = client.charge(&charge("shop-order-2", Uuid::new_v4())).await;
    assert_eq!(
        charged,
        Ok(Charged::Declined {
            reference: Some("pi_declined".to_owned()),
            code: "insufficient_funds".to_owned(),
            message: "Your card has insufficient funds.".to_owned(),
        })
    );
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_transient_and_a_bad_request_is_not() {
    let (_, base) = local_stripe(vec![
        (429, api_error("rate_limit_error", "Too many requests")),
        (
            500,
            api_error("api_error", "Something went wrong on Stripe's end."),
        ),
        (
            400,
            api_error("invalid_request_error", "No such PaymentMethod: 'pm_nope'"),
        ),
    ])
    .await;
    let client = StripeClient::new(&base, SECRET_KEY).unwrap();
    let order_id = Uuid::new_v4();
    assert!(matches!(
        client.charge(&charge("k-429", order_id)).await,
        Err(ProviderError::Transient(why)) if why.contains("429")
    ));
    assert!(matches!(
        client.charge(&charge("k-500", order_id)).await,
        Err(ProviderError::Transient(why)) if why.contains("500")
    ));
    assert!(matches!(
        client.charge(&charge("k-400", order_id)).await,
        Err(ProviderError::Refused(why)) if why.contains("No such PaymentMethod")
    ));
    let wrong_key = StripeClient::new(&base, "sk_test_wrong").unwrap();
    assert!(matches!(
        wrong_key.charge(&charge("k-401", order_id)).await,
        Err(ProviderError::Transient(_))
    ));
    let nobody = StripeClient::new("http://127.0.0.1:9", SECRET_KEY).unwrap();
    assert!(matches!(
        nobody.charge(&charge("k-down", order_id)).await,
        Err(ProviderError::Transient(_))
    ));
}

#[tokio::test]
async fn a_repeated_key_is_answered_from_stripes_saved_result_without_a_second_charge() {
    let (stripe, base) = local_stripe(vec![(200, intent("pi_first", "succeeded"))]).await;
    let client = StripeClient::new(&base, SECRET_KEY).unwrap();
    let order_id = Uuid::new_v4();
    let first = client.charge(&charge("shop-order-same", order_id)).await;
    let again = client.charge(&charge("shop-order-same", order_id)).await;
    assert_eq!(first, again);
    assert_eq!(
        again,
        Ok(Charged::Succeeded {
            reference: "pi_first".to_owned()
        })
    );
    assert_eq!(stripe.saved.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_refund_names_the_payment_intent_and_the_amount() {
    let (stripe, base) = local_stripe(vec![]).await;
    let client = StripeClient::new(&base, SECRET_KEY).unwrap();
    let refund_id = Uuid::new_v4();
    let refunded = client
        .refund(&RefundRequest {
            idempotency_key: "shop-refund-1",
            charge_reference: "pi_local_1",
            refund_id,
            amount: 500,
        })
        .await;
    assert_eq!(
        refunded,
        Ok(Refunded::Succeeded {
            reference: "re_local_1".to_owned()
        })
    );
    let seen = stripe.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/v1/refunds");
    assert_eq!(seen.form["payment_intent"], "pi_local_1");
    assert_eq!(seen.form["amount"], "500");
    assert_eq!(seen.idempotency_key.as_deref(), Some("shop-refund-1"));
}

#[tokio::test]
async fn the_payment_actor_retries_a_500_and_a_429_with_one_key_to_one_charge_and_one_event() {
    let (stripe, base) = local_stripe(vec![
        (
            500,
            api_error("api_error", "Something went wrong on Stripe's end."),
        ),
        (429, api_error("rate_limit_error", "Too many requests")),
    ])
    .await;
    let settings = Settings::from_env().expect("the settings dev/test exports are valid");
    let pool = shop_web::postgres::connect(
        &settings.postgres,
        "shop_payment_stripe_test",
        &[&shop_payment::store::MIGRATOR, &shop_bridge::migrator()],
    )
    .await
    .expect("the test database");
    let order_id = Uuid::new_v4();
    let args = PaymentArgs {
        order_id,
        pool: pool.clone(),
        provider: Provider::Stripe(StripeClient::new(&base, SECRET_KEY).unwrap()),
        max_attempts: 5,
        instance: "payment-stripe-test".into(),
    };
    let (actor, _) = Actor::spawn(None, PaymentActor, args).await.unwrap();
    let placed = OrderPlaced {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        order_id,
        customer_id: Uuid::new_v4(),
        customer_email: "stripe@shop.test".to_owned(),
        customer_name: "Stripe Test".to_owned(),
        lines: vec![OrderLine {
            product_id: Uuid::new_v4(),
            name: "Thing".to_owned(),
            quantity: 1,
            unit_price: 2000,
        }],
        total: 2000,
        currency: "EUR".to_owned(),
        payment_method: "pm_card_visa".to_owned(),
        idempotency_key: "checkout-1".to_owned(),
        // As a service before v2 of the event would publish it.
        shipping_address: None,
        shipping_method: None,
        subtotal: None,
        shipping: None,
        tax: None,
        prices_include_tax: None,
        delivery_min_days: None,
        delivery_max_days: None,
        pay_by: None,
    };
    let (sender, answer) = ractor::concurrency::oneshot();
    let delivery = Delivery {
        event: placed.into(),
        trace_id: None,
        reply: RpcReplyPort::from(sender),
    };
    actor.send_message(PaymentMsg::Event(delivery)).unwrap();
    assert_eq!(answer.await.unwrap(), Ack::Done);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let payment = loop {
        let payment = shop_payment::store::of_order(&pool, order_id)
            .await
            .unwrap();
        if let Some(payment) = payment.filter(|payment| payment.row.status == "succeeded") {
            break payment;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the payment never succeeded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(payment.row.attempts, 3);
    assert_eq!(
        payment.row.provider_reference.as_deref(),
        Some("pi_local_1")
    );
    let keys: Vec<_> = stripe
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|seen| seen.idempotency_key.clone())
        .collect();
    let key = format!("shop-order-{order_id}");
    assert_eq!(keys, vec![Some(key.clone()), Some(key.clone()), Some(key)]);
    let events: Vec<String> =
        sqlx::query_scalar("select event_type from outbox where message_key = $1 order by id")
            .bind(order_id.to_string())
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(events, vec!["PaymentSucceeded"]);
}
