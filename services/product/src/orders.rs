//! What the product service does when orders move: `OrderPaid` turns the order's reservation into
//! a sale, `OrderCancelled` gives the stock back (released if it was only reserved, returned to
//! on hand if it was sold). Each of these is idempotent on the reservation's status, so an event
//! delivered twice changes stock once without an inbox.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shop_bridge::{Ack, Delivery};
use shop_schemas::Envelope;
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::ProductError;
use crate::inventory;

pub struct OrderEvents;

impl Actor for OrderEvents {
    type Msg = Delivery;
    type State = PgPool;
    type Arguments = PgPool;

    async fn pre_start(
        &self,
        _: ActorRef<Delivery>,
        pool: PgPool,
    ) -> Result<PgPool, ActorProcessingErr> {
        Ok(pool)
    }

    async fn handle(
        &self,
        myself: ActorRef<Delivery>,
        delivery: Delivery,
        pool: &mut PgPool,
    ) -> Result<(), ActorProcessingErr> {
        let span = delivery.span(myself.get_cell());
        self.handle_traced(myself, delivery, pool)
            .instrument(span)
            .await
    }
}

impl OrderEvents {
    /// What `handle` does, inside the span of this message.
    async fn handle_traced(
        &self,
        myself: ActorRef<Delivery>,
        delivery: Delivery,
        pool: &mut PgPool,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        let ack = match &delivery.event {
            Envelope::OrderPaid(paid) => answer(
                paid.order_id,
                "commit",
                inventory::sell(pool, paid.order_id).await,
            ),
            Envelope::OrderCancelled(cancelled) => answer(
                cancelled.order_id,
                "give back",
                inventory::cancel(pool, cancelled.order_id).await,
            ),
            _ => Ack::Done,
        };
        let _ = delivery.reply.send(ack);
        Ok(())
    }
}

fn answer<T>(order_id: Uuid, what: &str, result: Result<T, ProductError>) -> Ack {
    match result {
        Ok(_) => Ack::Done,
        Err(ProductError::Database(error)) => {
            Ack::retry(shop_web::postgres::unavailable(&error), error.to_string())
        }
        Err(error) => {
            // A reservation that is not there or closed otherwise: nothing to do, but worth a
            // look (a payment that came after the reservation expired sold nothing).
            tracing::error!(%order_id, %error, what, "an order event could not change the reservation");
            Ack::Done
        }
    }
}
