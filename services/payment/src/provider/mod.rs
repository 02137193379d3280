//! Who charges the card: the simulated provider (development, load tests) or Stripe's HTTP API.
//! Both speak Stripe's terms: a charge is a PaymentIntent confirmed at once, an idempotency key
//! makes a repeated request answer the first request's outcome without charging again.

mod simulated;
mod stripe;

pub use simulated::{CRASH_AFTER_CHARGE, Simulated};
pub use stripe::{PaymentIntent, StripeClient, from_intent};

use uuid::Uuid;

/// One charge, as sent to the provider.
#[derive(Debug, Clone)]
pub struct ChargeRequest<'a> {
    /// The same for every attempt at this payment.
    pub idempotency_key: &'a str,
    pub order_id: Uuid,
    pub payment_id: Uuid,
    /// Minor units of `currency`.
    pub amount: i64,
    /// ISO 4217, any case.
    pub currency: &'a str,
    pub payment_method: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charged {
    Succeeded {
        reference: String,
    },
    /// Final: the card or the request was refused.
    Declined {
        reference: Option<String>,
        code: String,
        message: String,
    },
    /// The customer must act (3-D Secure) or the bank is slow: the outcome comes by webhook.
    Pending {
        reference: String,
        /// What the customer must do, when the provider asks for something.
        action: Option<CustomerAction>,
    },
}

/// What a storefront needs to let the customer finish a charge (3-D Secure) with Stripe.js
/// (`stripe.handleNextAction({ clientSecret })`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerAction {
    /// The PaymentIntent's client secret: whoever holds it may complete the payment, so only
    /// its customer sees it.
    pub client_secret: String,
    /// Stripe's `next_action` object, as the provider gave it.
    pub next_action: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct RefundRequest<'a> {
    pub idempotency_key: &'a str,
    /// The charge's provider reference (pi_…).
    pub charge_reference: &'a str,
    pub refund_id: Uuid,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refunded {
    Succeeded { reference: String },
    Failed { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Timeouts, 5xx, rate limits, a provider that cannot be reached: try again later.
    #[error("the payment provider is unavailable: {0}")]
    Transient(String),
    /// The provider refused the request itself (not the card): trying again will not help.
    #[error("the payment provider refused the request: {0}")]
    Refused(String),
}

#[derive(Clone)]
pub enum Provider {
    Simulated(Simulated),
    Stripe(StripeClient),
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Simulated(_) => "simulated",
            Provider::Stripe(_) => "stripe",
        }
    }

    pub async fn charge(&self, request: &ChargeRequest<'_>) -> Result<Charged, ProviderError> {
        match self {
            Provider::Simulated(provider) => provider.charge(request).await,
            Provider::Stripe(provider) => provider.charge(request).await,
        }
    }

    pub async fn refund(&self, request: &RefundRequest<'_>) -> Result<Refunded, ProviderError> {
        match self {
            Provider::Simulated(provider) => provider.refund(request).await,
            Provider::Stripe(provider) => provider.refund(request).await,
        }
    }

    /// Calls off a charge that is still pending (its order was cancelled).
    pub async fn cancel(&self, reference: &str) -> Result<(), ProviderError> {
        match self {
            Provider::Simulated(provider) => provider.cancel(reference).await,
            Provider::Stripe(provider) => provider.cancel(reference).await,
        }
    }
}
