//! The outbox: an event is written to the `outbox` table in the same transaction as the state
//! change it reports, and the relay actor publishes pending rows through the bridge, in order,
//! and marks them sent. The writer commits with [`commit`], which wakes the relays of its own
//! process; writers elsewhere [`announce`] with `NOTIFY shop_outbox` after their commit; a
//! polling fallback catches anything else. No NOTIFY runs inside a business transaction:
//! PostgreSQL serialises every notifying commit of the cluster on one lock held through the
//! commit's flush. While Kafka is down the relay retries with backoff. Nothing is lost when the
//! broker or the process dies between commit and publish: the row is still pending. A row
//! published but not yet marked is published again — consumers skip it by its event id (the
//! inbox) — which is why the mark is committed without waiting for its flush.
//!
//! Table (in each producing service's migrations): `outbox (id bigint identity, topic, message_key,
//! event_type, event_id uuid unique, payload bytea, fingerprint, trace_id, created_at, sent_at)`.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shop_schemas::{Envelope, fingerprint_hex};
use sqlx::postgres::PgListener;
use sqlx::{FromRow, PgPool, Postgres, Transaction};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::bridge::publish_via;
use crate::kafka::{BridgeError, Outgoing, event_headers};
use crate::metrics;

/// The channel [`announce`] notifies and the relay listens on.
pub const CHANNEL: &str = "shop_outbox";
/// Rows published per round.
const BATCH: i64 = 200;

