//! One payment in flight as an actor, keyed by its order: the only writer of its rows. It records
//! the payment before the provider hears of it, sends every attempt with the same idempotency
//! key, stores the outcome with its event in one transaction, and retries transient provider
//! errors on its own timer. Whatever stops it midway, the sweeper (`payments.rs`) wakes it again
//! and the provider's idempotency makes the next attempt answer the first one's outcome.

use std::time::Duration;

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use shop_bridge::{Ack, Delivery};
use shop_schemas::{
    Envelope, OrderCancelled, OrderPlaced, PaymentFailed, PaymentRefunded, PaymentSucceeded,
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::PaymentError;
use crate::provider::{ChargeRequest, Charged, Provider, ProviderError, RefundRequest, Refunded};
use crate::state::{Outcome, Status, next};
use crate::store::{self, Applied, NewPayment, NewRefund, Payment, RefundRow, Settle};
use crate::webhook::ChargeNews;

/// How long an attempt may run before the sweeper may try again (longer than a provider call).
const LEASE: Duration = Duration::from_secs(30);
/// When the database failed to store an outcome: come back after this.
const STORE_RETRY: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct PaymentActor;

pub struct PaymentArgs {
    pub order_id: Uuid,
    pub pool: PgPool,
    pub provider: Provider,
    pub max_attempts: u32,
}

/// An admin's refund.
pub struct RefundAsk {
    /// `None`: everything left.
    pub amount: Option<i64>,
    pub reason: Option<String>,
    pub by: String,
    pub trace_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookEffect {
    Applied,
    /// Seen before, or about nothing this service has open.
    Ignored,
}

pub enum PaymentMsg {
    /// `OrderPlaced` or `OrderCancelled` from the bridge, answered on its reply port.
    Event(Delivery),
    /// Do whatever work is due: a charge to send, a refund to make.
    Work,
    Webhook(
        ChargeNews,
        RpcReplyPort<Result<WebhookEffect, PaymentError>>,
    ),
    Refund(RefundAsk, RpcReplyPort<Result<RefundRow, PaymentError>>),
    /// The registry saw no message for a while.
    Passivate(shop_actors::entities::Idle),
}

pub struct PaymentState {
    order_id: Uuid,
    pool: PgPool,
    provider: Provider,
    max_attempts: u32,
    payment: Option<Payment>,
    /// A `Work` timer is set: failures do not pile up timers.
    work_scheduled: bool,
}

impl Actor for PaymentActor {
    type Msg = PaymentMsg;
    type State = PaymentState;
    type Arguments = PaymentArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<PaymentMsg>,
        args: PaymentArgs,
    ) -> Result<PaymentState, ActorProcessingErr> {
        Ok(PaymentState {
            order_id: args.order_id,
            pool: args.pool,
            provider: args.provider,
            max_attempts: args.max_attempts.max(1),
            payment: None,
            work_scheduled: false,
        })
    }

    /// Loads the payment before the first message; not in `pre_start`, which the registry waits for.
    async fn post_start(
        &self,
        _myself: ActorRef<PaymentMsg>,
        state: &mut PaymentState,
    ) -> Result<(), ActorProcessingErr> {
        state.payment = store::of_order(&state.pool, state.order_id).await?;
        // A lease in the database belongs to an attempt no actor of this process is making (a
        // crash, a restart): due now. Were another replica still at it, the provider's
        // idempotency key makes both attempts one charge.
        if let Some(payment) = state.payment.as_mut() {
            let now = Utc::now();
            if payment.row.status().is_open() && payment.row.next_attempt_at.is_some() {
                payment.row.next_attempt_at = Some(now);
            }
            for refund in &mut payment.refunds {
                if refund.status == "pending" {
                    refund.next_attempt_at = Some(now);
                }
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<PaymentMsg>,
        message: PaymentMsg,
        state: &mut PaymentState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PaymentMsg::Event(delivery) => {
                let trace_id = delivery.trace_id.clone();
                let ack = match &delivery.event {
                    Envelope::OrderPlaced(placed) => state.on_placed(placed).await,
                    Envelope::OrderCancelled(cancelled) => state.on_cancelled(cancelled).await,
                    _ => Ack::Done,
                };
                // Acknowledged once recorded: the provider call below may be slow, and what
                // is recorded is finished by this actor or, after a crash, the sweeper.
                let _ = delivery.reply.send(ack);
                state.work(&myself, trace_id.as_deref()).await;
            }
            PaymentMsg::Work => {
                state.work_scheduled = false;
                state.work(&myself, None).await;
            }
            PaymentMsg::Webhook(news, reply) => {
                let effect = state.on_webhook(&news).await;
                let _ = reply.send(effect);
                state.work(&myself, None).await;
            }
            PaymentMsg::Refund(ask, reply) => {
                let refund = state.refund(&myself, ask).await;
                let _ = reply.send(refund);
            }
            PaymentMsg::Passivate(idle) => {
                if idle.still() {
                    myself.stop(None);
                }
                return Ok(());
            }
        }
        if !state.has_work() {
            myself.stop(None);
        }
        Ok(())
    }
}

/// The wait before attempt `attempts + 1`: 200 ms doubling, at most 30 s.
fn backoff(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.clamp(1, 8) - 1).unwrap_or(0);
    (Duration::from_millis(200) * 2u32.pow(doublings)).min(Duration::from_secs(30))
}

fn later(wait: Duration) -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default()
}

