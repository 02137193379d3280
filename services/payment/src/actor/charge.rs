//! A charge attempt: one provider call with the payment's idempotency key, and its outcome
//! stored with its event.

use super::*;

impl PaymentState {
    pub(super) async fn charge(&mut self, myself: &ActorRef<PaymentMsg>, trace_id: Option<&str>) {
        let Some(payment) = self.payment.as_mut() else {
            return;
        };
        if payment.row.status() == Status::RequiresPaymentMethod
            && payment
                .row
                .pay_by
                .is_some_and(|pay_by| pay_by <= Utc::now())
        {
            self.call_off_late_charge(myself).await;
            return;
        }
        let lease = store::begin_attempt(&self.pool, payment.row.id, later(LEASE), &self.instance);
        let attempts = match lease.await {
            Ok(Some(attempts)) => attempts,
            Ok(None) => {
                // Another replica's actor of this payment holds the lease, or settled it: look
                // again at what is stored, and come back when that lease may have run out.
                tracing::info!(order_id = %self.order_id, "the charge is leased elsewhere");
                if let Err(error) = self.reload().await {
                    tracing::warn!(order_id = %self.order_id, %error, "reloading the payment failed");
                }
                self.work_after(myself, LEASE);
                return;
            }
            Err(error) => {
                tracing::warn!(order_id = %self.order_id, %error, "starting a charge failed; trying again");
                self.work_after(myself, STORE_RETRY);
                return;
            }
        };
        payment.row.status = Status::Processing.as_str().to_owned();
        payment.row.attempts = attempts;
        payment.row.next_attempt_at = Some(later(LEASE));
        payment.row.leased_by = Some(self.instance.to_string());
        let row = &payment.row;
        let key = row.idempotency_key.clone();
        let request = ChargeRequest {
            idempotency_key: &key,
            order_id: row.order_id,
            payment_id: row.id,
            amount: row.amount,
            currency: &row.currency,
            payment_method: &row.payment_method,
        };
        let charged = self.provider.charge(&request).await;
        let row = &payment.row;
        let (event_id, occurred_at) = (Uuid::new_v4(), shop_schemas::now_millis());
        let mut retry = None;
        let settled = Settled::from_charge(&charged);
        let stored = match charged {
            Ok(Charged::Succeeded { reference }) => {
                let event = PaymentSucceeded {
                    event_id,
                    occurred_at,
                    payment_id: row.id,
                    order_id: row.order_id,
                    amount: row.amount,
                    currency: row.currency.clone(),
                    provider_reference: reference.clone(),
                };
                let outcome = Outcome::Succeed;
                settle_charge(
                    &self.pool,
                    row,
                    outcome,
                    Some(&reference),
                    None,
                    event.into(),
                    trace_id,
                )
                .await
            }
            Ok(Charged::Declined {
                reference,
                code,
                message,
            }) => {
                tracing::info!(order_id = %row.order_id, %code, "the charge was declined");
                let event = declined(row, &code, &message, event_id, occurred_at);
                settle_charge(
                    &self.pool,
                    row,
                    Outcome::Decline,
                    reference.as_deref(),
                    Some((&code, &message)),
                    event,
                    trace_id,
                )
                .await
            }
            Ok(Charged::Pending { reference, action }) => {
                tracing::info!(order_id = %row.order_id, %reference, customer_action = action.is_some(), "the charge waits for its webhook");
                store::await_webhook(&self.pool, row.id, &reference, action.as_ref())
                    .await
                    .map(|()| Applied::Stale)
                    .map_err(Into::into)
            }
            Err(ProviderError::Transient(why))
                if u32::try_from(attempts).unwrap_or(u32::MAX) < self.max_attempts =>
            {
                let wait = backoff(attempts);
                tracing::warn!(order_id = %row.order_id, attempts, %why, ?wait, "the charge failed transiently; trying again");
                retry = Some(wait);
                store::retry_later(&self.pool, row.id, None, later(wait), &why)
                    .await
                    .map(|()| Applied::Stale)
                    .map_err(Into::into)
            }
            Err(error) => {
                let (code, message) = match &error {
                    ProviderError::Transient(_) => ("provider_unavailable", error.to_string()),
                    ProviderError::Refused(_) => ("provider_refused", error.to_string()),
                };
                tracing::warn!(order_id = %row.order_id, attempts, %error, "the charge failed for good");
                let event = declined(row, code, &message, event_id, occurred_at);
                settle_charge(
                    &self.pool,
                    row,
                    Outcome::Decline,
                    None,
                    Some((code, &message)),
                    event,
                    trace_id,
                )
                .await
            }
        };
        if let Some(wait) = retry {
            self.work_after(myself, wait);
        }
        match stored {
            // The row is what was stored: no need to read it back.
            Ok(Applied::Done) => {
                if let (Some(payment), Ok(settled)) = (self.payment.as_mut(), settled) {
                    settled.apply(&mut payment.row);
                }
                return;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(order_id = %self.order_id, %error, "storing the charge's outcome failed; asking again");
                self.work_after(myself, STORE_RETRY);
            }
        }
        if let Err(error) = self.reload().await {
            tracing::warn!(order_id = %self.order_id, %error, "reloading the payment failed");
            self.work_after(myself, STORE_RETRY);
        }
    }

