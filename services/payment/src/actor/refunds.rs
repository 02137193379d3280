//! Refunds: recorded before the provider hears of them, each with its own idempotency key, and
//! `PaymentRefunded` stored with the outcome.

use super::*;

impl PaymentState {
    pub(super) async fn make_refund(
        &mut self,
        myself: &ActorRef<PaymentMsg>,
        refund: &RefundRow,
        trace_id: Option<&str>,
    ) {
        let Some(payment) = &self.payment else { return };
        let row = &payment.row;
        let Some(charge_reference) = row.provider_reference.clone() else {
            tracing::error!(order_id = %row.order_id, "a refund of a charge without a provider reference");
            return;
        };
        let key = store::refund_key(refund.id);
        let request = RefundRequest {
            idempotency_key: &key,
            charge_reference: &charge_reference,
            refund_id: refund.id,
            amount: refund.amount,
        };
        // Refused by the provider, or failed for good: recorded as failed with its reason.
        let pool = &self.pool;
        let settle_failed = async |reason: String| {
            store::settle_refund(
                pool,
                row.id,
                refund.id,
                refund.amount,
                Err(&reason),
                None,
                trace_id,
            )
            .await
        };
        let mut retry = None;
        let stored = match self.provider.refund(&request).await {
            Ok(Refunded::Succeeded { reference }) => {
                let event = PaymentRefunded {
                    event_id: Uuid::new_v4(),
                    occurred_at: shop_schemas::now_millis(),
                    payment_id: row.id,
                    order_id: row.order_id,
                    amount: refund.amount,
                    currency: row.currency.clone(),
                };
                tracing::info!(order_id = %row.order_id, amount = refund.amount, "refunded");
                store::settle_refund(
                    &self.pool,
                    row.id,
                    refund.id,
                    refund.amount,
                    Ok(&reference),
                    Some(event.into()),
                    trace_id,
                )
                .await
            }
            Ok(Refunded::Failed { reason }) => settle_failed(reason).await,
            Err(ProviderError::Transient(why))
                if u32::try_from(refund.attempts).unwrap_or(u32::MAX) < self.max_attempts =>
            {
                let wait = backoff(refund.attempts);
                tracing::warn!(order_id = %row.order_id, %why, ?wait, "a refund failed transiently; trying again");
                retry = Some(wait);
                store::retry_later(&self.pool, row.id, Some(refund.id), later(wait), &why)
                    .await
                    .map_err(Into::into)
            }
            Err(error) => settle_failed(error.to_string()).await,
        };
        if let Some(wait) = retry {
            self.work_after(myself, wait);
        }
        if let Err(error) = stored {
            tracing::warn!(order_id = %self.order_id, %error, "storing a refund's outcome failed; asking again");
            self.work_after(myself, STORE_RETRY);
        }
        if self.reload().await.is_err() {
            self.work_after(myself, STORE_RETRY);
        }
    }

    pub(super) async fn refund(
        &mut self,
        myself: &ActorRef<PaymentMsg>,
        ask: RefundAsk,
    ) -> Result<RefundRow, PaymentError> {
        let payment = self.payment.as_ref().ok_or(PaymentError::NotFound)?;
        let status = payment.row.status();
        if status != Status::Succeeded {
            return Err(PaymentError::NotRefundable(status));
        }
        let left = payment.refundable();
        let amount = ask.amount.unwrap_or(left);
        if amount <= 0 {
            return Err(PaymentError::Invalid(
                "amount must be more than 0 minor units".to_owned(),
            ));
        }
        if amount > left {
            return Err(PaymentError::TooMuch {
                asked: amount,
                left,
            });
        }
        let refund = NewRefund {
            id: Uuid::now_v7(),
            payment_id: payment.row.id,
            amount,
            reason: ask.reason.as_deref(),
            requested_by: &ask.by,
            lease_until: later(LEASE),
            caused_by: None,
        };
        let row = match store::add_refund(&self.pool, &refund).await? {
            RefundAsked::Recorded(row) => row,
            RefundAsked::SeenBefore => return Err(PaymentError::Busy),
            RefundAsked::DoesNotFit { left } => {
                // Another replica's refund came first: what this actor knew was stale.
                self.reload().await?;
                return Err(PaymentError::TooMuch {
                    asked: amount,
                    left,
                });
            }
        };
        self.reload().await?;
        self.make_refund(myself, &row, ask.trace_id.as_deref())
            .await;
        self.payment
            .as_ref()
            .and_then(|payment| payment.refunds.iter().find(|refund| refund.id == row.id))
            .cloned()
            .ok_or(PaymentError::NotFound)
    }
}