impl PaymentState {
    /// Comes back to the work after `wait`, unless a timer is already set.
    fn work_after(&mut self, myself: &ActorRef<PaymentMsg>, wait: Duration) {
        if !self.work_scheduled {
            self.work_scheduled = true;
            myself.send_after(wait, || PaymentMsg::Work);
        }
    }

    fn has_work(&self) -> bool {
        self.payment.as_ref().is_some_and(|payment| {
            payment.row.status().is_open() || payment.pending_refunds().next().is_some()
        })
    }

    async fn reload(&mut self) -> Result<(), sqlx::Error> {
        self.payment = store::of_order(&self.pool, self.order_id).await?;
        Ok(())
    }

    async fn on_placed(&mut self, placed: &OrderPlaced) -> Ack {
        let payment = NewPayment {
            id: Uuid::now_v7(),
            order_id: placed.order_id,
            customer_id: placed.customer_id,
            amount: placed.total,
            currency: &placed.currency,
            payment_method: &placed.payment_method,
            provider: self.provider.name(),
            next_attempt_at: Utc::now(),
        };
        match store::record(&self.pool, &payment, placed.event_id).await {
            Ok(Some(row)) => {
                self.payment = Some(Payment {
                    row,
                    refunds: Vec::new(),
                });
                return Ack::Done;
            }
            Ok(None) => {}
            Err(error) => return Ack::Retry(format!("recording the payment: {error}")),
        }
        match self.reload().await {
            Ok(()) => Ack::Done,
            Err(error) => Ack::Retry(format!("loading the payment: {error}")),
        }
    }

    async fn on_cancelled(&mut self, cancelled: &OrderCancelled) -> Ack {
        let Some(payment) = &self.payment else {
            // Cancelled before it was ever placed with us (a checkout that failed): nothing to do.
            return seen(store::mark_seen(&self.pool, None, Some(cancelled.event_id)).await);
        };
        let row = &payment.row;
        let result = match row.status() {
            Status::RequiresPaymentMethod => self.cancel_charge(cancelled, None).await,
            Status::Processing => match row.provider_reference.clone() {
                // Waiting for the customer or the bank: call the charge off.
                Some(reference) => match self.provider.cancel(&reference).await {
                    Ok(()) => self.cancel_charge(cancelled, Some(&reference)).await,
                    Err(ProviderError::Transient(why)) => return Ack::Retry(why),
                    Err(ProviderError::Refused(_)) => self.note_cancelled(row.id, cancelled).await,
                },
                // An attempt's outcome is unknown: a success will be refunded.
                None => self.note_cancelled(row.id, cancelled).await,
            },
            Status::Succeeded if payment.refundable() > 0 => {
                let refund = NewRefund {
                    id: Uuid::now_v7(),
                    payment_id: row.id,
                    amount: payment.refundable(),
                    reason: Some(&cancelled.reason),
                    requested_by: "system",
                    lease_until: Utc::now(),
                    caused_by: Some(cancelled.event_id),
                };
                store::add_refund(&self.pool, &refund).await.map(|_| ())
            }
            _ => store::mark_seen(&self.pool, None, Some(cancelled.event_id)).await,
        };
        if let Err(error) = result {
            return Ack::Retry(format!("recording the cancellation: {error}"));
        }
        match self.reload().await {
            Ok(()) => Ack::Done,
            Err(error) => Ack::Retry(format!("loading the payment: {error}")),
        }
    }

    async fn cancel_charge(
        &self,
        cancelled: &OrderCancelled,
        reference: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let Some(payment) = &self.payment else {
            return Ok(());
        };
        let settle = Settle {
            payment_id: payment.row.id,
            from: payment.row.status(),
            to: Status::Canceled,
            reference,
            failure: Some(("canceled", "the order was cancelled")),
            event: None,
            webhook: None,
            caused_by: Some(cancelled.event_id),
            trace_id: None,
        };
        match store::settle(&self.pool, settle).await {
            Ok(_) => Ok(()),
            Err(shop_bridge::BridgeError::Database(error)) => Err(error),
            Err(error) => Err(sqlx::Error::Protocol(error.to_string())),
        }
    }

