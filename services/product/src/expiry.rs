//! The reservation-expiry actor: on its own timer, it expires reservations that were neither
//! committed nor released in time and gives their stock back.
//!
//! A database error is logged and retried at the next tick (a blinking PostgreSQL must not use up
//! the supervisor's restart intensity); a panic is a bug, and the supervisor restarts the actor.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use sqlx::PgPool;

use crate::inventory;

/// Reservations expired per transaction.
const BATCH: i64 = 200;

pub struct ReservationExpiry;

pub struct ExpiryArgs {
    pub pool: PgPool,
    pub interval: Duration,
}

pub enum ExpiryMsg {
    Sweep,
}

pub struct ExpiryState {
    pool: PgPool,
    interval: Duration,
}

impl Actor for ReservationExpiry {
    type Msg = ExpiryMsg;
    type State = ExpiryState;
    type Arguments = ExpiryArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ExpiryMsg>,
        args: ExpiryArgs,
    ) -> Result<ExpiryState, ActorProcessingErr> {
        // The first sweep right away: reservations may have expired while no replica ran.
        myself.send_message(ExpiryMsg::Sweep)?;
        Ok(ExpiryState {
            pool: args.pool,
            interval: args.interval,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ExpiryMsg>,
        message: ExpiryMsg,
        state: &mut ExpiryState,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        match message {
            ExpiryMsg::Sweep => {
                sweep(&state.pool).await;
                // The next tick is set after this one is done, so slow sweeps never pile up.
                myself.send_after(state.interval, || ExpiryMsg::Sweep);
            }
        }
        Ok(())
    }
}

async fn sweep(pool: &PgPool) {
    loop {
        match inventory::expire_due(pool, BATCH).await {
            Ok(expired) => {
                if !expired.is_empty() {
                    tracing::info!(count = expired.len(), orders = ?expired, "reservations expired; stock released");
                }
                if (expired.len() as i64) < BATCH {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "expiring reservations failed; retrying at the next tick");
                return;
            }
        }
    }
}
