//! The inbox: a consumer records each event's id in the same transaction as its effect, and an
//! event seen before changes nothing. Kafka delivers at least once; effects happen once.
//!
//! Table (in each consuming service's migrations):
//! `processed_events (event_id uuid, consumer text, processed_at timestamptz, primary key
//! (event_id, consumer))`.

use sqlx::{Postgres, Transaction};
use uuid::Uuid;

/// Records `event_id` for `consumer`; `false` when it was recorded before (skip the effect).
pub async fn first_time(
    transaction: &mut Transaction<'_, Postgres>,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let recorded = sqlx::query(
        "insert into processed_events (event_id, consumer) values ($1, $2)
         on conflict do nothing",
    )
    .bind(event_id)
    .bind(consumer)
    .execute(&mut **transaction)
    .await?;
    Ok(recorded.rows_affected() == 1)
}
