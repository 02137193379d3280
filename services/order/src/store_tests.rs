//! The store against the real PostgreSQL dev/test runs: the version guard and the inbox, which
//! the order actor relies on when two processes hold the same order or an event comes twice.

use std::time::Duration;

use shop_config::Settings;

use super::*;

pub(crate) async fn pool() -> PgPool {
    let settings = Settings::from_env().expect("the settings dev/test exports are valid");
    shop_web::postgres::connect(
        &settings.postgres,
        "shop_order_store_test",
        &[&MIGRATOR, &shop_bridge::migrator()],
    )
    .await
    .expect("the test database")
}

pub(crate) async fn pending_order(pool: &PgPool) -> Uuid {
    let order = NewOrder {
        id: Uuid::now_v7(),
        customer_id: Uuid::new_v4(),
        customer_email: "store@shop.test".to_owned(),
        customer_name: "Store Test".to_owned(),
        currency: "EUR".to_owned(),
        lines: vec![LineRow {
            product_id: Uuid::new_v4(),
            name: "Thing".to_owned(),
            quantity: 2,
            unit_price: 150,
            tax: Some(48),
        }],
        subtotal: 300,
        shipping: 490,
        tax: 126,
        total: 790,
        prices_include_tax: true,
        shipping_method: "standard".to_owned(),
        delivery_min_days: 1,
        delivery_max_days: 3,
        address: ShippingAddress {
            name: "Store Test".to_owned(),
            line1: "Alexanderplatz 1".to_owned(),
            line2: None,
            city: "Berlin".to_owned(),
            region: None,
            postal_code: "10178".to_owned(),
            country: "DE".to_owned(),
            phone: None,
        },
        payment_method: "pm_card_visa".to_owned(),
        idempotency_key: Uuid::new_v4().to_string(),
        request_hash: vec![1, 2, 3],
        pay_by: Utc::now() + Duration::from_secs(600),
    };
    assert!(
        insert(pool, &order, None)
            .await
            .expect("the insert")
            .is_some()
    );
    assert!(
        insert(pool, &order, None)
            .await
            .expect("the second insert")
            .is_none(),
        "one per key"
    );
    order.id
}

fn pay(order_id: Uuid, version: i64, caused_by: Option<Uuid>) -> Transition<'static> {
    Transition {
        order_id,
        from: State::Pending,
        to: State::Paid,
        version,
        actor: "payment",
        reason: None,
        payment_id: Some(Uuid::new_v4()),
        tracking_number: None,
        carrier: None,
        event: None,
        caused_by,
        trace_id: None,
    }
}

async fn history_len(pool: &PgPool, order_id: Uuid) -> usize {
    history(pool, order_id).await.expect("the history").len()
}

#[tokio::test]
async fn a_change_from_a_stale_version_is_refused() {
    let pool = pool().await;
    let id = pending_order(&pool).await;
    assert_eq!(
        apply(&pool, pay(id, 1, None)).await.unwrap(),
        Applied::Done(2)
    );
    // A second holder of the order, still at version 1, must reload instead of overwriting.
    assert_eq!(
        apply(&pool, pay(id, 1, None)).await.unwrap(),
        Applied::Stale
    );
    let stored = order(&pool, id).await.unwrap().expect("the order");
    assert_eq!((stored.row.state(), stored.row.version), (State::Paid, 2));
    assert_eq!(history_len(&pool, id).await, 2, "placed, paid");
}

#[tokio::test]
async fn of_two_holders_changing_at_once_exactly_one_wins() {
    let pool = pool().await;
    for _ in 0..20 {
        let id = pending_order(&pool).await;
        let (first, second) = tokio::join!(
            apply(&pool, pay(id, 1, None)),
            apply(&pool, pay(id, 1, None))
        );
        let mut outcomes = [first.unwrap(), second.unwrap()];
        outcomes.sort_by_key(|applied| format!("{applied:?}"));
        assert_eq!(outcomes, [Applied::Done(2), Applied::Stale]);
        assert_eq!(history_len(&pool, id).await, 2);
    }
}

#[tokio::test]
async fn one_event_handled_twice_at_once_changes_the_order_once() {
    let pool = pool().await;
    for _ in 0..20 {
        let id = pending_order(&pool).await;
        let event = Uuid::new_v4();
        // A redelivery racing the first delivery (two replicas after a rebalance).
        let (first, second) = tokio::join!(
            apply(&pool, pay(id, 1, Some(event))),
            apply(&pool, pay(id, 1, Some(event)))
        );
        let mut outcomes = [first.unwrap(), second.unwrap()];
        outcomes.sort_by_key(|applied| format!("{applied:?}"));
        assert_eq!(outcomes[0], Applied::Done(2));
        assert!(matches!(outcomes[1], Applied::Stale | Applied::SeenBefore));
        assert_eq!(history_len(&pool, id).await, 2, "placed, paid once");
        let recorded: i64 = sqlx::query_scalar(
            "select count(*) from processed_events where event_id = $1 and consumer = $2",
        )
        .bind(event)
        .bind(CONSUMER)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(recorded, 1);
    }
}

#[tokio::test]
async fn an_event_seen_before_changes_nothing_even_at_the_current_version() {
    let pool = pool().await;
    let id = pending_order(&pool).await;
    let event = Uuid::new_v4();
    assert_eq!(
        apply(&pool, pay(id, 1, Some(event))).await.unwrap(),
        Applied::Done(2)
    );
    let mut again = pay(id, 2, Some(event));
    again.from = State::Paid;
    again.to = State::Shipped;
    assert_eq!(apply(&pool, again).await.unwrap(), Applied::SeenBefore);
    let stored = order(&pool, id).await.unwrap().expect("the order");
    assert_eq!((stored.row.state(), stored.row.version), (State::Paid, 2));
}

#[tokio::test]
async fn a_transition_and_its_event_are_committed_together() {
    let pool = pool().await;
    let id = pending_order(&pool).await;
    let mut change = pay(id, 1, None);
    let event_id = Uuid::new_v4();
    change.event = Some(Envelope::OrderPaid(shop_schemas::OrderPaid {
        event_id,
        occurred_at: shop_schemas::now_millis(),
        order_id: id,
        customer_id: Uuid::new_v4(),
        payment_id: Uuid::new_v4(),
        amount: 300,
        currency: "EUR".to_owned(),
    }));
    apply(&pool, change).await.unwrap();
    let outboxed: Vec<String> =
        sqlx::query_scalar("select event_type from outbox where message_key = $1 order by id")
            .bind(id.to_string())
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(outboxed, ["OrderPlaced", "OrderPaid"]);
    // A stale change writes no event either.
    let mut stale = pay(id, 1, None);
    stale.event = Some(Envelope::OrderPaid(shop_schemas::OrderPaid {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        order_id: id,
        customer_id: Uuid::new_v4(),
        payment_id: Uuid::new_v4(),
        amount: 300,
        currency: "EUR".to_owned(),
    }));
    assert_eq!(apply(&pool, stale).await.unwrap(), Applied::Stale);
    let count: i64 = sqlx::query_scalar("select count(*) from outbox where message_key = $1")
        .bind(id.to_string())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 2);
}
