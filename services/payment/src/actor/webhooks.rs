//! A Stripe webhook's news about a charge that waited for the customer or the bank.

use super::charge::declined;
use super::*;
use crate::store::PaymentRow;

impl PaymentState {
    pub(super) async fn on_webhook(
        &mut self,
        news: &ChargeNews,
    ) -> Result<WebhookEffect, PaymentError> {
        let webhook = Some((news.event_id.as_str(), news.kind.as_str()));
        let Some(payment) = &self.payment else {
            return Ok(WebhookEffect::Ignored);
        };
        let row = &payment.row;
        if let Some(mismatch) = mismatch(row, news) {
            return Ok(WebhookEffect::Refused(mismatch));
        }
        let (event_id, occurred_at) = (Uuid::new_v4(), shop_schemas::now_millis());
        let (outcome, reference, failure, event) = match &news.outcome {
            Charged::Succeeded { reference } => (
                Outcome::Succeed,
                Some(reference.as_str()),
                None,
                Envelope::from(PaymentSucceeded {
                    event_id,
                    occurred_at,
                    payment_id: row.id,
                    order_id: row.order_id,
                    amount: row.amount,
                    currency: row.currency.clone(),
                    provider_reference: reference.clone(),
                }),
            ),
            Charged::Declined {
                reference,
                code,
                message,
            } => (
                Outcome::Decline,
                reference.as_deref(),
                Some((code.as_str(), message.as_str())),
                declined(row, code, message, event_id, occurred_at),
            ),
            Charged::Pending { .. } => {
                store::mark_seen(&self.pool, webhook, None).await?;
                return Ok(WebhookEffect::Ignored);
            }
        };
        let Some(to) = next(row.status(), outcome) else {
            tracing::info!(order_id = %row.order_id, status = %row.status(), kind = %news.kind, "a webhook about a settled payment");
            store::mark_seen(&self.pool, webhook, None).await?;
            return Ok(WebhookEffect::Ignored);
        };
        let settle = Settle {
            payment_id: row.id,
            from: row.status(),
            to,
            reference,
            failure,
            event: Some(event),
            webhook,
            caused_by: None,
            trace_id: None,
        };
        let applied = store::settle(&self.pool, settle).await?;
        self.reload().await?;
        Ok(match applied {
            Applied::Done => WebhookEffect::Applied,
            Applied::SeenBefore | Applied::Stale => WebhookEffect::Ignored,
        })
    }
}

/// How `news` disagrees with the payment as stored, if it does: a webhook only settles the
/// charge it is about, for the amount and currency that were asked.
pub(super) fn mismatch(row: &PaymentRow, news: &ChargeNews) -> Option<WebhookMismatch> {
    if row.provider_reference.as_deref() != Some(news.intent_id.as_str()) {
        return Some(WebhookMismatch::Intent);
    }
    if news.amount != Some(row.amount) {
        return Some(WebhookMismatch::Amount);
    }
    let same_currency = news
        .currency
        .as_deref()
        .is_some_and(|currency| currency.eq_ignore_ascii_case(&row.currency));
    if !same_currency {
        return Some(WebhookMismatch::Currency);
    }
    None
}
