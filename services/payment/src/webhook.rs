//! Stripe webhooks: the `Stripe-Signature` header (`t=<unix time>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>" under the endpoint secret>`), checked in constant time within a tolerance, and
//! the events the service acts on.

use aws_lc_rs::hmac;
use serde::Deserialize;
use uuid::Uuid;

use crate::provider::Charged;

/// How old a signature may be, as Stripe's libraries default to.
pub const TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches the body")]
    Mismatch,
}

/// Checks `header` against `body` signed with `secret`, at unix time `now`.
pub fn verify(header: &str, body: &[u8], secret: &str, now: i64) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                )
            }
            "v1" => signatures.push(value),
            _ => {} // v0 and future schemes are ignored, as Stripe advises
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let signed = signed_payload(timestamp, body);
    let matches = signatures.iter().any(|signature| {
        hex::decode(signature).is_ok_and(|tag| hmac::verify(&key, &signed, &tag).is_ok())
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The `Stripe-Signature` header Stripe would send for `body` at `timestamp` (tests, tools).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, &signed_payload(timestamp, body));
    format!("t={timestamp},v1={}", hex::encode(tag.as_ref()))
}

fn signed_payload(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    signed
}

/// A Stripe event, as much of it as the service reads.
#[derive(Debug, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
}

#[derive(Debug, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

/// What a webhook event tells about a charge.
#[derive(Debug, Clone)]
pub struct ChargeNews {
    pub event_id: String,
    pub kind: String,
    /// From the intent's `metadata.order_id`, when it is there.
    pub order_id: Option<Uuid>,
    /// The payment intent (`pi_…`) the event is about.
    pub intent_id: String,
    /// The intent's amount and currency, as Stripe states them.
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub outcome: Charged,
}

impl Event {
    /// The charge outcome this event reports, or `None` for events the service does not act on.
    pub fn charge_news(&self) -> Option<ChargeNews> {
        if !matches!(
            self.kind.as_str(),
            "payment_intent.succeeded"
                | "payment_intent.payment_failed"
                | "payment_intent.canceled"
        ) {
            return None;
        }
        let intent: crate::provider::PaymentIntent =
            serde_json::from_value(self.data.object.clone()).ok()?;
        let order_id = self
            .data
            .object
            .pointer("/metadata/order_id")
            .and_then(serde_json::Value::as_str)
            .and_then(|text| Uuid::parse_str(text).ok());
        let object = &self.data.object;
        Some(ChargeNews {
            event_id: self.id.clone(),
            kind: self.kind.clone(),
            order_id,
            intent_id: intent.id.clone(),
            amount: object.get("amount").and_then(serde_json::Value::as_i64),
            currency: object
                .get("currency")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            outcome: crate::provider::from_intent(intent),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;

    #[test]
    fn a_signature_made_with_the_secret_verifies() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        assert_eq!(verify(&header, BODY, SECRET, 1_700_000_010), Ok(()));
    }

    #[test]
    fn the_signature_matches_stripes_documented_scheme() {
        // HMAC-SHA256("<t>.<body>") computed independently with aws-lc's one-shot API.
        let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
        let expected = hex::encode(hmac::sign(&key, b"12345.{}").as_ref());
        assert_eq!(sign(SECRET, 12345, b"{}"), format!("t=12345,v1={expected}"));
    }

    #[test]
    fn another_secret_a_changed_body_or_a_stale_time_is_refused() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        assert_eq!(
            verify(&header, BODY, "whsec_other", 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, b"{}", SECRET, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, BODY, SECRET, 1_700_000_000 + TOLERANCE_SECONDS + 1),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn one_matching_signature_among_several_is_enough() {
        let good = sign(SECRET, 1_700_000_000, BODY);
        let v1 = good.split_once("v1=").map(|(_, v1)| v1).unwrap_or_default();
        let header = format!("t=1700000000,v1={},v1={v1},v0=abc", "00".repeat(32));
        assert_eq!(verify(&header, BODY, SECRET, 1_700_000_000), Ok(()));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in ["", "t=abc,v1=00", "v1=00", "t=1700000000", "garbage"] {
            assert_eq!(
                verify(header, BODY, SECRET, 1_700_000_000),
                Err(SignatureError::Malformed),
                "{header:?}"
            );
        }
    }

    #[test]
    fn a_succeeded_intent_event_reports_a_success_for_its_order() {
        let order_id = Uuid::new_v4();
        let event: Event = serde_json::from_value(serde_json::json!({
            "id": "evt_2",
            "type": "payment_intent.succeeded",
            "data": { "object": {
                "id": "pi_123", "object": "payment_intent", "status": "succeeded",
                "metadata": { "order_id": order_id.to_string() }
            }}
        }))
        .unwrap();
        let news = event.charge_news().unwrap();
        assert_eq!(news.order_id, Some(order_id));
        assert_eq!(
            news.outcome,
            Charged::Succeeded {
                reference: "pi_123".to_owned()
            }
        );
    }

    #[test]
    fn a_failed_intent_event_carries_the_decline_code() {
        let event: Event = serde_json::from_value(serde_json::json!({
            "id": "evt_3",
            "type": "payment_intent.payment_failed",
            "data": { "object": {
                "id": "pi_456", "status": "requires_payment_method",
                "last_payment_error": { "code": "card_declined", "decline_code": "insufficient_funds",
                                        "message": "Your card has insufficient funds." }
            }}
        }))
        .unwrap();
        let news = event.charge_news().unwrap();
        assert!(
            matches!(news.outcome, Charged::Declined { ref code, .. } if code == "insufficient_funds")
        );
        let other: Event = serde_json::from_value(serde_json::json!({
            "id": "evt_4", "type": "customer.created", "data": { "object": {} }
        }))
        .unwrap();
        assert!(other.charge_news().is_none());
    }
}
