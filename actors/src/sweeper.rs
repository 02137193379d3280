//! The sweeper: a timer that asks a store which entities have work due (an order past its
//! payment time, a payment or a message left behind by a crash) and wakes each one's actor
//! through its registry. The actors decide what is really due; the sweeper only knocks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use uuid::Uuid;

use crate::entities::Entities;

/// Looks up the entities with work due; `true` on the first sweep after start, when no actor of
/// this process can be holding any of them yet.
pub type Due = Arc<
    dyn Fn(bool) -> Pin<Box<dyn Future<Output = Result<Vec<Uuid>, String>> + Send>> + Send + Sync,
>;

pub struct Sweeper<M: ractor::Message>(std::marker::PhantomData<fn() -> M>);

impl<M: ractor::Message> Default for Sweeper<M> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

pub struct SweeperArgs<M: ractor::Message> {
    /// What the entities are, for the logs.
    pub what: &'static str,
    pub due: Due,
    pub entities: Entities<M>,
    /// The message that wakes one.
    pub wake: fn() -> M,
    pub interval: Duration,
}

pub struct SweeperState<M: ractor::Message> {
    args: SweeperArgs<M>,
    first: bool,
}

pub enum SweeperMsg {
    Sweep,
}

impl<M: ractor::Message> Actor for Sweeper<M> {
    type Msg = SweeperMsg;
    type State = SweeperState<M>;
    type Arguments = SweeperArgs<M>;

    async fn pre_start(
        &self,
        myself: ActorRef<SweeperMsg>,
        args: SweeperArgs<M>,
    ) -> Result<SweeperState<M>, ActorProcessingErr> {
        // Right away: work may have come due while no process ran.
        myself.send_message(SweeperMsg::Sweep)?;
        Ok(SweeperState { args, first: true })
    }

    async fn handle(
        &self,
        myself: ActorRef<SweeperMsg>,
        SweeperMsg::Sweep: SweeperMsg,
        state: &mut SweeperState<M>,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = crate::meta::Handling::start(myself.get_cell());
        let what = state.args.what;
        match (state.args.due)(state.first).await {
            Ok(due) => {
                if !due.is_empty() {
                    tracing::info!(what, count = due.len(), "waking entities with work due");
                }
                for id in due {
                    if let Err(error) = state.args.entities.send(id, (state.args.wake)()).await {
                        tracing::warn!(what, %id, %error, "waking one failed; next sweep");
                    }
                }
                state.first = false;
            }
            Err(error) => tracing::warn!(what, %error, "looking for work due failed; next sweep"),
        }
        // The next tick is set after this one is done, so slow sweeps never pile up.
        myself.send_after(state.args.interval, || SweeperMsg::Sweep);
        Ok(())
    }
}
