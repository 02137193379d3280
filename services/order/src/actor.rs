//! One open order as an actor: the only writer of its row. It asks the transition table
//! (`state.rs`) what a command does, stores the change with its history row and event in one
//! transaction, and answers once that is durable. A pending order keeps a timer for its payment
//! grace period and cancels itself when it runs out.

use std::time::Duration;
use tracing::Instrument;

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use shop_bridge::{Ack, Delivery};
use shop_schemas::{Envelope, OrderCancelled, OrderDelivered, OrderPaid, OrderShipped};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::OrderError;
use crate::state::{Command, State, next};
use crate::store::{self, Applied, Order, Transition};

pub type Answer = RpcReplyPort<Result<Order, OrderError>>;

#[derive(Default)]
pub struct OrderActor;

pub struct OrderArgs {
    pub order_id: Uuid,
    pub pool: PgPool,
}

/// A person's command.
pub struct Request {
    pub command: Command,
    /// Who asks: a user id, or `system`.
    pub by: String,
    pub reason: Option<String>,
    pub tracking_number: Option<String>,
    pub carrier: Option<String>,
    /// The request's trace context (`shop_web::request_id::trace_context`).
    pub trace_id: Option<String>,
}

pub enum OrderMsg {
    /// Start (or keep) the actor: a pending order arms its payment timer.
    Load,
    /// Checkout stored this order just now: start with it rather than read it back.
    Placed(Box<Order>),
    Command(Request, Answer),
    /// A payment event from the bridge, answered on its reply port.
    Event(Delivery),
    /// The payment grace period may be over.
    Expire,
    /// The registry saw no message for a while.
    Passivate(shop_actors::entities::Idle),
}

impl OrderMsg {
    /// This message's span in `actor`: a person's command or a payment event, in the trace it
    /// came with; the order's own timers and housekeeping have none.
    fn span(&self, actor: &ActorRef<OrderMsg>) -> tracing::Span {
        let (message, trace) = match self {
            OrderMsg::Command(request, _) => (format!("{:?}", request.command), &request.trace_id),
            OrderMsg::Event(delivery) => (delivery.event.name().to_owned(), &delivery.trace_id),
            _ => return tracing::Span::none(),
        };
        shop_actors::meta::handling_span(actor.get_cell(), &message, trace.as_deref())
    }
}

pub struct OrderState {
    order_id: Uuid,
    pool: PgPool,
    /// `None`: there is no such order.
    order: Option<Order>,
    /// Whether `order` was read (or handed over by checkout) yet.
    loaded: bool,
}

/// How long to wait before trying again when a timer's change could not be stored.
const RETRY_EXPIRY: Duration = Duration::from_secs(5);

impl Actor for OrderActor {
    type Msg = OrderMsg;
    type State = OrderState;
    type Arguments = OrderArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<OrderMsg>,
        args: OrderArgs,
    ) -> Result<OrderState, ActorProcessingErr> {
        Ok(OrderState {
            order_id: args.order_id,
            pool: args.pool,
            order: None,
            loaded: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<OrderMsg>,
        message: OrderMsg,
        state: &mut OrderState,
    ) -> Result<(), ActorProcessingErr> {
        let span = message.span(&myself);
        self.handle_traced(myself, message, state)
            .instrument(span)
            .await
    }
}

impl OrderActor {
    /// What `handle` does, inside the span of this message.
    async fn handle_traced(
        &self,
        myself: ActorRef<OrderMsg>,
        message: OrderMsg,
        state: &mut OrderState,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        // The order is read with the first message, not in `pre_start`, which the registry
        // waits for; checkout's own message brings it.
        let message = match message {
            OrderMsg::Placed(order) => {
                if !state.loaded {
                    state.start(&myself, Some(*order)).await?;
                }
                OrderMsg::Load
            }
            message => {
                if !state.loaded {
                    state.start(&myself, None).await?;
                }
                message
            }
        };
        match message {
            OrderMsg::Load | OrderMsg::Placed(_) => {}
            OrderMsg::Command(request, reply) => {
                let change = Change {
                    command: request.command,
                    by: &request.by,
                    reason: request.reason.as_deref(),
                    tracking_number: request.tracking_number.as_deref(),
                    carrier: request.carrier.as_deref(),
                    payment_id: None,
                    caused_by: None,
                    trace_id: request.trace_id.as_deref(),
                };
                let result = state.change(change).await;
                let _ = reply.send(result);
            }
            OrderMsg::Event(delivery) => {
                let ack = state
                    .on_event(&delivery.event, delivery.trace_id.as_deref())
                    .await;
                let _ = delivery.reply.send(ack);
            }
            OrderMsg::Expire => state.expire(&myself).await,
            OrderMsg::Passivate(idle) => {
                // A pending order waits for its timer; the others come back on their next message.
                if state.current() != Some(State::Pending) && idle.leave(None) {
                    myself.stop(None);
                }
                return Ok(());
            }
        }
        // A settled order's actor is done: requests already queued for it are still answered
        // (a 409 for a command it no longer allows, not a 503), later ones start it again.
        if state.current().is_none_or(State::is_settled) {
            shop_actors::entities::finish(&myself);
        }
        Ok(())
    }
}

/// One change, however it was asked for.
struct Change<'a> {
    command: Command,
    by: &'a str,
    reason: Option<&'a str>,
    tracking_number: Option<&'a str>,
    carrier: Option<&'a str>,
    payment_id: Option<Uuid>,
    /// The event that asked for it, recorded in the inbox with the change.
    caused_by: Option<Uuid>,
    trace_id: Option<&'a str>,
}

