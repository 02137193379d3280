//! The `shop_order` database: orders, their lines and history, the outbox and the inbox.
//!
//! Every change of an order is one transaction: the new state (guarded by the version the actor
//! last saw), a history row, the event in the outbox and, for a change caused by an event, the
//! event's id in the inbox.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use shop_schemas::{Envelope, OrderLine, OrderPlaced, ShippingAddress};
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::error::OrderError;
use crate::state::State;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The inbox's name for this service's consumers.
pub const CONSUMER: &str = "order";

#[derive(Debug, Clone, FromRow)]
pub struct OrderRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub customer_email: String,
    pub customer_name: String,
    pub state: String,
    pub version: i64,
    pub currency: String,
    pub total: i64,
    pub payment_method: String,
    pub idempotency_key: String,
    pub request_hash: Vec<u8>,
    pub payment_id: Option<Uuid>,
    pub tracking_number: Option<String>,
    pub cancel_reason: Option<String>,
    pub pay_by: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Absent for orders placed before shipping and tax existed.
    pub subtotal: Option<i64>,
    pub shipping: Option<i64>,
    pub tax: Option<i64>,
    pub prices_include_tax: Option<bool>,
    pub shipping_method: Option<String>,
    pub delivery_min_days: Option<i32>,
    pub delivery_max_days: Option<i32>,
    pub ship_name: Option<String>,
    pub ship_line1: Option<String>,
    pub ship_line2: Option<String>,
    pub ship_city: Option<String>,
    pub ship_region: Option<String>,
    pub ship_postal_code: Option<String>,
    pub ship_country: Option<String>,
    pub ship_phone: Option<String>,
    pub carrier: Option<String>,
}

impl OrderRow {
    /// The copy of the address the order ships to, if it has one.
    pub fn shipping_address(&self) -> Option<ShippingAddress> {
        Some(ShippingAddress {
            name: self.ship_name.clone()?,
            line1: self.ship_line1.clone()?,
            line2: self.ship_line2.clone(),
            city: self.ship_city.clone()?,
            region: self.ship_region.clone(),
            postal_code: self.ship_postal_code.clone()?,
            country: self.ship_country.clone()?,
            phone: self.ship_phone.clone(),
        })
    }