/// Writes `event` to the outbox in `transaction`: it is published once the transaction commits
/// (commit it with [`commit`] so this process's relay hears of it at once). The row keeps the
/// current span's `traceparent`, or else `trace_id` (see [`trace_of`]).
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
    let row = OutboxRow::of_to(event, topic)?;
    sqlx::query(
        "insert into outbox (topic, message_key, event_type, event_id, payload, fingerprint, trace_id)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(row.topic)
    .bind(row.message_key)
    .bind(row.event_type)
    .bind(row.event_id)
    .bind(row.payload)
    .bind(row.fingerprint)
    .bind(trace_of(trace_id))
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

/// What an outbox row records of the trace it was written in: the current span's context when
/// tracing is on, else what the writer carried (a request id), so logs still find each other.
pub fn trace_of(carried: Option<&str>) -> Option<String> {
    shop_telemetry::current_traceparent().or_else(|| carried.map(str::to_owned))
}

/// An event as the outbox stores it, for a writer that inserts the row within a statement of its
/// own (a data-modifying `WITH` that changes the state and writes the event in one round trip).
/// Columns: topic, message_key, event_type, event_id, payload, fingerprint (then trace_id).
pub struct OutboxRow {
    pub topic: String,
    pub message_key: String,
    pub event_type: String,
    pub event_id: Uuid,
    pub payload: Vec<u8>,
    pub fingerprint: String,
}

impl OutboxRow {
    pub fn of(event: &Envelope) -> Result<OutboxRow, BridgeError> {
        OutboxRow::of_to(event, event.topic())
    }

    fn of_to(event: &Envelope, topic: &str) -> Result<OutboxRow, BridgeError> {
        let (payload, fingerprint) = event.encode()?;
        Ok(OutboxRow {
            topic: topic.to_owned(),
            message_key: event.aggregate_id().to_string(),
            event_type: event.name().to_owned(),
            event_id: event.event_id(),
            payload,
            fingerprint: fingerprint_hex(&fingerprint),
        })
    }
}

/// Commits a transaction that wrote to the outbox of `pool`'s database, then wakes this
/// process's relays of that database.
pub async fn commit(
    transaction: Transaction<'_, Postgres>,
    pool: &PgPool,
) -> Result<(), sqlx::Error> {
    transaction.commit().await?;
    wake(pool);
    Ok(())
}

/// Tells this process's relays of `pool`'s database that rows were committed.
pub fn wake(pool: &PgPool) {
    waker(pool).send_modify(|rounds| *rounds = rounds.wrapping_add(1));
}

/// Tells the relays of every process that rows were committed, for a writer whose process runs
/// no relay of that database (a tool, a benchmark). Run it after the commit, not inside it.
pub async fn announce(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("select pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(pool)
        .await?;
    Ok(())
}

/// One wake-up signal per database this process writes outboxes in: every relay of it
/// subscribes, and a wake that comes while a relay is busy is still seen when it next waits.
fn waker(pool: &PgPool) -> watch::Sender<u64> {
    static WAKERS: LazyLock<Mutex<HashMap<String, watch::Sender<u64>>>> =
        LazyLock::new(Mutex::default);
    let options = pool.connect_options();
    let key = format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    );
    let mut wakers = WAKERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    wakers
        .entry(key)
        .or_insert_with(|| watch::channel(0).0)
        .clone()
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

/// What one relay round did.
#[derive(Debug, PartialEq, Eq)]
pub enum Round {
    /// Published and marked this many rows.
    Published(usize),
    /// Nothing was pending.
    Idle,
    /// Another relay of this database (another replica's) is publishing just now.
    Busy,
}

struct Leadership {
    leader: bool,
    pending: bool,
}

/// Publishes up to one batch of pending rows.
pub async fn relay_once(pool: &PgPool, bridge: &str) -> Result<Round, BridgeError> {
    let mut transaction = pool.begin().await?;
    // One relay at a time per database (one per replica of a service share it). Not `FOR UPDATE
    // SKIP LOCKED`: with it, a second relay would publish the rows after the first one's batch,
    // and an order's OrderPaid could reach Kafka before its OrderPlaced. The holder goes on until
    // no row is left; a relay that found it busy tries again shortly (see `relay`). The lock ends
    // with the transaction, or with the connection of a relay that died. The mark "sent" is
    // committed without waiting for its flush: losing it only republishes rows that consumers
    // skip as duplicates. One statement takes the lock, sets that, and reads the batch. Its
    // snapshot is taken before the lock is: a relay that gets the lock just as the previous
    // holder committed would still see that holder's rows unsent. `FOR UPDATE` makes PostgreSQL
    // read each row again as committed now (a row marked meanwhile no longer qualifies), so no
    // row is published twice; it never waits, the lock's holder being the only writer of marks.
    let rows: Vec<(Leadership, Option<Pending>)> = sqlx::query_as::<_, LeaderRow>(
        "with leader as (
             select pg_try_advisory_xact_lock(hashtext($1)) as leader,
                    set_config('synchronous_commit', 'off', true) is not null as configured
         )
         select leader.leader, o.id is not null as pending, o.id, o.topic, o.message_key,
                o.event_type, o.event_id, o.payload, o.fingerprint, o.trace_id
         from leader left join lateral (
             select id, topic, message_key, event_type, event_id, payload, fingerprint, trace_id
             from outbox where leader.leader and sent_at is null
             order by id
             limit $2
             for update
         ) o on true",
    )
    .bind(CHANNEL)
    .bind(BATCH)
    .fetch_all(&mut *transaction)
    .await?
    .into_iter()
    .map(LeaderRow::split)
    .collect();
    match rows.first() {
        Some((leadership, _)) if !leadership.leader => return Ok(Round::Busy),
        Some((leadership, _)) if leadership.pending => {}
        _ => {
            metrics::OUTBOX_PENDING.set(0);
            return Ok(Round::Idle);
        }
    }
    let rows: Vec<Pending> = rows.into_iter().filter_map(|(_, row)| row).collect();
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    // One producer span per message, in the trace that wrote the row, ending when the broker
    // has the message; its context travels in the message's headers.
    let mut publishing = Vec::with_capacity(rows.len());
    let messages = rows
        .into_iter()
        .map(|row| {
            let span =
                crate::kafka::publish_span(&row.topic, &row.event_type, row.trace_id.as_deref());
            let trace = shop_telemetry::traceparent(&span).or(row.trace_id);
            publishing.push(span);
            Outgoing {
                headers: event_headers(
                    &row.event_type,
                    &row.event_id.to_string(),
                    &row.fingerprint,
                    trace.as_deref(),
                ),
                topic: row.topic,
                key: row.message_key,
                payload: row.payload,
            }
        })
        .collect();
    publish_via(bridge, messages).await?;
    drop(publishing);
    sqlx::query("update outbox set sent_at = now() where id = any($1)")
        .bind(&ids)
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(Round::Published(ids.len()))
}

/// A row of the relay's one statement: whether it leads, and a pending row if there is one.
#[derive(FromRow)]
struct LeaderRow {
    leader: bool,
    pending: bool,
    id: Option<i64>,
    topic: Option<String>,
    message_key: Option<String>,
    event_type: Option<String>,
    event_id: Option<Uuid>,
    payload: Option<Vec<u8>>,
    fingerprint: Option<String>,
    trace_id: Option<String>,
}

impl LeaderRow {
    fn split(self) -> (Leadership, Option<Pending>) {
        let leadership = Leadership {
            leader: self.leader,
            pending: self.pending,
        };
        let row = (|| {
            Some(Pending {
                id: self.id?,
                topic: self.topic?,
                message_key: self.message_key?,
                event_type: self.event_type?,
                event_id: self.event_id?,
                payload: self.payload?,
                fingerprint: self.fingerprint?,
                trace_id: self.trace_id,
            })
        })();
        (leadership, row)
    }
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

/// Publishes pending rows whenever woken (by a commit in this process, or a NOTIFY from another)
/// or every `poll`, backing off while publishing fails.
async fn relay(args: RelayArgs) -> String {
    let mut woken = waker(&args.pool).subscribe();
    let mut listener = match PgListener::connect_with(&args.pool).await {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::warn!(%error, "no LISTEN connection; the relay is woken by its process and polls");
            None
        }
    };
    if let Some(listening) = listener.as_mut()
        && let Err(error) = listening.listen(CHANNEL).await
    {
        tracing::warn!(%error, "LISTEN failed; the relay is woken by its process and polls");
        listener = None;
    }
    let mut backoff = Duration::from_millis(100);
    let mut busy_wait = BUSY_FIRST;
    loop {
        // Seen before the round: a commit during it wakes the next wait at once.
        woken.borrow_and_update();
        let mut wait = args.poll;
        match relay_once(&args.pool, &args.bridge).await {
            Ok(Round::Published(published)) => {
                backoff = Duration::from_millis(100);
                busy_wait = BUSY_FIRST;
                // A full batch: more may be waiting, go again at once. Fewer: every row there
                // was is out, and any committed since has woken us.
                if published >= BATCH as usize {
                    continue;
                }
            }
            Ok(Round::Idle) => {
                backoff = Duration::from_millis(100);
                busy_wait = BUSY_FIRST;
            }
            Ok(Round::Busy) => {
                // The other relay may have ended its last round just before our rows were
                // committed: look again soon, less often while it stays busy.
                wait = busy_wait;
                busy_wait = (busy_wait * 2).min(BUSY_LAST);
            }
            Err(error) => {
                tracing::warn!(%error, wait = ?backoff, "publishing the outbox failed; trying again");
                tokio::time::sleep(backoff).await;
                // Short: a relay that slept long after an outage would hold every event back.
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        }
        let notified = async {
            match listener.as_mut() {
                // A broken LISTEN connection reconnects inside sqlx.
                Some(listening) => {
                    let _ = listening.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = woken.changed() => {}
            () = notified => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// How soon a relay that found another one publishing looks again, first and at most.
const BUSY_FIRST: Duration = Duration::from_millis(5);
const BUSY_LAST: Duration = Duration::from_millis(200);
