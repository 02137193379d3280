//! Refunds in the payment database: recorded `pending` before the provider hears of them, then
//! settled with `PaymentRefunded` in the outbox.

use chrono::{DateTime, Utc};
use shop_schemas::Envelope;
use sqlx::PgPool;
use uuid::Uuid;

use super::{RefundRow, attempt_row, first_sight};

pub struct NewRefund<'a> {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub amount: i64,
    pub reason: Option<&'a str>,
    pub requested_by: &'a str,
    pub lease_until: DateTime<Utc>,
    /// The event that asked for it (an order cancelled), recorded in the inbox.
    pub caused_by: Option<Uuid>,
}

/// What became of a refund asked for.
#[derive(Debug)]
pub enum RefundAsked {
    Recorded(RefundRow),
    /// Its cause (an order cancelled) was seen before.
    SeenBefore,
    /// More than is left to refund, counting refunds still pending: another replica's actor of
    /// the same payment got there first.
    DoesNotFit {
        left: i64,
    },
}

/// Records a refund before the provider hears of it, if it still fits the payment.
pub async fn add_refund(pool: &PgPool, refund: &NewRefund<'_>) -> Result<RefundAsked, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    if !first_sight(&mut transaction, None, refund.caused_by).await? {
        return Ok(RefundAsked::SeenBefore);
    }
    // The payment row locked first, in a statement of its own: a statement that waits for the
    // lock still reads from the snapshot it started with (READ COMMITTED), so the sum below
    // must come after, to see a refund another transaction committed meanwhile.
    let amount: i64 = sqlx::query_scalar("select amount from payments where id = $1 for update")
        .bind(refund.payment_id)
        .fetch_one(&mut *transaction)
        .await?;
    let asked_before: i64 = sqlx::query_scalar(
        "select coalesce(sum(amount), 0)::bigint from refunds
         where payment_id = $1 and status in ('pending', 'succeeded')",
    )
    .bind(refund.payment_id)
    .fetch_one(&mut *transaction)
    .await?;
    let left = amount - asked_before;
    if refund.amount > left {
        // What was seen (an order cancelled) still counts.
        transaction.commit().await?;
        return Ok(RefundAsked::DoesNotFit { left });
    }
    if refund.caused_by.is_some() {
        sqlx::query("update payments set order_cancelled = true where id = $1")
            .bind(refund.payment_id)
            .execute(&mut *transaction)
            .await?;
    }
    let row: RefundRow = sqlx::query_as(
        "insert into refunds (id, payment_id, amount, reason, requested_by, status, attempts,
             next_attempt_at)
         values ($1, $2, $3, $4, $5, 'pending', 1, $6) returning *",
    )
    .bind(refund.id)
    .bind(refund.payment_id)
    .bind(refund.amount)
    .bind(refund.reason)
    .bind(refund.requested_by)
    .bind(refund.lease_until)
    .fetch_one(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(RefundAsked::Recorded(row))
}

/// A refund's outcome: on success the payment's refunded amount grows (to `refunded` when it
/// covers everything) and `PaymentRefunded` goes to the outbox.
pub async fn settle_refund(
    pool: &PgPool,
    payment_id: Uuid,
    refund_id: Uuid,
    amount: i64,
    outcome: Result<&str, &str>,
    event: Option<Envelope>,
    trace_id: Option<&str>,
) -> Result<(), shop_bridge::BridgeError> {
    let mut transaction = pool.begin().await?;
    let (status, reference, reason) = match outcome {
        Ok(reference) => ("succeeded", Some(reference), None),
        Err(reason) => ("failed", None, Some(reason)),
    };
    let updated = sqlx::query(
        "update refunds set status = $2, provider_reference = $3, failure_reason = $4,
             next_attempt_at = null, updated_at = now()
         where id = $1 and status = 'pending'",
    )
    .bind(refund_id)
    .bind(status)
    .bind(reference)
    .bind(reason)
    .execute(&mut *transaction)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(());
    }
    if outcome.is_ok() {
        sqlx::query(
            "update payments set amount_refunded = amount_refunded + $2,
                 status = case when amount_refunded + $2 >= amount then 'refunded' else status end,
                 updated_at = now()
             where id = $1",
        )
        .bind(payment_id)
        .bind(amount)
        .execute(&mut *transaction)
        .await?;
    }
    attempt_row(
        &mut transaction,
        payment_id,
        Some(refund_id),
        &format!("refund {status}"),
        reason,
    )
    .await?;
    if let Some(event) = event {
        shop_bridge::outbox::enqueue(&mut transaction, event, trace_id).await?;
    }
    shop_bridge::outbox::commit(transaction, pool).await?;
    Ok(())
}
