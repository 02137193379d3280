//! A client of Stripe's HTTP API: `POST /v1/payment_intents` confirmed at once, `POST
//! /v1/refunds`, `POST /v1/payment_intents/{id}/cancel`. Form-encoded bodies, the secret key as
//! bearer, an `Idempotency-Key` on every request that creates something. The base URL is
//! configurable so tests can point it at a local server.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use super::{ChargeRequest, Charged, CustomerAction, ProviderError, RefundRequest, Refunded};

/// How long one request to Stripe may take before it counts as a (transient) timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    secret_key: String,
}

/// The parts of a PaymentIntent the service reads.
#[derive(Debug, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub last_payment_error: Option<StripeError>,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub next_action: Option<serde_json::Value>,
}

/// Stripe's error object (`{"error": {...}}`).
#[derive(Debug, Deserialize)]
pub struct StripeError {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub payment_intent: Option<Box<PaymentIntent>>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: StripeError,
}

#[derive(Debug, Deserialize)]
struct Refund {
    id: String,
    status: String,
    #[serde(default)]
    failure_reason: Option<String>,
}

impl StripeClient {
    pub fn new(base: &str, secret_key: &str) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
            secret_key: secret_key.to_owned(),
        })
    }

    async fn post(
        &self,
        path: &str,
        idempotency_key: Option<&str>,
        form: &[(&str, String)],
    ) -> Result<(StatusCode, Vec<u8>), ProviderError> {
        let body = serde_urlencoded::to_string(form)
            .map_err(|error| ProviderError::Refused(format!("encoding the request: {error}")))?;
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.secret_key)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request
            .send()
            .await
            .map_err(|error| ProviderError::Transient(format!("stripe: {error}")))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| ProviderError::Transient(format!("stripe: {error}")))?;
        // Rate limits, server errors, and Stripe's "a request with this key is in flight"
        // (409) all pass; authentication errors too — fixing the key must not lose payments.
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::CONFLICT
            || status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
            || status.is_server_error()
        {
            return Err(ProviderError::Transient(format!(
                "stripe answered {status}: {}",
                error_message(&bytes)
            )));
        }
        Ok((status, bytes.to_vec()))
    }

    pub async fn charge(&self, request: &ChargeRequest<'_>) -> Result<Charged, ProviderError> {
        let form = [
            ("amount", request.amount.to_string()),
            ("currency", request.currency.to_lowercase()),
            ("payment_method", request.payment_method.to_owned()),
            ("confirm", "true".to_owned()),
            ("payment_method_types[]", "card".to_owned()),
            ("metadata[order_id]", request.order_id.to_string()),
            ("metadata[payment_id]", request.payment_id.to_string()),
            ("description", format!("Shop order {}", request.order_id)),
        ];
        let (status, body) = self
            .post("/v1/payment_intents", Some(request.idempotency_key), &form)
            .await?;
        if status.is_success() {
            let intent: PaymentIntent = parse(&body)?;
            return Ok(from_intent(intent));
        }
        let error = parse::<ErrorBody>(&body)?.error;
        if status == StatusCode::PAYMENT_REQUIRED || error.kind.as_deref() == Some("card_error") {
            return Ok(declined(error));
        }
        Err(ProviderError::Refused(format!(
            "stripe answered {status}: {}",
            error.message.unwrap_or_default()
        )))
    }

    pub async fn refund(&self, request: &RefundRequest<'_>) -> Result<Refunded, ProviderError> {
        let form = [
            ("payment_intent", request.charge_reference.to_owned()),
            ("amount", request.amount.to_string()),
            ("metadata[refund_id]", request.refund_id.to_string()),
        ];
        let (status, body) = self
            .post("/v1/refunds", Some(request.idempotency_key), &form)
            .await?;
        if !status.is_success() {
            let error = parse::<ErrorBody>(&body)?.error;
            return Err(ProviderError::Refused(format!(
                "stripe answered {status}: {}",
                error.message.unwrap_or_default()
            )));
        }
        let refund: Refund = parse(&body)?;
        // `pending` is accepted: Stripe settles it later and reports failures by webhook.
        Ok(match refund.status.as_str() {
            "succeeded" | "pending" | "requires_action" => Refunded::Succeeded {
                reference: refund.id,
            },
            other => Refunded::Failed {
                reason: refund.failure_reason.unwrap_or_else(|| other.to_owned()),
            },
        })
    }

    /// The charge as Stripe has it now (`GET /v1/payment_intents/{id}`): for reconciling a
    /// charge whose webhook may have been lost.
    pub async fn retrieve(&self, reference: &str) -> Result<Charged, ProviderError> {
        let response = self
            .http
            .get(format!("{}/v1/payment_intents/{reference}", self.base))
            .bearer_auth(&self.secret_key)
            .send()
            .await
            .map_err(|error| ProviderError::Transient(format!("stripe: {error}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| ProviderError::Transient(format!("stripe: {error}")))?;
        if status.is_success() {
            return Ok(from_intent(parse(&body)?));
        }
        let message = format!("stripe answered {status}: {}", error_message(&body));
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(ProviderError::Transient(message))
        } else {
            Err(ProviderError::Refused(message))
        }
    }

    pub async fn cancel(&self, reference: &str) -> Result<(), ProviderError> {
        let path = format!("/v1/payment_intents/{reference}/cancel");
        let (status, body) = self.post(&path, None, &[]).await?;
        if status.is_success() {
            return Ok(());
        }
        Err(ProviderError::Refused(format!(
            "stripe answered {status}: {}",
            error_message(&body)
        )))
    }
}

/// What a PaymentIntent's status means for the payment. A refusal reports what Stripe said
/// (`last_payment_error`), and a neutral code where it said nothing — never a reason it did
/// not give.
pub fn from_intent(intent: PaymentIntent) -> Charged {
    match intent.status.as_str() {
        "succeeded" => Charged::Succeeded {
            reference: intent.id,
        },
        "requires_payment_method" | "canceled" => match intent.last_payment_error {
            Some(error) => declined_by(Some(intent.id), error),
            None => Charged::Declined {
                code: format!("payment_intent_{}", intent.status),
                message: format!(
                    "the payment was not completed: Stripe left it {} and gave no reason",
                    intent.status
                ),
                reference: Some(intent.id),
            },
        },
        // processing, requires_action, requires_confirmation, requires_capture
        _ => {
            let action = match (intent.client_secret, intent.next_action) {
                (Some(client_secret), Some(next_action)) if intent.status == "requires_action" => {
                    Some(CustomerAction {
                        client_secret,
                        next_action,
                    })
                }
                _ => None,
            };
            Charged::Pending {
                reference: intent.id,
                action,
            }
        }
    }
}

/// A refusal as Stripe described it: its decline code or code, and its message; neutral words
/// only for what it left out.
fn declined_by(reference: Option<String>, error: StripeError) -> Charged {
    Charged::Declined {
        reference,
        code: error
            .decline_code
            .or(error.code)
            .or(error.kind)
            .unwrap_or_else(|| "payment_failed".to_owned()),
        message: error
            .message
            .unwrap_or_else(|| "the payment provider gave no reason".to_owned()),
    }
}

fn declined(error: StripeError) -> Charged {
    let reference = error
        .payment_intent
        .as_ref()
        .map(|intent| intent.id.clone());
    declined_by(reference, error)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|error| {
        ProviderError::Transient(format!("stripe's answer did not parse: {error}"))
    })
}

fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|body| body.error.message)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
}
