//! The Stripe client against `stripe-mock`, Stripe's own mock of its API (dev/ installs it and
//! dev/test starts it; `SHOP_STRIPE_MOCK_URL`). stripe-mock validates every request against
//! Stripe's published OpenAPI description — an unknown or malformed parameter is a 400
//! `invalid_request_error` — and answers fixtures: its PaymentIntents always come back
//! `requires_payment_method`, its refunds `succeeded`. So these tests prove the wire format
//! (Stripe would accept what we send, and we read what it answers); how the service behaves on
//! each outcome is `stripe.rs`'s, against the local fake.

use shop_payment::provider::{ChargeRequest, Charged, RefundRequest, Refunded, StripeClient};
use uuid::Uuid;

fn mock_url() -> String {
    std::env::var("SHOP_STRIPE_MOCK_URL")
        .expect("SHOP_STRIPE_MOCK_URL names stripe-mock: run this through dev/test")
}

fn client() -> StripeClient {
    StripeClient::new(&mock_url(), "sk_test_123").expect("a client")
}

/// The reference of a PaymentIntent created and confirmed at stripe-mock.
async fn charged(client: &StripeClient, key: &str) -> (String, Charged) {
    let request = ChargeRequest {
        idempotency_key: key,
        order_id: Uuid::new_v4(),
        payment_id: Uuid::new_v4(),
        amount: 2599,
        currency: "EUR",
        payment_method: "pm_card_visa",
    };
    let charged = client
        .charge(&request)
        .await
        .expect("stripe-mock accepts the PaymentIntent as we send it");
    let reference = match &charged {
        Charged::Succeeded { reference } | Charged::Pending { reference, .. } => reference.clone(),
        Charged::Declined { reference, .. } => reference.clone().expect("an intent was made"),
    };
    (reference, charged)
}

#[tokio::test]
async fn a_payment_intent_is_created_and_confirmed_with_an_idempotency_key_stripe_accepts() {
    let client = client();
    let (reference, charged) = charged(&client, &format!("shop-order-{}", Uuid::new_v4())).await;
    assert!(reference.starts_with("pi_"), "{reference}");
    // The fixture comes back `requires_payment_method` with a last_payment_error of one type
    // and no message: we report what it said, and invent no decline it did not give.
    match charged {
        Charged::Declined { code, message, .. } => {
            assert_ne!(code, "card_declined");
            assert_ne!(message, "Your card was declined.");
            assert!(!code.is_empty());
        }
        other => panic!("stripe-mock's fixture is requires_payment_method: {other:?}"),
    }
}

#[tokio::test]
async fn a_payment_intent_is_retrieved() {
    let client = client();
    let (reference, _) = charged(&client, &Uuid::new_v4().to_string()).await;
    let retrieved = client
        .retrieve(&reference)
        .await
        .expect("stripe-mock accepts the retrieval");
    assert!(
        matches!(retrieved, Charged::Declined { .. }),
        "the fixture's status: {retrieved:?}"
    );
}

#[tokio::test]
async fn a_charge_is_refunded_in_part_then_the_rest() {
    let client = client();
    let (reference, _) = charged(&client, &Uuid::new_v4().to_string()).await;
    for amount in [1000, 1599] {
        let refund_id = Uuid::new_v4();
        let refunded = client
            .refund(&RefundRequest {
                idempotency_key: &format!("shop-refund-{refund_id}"),
                charge_reference: &reference,
                refund_id,
                amount,
            })
            .await
            .expect("stripe-mock accepts the refund as we send it");
        match refunded {
            Refunded::Succeeded { reference } => {
                assert!(reference.starts_with("re_"), "{reference}")
            }
            Refunded::Failed { reason } => panic!("the fixture refund succeeds: {reason}"),
        }
    }
}

#[tokio::test]
async fn a_waiting_payment_intent_is_cancelled() {
    let client = client();
    let (reference, _) = charged(&client, &Uuid::new_v4().to_string()).await;
    client
        .cancel(&reference)
        .await
        .expect("stripe-mock accepts the cancellation as we send it");
}

#[tokio::test]
async fn stripe_mock_refuses_what_stripe_would_so_these_tests_can_fail() {
    // A parameter Stripe does not know, sent the way our client sends its forms.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/payment_intents", mock_url()))
        .bearer_auth("sk_test_123")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("amount=100&currency=eur&colour=blue")
        .send()
        .await
        .expect("stripe-mock answers");
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("an error body");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
}
