//! The outbox: an event is written to the `outbox` table in the same transaction as the state
//! change it reports, and the relay actor publishes pending rows through the bridge, in order,
//! and marks them sent. Woken by `NOTIFY shop_outbox` at commit, with a polling fallback; while
//! Kafka is down it retries with backoff. Nothing is lost when the broker or the process dies
//! between commit and publish: the row is still pending. A row published but not yet marked is
//! published again — consumers skip it by its event id (the inbox).
//!
//! Table (in each producing service's migrations): `outbox (id bigint identity, topic, message_key,
//! event_type, event_id uuid unique, payload bytea, fingerprint, trace_id, created_at, sent_at)`.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shop_schemas::{Envelope, fingerprint_hex};
use sqlx::postgres::PgListener;
use sqlx::{FromRow, PgPool, Postgres, Transaction};
use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::bridge::publish_via;
use crate::kafka::{BridgeError, Outgoing, event_headers};
use crate::metrics;

/// The channel `enqueue` notifies and the relay listens on.
pub const CHANNEL: &str = "shop_outbox";
/// Rows published per round.
const BATCH: i64 = 200;

/// Writes `event` to the outbox in `transaction`: it is published once the transaction commits.
pub async fn enqueue(
    transaction: &mut Transaction<'_, Postgres>,
    event: impl Into<Envelope>,
    trace_id: Option<&str>,
) -> Result<(), BridgeError> {
    let event = event.into();
    enqueue_to(transaction, event.topic(), &event, trace_id).await
}

/// [`enqueue`] to another topic than the event's own (benchmarks keep off the real topics).
pub async fn enqueue_to(
    transaction: &mut Transaction<'_, Postgres>,
    topic: &str,
    event: &Envelope,
    trace_id: Option<&str>,
) -> Result<(), BridgeError> {
    let (payload, fingerprint) = event.encode()?;
    sqlx::query(
        "insert into outbox (topic, message_key, event_type, event_id, payload, fingerprint, trace_id)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(topic)
    .bind(event.aggregate_id().to_string())
    .bind(event.name())
    .bind(event.event_id())
    .bind(payload)
    .bind(fingerprint_hex(&fingerprint))
    .bind(trace_id)
    .execute(&mut **transaction)
    .await?;
    sqlx::query("select pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

#[derive(FromRow)]
struct Pending {
    id: i64,
    topic: String,
    message_key: String,
    event_type: String,
    event_id: Uuid,
    payload: Vec<u8>,
    fingerprint: String,
    trace_id: Option<String>,
}

/// Publishes up to one batch of pending rows; how many it published.
pub async fn relay_once(pool: &PgPool, bridge: &str) -> Result<usize, BridgeError> {
    let mut transaction = pool.begin().await?;
    // One relay at a time per database (one per replica of a service share it). Not `FOR UPDATE
    // SKIP LOCKED`: with it, a second relay would publish the rows after the first one's batch,
    // and an order's OrderPaid could reach Kafka before its OrderPlaced. The holder goes on until
    // no row is left, and every relay is woken by the same NOTIFY, so none is left behind; the
    // lock ends with the transaction, or with the connection of a relay that died.
    let leader: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock(hashtext($1))")
        .bind(CHANNEL)
        .fetch_one(&mut *transaction)
        .await?;
    if !leader {
        return Ok(0);
    }
    let rows: Vec<Pending> = sqlx::query_as(
        "select id, topic, message_key, event_type, event_id, payload, fingerprint, trace_id
         from outbox where sent_at is null
         order by id
         limit $1",
    )
    .bind(BATCH)
    .fetch_all(&mut *transaction)
    .await?;
    if rows.is_empty() {
        metrics::OUTBOX_PENDING.set(0);
        return Ok(0);
    }
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    let messages = rows
        .into_iter()
        .map(|row| Outgoing {
            headers: event_headers(
                &row.event_type,
                &row.event_id.to_string(),
                &row.fingerprint,
                row.trace_id.as_deref(),
            ),
            topic: row.topic,
            key: row.message_key,
            payload: row.payload,
        })
        .collect();
    publish_via(bridge, messages).await?;
    sqlx::query("update outbox set sent_at = now() where id = any($1)")
        .bind(&ids)
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(ids.len())
}

pub struct OutboxRelay;

pub struct RelayArgs {
    pub pool: PgPool,
    /// The name of the service's bridge actor.
    pub bridge: String,
    pub poll: Duration,
}

pub enum RelayMsg {
    /// The relaying task ended: the actor fails and is restarted.
    Stopped(String),
}

pub struct RelayState {
    _relaying: Relaying,
}

struct Relaying(AbortHandle);

impl Drop for Relaying {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Actor for OutboxRelay {
    type Msg = RelayMsg;
    type State = RelayState;
    type Arguments = RelayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RelayMsg>,
        args: RelayArgs,
    ) -> Result<RelayState, ActorProcessingErr> {
        let task = tokio::spawn(relay(args));
        let abort = task.abort_handle();
        tokio::spawn(async move {
            let why = match task.await {
                Ok(why) => why,
                Err(error) if error.is_cancelled() => return,
                Err(error) => error.to_string(),
            };
            let _ = myself.send_message(RelayMsg::Stopped(why));
        });
        Ok(RelayState {
            _relaying: Relaying(abort),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<RelayMsg>,
        message: RelayMsg,
        _state: &mut RelayState,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        match message {
            RelayMsg::Stopped(why) => Err(format!("the outbox relay stopped: {why}").into()),
        }
    }
}

/// Publishes pending rows whenever notified or every `poll`, backing off while publishing fails.
async fn relay(args: RelayArgs) -> String {
    let mut listener = match PgListener::connect_with(&args.pool).await {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::warn!(%error, "no LISTEN connection; the relay only polls");
            None
        }
    };
    if let Some(listening) = listener.as_mut()
        && let Err(error) = listening.listen(CHANNEL).await
    {
        tracing::warn!(%error, "LISTEN failed; the relay only polls");
        listener = None;
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        match relay_once(&args.pool, &args.bridge).await {
            Ok(published) if published > 0 => {
                backoff = Duration::from_millis(100);
                // More may be waiting: go again at once.
                continue;
            }
            Ok(_) => backoff = Duration::from_millis(100),
            Err(error) => {
                tracing::warn!(%error, wait = ?backoff, "publishing the outbox failed; trying again");
                tokio::time::sleep(backoff).await;
                // Short: a relay that slept long after an outage would hold every event back.
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        }
        match listener.as_mut() {
            Some(listening) => {
                // A notification, or the poll interval, whichever comes first. A broken LISTEN
                // connection reconnects inside sqlx.
                let _ = tokio::time::timeout(args.poll, listening.recv()).await;
            }
            None => tokio::time::sleep(args.poll).await,
        }
    }
}
