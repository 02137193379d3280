//! The payments in flight: one actor each, kept by a registry from `shop_actors::entities`; the
//! actor that routes order events to them; and the sweeper that wakes payments with work left
//! when no actor holds them (after a crash or a restart).

use std::sync::Arc;
use std::time::Duration;

use shop_actors::entities::{self, EntityKind};
use shop_actors::sweeper::{Due, SweeperArgs};
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
    /// This replica's name (`SHOP_INSTANCE`).
    pub instance: Arc<str>,
}

impl EntityKind for PaymentKind {
    type Actor = PaymentActor;
    type Msg = PaymentMsg;
    type Args = PaymentArgs;
    type Dormant = ();
    const KIND: &'static str = "payment";

    /// Keyed by order: one payment per order, and the order events name the order.
    fn args(&self, order_id: Uuid, _: Option<()>) -> PaymentArgs {
        PaymentArgs {
            order_id,
            pool: self.pool.clone(),
            provider: self.provider.clone(),
            max_attempts: self.max_attempts,
            instance: self.instance.clone(),
        }
    }

    fn passivate(idle: entities::Idle) -> PaymentMsg {
        PaymentMsg::Passivate(idle)
    }
}

/// Payments looked at per sweep.
const BATCH: i64 = 500;

/// The sweeper's work: payments with work left that no actor holds (a charge not sent or whose
/// lease ran out, a pending refund, a cancelled order's charge to refund). On the first sweep
/// after start this replica's own leases count as run out: no actor of it holds one yet.
pub fn sweeper(
    pool: PgPool,
    payments: Payments,
    interval: Duration,
    instance: Arc<str>,
) -> SweeperArgs<PaymentMsg> {
    let due: Due = Arc::new(move |first| {
        let (pool, instance) = (pool.clone(), instance.clone());
        Box::pin(async move {
            store::due(&pool, BATCH, first.then_some(&*instance))
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