    async fn note_cancelled(
        &self,
        payment_id: Uuid,
        cancelled: &OrderCancelled,
    ) -> Result<(), sqlx::Error> {
        store::mark_order_cancelled(&self.pool, payment_id, cancelled.event_id)
            .await
            .map(|_| ())
    }

    /// Sends the charge if it is due, makes the refunds that are due, and refunds a cancelled
    /// order's charge that succeeded anyway.
    async fn work(&mut self, myself: &ActorRef<PaymentMsg>, trace_id: Option<&str>) {
        let Some(payment) = &self.payment else { return };
        let row = &payment.row;
        let due = |at: Option<chrono::DateTime<Utc>>| {
            at.is_some_and(|at| at <= Utc::now() + chrono::Duration::milliseconds(50))
        };
        if row.status().is_open() && due(row.next_attempt_at) {
            self.charge(myself, trace_id).await;
        }
        let Some(payment) = &self.payment else { return };
        if payment.row.status() == Status::Succeeded
            && payment.row.order_cancelled
            && payment.refundable() > 0
            && !payment
                .refunds
                .iter()
                .any(|refund| refund.requested_by == "system")
        {
            let refund = NewRefund {
                id: Uuid::now_v7(),
                payment_id: payment.row.id,
                amount: payment.refundable(),
                reason: Some("the order was cancelled before the charge went through"),
                requested_by: "system",
                lease_until: Utc::now(),
                caused_by: None,
            };
            if let Err(error) = store::add_refund(&self.pool, &refund).await {
                tracing::warn!(order_id = %self.order_id, %error, "recording a refund failed; trying again");
                self.work_after(myself, STORE_RETRY);
                return;
            }
            if self.reload().await.is_err() {
                self.work_after(myself, STORE_RETRY);
                return;
            }
        }
        let Some(payment) = &self.payment else { return };
        let due_refunds: Vec<RefundRow> = payment
            .pending_refunds()
            .filter(|refund| due(refund.next_attempt_at))
            .cloned()
            .collect();
        for refund in due_refunds {
            self.make_refund(myself, &refund, trace_id).await;
        }
    }

    async fn charge(&mut self, myself: &ActorRef<PaymentMsg>, trace_id: Option<&str>) {
        let Some(payment) = self.payment.as_mut() else {
            return;
        };
        let attempts = match store::begin_attempt(&self.pool, payment.row.id, later(LEASE)).await {
            Ok(attempts) => attempts,
            Err(error) => {
                tracing::warn!(order_id = %self.order_id, %error, "starting a charge failed; trying again");
                self.work_after(myself, STORE_RETRY);
                return;
            }
        };
        payment.row.status = Status::Processing.as_str().to_owned();
        payment.row.attempts = attempts;
        payment.row.next_attempt_at = Some(later(LEASE));
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
            Ok(Charged::Pending { reference }) => {
                tracing::info!(order_id = %row.order_id, %reference, "the charge waits for its webhook");
                store::await_webhook(&self.pool, row.id, &reference)
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

    async fn make_refund(
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
            Ok(Refunded::Failed { reason }) => {
                store::settle_refund(
                    &self.pool,
                    row.id,
                    refund.id,
                    refund.amount,
                    Err(&reason),
                    None,
                    trace_id,
                )
                .await
            }
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
            Err(error) => {
                let reason = error.to_string();
                store::settle_refund(
                    &self.pool,
                    row.id,
                    refund.id,
                    refund.amount,
                    Err(&reason),
                    None,
                    trace_id,
                )
                .await
            }
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

    async fn on_webhook(&mut self, news: &ChargeNews) -> Result<WebhookEffect, PaymentError> {
        let webhook = Some((news.event_id.as_str(), news.kind.as_str()));
        let Some(payment) = &self.payment else {
            return Ok(WebhookEffect::Ignored);
        };
        let row = &payment.row;
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

    async fn refund(
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
        let Some(row) = store::add_refund(&self.pool, &refund).await? else {
            return Err(PaymentError::Busy);
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

fn seen(result: Result<(), sqlx::Error>) -> Ack {
    match result {
        Ok(()) => Ack::Done,
        Err(error) => Ack::Retry(error.to_string()),
    }
}

fn declined(
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

/// What a settled charge changed in its row.
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
