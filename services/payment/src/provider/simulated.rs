//! The simulated provider: honours Stripe's documented test payment methods and keeps its books
//! in PostgreSQL (`simulated_charges`), so an idempotency key is charged once even across
//! restarts, and a test can count the charges. It can be told to be slow, for load tests.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::{ChargeRequest, Charged, CustomerAction, ProviderError, RefundRequest, Refunded};

/// A test-only payment method (SHOP_TEST_HOOKS): charged like `pm_card_visa`, then the process
/// aborts before the outcome is stored — the crash the exactly-once design must survive.
pub const CRASH_AFTER_CHARGE: &str = "pm_test_crashAfterCharge";

#[derive(Clone)]
pub struct Simulated {
    pool: PgPool,
    latency: Duration,
    test_hooks: bool,
}

/// What Stripe's test payment method does.
enum Behaviour {
    Succeed,
    Decline {
        code: &'static str,
        message: &'static str,
    },
    RequireAction,
}

fn behaviour(payment_method: &str) -> Option<Behaviour> {
    let decline = |code, message| Some(Behaviour::Decline { code, message });
    match payment_method {
        "pm_card_visa"
        | "pm_card_visa_debit"
        | "pm_card_mastercard"
        | "pm_card_mastercard_debit"
        | "pm_card_amex"
        | "pm_card_discover" => Some(Behaviour::Succeed),
        "pm_card_chargeDeclined" => decline("generic_decline", "Your card was declined."),
        "pm_card_chargeDeclinedInsufficientFunds" => {
            decline("insufficient_funds", "Your card has insufficient funds.")
        }
        "pm_card_chargeDeclinedFraudulent" => decline("fraudulent", "Your card was declined."),
        "pm_card_chargeDeclinedIncorrectCvc" => {
            decline("incorrect_cvc", "Your card's security code is incorrect.")
        }
        "pm_card_chargeDeclinedExpiredCard" => decline("expired_card", "Your card has expired."),
        "pm_card_chargeDeclinedProcessingError" => decline(
            "processing_error",
            "An error occurred while processing your card. Try again in a little bit.",
        ),
        "pm_card_authenticationRequired" | "pm_card_threeDSecure2Required" => {
            Some(Behaviour::RequireAction)
        }
        _ => None,
    }
}

impl Simulated {
    pub fn new(pool: PgPool, latency: Duration, test_hooks: bool) -> Self {
        Self {
            pool,
            latency,
            test_hooks,
        }
    }

    pub async fn charge(&self, request: &ChargeRequest<'_>) -> Result<Charged, ProviderError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let crash = self.test_hooks && request.payment_method == CRASH_AFTER_CHARGE;
        let behaviour = if crash {
            Behaviour::Succeed
        } else {
            match behaviour(request.payment_method) {
                Some(behaviour) => behaviour,
                None => {
                    return Ok(Charged::Declined {
                        reference: None,
                        code: "resource_missing".to_owned(),
                        message: format!("No such PaymentMethod: '{}'", request.payment_method),
                    });
                }
            }
        };
        let (status, decline_code) = match &behaviour {
            Behaviour::Succeed => ("succeeded", None),
            Behaviour::Decline { code, .. } => ("requires_payment_method", Some(*code)),
            Behaviour::RequireAction => ("requires_action", None),
        };
        let reference = format!("pi_sim_{}", Uuid::new_v4().simple());
        let inserted: Option<(String, String, Option<String>)> = sqlx::query_as(
            "insert into simulated_charges
                 (idempotency_key, reference, payment_method, amount, currency, status, decline_code)
             values ($1, $2, $3, $4, $5, $6, $7)
             on conflict (idempotency_key) do nothing
             returning reference, status, decline_code",
        )
        .bind(request.idempotency_key)
        .bind(&reference)
        .bind(request.payment_method)
        .bind(request.amount)
        .bind(request.currency.to_lowercase())
        .bind(status)
        .bind(decline_code)
        .fetch_optional(&self.pool)
        .await
        .map_err(transient)?;
        let fresh = inserted.is_some();
        // A repeated key answers what the first request got, as Stripe does.
        let (reference, status, decline_code) = match inserted {
            Some(charge) => charge,
            None => sqlx::query_as(
                "select reference, status, decline_code from simulated_charges
                 where idempotency_key = $1",
            )
            .bind(request.idempotency_key)
            .fetch_one(&self.pool)
            .await
            .map_err(transient)?,
        };
        if crash && fresh {
            tracing::error!(order_id = %request.order_id, "test hook: aborting after the charge, before its outcome is stored");
            std::process::abort();
        }
        Ok(match status.as_str() {
            "succeeded" => Charged::Succeeded { reference },
            "requires_action" => Charged::Pending {
                // As Stripe asks for 3-D Secure 2: Stripe.js takes it from here.
                action: Some(CustomerAction {
                    client_secret: format!("{reference}_secret_simulated"),
                    next_action: serde_json::json!({
                        "type": "use_stripe_sdk",
                        "use_stripe_sdk": { "type": "three_d_secure_redirect" }
                    }),
                }),
                reference,
            },
            "canceled" => Charged::Declined {
                reference: Some(reference),
                code: "canceled".to_owned(),
                message: "The payment was canceled.".to_owned(),
            },
            _ => {
                let code = decline_code.unwrap_or_else(|| "generic_decline".to_owned());
                let message = match behaviour {
                    Behaviour::Decline { message, .. } => message,
                    _ => "Your card was declined.",
                };
                Charged::Declined {
                    reference: Some(reference),
                    code,
                    message: message.to_owned(),
                }
            }
        })
    }

