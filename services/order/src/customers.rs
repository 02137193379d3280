//! `order.customers`: what a deleted account (`UserDeleted`) does to its orders. Orders not
//! shipped yet cannot be delivered to nobody: each is cancelled by its own actor (a paid one is
//! refunded, as any cancellation is). Then every order of the customer keeps its lines, totals,
//! country and history for the books, with the name, email, street address and phone replaced;
//! the published events about those orders kept in the outbox go too.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shop_bridge::{Ack, Delivery};
use shop_schemas::{Envelope, UserDeleted};
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

use crate::actor::{OrderMsg, Request};
use crate::error::OrderError;
use crate::orders::Orders;
use crate::state::Command;

/// The inbox name of the erasure.
const CONSUMER: &str = "order.customers";
/// What replaces each piece of personal data.
const ERASED: &str = "erased";

pub struct CustomerEvents;

pub struct CustomerEventsArgs {
    pub pool: PgPool,
    pub orders: Orders,
}

impl Actor for CustomerEvents {
    type Msg = Delivery;
    type State = CustomerEventsArgs;
    type Arguments = CustomerEventsArgs;

    async fn pre_start(
        &self,
        _: ActorRef<Delivery>,
        args: CustomerEventsArgs,
    ) -> Result<CustomerEventsArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<Delivery>,
        delivery: Delivery,
        state: &mut CustomerEventsArgs,
    ) -> Result<(), ActorProcessingErr> {
        let span = delivery.span(myself.get_cell());
        self.handle_traced(myself, delivery, state)
            .instrument(span)
            .await
    }
}

impl CustomerEvents {
    /// What `handle` does, inside the span of this message.
    async fn handle_traced(
        &self,
        myself: ActorRef<Delivery>,
        delivery: Delivery,
        state: &mut CustomerEventsArgs,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        let ack = match &delivery.event {
            Envelope::UserDeleted(deleted) => match erase(state, deleted).await {
                Ok(()) => Ack::Done,
                Err(error) => Ack::retry(error.is_transient(), error.to_string()),
            },
            _ => Ack::Done,
        };
        let _ = delivery.reply.send(ack);
        Ok(())
    }
}

async fn erase(state: &CustomerEventsArgs, deleted: &UserDeleted) -> Result<(), OrderError> {
    let customer = deleted.user_id;
    // Cancelling is each order's actor's to do; one delivered again finds nothing open.
    let open: Vec<Uuid> = sqlx::query_scalar(
        "select id from orders where customer_id = $1 and state in ('pending', 'paid')",
    )
    .bind(customer)
    .fetch_all(&state.pool)
    .await?;
    for order_id in open {
        let answer = state
            .orders
            .call(order_id, |reply| {
                let request = Request {
                    command: Command::Cancel,
                    by: "system".to_owned(),
                    reason: Some("the customer's account was deleted".to_owned()),
                    tracking_number: None,
                    carrier: None,
                    trace_id: None,
                };
                OrderMsg::Command(request, reply)
            })
            .await
            .map_err(|_| OrderError::Busy)?;
        match answer {
            // Shipped meanwhile: it stays on its way.
            Ok(_) | Err(OrderError::Illegal { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    let mut transaction = state.pool.begin().await?;
    if !shop_bridge::inbox::first_time(&mut transaction, CONSUMER, deleted.event_id).await? {
        transaction.commit().await?;
        return Ok(());
    }
    let erased = sqlx::query(
        "update orders set
             customer_email = $2,
             customer_name = $2,
             ship_name = case when ship_name is not null then $2 end,
             ship_line1 = case when ship_line1 is not null then $2 end,
             ship_line2 = null,
             ship_city = case when ship_city is not null then $2 end,
             ship_region = null,
             ship_postal_code = case when ship_postal_code is not null then $2 end,
             ship_phone = null
         where customer_id = $1",
    )
    .bind(customer)
    .bind(ERASED)
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    sqlx::query(
        "delete from outbox where sent_at is not null
           and message_key in (select id::text from orders where customer_id = $1)",
    )
    .bind(customer)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    tracing::info!(%customer, orders = erased, "a deleted customer's orders anonymised");
    Ok(())
}
