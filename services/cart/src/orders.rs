//! `OrderPlaced`: the ordered lines leave the customer's cart — only as much of each as was
//! ordered, so what the customer added meanwhile stays. The cart remembers the order, so the
//! event delivered again takes nothing twice.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shop_bridge::{Ack, Delivery};
use shop_schemas::Envelope;

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
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        let Envelope::OrderPlaced(placed) = &delivery.event else {
            let _ = delivery.reply.send(Ack::Done);
            return Ok(());
        };
        let change = Change::Ordered {
            order_id: placed.order_id,
            lines: placed
                .lines
                .iter()
                .map(|line| (line.product_id, line.quantity))
                .collect(),
        };
        let taken = carts
            .call(placed.customer_id, |reply| {
                CartMsg::Change(change.clone(), reply)
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
