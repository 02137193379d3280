//! Two actors of one order, as on two replicas (the partition owner's, and the one a customer's
//! or admin's request reached), against the real PostgreSQL dev/test runs.

use ractor::{Actor, call};
use shop_schemas::PaymentSucceeded;

use super::*;
use crate::store::tests::{pending_order, pool};

async fn actor(pool: &PgPool, order_id: Uuid) -> ActorRef<OrderMsg> {
    let args = OrderArgs {
        order_id,
        pool: pool.clone(),
    };
    let (actor, _) = Actor::spawn(None, OrderActor, args)
        .await
        .expect("the actor starts");
    actor
}

fn admin(command: Command) -> Request {
    Request {
        command,
        by: "admin".to_owned(),
        reason: None,
        tracking_number: Some("T-1".to_owned()),
        carrier: Some("DHL".to_owned()),
        trace_id: None,
    }
}

#[tokio::test]
async fn an_actor_that_missed_another_replicas_change_decides_on_what_is_stored() {
    let pool = pool().await;
    let order_id = pending_order(&pool).await;
    let (owner, other) = (actor(&pool, order_id).await, actor(&pool, order_id).await);
    // The other holds the order as pending: what it loaded, and what is stored, refuse delivery.
    let early = call!(other, |reply| OrderMsg::Command(
        admin(Command::Deliver),
        reply
    ))
    .expect("the other answers");
    assert!(matches!(
        early,
        Err(OrderError::Illegal {
            state: State::Pending,
            ..
        })
    ));

    // The partition owner's actor takes the payment.
    let paid = PaymentSucceeded {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        payment_id: Uuid::new_v4(),
        order_id,
        amount: 300,
        currency: "EUR".to_owned(),
        provider_reference: "pi_test".to_owned(),
    };
    let ack = call!(owner, |reply| OrderMsg::Event(Delivery {
        event: paid.into(),
        trace_id: None,
        reply,
    }))
    .expect("the owner answers");
    assert_eq!(ack, Ack::Done);

    // An admin's ship reaches the other actor, which still holds the order as pending.
    let shipped = call!(other, |reply| OrderMsg::Command(
        admin(Command::Ship),
        reply
    ))
    .expect("the other answers");
    let order = shipped.expect("shipped on what is stored, not refused as pending");
    assert_eq!(order.row.state(), State::Shipped);
    let stored = store::order(&pool, order_id).await.unwrap().unwrap();
    assert_eq!(stored.row.state(), State::Shipped);
}