    pub async fn refund(&self, request: &RefundRequest<'_>) -> Result<Refunded, ProviderError> {
        let charged: Option<(String, i64)> =
            sqlx::query_as("select status, amount from simulated_charges where reference = $1")
                .bind(request.charge_reference)
                .fetch_optional(&self.pool)
                .await
                .map_err(transient)?;
        let Some((status, amount)) = charged else {
            return Err(ProviderError::Refused(format!(
                "No such payment_intent: '{}'",
                request.charge_reference
            )));
        };
        if status != "succeeded" {
            return Ok(Refunded::Failed {
                reason: format!("the charge is {status}"),
            });
        }
        let reference = format!("re_sim_{}", Uuid::new_v4().simple());
        let mut transaction = self.pool.begin().await.map_err(transient)?;
        // Serialises refunds of one charge, so two cannot both fit in what is left.
        sqlx::query("select 1 from simulated_charges where reference = $1 for update")
            .bind(request.charge_reference)
            .execute(&mut *transaction)
            .await
            .map_err(transient)?;
        let existing: Option<(String,)> =
            sqlx::query_as("select reference from simulated_refunds where idempotency_key = $1")
                .bind(request.idempotency_key)
                .fetch_optional(&mut *transaction)
                .await
                .map_err(transient)?;
        if let Some((reference,)) = existing {
            return Ok(Refunded::Succeeded { reference });
        }
        let (refunded,): (i64,) = sqlx::query_as(
            "select coalesce(sum(amount), 0)::bigint from simulated_refunds where charge_reference = $1",
        )
        .bind(request.charge_reference)
        .fetch_one(&mut *transaction)
        .await
        .map_err(transient)?;
        if refunded + request.amount > amount {
            return Err(ProviderError::Refused(format!(
                "Refund amount ({}) is greater than unrefunded amount on charge ({})",
                request.amount,
                amount - refunded
            )));
        }
        sqlx::query(
            "insert into simulated_refunds (idempotency_key, reference, charge_reference, amount)
             values ($1, $2, $3, $4)",
        )
        .bind(request.idempotency_key)
        .bind(&reference)
        .bind(request.charge_reference)
        .bind(request.amount)
        .execute(&mut *transaction)
        .await
        .map_err(transient)?;
        transaction.commit().await.map_err(transient)?;
        Ok(Refunded::Succeeded { reference })
    }

    pub async fn cancel(&self, reference: &str) -> Result<(), ProviderError> {
        let updated = sqlx::query(
            "update simulated_charges set status = 'canceled'
             where reference = $1 and status = 'requires_action'",
        )
        .bind(reference)
        .execute(&self.pool)
        .await
        .map_err(transient)?;
        if updated.rows_affected() == 0 {
            return Err(ProviderError::Refused(format!(
                "payment_intent {reference} cannot be canceled"
            )));
        }
        Ok(())
    }
}

fn transient(error: sqlx::Error) -> ProviderError {
    ProviderError::Transient(format!("the simulated provider's books: {error}"))
}
