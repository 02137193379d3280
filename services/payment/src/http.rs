//! `/payments`: a payment and its refunds (its customer or an admin), refunds (admin), and
//! Stripe's webhook. Reads come from the stored rows; every change goes through the payment's
//! actor.

use chrono::{DateTime, Utc};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{Object, OpenApi};
use shop_web::{ApiError, BearerAuth, Caller};
use sqlx::PgPool;
use uuid::Uuid;

use crate::actor::{PaymentMsg, RefundAsk, WebhookEffect};
use crate::error::PaymentError;
use crate::payments::Payments;
use crate::provider::Charged;
use crate::store::{self, Filter, Payment, RefundRow};
use crate::webhook;

pub struct PaymentsApi {
    pub pool: PgPool,
    pub payments: Payments,
    pub webhook_secret: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
struct RefundBody {
    id: Uuid,
    payment_id: Uuid,
    /// Minor units of the payment's currency.
    amount: i64,
    reason: Option<String>,
    /// A user id, or `system` (the order was cancelled).
    requested_by: String,
    /// `pending`, `succeeded` or `failed`.
    status: String,
    provider_reference: Option<String>,
    failure_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<RefundRow> for RefundBody {
    fn from(row: RefundRow) -> Self {
        Self {
            id: row.id,
            payment_id: row.payment_id,
            amount: row.amount,
            reason: row.reason,
            requested_by: row.requested_by,
            status: row.status,
            provider_reference: row.provider_reference,
            failure_reason: row.failure_reason,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
struct PaymentBody {
    id: Uuid,
    order_id: Uuid,
    customer_id: Uuid,
    /// Minor units of `currency`.
    amount: i64,
    /// ISO 4217.
    currency: String,
    /// Stripe's PaymentIntent status: `requires_payment_method`, `processing`, `succeeded`,
    /// `failed`, `canceled` or `refunded`.
    status: String,
    payment_method: String,
    /// `simulated` or `stripe`.
    provider: String,
    /// The provider's id of the charge (pi_…).
    provider_reference: Option<String>,
    failure_code: Option<String>,
    failure_reason: Option<String>,
    amount_refunded: i64,
    /// What an admin may still refund.
    refundable: i64,
    /// Charge requests sent to the provider.
    attempts: i32,
    /// While the charge waits for its customer (3-D Secure), and only in `GET /payments/{id}`
    /// answered to that customer: what Stripe.js needs to finish it.
    customer_action: Option<CustomerActionBody>,
    refunds: Vec<RefundBody>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Payment> for PaymentBody {
    fn from(payment: Payment) -> Self {
        let refundable = payment.refundable();
        let row = payment.row;
        Self {
            id: row.id,
            order_id: row.order_id,
            customer_id: row.customer_id,
            amount: row.amount,
            currency: row.currency,
            status: row.status,
            payment_method: row.payment_method,
            provider: row.provider,
            provider_reference: row.provider_reference,
            failure_code: row.failure_code,
            failure_reason: row.failure_reason,
            amount_refunded: row.amount_refunded,
            refundable,
            attempts: row.attempts,
            customer_action: None,
            refunds: payment.refunds.into_iter().map(Into::into).collect(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// What a storefront passes to Stripe.js (`stripe.handleNextAction({ clientSecret })`) so
/// that the customer can authenticate the charge; the outcome arrives by webhook.
#[derive(Debug, Object)]
struct CustomerActionBody {
    /// The PaymentIntent's client secret (`pi_…_secret_…`).
    client_secret: String,
    /// Stripe's `next_action` object, e.g. `{"type": "use_stripe_sdk", …}`.
    next_action: serde_json::Value,
}

impl CustomerActionBody {
    /// The waiting charge's action, if the caller is its customer.
    fn for_customer(row: &store::PaymentRow, caller: &Caller) -> Option<Self> {
        let customer = caller.user_id().ok() == Some(row.customer_id);
        let waiting = row.status() == crate::state::Status::Processing;
        let (client_secret, next_action) = (row.client_secret.clone()?, row.next_action.as_ref()?);
        (customer && waiting).then(|| Self {
            client_secret,
            next_action: serde_json::from_str(next_action).unwrap_or_default(),
        })
    }
}

#[derive(Debug, Object)]
struct PaymentPage {
    items: Vec<PaymentBody>,
    page: u32,
    per_page: u32,
    total: i64,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct RefundRequestBody {
    /// Minor units; everything left when absent.
    amount: Option<i64>,
    /// At most 500 characters.
    reason: Option<String>,
}

#[derive(Debug, Object)]
struct WebhookAnswer {
    received: bool,
    /// Whether the event changed a payment (false for a replay or an event about nothing open).
    applied: bool,
}

#[OpenApi(prefix_path = "/payments", tag = "PaymentTag::Payments")]
impl PaymentsApi {
    /// The caller's payments, newest first (an admin sees all); filter by order.
    #[oai(path = "/", method = "get", operation_id = "list_payments")]
    async fn list(
        &self,
        auth: BearerAuth,
        order_id: Query<Option<Uuid>>,
        /// Admins only: one customer's payments.
        customer_id: Query<Option<Uuid>>,
        /// From 1.
        page: Query<Option<u32>>,
        /// 1 to 100, default 20.
        per_page: Query<Option<u32>>,
    ) -> Result<Json<PaymentPage>, ApiError> {
        let customer_id = if auth.0.is_admin() {
            customer_id.0
        } else {
            match customer_id.0 {
                Some(other) if other != auth.0.user_id()? => {
                    return Err(ApiError::forbidden("customers see only their own payments"));
                }
                _ => Some(auth.0.user_id()?),
            }
        };
        let paging = shop_web::Paging::new(page.0, per_page.0)?;
        let filter = Filter {
            customer_id,
            order_id: order_id.0,
            page: paging.page,
            per_page: paging.per_page,
        };
        let (payments, total) = store::list(&self.pool, &filter)
            .await
            .map_err(PaymentError::from)?;
        Ok(Json(PaymentPage {
            items: payments.into_iter().map(Into::into).collect(),
            page: filter.page,
            per_page: filter.per_page,
            total,
        }))
    }

    /// One payment with its refunds (its customer or an admin). While its charge waits for
    /// the customer (3-D Secure), the customer — nobody else — also gets `customer_action`.
    #[oai(path = "/:id", method = "get", operation_id = "get_payment")]
    async fn get(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Json<PaymentBody>, ApiError> {
        let payment = self.visible(&auth.0, id.0).await?;
        let action = CustomerActionBody::for_customer(&payment.row, &auth.0);
        let mut body = PaymentBody::from(payment);
        body.customer_action = action;
        Ok(Json(body))
    }

    /// Pay money back (admin): `amount` at most what is left, everything left when absent.
    /// Answers the refund once the provider answered; `PaymentRefunded` is published.
    #[oai(
        path = "/:id/refunds",
        method = "post",
        operation_id = "refund_payment"
    )]
    async fn refund(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<RefundRequestBody>,
    ) -> Result<Json<RefundBody>, ApiError> {
        auth.0.require_admin()?;
        let body = body.0;
        if body.amount.is_some_and(|amount| amount <= 0) {
            return Err(ApiError::unprocessable(
                "amount must be more than 0 minor units",
            ));
        }
        if body
            .reason
            .as_ref()
            .is_some_and(|reason| reason.chars().count() > 500)
        {
            return Err(ApiError::unprocessable(
                "reason must be at most 500 characters",
            ));
        }
        let payment = self.visible(&auth.0, id.0).await?;
        let by = auth.0.0.sub.clone();
        let trace_id = Some(shop_web::request_id::trace_context());
        let refund = self
            .payments
            .call(payment.row.order_id, |reply| {
                let ask = RefundAsk {
                    amount: body.amount,
                    reason: body.reason.clone(),
                    by: by.clone(),
                    trace_id: trace_id.clone(),
                };
                PaymentMsg::Refund(ask, reply)
            })
            .await
            .map_err(|_| PaymentError::Busy)??;
        Ok(Json(refund.into()))
    }

    /// Stripe's webhook: `payment_intent.succeeded`, `.payment_failed` and `.canceled` settle a
    /// charge that waited. The `Stripe-Signature` must verify against the endpoint secret and
    /// be at most 300 s old (else 400, nothing changes); a replayed event changes nothing; an
    /// event whose payment intent, amount or currency is not the order's payment's is answered
    /// 200 with `applied: false`, changes nothing, and is counted.
    #[oai(
        path = "/webhooks/stripe",
        method = "post",
        operation_id = "stripe_webhook"
    )]
    async fn stripe_webhook(
        &self,
        #[oai(name = "Stripe-Signature")] signature: Header<Option<String>>,
        body: Binary<Vec<u8>>,
    ) -> Result<Json<WebhookAnswer>, ApiError> {
        let header = signature
            .0
            .ok_or_else(|| ApiError::bad_request(webhook::SignatureError::Missing.to_string()))?;
        webhook::verify(
            &header,
            &body.0,
            &self.webhook_secret,
            Utc::now().timestamp(),
        )
        .map_err(|error| {
            tracing::warn!(%error, "a webhook with a bad signature");
            ApiError::bad_request(error.to_string())
        })?;
        let event: webhook::Event = serde_json::from_slice(&body.0)
            .map_err(|error| ApiError::bad_request(format!("the event did not parse: {error}")))?;
        let ignored = Json(WebhookAnswer {
            received: true,
            applied: false,
        });
        let Some(news) = event.charge_news() else {
            return Ok(ignored);
        };
        let reference = match &news.outcome {
            Charged::Succeeded { reference } | Charged::Pending { reference, .. } => {
                Some(reference.as_str())
            }
            Charged::Declined { reference, .. } => reference.as_deref(),
        };
        let order_id = match (news.order_id, reference) {
            (Some(order_id), _) => Some(order_id),
            (None, Some(reference)) => store::order_of_reference(&self.pool, reference)
                .await
                .map_err(PaymentError::from)?,
            (None, None) => None,
        };
        let Some(order_id) = order_id else {
            tracing::info!(event = %news.event_id, "a webhook about no payment of ours");
            return Ok(ignored);
        };
        let effect = self
            .payments
            .call(order_id, |reply| PaymentMsg::Webhook(news.clone(), reply))
            .await
            .map_err(|_| PaymentError::Busy)??;
        if let WebhookEffect::Refused(mismatch) = effect {
            // Answered 2xx all the same: Stripe would retry a 4xx for days, and no retry can
            // make it match.
            tracing::warn!(
                event = %news.event_id,
                %order_id,
                intent = %news.intent_id,
                mismatch = mismatch.label(),
                "a signed webhook that does not match the order's payment; nothing changed"
            );
            crate::metrics::WEBHOOKS_REFUSED
                .with_label_values(&[mismatch.label()])
                .inc();
        }
        Ok(Json(WebhookAnswer {
            received: true,
            applied: effect == WebhookEffect::Applied,
        }))
    }
}

impl PaymentsApi {
    /// The payment, if the caller may see it: another customer's payment is "not found".
    async fn visible(&self, caller: &Caller, id: Uuid) -> Result<Payment, ApiError> {
        let payment = store::by_id(&self.pool, id)
            .await
            .map_err(PaymentError::from)?
            .ok_or(PaymentError::NotFound)?;
        if caller.is_admin() || payment.row.customer_id == caller.user_id()? {
            Ok(payment)
        } else {
            Err(PaymentError::NotFound.into())
        }
    }
}

#[derive(poem_openapi::Tags)]
enum PaymentTag {
    /// Payments and refunds
    Payments,
}
