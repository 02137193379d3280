//! What two replicas of the payment service might both do to one payment, against the real
//! PostgreSQL dev/test started: exactly one of them does it.

use chrono::{Duration, Utc};
use shop_config::Settings;
use shop_payment::store::{self, NewPayment, NewRefund, RefundAsked};
use sqlx::PgPool;
use uuid::Uuid;

async fn database() -> PgPool {
    let settings = Settings::from_env().expect("the settings dev/test exports are valid");
    shop_web::postgres::connect(
        &settings.postgres,
        "shop_payment_replicas_test",
        &[&shop_payment::store::MIGRATOR, &shop_bridge::migrator()],
    )
    .await
    .expect("the test database")
}

/// A payment of 1000 recorded and due now.
async fn payment(pool: &PgPool) -> Uuid {
    let new = NewPayment {
        id: Uuid::now_v7(),
        order_id: Uuid::new_v4(),
        customer_id: Uuid::new_v4(),
        amount: 1000,
        currency: "EUR",
        payment_method: "card",
        provider: "simulated",
        next_attempt_at: Utc::now(),
        pay_by: None,
    };
    store::record(pool, &new, Uuid::new_v4())
        .await
        .expect("recorded")
        .expect("first sight");
    new.id
}

#[tokio::test]
async fn one_replica_takes_a_charge_and_the_other_waits_for_its_lease() {
    let pool = database().await;
    let id = payment(&pool).await;
    let lease = Utc::now() + Duration::seconds(30);

    let (a, b) = tokio::join!(
        store::begin_attempt(&pool, id, lease, "payment-a"),
        store::begin_attempt(&pool, id, lease, "payment-b"),
    );
    let (a, b) = (a.expect("a's claim"), b.expect("b's claim"));
    assert_eq!(
        [a, b].iter().filter(|taken| taken.is_some()).count(),
        1,
        "exactly one replica sends the charge: {a:?} {b:?}"
    );
    let (winner, loser) = if a.is_some() {
        ("payment-a", "payment-b")
    } else {
        ("payment-b", "payment-a")
    };

    // The other one is refused while the lease runs …
    let again = store::begin_attempt(&pool, id, lease, loser).await.unwrap();
    assert_eq!(again, None, "the lease holds");
    // … and the holder, restarted under its own name, takes it back at once.
    let restarted = store::begin_attempt(&pool, id, lease, winner)
        .await
        .unwrap();
    assert_eq!(
        restarted,
        Some(2),
        "a restarted replica takes its own lease back"
    );
    let due = store::due(&pool, 10_000, Some(winner)).await.unwrap();
    let row = store::by_id(&pool, id).await.unwrap().unwrap().row;
    assert!(
        due.contains(&row.order_id),
        "due for its holder's first sweep"
    );
    let due = store::due(&pool, 10_000, None).await.unwrap();
    assert!(!due.contains(&row.order_id), "not due for anyone else");

    // Once the lease has run out, the other replica may take it.
    sqlx::query("update payments set next_attempt_at = now() - interval '1 second' where id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let taken = store::begin_attempt(&pool, id, lease, loser).await.unwrap();
    assert_eq!(taken, Some(3), "a lease that ran out is anyone's");
}

#[tokio::test]
async fn two_replicas_refunding_one_cancelled_charge_refund_it_once() {
    let pool = database().await;
    let id = payment(&pool).await;
    sqlx::query("update payments set status = 'succeeded', next_attempt_at = null where id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let refund = |caused_by| NewRefund {
        id: Uuid::now_v7(),
        payment_id: id,
        amount: 1000,
        reason: Some("the order was cancelled"),
        requested_by: "system",
        lease_until: Utc::now(),
        caused_by,
    };
    // One replica on the OrderCancelled event, the other from its sweep, at the same moment.
    let (on_event, on_sweep) = (refund(Some(Uuid::new_v4())), refund(None));
    let (a, b) = tokio::join!(
        store::add_refund(&pool, &on_event),
        store::add_refund(&pool, &on_sweep),
    );
    let (a, b) = (a.expect("a's refund"), b.expect("b's refund"));
    let recorded = [&a, &b]
        .iter()
        .filter(|asked| matches!(asked, RefundAsked::Recorded(_)))
        .count();
    assert_eq!(recorded, 1, "one refund of the whole charge: {a:?} {b:?}");
    assert!(
        [&a, &b]
            .iter()
            .any(|asked| matches!(asked, RefundAsked::DoesNotFit { left: 0 })),
        "the other finds nothing left: {a:?} {b:?}"
    );
    let third = store::add_refund(&pool, &refund(None)).await.unwrap();
    assert!(
        matches!(third, RefundAsked::DoesNotFit { left: 0 }),
        "{third:?}"
    );
    let money_out: i64 = sqlx::query_scalar(
        "select coalesce(sum(amount), 0)::bigint from refunds where payment_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(money_out, 1000);
}