impl OrderState {
    /// Takes the order as checkout stored it, or reads it; a pending order arms its timer.
    async fn start(
        &mut self,
        myself: &ActorRef<OrderMsg>,
        placed: Option<Order>,
    ) -> Result<(), OrderError> {
        self.order = match placed {
            Some(order) => Some(order),
            None => store::order(&self.pool, self.order_id).await?,
        };
        self.loaded = true;
        if let Some(order) = &self.order
            && order.row.state() == State::Pending
        {
            let left = (order.row.pay_by - Utc::now()).to_std().unwrap_or_default();
            myself.send_after(left, || OrderMsg::Expire);
        }
        Ok(())
    }

    fn current(&self) -> Option<State> {
        self.order.as_ref().map(|order| order.row.state())
    }

    async fn change(&mut self, change: Change<'_>) -> Result<Order, OrderError> {
        // A stale version means another process changed the order: reload and decide again.
        let mut reloaded = false;
        for _ in 0..3 {
            let order = self.order.as_ref().ok_or(OrderError::NotFound)?;
            let from = order.row.state();
            let Some(to) = next(from, change.command) else {
                if reloaded {
                    return Err(OrderError::Illegal {
                        state: from,
                        command: change.command,
                    });
                }
                // What this actor holds may be old: another replica's actor of the order (the
                // owner of its partition, say) may have moved it since. Decide on what is stored.
                self.order = store::order(&self.pool, self.order_id).await?;
                reloaded = true;
                continue;
            };
            let transition = Transition {
                order_id: order.row.id,
                from,
                to,
                version: order.row.version,
                actor: change.by,
                reason: change.reason,
                payment_id: change.payment_id,
                tracking_number: change.tracking_number,
                carrier: change.carrier,
                event: published(order, from, to, &change),
                caused_by: change.caused_by,
                trace_id: change.trace_id,
            };
            match store::apply(&self.pool, transition).await? {
                Applied::Done(version) => {
                    let Some(order) = self.order.as_mut() else {
                        return Err(OrderError::NotFound);
                    };
                    let row = &mut order.row;
                    row.state = to.as_str().to_owned();
                    row.version = version;
                    row.updated_at = Utc::now();
                    row.payment_id = change.payment_id.or(row.payment_id);
                    if let Some(tracking) = change.tracking_number {
                        row.tracking_number = Some(tracking.to_owned());
                    }
                    if let Some(carrier) = change.carrier {
                        row.carrier = Some(carrier.to_owned());
                    }
                    if to == State::Cancelled {
                        row.cancel_reason = change.reason.map(str::to_owned);
                    }
                    tracing::info!(order_id = %row.id, %from, %to, by = change.by, "order moved");
                    return Ok(order.clone());
                }
                Applied::SeenBefore => return Ok(order.clone()),
                Applied::Stale => {
                    self.order = store::order(&self.pool, self.order_id).await?;
                    reloaded = true;
                }
            }
        }
        Err(OrderError::Busy)
    }

