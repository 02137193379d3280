//! The payment database: payments, refunds, the provider attempts, the webhook events seen, and
//! (through `shop_bridge`) the outbox and the inbox. Every change that publishes an event writes
//! it to the outbox in the same transaction.

use chrono::{DateTime, Utc};
use shop_schemas::Envelope;
use sqlx::{FromRow, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::provider::CustomerAction;
use crate::state::Status;

mod refunds;

pub use refunds::{NewRefund, RefundAsked, add_refund, settle_refund};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The inbox name of the service's order-event handler.
pub const CONSUMER: &str = "payment.orders";

#[derive(Debug, Clone, FromRow)]
pub struct PaymentRow {
    pub id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub amount: i64,
    pub currency: String,
    pub payment_method: String,
    pub status: String,
    pub provider: String,
    pub idempotency_key: String,
    pub provider_reference: Option<String>,
    pub failure_code: Option<String>,
    pub failure_reason: Option<String>,
    pub amount_refunded: i64,
    pub order_cancelled: bool,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The replica whose attempt holds the lease (`next_attempt_at`), if one ever did.
    pub leased_by: Option<String>,
    /// While the charge waits for its customer (3-D Secure): the PaymentIntent's client secret
    /// and Stripe's `next_action` (JSON text).
    pub client_secret: Option<String>,
    pub next_action: Option<String>,
    /// When the order's payment window ends, if its `OrderPlaced` said (v3).
    pub pay_by: Option<DateTime<Utc>>,
}

impl PaymentRow {
    pub fn status(&self) -> Status {
        Status::parse(&self.status).unwrap_or(Status::Processing)
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct RefundRow {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub amount: i64,
    pub reason: Option<String>,
    pub requested_by: String,
    pub status: String,
    pub provider_reference: Option<String>,
    pub failure_reason: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Payment {
    pub row: PaymentRow,
    pub refunds: Vec<RefundRow>,
}

impl Payment {
    /// What may still be refunded: the amount less every refund not failed.
    pub fn refundable(&self) -> i64 {
        if self.row.status() != Status::Succeeded {
            return 0;
        }
        let taken: i64 = self
            .refunds
            .iter()
            .filter(|refund| refund.status != "failed")
            .map(|refund| refund.amount)
            .sum();
        (self.row.amount - taken).max(0)
    }

    pub fn pending_refunds(&self) -> impl Iterator<Item = &RefundRow> {
        self.refunds
            .iter()
            .filter(|refund| refund.status == "pending")
    }
}

pub struct NewPayment<'a> {
    pub id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub amount: i64,
    pub currency: &'a str,
    pub payment_method: &'a str,
    pub provider: &'a str,
    pub next_attempt_at: DateTime<Utc>,
    pub pay_by: Option<DateTime<Utc>>,
}

/// The provider's idempotency key of an order's charge: derived, so every attempt, process
/// and replica sends the same one.
pub fn charge_key(order_id: Uuid) -> String {
    format!("shop-order-{order_id}")
}

pub fn refund_key(refund_id: Uuid) -> String {
    format!("shop-refund-{refund_id}")
}

/// Records the payment of an order (once, whatever is redelivered), with the causing event; the
/// new row, or `None` when there was one already.
pub async fn record(
    pool: &PgPool,
    payment: &NewPayment<'_>,
    event_id: Uuid,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    // One statement: the event into the inbox and, the first time only, the payment.
    sqlx::query_as(
        "with inbox as (
             insert into processed_events (event_id, consumer) values ($10, $11)
             on conflict do nothing
             returning event_id
         )
         insert into payments (id, order_id, customer_id, amount, currency, payment_method,
             status, provider, idempotency_key, next_attempt_at, pay_by)
         select $1, $2, $3, $4, $5, $6, 'requires_payment_method', $7, $8, $9, $12 from inbox
         on conflict (order_id) do nothing
         returning *",
    )
    .bind(payment.id)
    .bind(payment.order_id)
    .bind(payment.customer_id)
    .bind(payment.amount)
    .bind(payment.currency)
    .bind(payment.payment_method)
    .bind(payment.provider)
    .bind(charge_key(payment.order_id))
    .bind(payment.next_attempt_at)
    .bind(event_id)
    .bind(CONSUMER)
    .bind(payment.pay_by)
    .fetch_optional(pool)
    .await
}

async fn refunds_of(pool: &PgPool, payment_id: Uuid) -> Result<Vec<RefundRow>, sqlx::Error> {
    sqlx::query_as("select * from refunds where payment_id = $1 order by created_at, id")
        .bind(payment_id)
        .fetch_all(pool)
        .await
}

/// The payment of an order.
pub async fn of_order(pool: &PgPool, order_id: Uuid) -> Result<Option<Payment>, sqlx::Error> {
    let row: Option<PaymentRow> = sqlx::query_as("select * from payments where order_id = $1")
        .bind(order_id)
        .fetch_optional(pool)
        .await?;
    with_refunds(pool, row).await
}

pub async fn by_id(pool: &PgPool, id: Uuid) -> Result<Option<Payment>, sqlx::Error> {
    let row: Option<PaymentRow> = sqlx::query_as("select * from payments where id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    with_refunds(pool, row).await
}

/// The order of the payment the provider knows as `reference`.
pub async fn order_of_reference(
    pool: &PgPool,
    reference: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("select order_id from payments where provider_reference = $1")
        .bind(reference)
        .fetch_optional(pool)
        .await
}

async fn with_refunds(
    pool: &PgPool,
    row: Option<PaymentRow>,
) -> Result<Option<Payment>, sqlx::Error> {
    match row {
        None => Ok(None),
        Some(row) => {
            let refunds = refunds_of(pool, row.id).await?;
            Ok(Some(Payment { row, refunds }))
        }
    }
}

pub struct Filter {
    pub customer_id: Option<Uuid>,
    pub order_id: Option<Uuid>,
    pub page: u32,
    pub per_page: u32,
}

/// Payments matching `filter`, newest first, and how many match on all pages.
pub async fn list(pool: &PgPool, filter: &Filter) -> Result<(Vec<Payment>, i64), sqlx::Error> {
    let rows: Vec<PaymentRow> = sqlx::query_as(
        "select * from payments
         where ($1::uuid is null or customer_id = $1) and ($2::uuid is null or order_id = $2)
         order by created_at desc, id desc limit $3 offset $4",
    )
    .bind(filter.customer_id)
    .bind(filter.order_id)
    .bind(i64::from(filter.per_page))
    .bind(i64::from(filter.page.saturating_sub(1)) * i64::from(filter.per_page))
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(
        "select count(*) from payments
         where ($1::uuid is null or customer_id = $1) and ($2::uuid is null or order_id = $2)",
    )
    .bind(filter.customer_id)
    .bind(filter.order_id)
    .fetch_one(pool)
    .await?;
    let mut payments = Vec::with_capacity(rows.len());
    for row in rows {
        let refunds = refunds_of(pool, row.id).await?;
        payments.push(Payment { row, refunds });
    }
    Ok((payments, total))
}

async fn attempt_row(
    transaction: &mut Transaction<'_, Postgres>,
    payment_id: Uuid,
    refund_id: Option<Uuid>,
    outcome: &str,
    detail: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into payment_attempts (payment_id, refund_id, outcome, detail) values ($1, $2, $3, $4)",
    )
    .bind(payment_id)
    .bind(refund_id)
    .bind(outcome)
    .bind(detail)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

/// A charge request is about to go to `instance`'s provider call: `processing`, leased to it
/// until `lease_until`. Taken only if the charge is due, or leased to `instance` already (a
/// restart under the same name): `None` when another replica holds it, or nothing is left to do.
/// The attempts so far, this one included.
pub async fn begin_attempt(
    pool: &PgPool,
    payment_id: Uuid,
    lease_until: DateTime<Utc>,
    instance: &str,
) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(
        "update payments set status = 'processing', attempts = attempts + 1,
             next_attempt_at = $2, leased_by = $3, updated_at = now()
         where id = $1
           and status in ('requires_payment_method', 'processing')
           and next_attempt_at is not null
           and (next_attempt_at <= now() + interval '50 milliseconds' or leased_by = $3)
         returning attempts",
    )
    .bind(payment_id)
    .bind(lease_until)
    .bind(instance)
    .fetch_optional(pool)
    .await
}

/// The provider failed transiently: try again at `at`.
pub async fn retry_later(
    pool: &PgPool,
    payment_id: Uuid,
    refund_id: Option<Uuid>,
    at: DateTime<Utc>,
    detail: &str,
) -> Result<(), sqlx::Error> {
    let mut transaction = pool.begin().await?;
    // A payment's attempts are counted as they start; a refund's as they fail.
    let query = match refund_id {
        Some(refund_id) => sqlx::query(
            "update refunds set next_attempt_at = $2, attempts = attempts + 1, updated_at = now()
             where id = $1",
        )
        .bind(refund_id),
        None => sqlx::query(
            "update payments set next_attempt_at = $2, updated_at = now() where id = $1",
        )
        .bind(payment_id),
    };
    query.bind(at).execute(&mut *transaction).await?;
    attempt_row(
        &mut transaction,
        payment_id,
        refund_id,
        "retry",
        Some(detail),
    )
    .await?;
    transaction.commit().await
}

/// The charge waits for the customer or the bank; its outcome will come by webhook.
pub async fn await_webhook(
    pool: &PgPool,
    payment_id: Uuid,
    reference: &str,
    action: Option<&CustomerAction>,
) -> Result<(), sqlx::Error> {
    let mut transaction = pool.begin().await?;
    sqlx::query(
        "update payments set provider_reference = $2, client_secret = $3, next_action = $4,
             next_attempt_at = null, updated_at = now()
         where id = $1",
    )
    .bind(payment_id)
    .bind(reference)
    .bind(action.map(|action| action.client_secret.as_str()))
    .bind(action.map(|action| action.next_action.to_string()))
    .execute(&mut *transaction)
    .await?;
    attempt_row(&mut transaction, payment_id, None, "pending", None).await?;
    transaction.commit().await
}

/// A charge's outcome, and what caused it to be known.
pub struct Settle<'a> {
    pub payment_id: Uuid,
    /// The status it must still be in (another writer's change is not overwritten).
    pub from: Status,
    pub to: Status,
    pub reference: Option<&'a str>,
    pub failure: Option<(&'a str, &'a str)>,
    pub event: Option<Envelope>,
    /// A Stripe webhook event `(id, type)` that reported it, recorded once.
    pub webhook: Option<(&'a str, &'a str)>,
    /// An event from Kafka that caused it, recorded in the inbox.
    pub caused_by: Option<Uuid>,
    pub trace_id: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// The webhook or event was applied before: nothing changed.
    SeenBefore,
    /// The payment was not in `from` any more.
    Stale,
}

pub async fn settle(
    pool: &PgPool,
    settle: Settle<'_>,
) -> Result<Applied, shop_bridge::BridgeError> {
    let (code, reason) = settle.failure.unzip();
    let (webhook_id, webhook_type) = settle.webhook.unzip();
    let event = settle
        .event
        .as_ref()
        .map(shop_bridge::outbox::OutboxRow::of)
        .transpose()?;
    // One statement (one round trip, one commit): the webhook or event recorded as seen, the
    // status moved on only from `from`, the attempt and the event — all of it, or nothing when
    // it was seen before or another writer moved the payment first (a twin racing this one waits
    // for the row's lock and then finds the status changed).
    let (seen_before, changed): (bool, bool) = sqlx::query_as(
        "with seen as (
             select exists (select 1 from webhook_events where id = $7)
                 or exists (select 1 from processed_events where consumer = $10 and event_id = $9)
                 as before
         ), changed as (
             update payments set status = $3, provider_reference = coalesce($4, provider_reference),
                 failure_code = coalesce($5, failure_code),
                 failure_reason = coalesce($6, failure_reason),
                 client_secret = null, next_action = null, next_attempt_at = null,
                 updated_at = now()
             where id = $1 and status = $2 and not (select before from seen)
             returning id
         ), webhook as (
             insert into webhook_events (id, type) select $7, $8 from changed
             where $7::text is not null
             on conflict do nothing
         ), inbox as (
             insert into processed_events (event_id, consumer) select $9, $10 from changed
             where $9::uuid is not null
             on conflict do nothing
         ), attempt as (
             insert into payment_attempts (payment_id, outcome, detail)
             select id, $3, $6 from changed
         ), event as (
             insert into outbox (topic, message_key, event_type, event_id, payload, fingerprint,
                                 trace_id)
             select $11, $12, $13, $14, $15, $16, $17 from changed where $14::uuid is not null
         )
         select (select before from seen), exists (select 1 from changed)",
    )
    .bind(settle.payment_id)
    .bind(settle.from.as_str())
    .bind(settle.to.as_str())
    .bind(settle.reference)
    .bind(code)
    .bind(reason)
    .bind(webhook_id)
    .bind(webhook_type)
    .bind(settle.caused_by)
    .bind(CONSUMER)
    .bind(event.as_ref().map(|event| event.topic.as_str()))
    .bind(event.as_ref().map(|event| event.message_key.as_str()))
    .bind(event.as_ref().map(|event| event.event_type.as_str()))
    .bind(event.as_ref().map(|event| event.event_id))
    .bind(event.as_ref().map(|event| event.payload.as_slice()))
    .bind(event.as_ref().map(|event| event.fingerprint.as_str()))
    .bind(shop_bridge::outbox::trace_of(settle.trace_id))
    .fetch_one(pool)
    .await?;
    if seen_before {
        return Ok(Applied::SeenBefore);
    }
    if !changed {
        return Ok(Applied::Stale);
    }
    if event.is_some() {
        shop_bridge::outbox::wake(pool);
    }
    Ok(Applied::Done)
}

