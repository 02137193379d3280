//! The open orders: one actor each, kept by a registry from `shop_actors::entities`; the actor
//! that routes payment events to them; and the sweeper that wakes orders whose payment time ran
//! out while no actor held them (after a restart, or on another replica).

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shop_actors::entities::{self, EntityKind};
use shop_bridge::Delivery;
use sqlx::PgPool;
use uuid::Uuid;

use crate::actor::{OrderActor, OrderArgs, OrderMsg};
use crate::store;

pub type Orders = entities::Entities<OrderMsg>;

#[derive(Clone)]
pub struct OrderKind {
    pub pool: PgPool,
}

impl EntityKind for OrderKind {
    type Actor = OrderActor;
    type Msg = OrderMsg;
    type Args = OrderArgs;
    const KIND: &'static str = "order";

    fn args(&self, order_id: Uuid) -> OrderArgs {
        OrderArgs {
            order_id,
            pool: self.pool.clone(),
        }
    }

    fn passivate(idle: entities::Idle) -> OrderMsg {
        OrderMsg::Passivate(idle)
    }
}

/// Hands each payment event to its order's actor, which answers the bridge.
pub struct PaymentEvents;

impl Actor for PaymentEvents {
    type Msg = Delivery;
    type State = Orders;
    type Arguments = Orders;

    async fn pre_start(
        &self,
        _: ActorRef<Delivery>,
        orders: Orders,
    ) -> Result<Orders, ActorProcessingErr> {
        Ok(orders)
    }

    async fn handle(
        &self,
        myself: ActorRef<Delivery>,
        delivery: Delivery,
        orders: &mut Orders,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        let order_id = delivery.event.aggregate_id();
        // If the order's actor cannot be reached, the delivery is dropped unanswered and the
        // bridge delivers it again after a backoff.
        if let Err(error) = orders.send(order_id, OrderMsg::Event(delivery)).await {
            tracing::warn!(%order_id, %error, "a payment event could not reach its order");
        }
        Ok(())
    }
}

/// Orders looked at per sweep.
const BATCH: i64 = 500;

/// Wakes pending orders past their payment time, whose actors then cancel them.
pub struct OverdueSweeper;

pub struct SweeperArgs {
    pub pool: PgPool,
    pub orders: Orders,
    pub interval: Duration,
}

pub enum SweeperMsg {
    Sweep,
}

impl Actor for OverdueSweeper {
    type Msg = SweeperMsg;
    type State = SweeperArgs;
    type Arguments = SweeperArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SweeperMsg>,
        args: SweeperArgs,
    ) -> Result<SweeperArgs, ActorProcessingErr> {
        // Right away: orders may have run out of time while no process ran.
        myself.send_message(SweeperMsg::Sweep)?;
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<SweeperMsg>,
        SweeperMsg::Sweep: SweeperMsg,
        state: &mut SweeperArgs,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        match store::overdue(&state.pool, BATCH).await {
            Ok(due) => {
                for order_id in due {
                    if let Err(error) = state.orders.send(order_id, OrderMsg::Expire).await {
                        tracing::warn!(%order_id, %error, "waking an overdue order failed; next sweep");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "looking for overdue orders failed; next sweep"),
        }
        // The next tick is set after this one is done, so slow sweeps never pile up.
        myself.send_after(state.interval, || SweeperMsg::Sweep);
        Ok(())
    }
}