    async fn on_event(&mut self, event: &Envelope, trace_id: Option<&str>) -> Ack {
        let (command, payment_id, reason) = match event {
            Envelope::PaymentSucceeded(paid) => (Command::Pay, Some(paid.payment_id), None),
            Envelope::PaymentFailed(failed) => (
                Command::FailPayment,
                Some(failed.payment_id),
                Some(format!("payment failed: {}", failed.reason)),
            ),
            Envelope::PaymentRefunded(refunded) => {
                (Command::Refund, Some(refunded.payment_id), None)
            }
            _ => return Ack::Done,
        };
        let change = Change {
            command,
            by: "payment",
            reason: reason.as_deref(),
            tracking_number: None,
            carrier: None,
            payment_id,
            caused_by: Some(event.event_id()),
            trace_id,
        };
        match self.change(change).await {
            Ok(_) => Ack::Done,
            Err(OrderError::NotFound) => Ack::Reject(format!("no order {}", self.order_id)),
            Err(OrderError::Illegal { state, command }) => {
                // Too late or out of place (a payment for an order cancelled meanwhile): noted,
                // so it is not looked at again.
                tracing::warn!(order_id = %self.order_id, %state, %command, event = event.name(), "event does not apply to the order");
                match store::mark_seen(&self.pool, event.event_id()).await {
                    Ok(()) => Ack::Done,
                    Err(error) => Ack::Retry(error.to_string()),
                }
            }
            // Versions racing (Busy) is worth a few tries; a store or service down, as many as
            // its outage takes.
            Err(error @ OrderError::Busy) => Ack::Retry(error.to_string()),
            Err(error) if error.is_transient() => Ack::Unavailable(error.to_string()),
            Err(error) => Ack::Reject(error.to_string()),
        }
    }

    async fn expire(&mut self, myself: &ActorRef<OrderMsg>) {
        let Some(order) = &self.order else { return };
        if order.row.state() != State::Pending {
            return;
        }
        let left = (order.row.pay_by - Utc::now()).to_std().unwrap_or_default();
        if !left.is_zero() {
            myself.send_after(left, || OrderMsg::Expire);
            return;
        }
        let change = Change {
            command: Command::Expire,
            by: "system",
            reason: Some("not paid within the payment grace period"),
            tracking_number: None,
            carrier: None,
            payment_id: None,
            caused_by: None,
            trace_id: None,
        };
        if let Err(error) = self.change(change).await {
            tracing::warn!(order_id = %self.order_id, %error, "cancelling an unpaid order failed; trying again");
            myself.send_after(RETRY_EXPIRY, || OrderMsg::Expire);
        }
    }
}

/// The event a transition publishes.
fn published(order: &Order, from: State, to: State, change: &Change<'_>) -> Option<Envelope> {
    let row = &order.row;
    let (event_id, occurred_at) = (Uuid::new_v4(), shop_schemas::now_millis());
    match to {
        State::Paid => Some(Envelope::OrderPaid(OrderPaid {
            event_id,
            occurred_at,
            order_id: row.id,
            customer_id: row.customer_id,
            payment_id: change.payment_id.or(row.payment_id).unwrap_or_default(),
            amount: row.total,
            currency: row.currency.clone(),
        })),
        State::Shipped => Some(Envelope::OrderShipped(OrderShipped {
            event_id,
            occurred_at,
            order_id: row.id,
            customer_id: row.customer_id,
            tracking_number: change.tracking_number.map(str::to_owned),
            carrier: change.carrier.map(str::to_owned),
            delivery_min_days: row.delivery_min_days,
            delivery_max_days: row.delivery_max_days,
        })),
        State::Delivered => Some(Envelope::OrderDelivered(OrderDelivered {
            event_id,
            occurred_at,
            order_id: row.id,
            customer_id: row.customer_id,
        })),
        State::Cancelled => Some(Envelope::OrderCancelled(OrderCancelled {
            event_id,
            occurred_at,
            order_id: row.id,
            customer_id: row.customer_id,
            reason: change.reason.unwrap_or("cancelled").to_owned(),
            was_paid: from == State::Paid,
        })),
        State::Pending | State::Refunded => None,
    }
}

#[cfg(test)]
#[path = "actor_tests.rs"]
mod tests;
