//! The open orders: one actor each, kept by a registry from `shop_actors::entities`; the actor
//! and what the sweeper looks for.

use std::sync::Arc;
use std::time::Duration;

use shop_actors::entities::{self, EntityKind};
use shop_actors::sweeper::{Due, SweeperArgs};
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
    type Dormant = ();
    const KIND: &'static str = "order";

    fn args(&self, order_id: Uuid, _: Option<()>) -> OrderArgs {
        OrderArgs {
            order_id,
            pool: self.pool.clone(),
        }
    }

    fn passivate(idle: entities::Idle) -> OrderMsg {
        OrderMsg::Passivate(idle)
    }
}

/// Orders looked at per sweep.
const BATCH: i64 = 500;

/// The sweeper's work: pending orders past their payment time, whose actors then cancel them
/// (they may have run out of time while no actor held them: after a restart, on another replica).
pub fn overdue_sweeper(pool: PgPool, orders: Orders, interval: Duration) -> SweeperArgs<OrderMsg> {
    let due: Due = Arc::new(move |_first| {
        let pool = pool.clone();
        Box::pin(async move {
            store::overdue(&pool, BATCH)
                .await
                .map_err(|error| error.to_string())
        })
    });
    SweeperArgs {
        what: "overdue orders",
        due,
        entities: orders,
        wake: || OrderMsg::Expire,
        interval,
    }
}