    /// The order's payment window ended before its charge started (its `OrderPlaced` was heard
    /// late: a Kafka outage, a backlog): the order cancels itself at that moment, so a charge now
    /// would only be refunded. Nothing is sent to the provider and nothing is published; the
    /// order's `OrderCancelled` finds the payment canceled already.
    async fn call_off_late_charge(&mut self, myself: &ActorRef<PaymentMsg>) {
        let Some(payment) = self.payment.as_mut() else {
            return;
        };
        tracing::info!(order_id = %self.order_id, pay_by = ?payment.row.pay_by, "the payment window ended before the charge started; not charging");
        let settle = Settle {
            payment_id: payment.row.id,
            from: Status::RequiresPaymentMethod,
            to: Status::Canceled,
            reference: None,
            failure: Some((EXPIRED_CODE, EXPIRED_REASON)),
            event: None,
            webhook: None,
            caused_by: None,
            trace_id: None,
        };
        match store::settle(&self.pool, settle).await {
            Ok(Applied::Done) => Settled {
                status: Status::Canceled,
                reference: None,
                failure: Some((EXPIRED_CODE.to_owned(), EXPIRED_REASON.to_owned())),
            }
            .apply(&mut payment.row),
            Ok(_) => {
                if let Err(error) = self.reload().await {
                    tracing::warn!(order_id = %self.order_id, %error, "reloading the payment failed");
                    self.work_after(myself, STORE_RETRY);
                }
            }
            Err(error) => {
                tracing::warn!(order_id = %self.order_id, %error, "calling off a late charge failed; trying again");
                self.work_after(myself, STORE_RETRY);
            }
        }
    }
}

/// The failure code and reason of a payment whose order's window ended before it was charged.
const EXPIRED_CODE: &str = "expired";
const EXPIRED_REASON: &str = "the order's payment window ended before the charge started";

pub(super) fn declined(
    row: &store::PaymentRow,
    code: &str,
    message: &str,
    event_id: Uuid,
    occurred_at: i64,
) -> Envelope {
    PaymentFailed {
        event_id,
        occurred_at,
        payment_id: row.id,
        order_id: row.order_id,
        amount: row.amount,
        currency: row.currency.clone(),
        reason: message.to_owned(),
        code: Some(code.to_owned()),
    }
    .into()
}

/// What a settled charge (or one called off) changed in its row.
struct Settled {
    status: Status,
    reference: Option<String>,
    failure: Option<(String, String)>,
}

impl Settled {
    fn from_charge(charged: &Result<Charged, ProviderError>) -> Result<Settled, ()> {
        Ok(match charged {
            Ok(Charged::Succeeded { reference }) => Settled {
                status: Status::Succeeded,
                reference: Some(reference.clone()),
                failure: None,
            },
            Ok(Charged::Declined {
                reference,
                code,
                message,
            }) => Settled {
                status: Status::Failed,
                reference: reference.clone(),
                failure: Some((code.clone(), message.clone())),
            },
            _ => return Err(()),
        })
    }

    fn apply(self, row: &mut store::PaymentRow) {
        row.status = self.status.as_str().to_owned();
        row.provider_reference = self.reference.or(row.provider_reference.take());
        if let Some((code, reason)) = self.failure {
            row.failure_code = Some(code);
            row.failure_reason = Some(reason);
        }
        row.next_attempt_at = None;
        row.updated_at = Utc::now();
    }
}

/// Stores a charge's outcome (processing → succeeded/failed) with its event.
async fn settle_charge(
    pool: &PgPool,
    row: &store::PaymentRow,
    outcome: Outcome,
    reference: Option<&str>,
    failure: Option<(&str, &str)>,
    event: Envelope,
    trace_id: Option<&str>,
) -> Result<Applied, shop_bridge::BridgeError> {
    let Some(to) = next(Status::Processing, outcome) else {
        return Ok(Applied::Stale);
    };
    let settle = Settle {
        payment_id: row.id,
        from: Status::Processing,
        to,
        reference,
        failure,
        event: Some(event),
        webhook: None,
        caused_by: None,
        trace_id,
    };
    let applied = store::settle(pool, settle).await?;
    if applied == Applied::Stale {
        tracing::info!(order_id = %row.order_id, "the payment was settled meanwhile (by a webhook)");
    }
    Ok(applied)
}
