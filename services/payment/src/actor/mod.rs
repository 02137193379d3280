//! One payment in flight as an actor, keyed by its order: the only writer of its rows. It records
//! the payment before the provider hears of it, sends every attempt with the same idempotency
//! key, stores the outcome with its event in one transaction, and retries transient provider
//! errors on its own timer. Whatever stops it midway, the sweeper (`payments.rs`) wakes it again
//! and the provider's idempotency makes the next attempt answer the first one's outcome.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use shop_bridge::{Ack, Delivery};
use shop_schemas::{
    Envelope, OrderCancelled, OrderPlaced, PaymentFailed, PaymentRefunded, PaymentSucceeded,
};
use shop_web::postgres::unavailable;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::PaymentError;
use crate::provider::{ChargeRequest, Charged, Provider, ProviderError, RefundRequest, Refunded};
use crate::state::{Outcome, Status, next};
use crate::store::{self, Applied, NewPayment, NewRefund, Payment, RefundAsked, RefundRow, Settle};
use crate::webhook::ChargeNews;

mod charge;
mod refunds;
mod webhooks;

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
    /// This replica's name: the holder of the charge leases its actors take.
    pub instance: Arc<str>,
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
    /// Signed, but not about this payment as stored: another intent, amount or currency.
    /// Nothing changes (and Stripe gets a 2xx, so it does not retry it forever).
    Refused(WebhookMismatch),
}

/// Why a signed webhook does not match the payment it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookMismatch {
    /// The event's payment intent is not the one stored for the order (or none is stored).
    Intent,
    Amount,
    Currency,
}

impl WebhookMismatch {
    pub fn label(self) -> &'static str {
        match self {
            WebhookMismatch::Intent => "intent",
            WebhookMismatch::Amount => "amount",
            WebhookMismatch::Currency => "currency",
        }
    }
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

impl PaymentMsg {
    /// This message's span in `actor`: an order event or a refund, in the trace it came with;
    /// the actor's own work and housekeeping have none.
    fn span(&self, actor: &ActorRef<PaymentMsg>, work_trace: &Option<String>) -> tracing::Span {
        let (message, trace) = match self {
            PaymentMsg::Event(delivery) => (delivery.event.name(), &delivery.trace_id),
            PaymentMsg::Refund(ask, _) => ("Refund", &ask.trace_id),
            PaymentMsg::Work => ("Work", work_trace),
            _ => return tracing::Span::none(),
        };
        shop_actors::meta::handling_span(actor.get_cell(), message, trace.as_deref())
    }
}

pub struct PaymentState {
    order_id: Uuid,
    pool: PgPool,
    provider: Provider,
    max_attempts: u32,
    instance: Arc<str>,
    payment: Option<Payment>,
    /// Whether `payment` was read (or recorded) yet.
    loaded: bool,
    /// A `Work` timer is set: failures do not pile up timers.
    work_scheduled: bool,
    /// The trace of the order event that gave this actor its work: a charge sent later, by a
    /// timer, belongs to it too.
    trace: Option<String>,
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
            instance: args.instance,
            payment: None,
            loaded: false,
            work_scheduled: false,
            trace: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<PaymentMsg>,
        message: PaymentMsg,
        state: &mut PaymentState,
    ) -> Result<(), ActorProcessingErr> {
        let span = message.span(&myself, &state.trace);
        self.handle_traced(myself, message, state)
            .instrument(span)
            .await
    }
}

impl PaymentActor {
    /// What `handle` does, inside the span of this message.
    async fn handle_traced(
        &self,
        myself: ActorRef<PaymentMsg>,
        message: PaymentMsg,
        state: &mut PaymentState,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        // The payment is read with the first message, not in `pre_start`, which the registry
        // waits for. `OrderPlaced` needs no read: recording finds any payment there is.
        let placing = matches!(
            &message,
            PaymentMsg::Event(delivery) if matches!(delivery.event, Envelope::OrderPlaced(_))
        );
        if !state.loaded && !placing {
            state.load().await?;
        }
        state.loaded = true;
        match message {
            PaymentMsg::Event(delivery) => {
                let trace_id = delivery.trace_id.clone();
                state.trace.clone_from(&trace_id);
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
                let trace = shop_telemetry::current_traceparent().or_else(|| state.trace.clone());
                state.work(&myself, trace.as_deref()).await;
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
                if idle.leave(None) {
                    myself.stop(None);
                }
                return Ok(());
            }
        }
        // No work left: ended by draining, so an event or a refund queued meanwhile is still
        // answered (a stop would drop it, and its sender would try again after a backoff).
        if !state.has_work() {
            shop_actors::entities::finish(&myself);
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

    /// Reads the payment when the actor starts.
    async fn load(&mut self) -> Result<(), sqlx::Error> {
        self.payment = store::of_order(&self.pool, self.order_id).await?;
        // A lease this replica holds belongs to an attempt no actor of it is making now (a
        // crash, a restart under the same name): due now. Another replica's lease is left to
        // run out: that replica may still be at it.
        if let Some(payment) = self.payment.as_mut() {
            let now = Utc::now();
            let ours = payment.row.leased_by.as_deref() == Some(&*self.instance);
            if payment.row.status().is_open() && payment.row.next_attempt_at.is_some() && ours {
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
            pay_by: placed
                .pay_by
                .and_then(chrono::DateTime::from_timestamp_millis),
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
            Err(error) => {
                return Ack::retry(
                    unavailable(&error),
                    format!("recording the payment: {error}"),
                );
            }
        }
        // Recorded before (a redelivery, perhaps after a crash): read it as a start would.
        match self.load().await {
            Ok(()) => Ack::Done,
            Err(error) => Ack::retry(unavailable(&error), format!("loading the payment: {error}")),
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
                store::add_refund(&self.pool, &refund)
                    .await
                    .map(|_| ())
                    .map_err(Into::into)
            }
            _ => store::mark_seen(&self.pool, None, Some(cancelled.event_id))
                .await
                .map_err(Into::into),
        };
        if let Err(error) = result {
            return Ack::Retry(format!("recording the cancellation: {error}"));
        }
        match self.reload().await {
            Ok(()) => Ack::Done,
            Err(error) => Ack::retry(unavailable(&error), format!("loading the payment: {error}")),
        }
    }

    async fn cancel_charge(
        &self,
        cancelled: &OrderCancelled,
        reference: Option<&str>,
    ) -> Result<(), shop_bridge::BridgeError> {
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
        store::settle(&self.pool, settle).await.map(|_| ())
    }

    async fn note_cancelled(
        &self,
        payment_id: Uuid,
        cancelled: &OrderCancelled,
    ) -> Result<(), shop_bridge::BridgeError> {
        store::mark_order_cancelled(&self.pool, payment_id, cancelled.event_id)
            .await
            .map(|_| ())
            .map_err(Into::into)
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
}

fn seen(result: Result<(), sqlx::Error>) -> Ack {
    match result {
        Ok(()) => Ack::Done,
        Err(error) => Ack::retry(unavailable(&error), error.to_string()),
    }
}
