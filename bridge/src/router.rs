//! The router: hands each delivered event to the actor of the entity it is about (its aggregate
//! id), started on demand by the entity's registry; that actor answers the bridge. When the
//! entity cannot be reached the delivery is dropped unanswered, and the bridge tries again after
//! a backoff.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shop_actors::entities::Entities;

use crate::Delivery;

pub struct EntityRouter<M: ractor::Message>(std::marker::PhantomData<fn() -> M>);

impl<M: ractor::Message> Default for EntityRouter<M> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

pub struct RouterArgs<M: ractor::Message> {
    pub entities: Entities<M>,
    /// The entity's message carrying the delivery.
    pub wrap: fn(Delivery) -> M,
}

impl<M: ractor::Message> Actor for EntityRouter<M> {
    type Msg = Delivery;
    type State = RouterArgs<M>;
    type Arguments = RouterArgs<M>;

    async fn pre_start(
        &self,
        _: ActorRef<Delivery>,
        args: RouterArgs<M>,
    ) -> Result<RouterArgs<M>, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<Delivery>,
        delivery: Delivery,
        state: &mut RouterArgs<M>,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        let id = delivery.event.aggregate_id();
        let event = delivery.event.name();
        if let Err(error) = state.entities.send(id, (state.wrap)(delivery)).await {
            tracing::warn!(%id, event, %error, "an event could not reach its entity; it comes again");
        }
        Ok(())
    }
}
