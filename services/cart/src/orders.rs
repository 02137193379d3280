//! `OrderPlaced`: the ordered lines leave the customer's cart — only as much of each as was
//! ordered, so what the customer added meanwhile stays. The cart remembers the order, so the
//! event delivered again takes nothing twice.
//!
//! `UserDeleted`: the customer's cart is emptied (through its actor, the cart's only writer);
//! its earlier versions are tidied as any cart's are. Emptying twice is emptying once.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shop_bridge::{Ack, Delivery};
use shop_schemas::Envelope;
use tracing::Instrument;

use crate::actor::CartMsg;
use crate::cart::Change;
use crate::error::CartError;
use crate::registry::Carts;

pub struct OrderEvents;

impl Actor for OrderEvents {
    type Msg = Delivery;
    type State = Carts;
    type Arguments = Carts;

    async fn pre_start(
        &self,
        _: ActorRef<Delivery>,
        carts: Carts,
    ) -> Result<Carts, ActorProcessingErr> {
        Ok(carts)
    }

    async fn handle(
        &self,
        myself: ActorRef<Delivery>,
        delivery: Delivery,
        carts: &mut Carts,
    ) -> Result<(), ActorProcessingErr> {
        let span = delivery.span(myself.get_cell());
        self.handle_traced(myself, delivery, carts)
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
        carts: &mut Carts,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        let (user_id, change) = match &delivery.event {
            Envelope::OrderPlaced(placed) => {
                let change = Change::Ordered {
                    order_id: placed.order_id,
                    lines: placed
                        .lines
                        .iter()
                        .map(|line| (line.product_id, line.quantity))
                        .collect(),
                };
                (placed.customer_id, change)
            }
            Envelope::UserDeleted(deleted) => (deleted.user_id, Change::Empty),
            _ => {
                let _ = delivery.reply.send(Ack::Done);
                return Ok(());
            }
        };
        let taken = carts
            .call(user_id, |reply| {
                CartMsg::Change(change.clone(), reply, shop_telemetry::current_traceparent())
            })
            .await;
        let ack = match taken {
            Ok(_) => Ack::Done,
            Err(error @ CartError::StoreUnavailable) => Ack::Unavailable(error.to_string()),
            Err(error @ CartError::Busy) => Ack::Retry(error.to_string()),
            Err(error) => Ack::Reject(error.to_string()),
        };
        let _ = delivery.reply.send(ack);
        Ok(())
    }
}
