//! The payments in flight: one actor each, kept by a registry from `shop_actors::entities`; the
//! actor that routes order events to them; and the sweeper that wakes payments with work left
//! when no actor holds them (after a crash or a restart).

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shop_actors::entities::{self, EntityKind};
use shop_bridge::Delivery;
use sqlx::PgPool;
use uuid::Uuid;

use crate::actor::{PaymentActor, PaymentArgs, PaymentMsg};
use crate::provider::Provider;
use crate::store;

pub type Payments = entities::Entities<PaymentMsg>;

#[derive(Clone)]
pub struct PaymentKind {
    pub pool: PgPool,
    pub provider: Provider,
    pub max_attempts: u32,
}

impl EntityKind for PaymentKind {
    type Actor = PaymentActor;
    type Msg = PaymentMsg;
    type Args = PaymentArgs;
    const KIND: &'static str = "payment";

    /// Keyed by order: one payment per order, and the order events name the order.
    fn args(&self, order_id: Uuid) -> PaymentArgs {
        PaymentArgs {
            order_id,
            pool: self.pool.clone(),
            provider: self.provider.clone(),
            max_attempts: self.max_attempts,
        }
    }

    fn passivate(idle: entities::Idle) -> PaymentMsg {
        PaymentMsg::Passivate(idle)
    }
}

/// Hands each order event to its payment's actor, which answers the bridge.
pub struct OrderEvents;

impl Actor for OrderEvents {
    type Msg = Delivery;
    type State = Payments;
    type Arguments = Payments;

    async fn pre_start(
        &self,
        _: ActorRef<Delivery>,
        payments: Payments,
    ) -> Result<Payments, ActorProcessingErr> {
        Ok(payments)
    }

    async fn handle(
        &self,
        myself: ActorRef<Delivery>,
        delivery: Delivery,
        payments: &mut Payments,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        let order_id = delivery.event.aggregate_id();
        // Unreachable actor: the delivery is dropped unanswered and the bridge tries again.
        if let Err(error) = payments.send(order_id, PaymentMsg::Event(delivery)).await {
            tracing::warn!(%order_id, %error, "an order event could not reach its payment");
        }
        Ok(())
    }
}

/// Payments looked at per sweep.
const BATCH: i64 = 500;

/// Wakes payments whose work is due and whose actor is gone.
pub struct Sweeper;

pub struct SweeperArgs {
    pub pool: PgPool,
    pub payments: Payments,
    pub interval: Duration,
}

pub struct SweeperState {
    args: SweeperArgs,
    /// The first sweep after start takes leases for expired: no actor of this process holds one.
    first: bool,
}

pub enum SweeperMsg {
    Sweep,
}

impl Actor for Sweeper {
    type Msg = SweeperMsg;
    type State = SweeperState;
    type Arguments = SweeperArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SweeperMsg>,
        args: SweeperArgs,
    ) -> Result<SweeperState, ActorProcessingErr> {
        myself.send_message(SweeperMsg::Sweep)?;
        Ok(SweeperState { args, first: true })
    }

    async fn handle(
        &self,
        myself: ActorRef<SweeperMsg>,
        SweeperMsg::Sweep: SweeperMsg,
        state: &mut SweeperState,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        match store::due(&state.args.pool, BATCH, state.first).await {
            Ok(due) => {
                if !due.is_empty() {
                    tracing::info!(payments = due.len(), "resuming payments with work left");
                }
                for order_id in due {
                    if let Err(error) = state.args.payments.send(order_id, PaymentMsg::Work).await {
                        tracing::warn!(%order_id, %error, "waking a payment failed; next sweep");
                    }
                }
                state.first = false;
            }
            Err(error) => tracing::warn!(%error, "looking for due payments failed; next sweep"),
        }
        myself.send_after(state.args.interval, || SweeperMsg::Sweep);
        Ok(())
    }
}
