//! `ProductPriceChanged`: every cart holding the product takes the new price, so a customer
//! reading their cart sees what checkout will charge. Each cart's own actor makes the change
//! (it is the only writer); a cart without the line, or with it at the new price already,
//! stores nothing.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shop_bridge::{Ack, Delivery};
use shop_schemas::Envelope;
use tracing::Instrument;

use crate::actor::CartMsg;
use crate::cart::Change;
use crate::error::CartError;
use crate::registry::Carts;
use crate::store::{CartStore, StoreError};

pub struct PriceEvents;

pub struct PriceEventsArgs {
    pub carts: Carts,
    pub store: CartStore,
}

impl Actor for PriceEvents {
    type Msg = Delivery;
    type State = PriceEventsArgs;
    type Arguments = PriceEventsArgs;

    async fn pre_start(
        &self,
        _: ActorRef<Delivery>,
        args: PriceEventsArgs,
    ) -> Result<PriceEventsArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<Delivery>,
        delivery: Delivery,
        state: &mut PriceEventsArgs,
    ) -> Result<(), ActorProcessingErr> {
        let span = delivery.span(myself.get_cell());
        self.handle_traced(myself, delivery, state)
            .instrument(span)
            .await
    }
}

impl PriceEvents {
    /// What `handle` does, inside the span of this message.
    async fn handle_traced(
        &self,
        myself: ActorRef<Delivery>,
        delivery: Delivery,
        state: &mut PriceEventsArgs,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        let Envelope::ProductPriceChanged(changed) = &delivery.event else {
            let _ = delivery.reply.send(Ack::Done);
            return Ok(());
        };
        let users = match state.store.users_holding(changed.product_id).await {
            Ok(users) => users,
            Err(error @ (StoreError::Unavailable(_) | StoreError::TimedOut)) => {
                let _ = delivery.reply.send(Ack::Unavailable(error.to_string()));
                return Ok(());
            }
            Err(error) => {
                let _ = delivery.reply.send(Ack::Retry(error.to_string()));
                return Ok(());
            }
        };
        let change = Change::Reprice(vec![(changed.product_id, changed.new_price)]);
        let mut ack = Ack::Done;
        for user in users {
            let repriced = state
                .carts
                .call(user, |reply| {
                    CartMsg::Change(change.clone(), reply, shop_telemetry::current_traceparent())
                })
                .await;
            match repriced {
                Ok(_) => {}
                Err(error @ CartError::StoreUnavailable) => {
                    ack = Ack::Unavailable(error.to_string());
                }
                Err(error @ CartError::Busy) => ack = Ack::Retry(error.to_string()),
                Err(error) => {
                    tracing::warn!(%user, product_id = %changed.product_id, %error, "a cart did not take a new price");
                }
            }
        }
        tracing::info!(product_id = %changed.product_id, new_price = changed.new_price, "carts repriced");
        let _ = delivery.reply.send(ack);
        Ok(())
    }
}