/// Records a webhook event or an inbox entry; `false` when it was seen before.
async fn first_sight(
    transaction: &mut Transaction<'_, Postgres>,
    webhook: Option<(&str, &str)>,
    caused_by: Option<Uuid>,
) -> Result<bool, sqlx::Error> {
    if let Some((id, kind)) = webhook {
        let inserted = sqlx::query(
            "insert into webhook_events (id, type) values ($1, $2) on conflict do nothing",
        )
        .bind(id)
        .bind(kind)
        .execute(&mut **transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(false);
        }
    }
    if let Some(event_id) = caused_by
        && !shop_bridge::inbox::first_time(transaction, CONSUMER, event_id).await?
    {
        return Ok(false);
    }
    Ok(true)
}

/// Records a webhook event or a Kafka event that changes nothing, so it is not looked at again.
pub async fn mark_seen(
    pool: &PgPool,
    webhook: Option<(&str, &str)>,
    caused_by: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    let mut transaction = pool.begin().await?;
    first_sight(&mut transaction, webhook, caused_by).await?;
    transaction.commit().await
}

/// The order was cancelled while its charge's outcome is unknown: a success will be refunded.
pub async fn mark_order_cancelled(
    pool: &PgPool,
    payment_id: Uuid,
    caused_by: Uuid,
) -> Result<Applied, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    if !first_sight(&mut transaction, None, Some(caused_by)).await? {
        return Ok(Applied::SeenBefore);
    }
    sqlx::query("update payments set order_cancelled = true, updated_at = now() where id = $1")
        .bind(payment_id)
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(Applied::Done)
}

/// Orders whose payment has work left: a charge not sent or whose lease ran out, a pending
/// refund, or a cancelled order's charge that succeeded and was never refunded. With
/// `restarted` (this replica's name, at start), its own leases count as run out too: no actor of
/// the replica holds anything yet. Refund leases count as run out then as well: the provider
/// refunds one refund id once.
pub async fn due(
    pool: &PgPool,
    limit: i64,
    restarted: Option<&str>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "select order_id from payments
         where status in ('requires_payment_method', 'processing')
           and next_attempt_at is not null
           and (next_attempt_at <= now() or leased_by = $2)
         union
         select p.order_id from refunds r join payments p on p.id = r.payment_id
         where r.status = 'pending' and ($2 is not null or r.next_attempt_at <= now())
         union
         select order_id from payments p
         where status = 'succeeded' and order_cancelled
           and not exists (select 1 from refunds r where r.payment_id = p.id and r.requested_by = 'system')
         limit $1",
    )
    .bind(limit)
    .bind(restarted)
    .fetch_all(pool)
    .await
}