    pub fn state(&self) -> State {
        // The table's check allows only the names `State` knows.
        State::parse(&self.state).unwrap_or(State::Pending)
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct LineRow {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i32,
    pub unit_price: i64,
    /// The line's tax (absent for orders placed before tax existed).
    pub tax: Option<i64>,
}

#[derive(Debug, Clone, FromRow)]
pub struct HistoryRow {
    pub from_state: Option<String>,
    pub to_state: String,
    pub actor: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// An order with its lines.
#[derive(Debug, Clone)]
pub struct Order {
    pub row: OrderRow,
    pub lines: Vec<LineRow>,
}

const COLUMNS: &str = "id, customer_id, customer_email, customer_name, state, version, currency,
    total, payment_method, idempotency_key, request_hash, payment_id, tracking_number,
    cancel_reason, pay_by, created_at, updated_at, subtotal, shipping, tax, prices_include_tax,
    shipping_method, delivery_min_days, delivery_max_days, ship_name, ship_line1, ship_line2,
    ship_city, ship_region, ship_postal_code, ship_country, ship_phone, carrier";

pub async fn order(pool: &PgPool, id: Uuid) -> Result<Option<Order>, OrderError> {
    let row: Option<OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from orders where id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let lines = lines(pool, &[id]).await?;
    Ok(Some(Order { row, lines }))
}

async fn lines(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<LineRow>, OrderError> {
    Ok(sqlx::query_as(
        "select product_id, name, quantity, unit_price, tax from order_lines
         where order_id = any($1) order by order_id, line_no",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

pub async fn by_key(
    pool: &PgPool,
    customer_id: Uuid,
    key: &str,
) -> Result<Option<Order>, OrderError> {
    let id: Option<Uuid> =
        sqlx::query_scalar("select id from orders where customer_id = $1 and idempotency_key = $2")
            .bind(customer_id)
            .bind(key)
            .fetch_optional(pool)
            .await?;
    match id {
        Some(id) => order(pool, id).await,
        None => Ok(None),
    }
}

pub async fn history(pool: &PgPool, id: Uuid) -> Result<Vec<HistoryRow>, OrderError> {
    Ok(sqlx::query_as(
        "select from_state, to_state, actor, reason, at from order_history
         where order_id = $1 order by id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?)
}

/// Which orders a listing shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub customer_id: Option<Uuid>,
    pub state: Option<State>,
    /// ISO 3166-1 alpha-2 of the address it ships to.
    pub country: Option<String>,
    pub page: u32,
    pub per_page: u32,
}

/// One page of orders, newest first, with their lines; and how many match in all.
pub async fn list(pool: &PgPool, filter: &Filter) -> Result<(Vec<Order>, i64), OrderError> {
    let mut query = QueryBuilder::<Postgres>::new(format!(
        "select {COLUMNS}, count(*) over () as matching from orders where true"
    ));
    if let Some(customer) = filter.customer_id {
        query.push(" and customer_id = ").push_bind(customer);
    }
    if let Some(state) = filter.state {
        query.push(" and state = ").push_bind(state.as_str());
    }
    if let Some(country) = &filter.country {
        query
            .push(" and ship_country = ")
            .push_bind(country.clone());
    }
    query
        .push(" order by created_at desc, id desc limit ")
        .push_bind(i64::from(filter.per_page))
        .push(" offset ")
        .push_bind(i64::from(filter.page.saturating_sub(1)) * i64::from(filter.per_page));

    #[derive(FromRow)]
    struct Listed {
        #[sqlx(flatten)]
        row: OrderRow,
        matching: i64,
    }
    let listed: Vec<Listed> = query.build_query_as().fetch_all(pool).await?;
    let total = match listed.first() {
        Some(first) => first.matching,
        None => count(pool, filter).await?,
    };
    let ids: Vec<Uuid> = listed.iter().map(|listed| listed.row.id).collect();
    let mut lines_of: HashMap<Uuid, Vec<LineRow>> = HashMap::new();
    #[derive(FromRow)]
    struct ListedLine {
        order_id: Uuid,
        #[sqlx(flatten)]
        line: LineRow,
    }
    let rows: Vec<ListedLine> = sqlx::query_as(
        "select order_id, product_id, name, quantity, unit_price, tax from order_lines
         where order_id = any($1) order by order_id, line_no",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    for row in rows {
        lines_of.entry(row.order_id).or_default().push(row.line);
    }
    let orders = listed
        .into_iter()
        .map(|listed| Order {
            lines: lines_of.remove(&listed.row.id).unwrap_or_default(),
            row: listed.row,
        })
        .collect();
    Ok((orders, total))
}

/// Orders on a page past the last still need the total.
async fn count(pool: &PgPool, filter: &Filter) -> Result<i64, OrderError> {
    Ok(sqlx::query_scalar(
        "select count(*) from orders
         where ($1::uuid is null or customer_id = $1) and ($2::text is null or state = $2)
           and ($3::text is null or ship_country = $3)",
    )
    .bind(filter.customer_id)
    .bind(filter.state.map(State::as_str))
    .bind(filter.country.as_deref())
    .fetch_one(pool)
    .await?)
}

/// A new order, as checkout stores it.
pub struct NewOrder {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub customer_email: String,
    pub customer_name: String,
    pub currency: String,
    /// Priced: each line carries its tax.
    pub lines: Vec<LineRow>,
    pub subtotal: i64,
    pub shipping: i64,
    pub tax: i64,
    /// What is charged.
    pub total: i64,
    pub prices_include_tax: bool,
    pub shipping_method: String,
    pub delivery_min_days: i32,
    pub delivery_max_days: i32,
    pub address: ShippingAddress,
    pub payment_method: String,
    pub idempotency_key: String,
    pub request_hash: Vec<u8>,
    pub pay_by: DateTime<Utc>,
}

/// Stores a pending order, its lines, its first history row and `OrderPlaced`, in one statement
/// (one round trip, one commit); the order as stored. `Ok(None)`: an order with this customer's
/// idempotency key exists already.
pub async fn insert(
    pool: &PgPool,
    order: &NewOrder,
    trace_id: Option<&str>,
) -> Result<Option<Order>, OrderError> {
    let placed = OrderPlaced {
        event_id: Uuid::now_v7(),
        occurred_at: shop_schemas::now_millis(),
        order_id: order.id,
        customer_id: order.customer_id,
        customer_email: order.customer_email.clone(),
        customer_name: order.customer_name.clone(),
        lines: order
            .lines
            .iter()
            .map(|line| OrderLine {
                product_id: line.product_id,
                name: line.name.clone(),
                quantity: line.quantity,
                unit_price: line.unit_price,
            })
            .collect(),
        total: order.total,
        currency: order.currency.clone(),
        payment_method: order.payment_method.clone(),
        idempotency_key: order.idempotency_key.clone(),
        shipping_address: Some(Box::new(order.address.clone())),
        shipping_method: Some(order.shipping_method.clone()),
        subtotal: Some(order.subtotal),
        shipping: Some(order.shipping),
        tax: Some(order.tax),
        prices_include_tax: Some(order.prices_include_tax),
        delivery_min_days: Some(order.delivery_min_days),
        delivery_max_days: Some(order.delivery_max_days),
        pay_by: Some(order.pay_by.timestamp_millis()),
    };
    let event = shop_bridge::outbox::OutboxRow::of(&placed.into())?;
    let numbers: Vec<i32> = (0..order.lines.len())
        .map(|number| i32::try_from(number).unwrap_or(i32::MAX))
        .collect();
    let stored: Option<OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "with placed as (
             insert into orders (id, customer_id, customer_email, customer_name, state, currency,
                 total, payment_method, idempotency_key, request_hash, pay_by, subtotal, shipping,
                 tax, prices_include_tax, shipping_method, delivery_min_days, delivery_max_days,
                 ship_name, ship_line1, ship_line2, ship_city, ship_region, ship_postal_code,
                 ship_country, ship_phone)
             values ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                 $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)
             on conflict do nothing
             returning *
         ), lines as (
             insert into order_lines (order_id, line_no, product_id, name, quantity, unit_price, tax)
             select placed.id, line.*
             from placed, unnest($26::int[], $27::uuid[], $28::text[], $29::int[], $30::bigint[],
                                 $31::bigint[]) as line
         ), history as (
             insert into order_history (order_id, from_state, to_state, actor, reason)
             select id, null, 'pending', $32, 'checkout' from placed
         ), event as (
             insert into outbox (topic, message_key, event_type, event_id, payload, fingerprint,
                                 trace_id)
             select $33, $34, $35, $36, $37, $38, $39 from placed
         )
         select {COLUMNS} from placed"
    )))
    .bind(order.id)
    .bind(order.customer_id)
    .bind(&order.customer_email)
    .bind(&order.customer_name)
    .bind(&order.currency)
    .bind(order.total)
    .bind(&order.payment_method)
    .bind(&order.idempotency_key)
    .bind(&order.request_hash)
    .bind(order.pay_by)
    .bind(order.subtotal)
    .bind(order.shipping)
    .bind(order.tax)
    .bind(order.prices_include_tax)
    .bind(&order.shipping_method)
    .bind(order.delivery_min_days)
    .bind(order.delivery_max_days)
    .bind(&order.address.name)
    .bind(&order.address.line1)
    .bind(&order.address.line2)
    .bind(&order.address.city)
    .bind(&order.address.region)
    .bind(&order.address.postal_code)
    .bind(&order.address.country)
    .bind(&order.address.phone)
    .bind(numbers)
    .bind(order.lines.iter().map(|line| line.product_id).collect::<Vec<_>>())
    .bind(order.lines.iter().map(|line| line.name.clone()).collect::<Vec<_>>())
    .bind(order.lines.iter().map(|line| line.quantity).collect::<Vec<_>>())
    .bind(order.lines.iter().map(|line| line.unit_price).collect::<Vec<_>>())
    .bind(order.lines.iter().map(|line| line.tax).collect::<Vec<_>>())
    .bind(order.customer_id.to_string())
    .bind(event.topic)
    .bind(event.message_key)
    .bind(event.event_type)
    .bind(event.event_id)
    .bind(event.payload)
    .bind(event.fingerprint)
    .bind(shop_bridge::outbox::trace_of(trace_id))
    .fetch_optional(pool)
    .await?;
    let Some(row) = stored else {
        return Ok(None);
    };
    shop_bridge::outbox::wake(pool);
    Ok(Some(Order {
        row,
        lines: order.lines.clone(),
    }))
}

/// One transition, as the order actor asks for it.
pub struct Transition<'a> {
    pub order_id: Uuid,
    pub from: State,
    pub to: State,
    /// The version the actor holds; another process's change since then refuses this one.
    pub version: i64,
    pub actor: &'a str,
    pub reason: Option<&'a str>,
    pub payment_id: Option<Uuid>,
    pub tracking_number: Option<&'a str>,
    pub carrier: Option<&'a str>,
    /// What it publishes, if anything.
    pub event: Option<Envelope>,
    /// The event that caused it (recorded in the inbox in the same transaction).
    pub caused_by: Option<Uuid>,
    pub trace_id: Option<&'a str>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Stored, at this version.
    Done(i64),
    /// Someone else changed the order since `version`: reload and decide again.
    Stale,
    /// The causing event was handled before: nothing changed.
    SeenBefore,
}

/// Applies a transition in one statement (one round trip, one commit): the causing event into
/// the inbox, the state guarded by the version, a history row and the event into the outbox —
/// all of it, or, for an event seen before or a stale version, nothing.
pub async fn apply(pool: &PgPool, change: Transition<'_>) -> Result<Applied, OrderError> {
    let event = change
        .event
        .as_ref()
        .map(shop_bridge::outbox::OutboxRow::of)
        .transpose()?;
    // A second handling of one event, racing this one, waits for this row's lock and then finds
    // the version moved on: it changes nothing.
    let (seen_before, version): (bool, Option<i64>) = sqlx::query_as(
        "with seen as (
             select exists (select 1 from processed_events
                            where consumer = $8 and event_id = $9) as before
         ), changed as (
             update orders set state = $3, version = version + 1, updated_at = now(),
                 payment_id = coalesce($4, payment_id),
                 tracking_number = coalesce($5, tracking_number),
                 cancel_reason = case when $3 = 'cancelled' then $6 else cancel_reason end,
                 carrier = coalesce($7, carrier)
             where id = $1 and version = $2 and not (select before from seen)
             returning version
         ), inbox as (
             insert into processed_events (event_id, consumer)
             select $9, $8 from changed where $9::uuid is not null
             on conflict do nothing
         ), history as (
             insert into order_history (order_id, from_state, to_state, actor, reason)
             select $1, $10, $3, $11, $6 from changed
         ), event as (
             insert into outbox (topic, message_key, event_type, event_id, payload, fingerprint,
                                 trace_id)
             select $12, $13, $14, $15, $16, $17, $18 from changed where $15::uuid is not null
         )
         select (select before from seen), (select version from changed)",
    )
    .bind(change.order_id)
    .bind(change.version)
    .bind(change.to.as_str())
    .bind(change.payment_id)
    .bind(change.tracking_number)
    .bind(change.reason)
    .bind(change.carrier)
    .bind(CONSUMER)
    .bind(change.caused_by)
    .bind(change.from.as_str())
    .bind(change.actor)
    .bind(event.as_ref().map(|event| event.topic.as_str()))
    .bind(event.as_ref().map(|event| event.message_key.as_str()))
    .bind(event.as_ref().map(|event| event.event_type.as_str()))
    .bind(event.as_ref().map(|event| event.event_id))
    .bind(event.as_ref().map(|event| event.payload.as_slice()))
    .bind(event.as_ref().map(|event| event.fingerprint.as_str()))
    .bind(shop_bridge::outbox::trace_of(change.trace_id))
    .fetch_one(pool)
    .await?;
    if seen_before {
        return Ok(Applied::SeenBefore);
    }
    let Some(version) = version else {
        return Ok(Applied::Stale);
    };
    if event.is_some() {
        shop_bridge::outbox::wake(pool);
    }
    Ok(Applied::Done(version))
}

/// Records an event that changes nothing (it came too late, or does not apply), so it is not
/// looked at again.
pub async fn mark_seen(pool: &PgPool, event_id: Uuid) -> Result<(), OrderError> {
    let mut transaction = pool.begin().await?;
    shop_bridge::inbox::first_time(&mut transaction, CONSUMER, event_id).await?;
    transaction.commit().await?;
    Ok(())
}

/// Pending orders whose time to be paid is up.
pub async fn overdue(pool: &PgPool, limit: i64) -> Result<Vec<Uuid>, OrderError> {
    Ok(sqlx::query_scalar(
        "select id from orders where state = 'pending' and pay_by <= now()
         order by pay_by limit $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
#[path = "store_tests.rs"]
pub(crate) mod tests;
