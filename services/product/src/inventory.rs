//! Stock and reservations.
//!
//! Correctness rests on PostgreSQL, not on an in-process lock, so it holds with any number of
//! service replicas: every transaction that changes stock locks the stock rows it touches in
//! product-id order (no deadlock between two multi-line reservations), checks availability
//! while holding the locks, and the table's checks (`0 <= reserved <= on_hand`) refuse anything
//! that would oversell even if a check here were wrong.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::error::{PriceChange, ProductError, Shortage};

/// Most units of one product in one reservation line.
pub const MAX_LINE_QUANTITY: i32 = 10_000;
/// Most lines in one reservation.
pub const MAX_LINES: usize = 100;

#[derive(Debug, Clone, Copy, FromRow)]
pub struct StockRow {
    pub on_hand: i32,
    pub reserved: i32,
}

#[derive(Debug, Clone, FromRow)]
pub struct AdjustmentRow {
    pub id: i64,
    pub delta: i32,
    pub on_hand_after: i32,
    pub reason: String,
    pub actor: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub product_id: Uuid,
    pub quantity: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub order_id: Uuid,
    pub status: String,
    pub lines: Vec<Line>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct ReservationRow {
    order_id: Uuid,
    status: String,
    request_hash: Vec<u8>,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

pub async fn stock(pool: &PgPool, product_id: Uuid) -> Result<StockRow, ProductError> {
    sqlx::query_as::<_, StockRow>("select on_hand, reserved from stock where product_id = $1")
        .bind(product_id)
        .fetch_optional(pool)
        .await?
        .ok_or(ProductError::ProductNotFound)
}

/// Sets on hand to `on_hand` (a stock count), recorded as an adjustment of the difference.
pub async fn set_stock(
    pool: &PgPool,
    product_id: Uuid,
    on_hand: i32,
    reason: &str,
    actor: &str,
) -> Result<StockRow, ProductError> {
    change_stock(pool, product_id, reason, actor, |current| on_hand - current).await
}

/// Adds `delta` (negative: removes) to on hand, with a reason kept in the history.
pub async fn adjust_stock(
    pool: &PgPool,
    product_id: Uuid,
    delta: i32,
    reason: &str,
    actor: &str,
) -> Result<StockRow, ProductError> {
    change_stock(pool, product_id, reason, actor, |_| delta).await
}

async fn change_stock(
    pool: &PgPool,
    product_id: Uuid,
    reason: &str,
    actor: &str,
    delta_from: impl FnOnce(i32) -> i32,
) -> Result<StockRow, ProductError> {
    let mut transaction = pool.begin().await?;
    let current = sqlx::query_as::<_, StockRow>(
        "select on_hand, reserved from stock where product_id = $1 for update",
    )
    .bind(product_id)
    .fetch_optional(&mut *transaction)
    .await?
    .ok_or(ProductError::ProductNotFound)?;
    let delta = delta_from(current.on_hand);
    let on_hand = current
        .on_hand
        .checked_add(delta)
        .filter(|on_hand| *on_hand >= 0)
        .ok_or_else(|| ProductError::Invalid("stock cannot go below zero".into()))?;
    if on_hand < current.reserved {
        return Err(ProductError::BelowReserved {
            reserved: current.reserved,
        });
    }
    sqlx::query("update stock set on_hand = $2, updated_at = now() where product_id = $1")
        .bind(product_id)
        .bind(on_hand)
        .execute(&mut *transaction)
        .await?;
    if delta != 0 {
        record_adjustment(&mut transaction, product_id, delta, on_hand, reason, actor).await?;
    }
    transaction.commit().await?;
    Ok(StockRow {
        on_hand,
        reserved: current.reserved,
    })
}

pub async fn record_adjustment(
    transaction: &mut Transaction<'_, Postgres>,
    product_id: Uuid,
    delta: i32,
    on_hand_after: i32,
    reason: &str,
    actor: &str,
) -> Result<(), ProductError> {
    sqlx::query(
        "insert into stock_adjustments (product_id, delta, on_hand_after, reason, actor)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(product_id)
    .bind(delta)
    .bind(on_hand_after)
    .bind(reason)
    .bind(actor)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

/// The newest adjustments of a product first.
pub async fn adjustments(
    pool: &PgPool,
    product_id: Uuid,
    limit: i64,
) -> Result<Vec<AdjustmentRow>, ProductError> {
    Ok(sqlx::query_as::<_, AdjustmentRow>(
        "select id, delta, on_hand_after, reason, actor, created_at from stock_adjustments
         where product_id = $1 order by id desc limit $2",
    )
    .bind(product_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Lines with one entry per product (quantities summed), in product-id order: the order in which
/// their stock rows are locked.
pub fn normalise(lines: &[Line]) -> Result<Vec<Line>, ProductError> {
    if lines.is_empty() {
        return Err(ProductError::Invalid(
            "a reservation needs at least one line".into(),
        ));
    }
    if lines.len() > MAX_LINES {
        return Err(ProductError::Invalid(format!(
            "a reservation has at most {MAX_LINES} lines"
        )));
    }
    let mut merged: BTreeMap<Uuid, i32> = BTreeMap::new();
    for line in lines {
        if !(1..=MAX_LINE_QUANTITY).contains(&line.quantity) {
            return Err(ProductError::Invalid(format!(
                "quantity must be 1 to {MAX_LINE_QUANTITY}, not {}",
                line.quantity
            )));
        }
        let total = merged.entry(line.product_id).or_default();
        *total = total
            .checked_add(line.quantity)
            .filter(|total| *total <= MAX_LINE_QUANTITY)
            .ok_or_else(|| {
                ProductError::Invalid(format!(
                    "at most {MAX_LINE_QUANTITY} units of one product per reservation"
                ))
            })?;
    }
    Ok(merged
        .into_iter()
        .map(|(product_id, quantity)| Line {
            product_id,
            quantity,
        })
        .collect())
}

fn request_hash(lines: &[Line]) -> Vec<u8> {
    let mut hash = Sha256::new();
    for line in lines {
        hash.update(line.product_id.as_bytes());
        hash.update(line.quantity.to_be_bytes());
    }
    hash.finalize().to_vec()
}

/// Whether a reservation was made by this call or an earlier one with the same request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    Now,
    Before,
}

/// Reserves every line for `order_id`, or none. The same order id with the same lines again
/// reserves nothing more and answers the reservation as it is; with other lines it is refused.
/// `expected` holds the price (minor units) a line was priced at, per product, where the
/// caller says: a product whose price is no longer that refuses the whole reservation.
pub async fn reserve(
    pool: &PgPool,
    order_id: Uuid,
    lines: &[Line],
    expected: &BTreeMap<Uuid, i64>,
    hold: Duration,
) -> Result<(Reservation, Reserved), ProductError> {
    let lines = normalise(lines)?;
    let hash = request_hash(&lines);
    let hold_ms = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);

    let mut transaction = pool.begin().await?;
    // A concurrent request for the same order waits here on the primary key until the first
    // commits (then finds it) or rolls back (then makes it).
    let inserted: Option<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "insert into reservations (order_id, status, request_hash, expires_at)
         values ($1, 'reserved', $2, now() + $3 * interval '1 millisecond')
         on conflict (order_id) do nothing
         returning expires_at, created_at",
    )
    .bind(order_id)
    .bind(&hash)
    .bind(hold_ms)
    .fetch_optional(&mut *transaction)
    .await?;
    let Some((expires_at, created_at)) = inserted else {
        drop(transaction);
        let existing = reservation_row(pool, order_id).await?;
        if existing.request_hash != hash {
            return Err(ProductError::ReservationMismatch);
        }
        return Ok((with_lines(pool, existing).await?, Reserved::Before));
    };

    let ids: Vec<Uuid> = lines.iter().map(|line| line.product_id).collect();
    let quantities: Vec<i32> = lines.iter().map(|line| line.quantity).collect();
    // The lines go in before any stock row is locked, so the hot rows are held only for the
    // check, the update and the commit.
    let lines_inserted = sqlx::query(
        "insert into reservation_lines (order_id, product_id, quantity)
         select $1, product_id, quantity
         from unnest($2::uuid[], $3::int[]) as line (product_id, quantity)",
    )
    .bind(order_id)
    .bind(&ids)
    .bind(&quantities)
    .execute(&mut *transaction)
    .await;
    if let Err(error) = lines_inserted {
        let unknown_product = matches!(&error, sqlx::Error::Database(db)
            if db.constraint() == Some("reservation_lines_product_id_fkey"));
        if !unknown_product {
            return Err(error.into());
        }
        drop(transaction);
        let known: Vec<Uuid> = sqlx::query_scalar("select id from products where id = any($1)")
            .bind(&ids)
            .fetch_all(pool)
            .await?;
        let unknown: Vec<String> = ids
            .iter()
            .filter(|id| !known.contains(id))
            .map(Uuid::to_string)
            .collect();
        return Err(ProductError::Invalid(format!(
            "no such product: {}",
            unknown.join(", ")
        )));
    }
    // The product rows are share-locked: a price change waits for this reservation to commit,
    // so the prices checked here are the prices reserved at.
    let locked: Vec<(Uuid, i32, i32, bool, i64)> = sqlx::query_as(
        "select s.product_id, s.on_hand, s.reserved, p.archived_at is not null, p.price_minor
         from stock s join products p on p.id = s.product_id
         where s.product_id = any($1)
         order by s.product_id
         for update of s for share of p",
    )
    .bind(&ids)
    .fetch_all(&mut *transaction)
    .await?;

    let mut archived = Vec::new();
    let mut short = Vec::new();
    let mut changed = Vec::new();
    for line in &lines {
        let row = locked.iter().find(|row| row.0 == line.product_id);
        if let (Some(row), Some(&price)) = (row, expected.get(&line.product_id))
            && row.4 != price
        {
            changed.push(PriceChange {
                product_id: line.product_id,
                expected: price,
                current: row.4,
            });
        }
        match row {
            // The insert above proved every product exists; it has a stock row from birth.
            None => return Err(ProductError::ProductNotFound),
            Some(row) if row.3 => archived.push(line.product_id.to_string()),
            Some(&(product_id, on_hand, reserved, _, _)) if on_hand - reserved < line.quantity => {
                short.push(Shortage {
                    product_id,
                    requested: line.quantity,
                    available: on_hand - reserved,
                });
            }
            Some(_) => {}
        }
    }
    if !archived.is_empty() {
        return Err(ProductError::Invalid(format!(
            "no longer sold (archived): {}",
            archived.join(", ")
        )));
    }
    if !changed.is_empty() {
        return Err(ProductError::PriceChanged(changed));
    }
    if !short.is_empty() {
        return Err(ProductError::Short(short));
    }

    sqlx::query(
        "update stock set reserved = stock.reserved + line.quantity, updated_at = now()
         from unnest($1::uuid[], $2::int[]) as line (product_id, quantity)
         where stock.product_id = line.product_id",
    )
    .bind(&ids)
    .bind(&quantities)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok((
        Reservation {
            order_id,
            status: "reserved".to_owned(),
            lines,
            expires_at,
            created_at,
        },
        Reserved::Now,
    ))
}

pub async fn reservation(pool: &PgPool, order_id: Uuid) -> Result<Reservation, ProductError> {
    let row = reservation_row(pool, order_id).await?;
    with_lines(pool, row).await
}

async fn reservation_row(pool: &PgPool, order_id: Uuid) -> Result<ReservationRow, ProductError> {
    sqlx::query_as::<_, ReservationRow>(
        "select order_id, status, request_hash, expires_at, created_at from reservations
         where order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(pool)
    .await?
    .ok_or(ProductError::ReservationNotFound)
}

async fn with_lines(pool: &PgPool, row: ReservationRow) -> Result<Reservation, ProductError> {
    let lines: Vec<(Uuid, i32)> = sqlx::query_as(
        "select product_id, quantity from reservation_lines where order_id = $1
         order by product_id",
    )
    .bind(row.order_id)
    .fetch_all(pool)
    .await?;
    Ok(Reservation {
        order_id: row.order_id,
        status: row.status,
        lines: lines
            .into_iter()
            .map(|(product_id, quantity)| Line {
                product_id,
                quantity,
            })
            .collect(),
        expires_at: row.expires_at,
        created_at: row.created_at,
    })
}

/// What closing a reservation does to its stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// A sale: the units leave on hand and reserved.
    Commit,
    /// The units go back to available.
    Release,
    /// Sold units come back on hand (a paid order cancelled before it shipped).
    Return,
    /// A sale after the reservation expired: its units already went back to available, so the
    /// sale takes them from on hand alone.
    SaleAfterExpiry,
}

/// Turns a reservation into a sale. Committing it again changes nothing.
pub async fn commit(pool: &PgPool, order_id: Uuid) -> Result<Reservation, ProductError> {
    closed(pool, order_id, Closing::Commit).await
}

/// [`commit`] for a consumer that needs no answer: the reservation is not read back.
pub async fn sell(pool: &PgPool, order_id: Uuid) -> Result<(), ProductError> {
    close(pool, order_id, Closing::Commit).await.map(drop)
}

/// The order was cancelled: its stock comes back, whatever became of the reservation — reserved
/// units are released, sold ones return on hand (cancelled after payment, before shipping).
/// Cancelling again, or an expired reservation, changes nothing.
pub async fn cancel(pool: &PgPool, order_id: Uuid) -> Result<Reservation, ProductError> {
    match closed(pool, order_id, Closing::Release).await {
        Err(ProductError::ReservationClosed(status)) if status == "committed" => {
            closed(pool, order_id, Closing::Return).await
        }
        Err(ProductError::ReservationClosed(status)) if status == "returned" => {
            reservation(pool, order_id).await
        }
        other => other,
    }
}

/// Gives a reservation's stock back. Releasing it again, or releasing an expired one, changes
/// nothing.
pub async fn release(pool: &PgPool, order_id: Uuid) -> Result<Reservation, ProductError> {
    closed(pool, order_id, Closing::Release).await
}

/// [`close`], and the reservation as it is then.
async fn closed(
    pool: &PgPool,
    order_id: Uuid,
    closing: Closing,
) -> Result<Reservation, ProductError> {
    match close(pool, order_id, closing).await? {
        Some(existing) => Ok(existing),
        None => reservation(pool, order_id).await,
    }
}

/// Closes a reservation; `Some` with the reservation when it was closed so before (a repeat).
async fn close(
    pool: &PgPool,
    order_id: Uuid,
    closing: Closing,
) -> Result<Option<Reservation>, ProductError> {
    let (from, status) = match closing {
        Closing::Commit => ("reserved", "committed"),
        Closing::Release => ("reserved", "released"),
        Closing::Return => ("committed", "returned"),
        Closing::SaleAfterExpiry => ("expired", "committed"),
    };
    let mut transaction = pool.begin().await?;
    let closed = sqlx::query(
        "update reservations set status = $2, updated_at = now()
         where order_id = $1 and status = $3",
    )
    .bind(order_id)
    .bind(status)
    .bind(from)
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    if closed == 0 {
        drop(transaction);
        let existing = reservation(pool, order_id).await?;
        let repeat = existing.status == status
            || (closing == Closing::Release && existing.status == "expired");
        if repeat {
            return Ok(Some(existing));
        }
        if closing == Closing::Commit && existing.status == "expired" {
            // Paid, but the payment was heard after the reservation expired (events held up
            // past the margin, as by a Kafka outage): the sale still happened.
            return Box::pin(close(pool, order_id, Closing::SaleAfterExpiry)).await;
        }
        return Err(ProductError::ReservationClosed(existing.status));
    }
    lock_stock(&mut transaction, &[order_id]).await?;
    // Its units went back to available when it expired: it takes them from what is available
    // now, all or none. Short, the reservation stays expired (rolled back) and the order needs
    // a refund: the consumer logs the error, naming the order.
    if closing == Closing::SaleAfterExpiry && !available(&mut transaction, order_id).await? {
        return Err(ProductError::ReservationClosed(
            "expired, and its units were sold to others since".to_owned(),
        ));
    }
    apply_lines(&mut transaction, &[order_id], closing).await?;
    transaction.commit().await?;
    if closing == Closing::SaleAfterExpiry {
        tracing::warn!(%order_id, "paid after its reservation expired: sold from available stock");
    }
    Ok(None)
}

/// Whether every line of the order is available (the stock rows locked already).
async fn available(
    transaction: &mut Transaction<'_, Postgres>,
    order_id: Uuid,
) -> Result<bool, ProductError> {
    let short: i64 = sqlx::query_scalar(
        "select count(*) from stock s
         join (select product_id, sum(quantity)::int as quantity from reservation_lines
               where order_id = $1 group by product_id) as line using (product_id)
         where s.on_hand - s.reserved < line.quantity",
    )
    .bind(order_id)
    .fetch_one(&mut **transaction)
    .await?;
    Ok(short == 0)
}

/// Locks the stock rows of these orders' lines, in product-id order (no deadlock between two).
async fn lock_stock(
    transaction: &mut Transaction<'_, Postgres>,
    order_ids: &[Uuid],
) -> Result<(), ProductError> {
    sqlx::query(
        "select s.product_id from stock s
         where s.product_id in (select product_id from reservation_lines where order_id = any($1))
         order by s.product_id
         for update",
    )
    .bind(order_ids)
    .fetch_all(&mut **transaction)
    .await?;
    Ok(())
}

/// Applies closed reservations' lines to stock, locking the stock rows in product-id order.
async fn give_back(
    transaction: &mut Transaction<'_, Postgres>,
    order_ids: &[Uuid],
    closing: Closing,
) -> Result<(), ProductError> {
    lock_stock(transaction, order_ids).await?;
    apply_lines(transaction, order_ids, closing).await
}

/// Moves stock by these orders' lines as `closing` says (the rows locked already).
async fn apply_lines(
    transaction: &mut Transaction<'_, Postgres>,
    order_ids: &[Uuid],
    closing: Closing,
) -> Result<(), ProductError> {
    // How each closing moves reserved and on hand, per unit of the order's lines.
    let (reserved, on_hand) = match closing {
        Closing::Commit => (-1, -1),
        Closing::Release => (-1, 0),
        Closing::Return => (0, 1),
        Closing::SaleAfterExpiry => (0, -1),
    };
    sqlx::query(
        "update stock set
             reserved = stock.reserved + $2 * line.quantity,
             on_hand = stock.on_hand + $3 * line.quantity,
             updated_at = now()
         from (select product_id, sum(quantity)::int as quantity from reservation_lines
               where order_id = any($1) group by product_id) as line
         where stock.product_id = line.product_id",
    )
    .bind(order_ids)
    .bind(reserved)
    .bind(on_hand)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

/// Expires up to `limit` reservations past their time and releases their stock; returns the
/// order ids. Rows another transaction holds are skipped, so several replicas can sweep at once.
pub async fn expire_due(pool: &PgPool, limit: i64) -> Result<Vec<Uuid>, ProductError> {
    let mut transaction = pool.begin().await?;
    let expired: Vec<Uuid> = sqlx::query_scalar(
        "update reservations set status = 'expired', updated_at = now()
         where order_id in (
             select order_id from reservations
             where status = 'reserved' and expires_at <= now()
             order by expires_at
             limit $1
             for update skip locked
         )
         returning order_id",
    )
    .bind(limit)
    .fetch_all(&mut *transaction)
    .await?;
    if !expired.is_empty() {
        give_back(&mut transaction, &expired, Closing::Release).await?;
    }
    transaction.commit().await?;
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: u128, quantity: i32) -> Line {
        Line {
            product_id: Uuid::from_u128(id),
            quantity,
        }
    }

    #[test]
    fn lines_are_merged_per_product_and_sorted() {
        let lines = normalise(&[line(3, 1), line(1, 2), line(3, 4)]).unwrap();
        assert_eq!(lines, vec![line(1, 2), line(3, 5)]);
    }

    #[test]
    fn lines_need_a_sane_quantity_and_count() {
        assert!(normalise(&[]).is_err());
        assert!(normalise(&[line(1, 0)]).is_err());
        assert!(normalise(&[line(1, -3)]).is_err());
        assert!(normalise(&[line(1, MAX_LINE_QUANTITY), line(1, 1)]).is_err());
        let many: Vec<Line> = (0..=MAX_LINES as u128).map(|id| line(id, 1)).collect();
        assert!(normalise(&many).is_err());
    }

    #[test]
    fn the_same_lines_in_another_order_are_the_same_request() {
        let a = normalise(&[line(1, 1), line(2, 2)]).unwrap();
        let b = normalise(&[line(2, 2), line(1, 1)]).unwrap();
        assert_eq!(request_hash(&a), request_hash(&b));
        let c = normalise(&[line(2, 3), line(1, 1)]).unwrap();
        assert_ne!(request_hash(&a), request_hash(&c));
    }
}
