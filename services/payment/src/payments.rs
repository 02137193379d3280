//! The payments in flight: one actor each, kept by a registry from `shop_actors::entities`; the
//! actor that routes order events to them; and the sweeper that wakes payments with work left
//! when no actor holds them (after a crash or a restart).

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shop_actors::entities::{self, EntityKind};
use shop_actors::sweeper::{Due, SweeperArgs};
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

/// The sweeper's work: payments with work left that no actor holds (a charge not sent or whose
/// lease ran out, a pending refund, a cancelled order's charge to refund). On the first sweep
/// after start leases count as expired: no actor of this process holds one yet.
pub fn sweeper(pool: PgPool, payments: Payments, interval: Duration) -> SweeperArgs<PaymentMsg> {
    let due: Due = Arc::new(move |first| {
        let pool = pool.clone();
        Box::pin(async move {
            store::due(&pool, BATCH, first)
                .await
                .map_err(|error| error.to_string())
        })
    });
    SweeperArgs {
        what: "payments",
        due,
        entities: payments,
        wake: || PaymentMsg::Work,
        interval,
    }
}
