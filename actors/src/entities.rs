//! Per-entity actors (a cart per user, an order per order): a registry starts one on demand,
//! supervises it, and stops the idle ones (passivation). Callers reach running entities through
//! a shared map without going through the registry's mailbox; only starting one does.
//!
//! Supervision: an entity that fails (a panic, an `Err` from a handler) is started again at once
//! from its stored state — at most [`EntityKind::MAX_RESTARTS`] times in
//! [`EntityKind::RESTART_WINDOW`]; after that it is left stopped until its next message, so one
//! poisoned entity cannot keep the registry busy. The others never notice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use ractor::rpc::CallResult;
use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort, SupervisionEvent,
};
use uuid::Uuid;

use crate::{Restart, meta};

/// What a registry needs to know about the entities it keeps.
pub trait EntityKind: Send + Sync + 'static {
    type Actor: Actor<Msg = Self::Msg, Arguments = Self::Args> + Default;
    type Msg: ractor::Message;
    type Args: Send + 'static;
    /// The actors' kind in tree snapshots, and their name prefix (`cart:<id>`).
    const KIND: &'static str;
    const MAX_RESTARTS: usize = 3;
    const RESTART_WINDOW: Duration = Duration::from_secs(10);

    /// The arguments an entity starts with.
    fn args(&self, id: Uuid) -> Self::Args;
    /// The message that asks an idle entity to stop (it may refuse while it has work, and must
    /// when `idle.still()` is false: a caller reached for it since).
    fn passivate(idle: Idle) -> Self::Msg;
    /// An entity started (`restarts`: after this many failures in the window).
    fn started(&self, _id: Uuid, _restarts: usize) {}
    /// An entity stopped, for good or by failing.
    fn stopped(&self, _id: Uuid, _failed: bool) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EntityError {
    /// Not started, not answering in time, or stopped while holding the request.
    #[error("the {0} is busy; try again shortly")]
    Busy(&'static str),
}

struct Entry<M: ractor::Message> {
    actor: ActorRef<M>,
    /// Milliseconds since the registry started, at the entity's last message.
    last_active: Arc<AtomicU64>,
}

impl<M: ractor::Message> Clone for Entry<M> {
    fn clone(&self) -> Self {
        Self {
            actor: self.actor.clone(),
            last_active: self.last_active.clone(),
        }
    }
}

/// A passivation request's proof of idleness: the entity's last activity when the registry found
/// it idle. Callers mark activity before they send, so an entity that checks [`Idle::still`]
/// before stopping does not drop a request already on its way.
#[derive(Debug, Clone)]
pub struct Idle {
    last_active: Arc<AtomicU64>,
    seen: u64,
}

impl Idle {
    /// No caller reached for the entity since it was found idle.
    pub fn still(&self) -> bool {
        self.last_active.load(Ordering::SeqCst) == self.seen
    }

    /// Idle whatever happens (tests, and callers that stop an entity on purpose).
    pub fn regardless() -> Self {
        Self {
            last_active: Arc::new(AtomicU64::new(0)),
            seen: 0,
        }
    }
}

/// Tries to reach an entity whose previous actor is still stopping (passivated the moment a
/// request came): 5 ms doubling, about 0.3 s in all, before the caller hears "busy".
const ATTEMPTS: u32 = 7;

async fn pause(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
}

/// How callers reach entities: running ones through the shared map, others through the registry.
pub struct Entities<M: ractor::Message> {
    kind: &'static str,
    running: Arc<DashMap<Uuid, Entry<M>>>,
    registry: String,
    epoch: Instant,
    timeout: Duration,
}

impl<M: ractor::Message> Clone for Entities<M> {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind,
            running: self.running.clone(),
            registry: self.registry.clone(),
            epoch: self.epoch,
            timeout: self.timeout,
        }
    }
}

impl<M: ractor::Message> Entities<M> {
    /// Entities of `kind` kept by the registry actor named `registry`; a call waits `timeout`.
    pub fn new(kind: &'static str, registry: impl Into<String>, timeout: Duration) -> Self {
        Self {
            kind,
            running: Arc::new(DashMap::new()),
            registry: registry.into(),
            epoch: Instant::now(),
            timeout,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The entity's actor, started if needed.
    async fn actor(&self, id: Uuid) -> Result<ActorRef<M>, EntityError> {
        if let Some(entry) = self.running.get(&id) {
            entry.last_active.store(self.now_ms(), Ordering::SeqCst);
            return Ok(entry.actor.clone());
        }
        let registry: ActorRef<RegistryMsg<M>> = ractor::registry::where_is(self.registry.clone())
            .ok_or(EntityError::Busy(self.kind))?
            .into();
        match registry
            .call(|reply| RegistryMsg::Start(id, reply), Some(self.timeout))
            .await
        {
            Ok(CallResult::Success(started)) => started,
            _ => Err(EntityError::Busy(self.kind)),
        }
    }

    /// The entity stopped (passivated) before the message reached it: forget it, so the next
    /// try starts it again.
    async fn forget_stopped(&self, id: Uuid, actor: &ActorRef<M>) {
        self.running
            .remove_if(&id, |_, entry| entry.actor.get_id() == actor.get_id());
    }

    /// Sends the entity a request, starting it if needed, and waits for the answer.
    pub async fn call<R: Send + 'static>(
        &self,
        id: Uuid,
        message: impl Fn(RpcReplyPort<R>) -> M,
    ) -> Result<R, EntityError> {
        for attempt in 0..ATTEMPTS {
            let actor = match self.actor(id).await {
                Ok(actor) => actor,
                // Most likely the previous actor of this entity is still stopping.
                Err(_) => {
                    pause(attempt).await;
                    continue;
                }
            };
            match actor.call(&message, Some(self.timeout)).await {
                Ok(CallResult::Success(answer)) => return Ok(answer),
                // Timed out, or stopped while holding the request (a crash): whether the request
                // took effect is unknown, so it is not retried here.
                Ok(CallResult::Timeout | CallResult::SenderError) => break,
                Err(MessagingErr::ChannelClosed | MessagingErr::SendErr(_)) => {
                    self.forget_stopped(id, &actor).await;
                    pause(attempt).await;
                }
                Err(_) => break,
            }
        }
        Err(EntityError::Busy(self.kind))
    }

    /// Sends the entity a message, starting it if needed, without waiting for an answer.
    pub async fn send(&self, id: Uuid, message: M) -> Result<(), EntityError> {
        let mut message = message;
        for attempt in 0..ATTEMPTS {
            let actor = match self.actor(id).await {
                Ok(actor) => actor,
                Err(_) => {
                    pause(attempt).await;
                    continue;
                }
            };
            match actor.send_message(message) {
                Ok(()) => return Ok(()),
                Err(MessagingErr::SendErr(returned)) => {
                    message = returned;
                    self.forget_stopped(id, &actor).await;
                    pause(attempt).await;
                }
                Err(_) => break,
            }
        }
        Err(EntityError::Busy(self.kind))
    }

    /// Sends `message` to the entity only if it is running.
    pub fn send_if_running(&self, id: Uuid, message: M) -> bool {
        self.running
            .get(&id)
            .is_some_and(|entry| entry.actor.send_message(message).is_ok())
    }
}

/// The registry of `kind`'s entities, as a permanent child of the service's root supervisor.
pub fn registry_child<K: EntityKind + Clone>(
    name: &str,
    kind: K,
    entities: Entities<K::Msg>,
    idle_timeout: Duration,
) -> crate::Child {
    crate::Child::actor(name, "registry", Restart::Permanent, move || {
        let args = RegistryArgs {
            kind: kind.clone(),
            entities: entities.clone(),
            idle_timeout,
        };
        (EntityRegistry::<K>::default(), args)
    })
}

/// The registry actor: starts, supervises and passivates entities of one kind.
pub struct EntityRegistry<K: EntityKind>(std::marker::PhantomData<K>);

impl<K: EntityKind> Default for EntityRegistry<K> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

pub struct RegistryArgs<K: EntityKind> {
    pub kind: K,
    pub entities: Entities<K::Msg>,
    /// An entity with no message for this long is asked to stop.
    pub idle_timeout: Duration,
}

pub enum RegistryMsg<M: ractor::Message> {
    Start(Uuid, RpcReplyPort<Result<ActorRef<M>, EntityError>>),
    /// Look for idle entities.
    Sweep,
}

pub struct RegistryState<K: EntityKind> {
    kind: K,
    entities: Entities<K::Msg>,
    idle_timeout: Duration,
    failures: HashMap<Uuid, Vec<Instant>>,
    /// Entities stopped since memory was last given back to the system.
    stopped_since_trim: usize,
}

fn actor_name(kind: &str, id: Uuid) -> String {
    format!("{kind}:{id}")
}

impl<K: EntityKind> RegistryState<K> {
    fn id_of(cell: &ActorCell) -> Option<Uuid> {
        cell.get_name()?
            .strip_prefix(K::KIND)?
            .strip_prefix(':')
            .and_then(|id| Uuid::parse_str(id).ok())
    }

    async fn spawn(
        &mut self,
        myself: &ActorRef<RegistryMsg<K::Msg>>,
        id: Uuid,
        restarts: usize,
    ) -> Result<ActorRef<K::Msg>, EntityError> {
        let name = actor_name(K::KIND, id);
        let (actor, _) = Actor::spawn_linked(
            Some(name.clone()),
            K::Actor::default(),
            self.kind.args(id),
            myself.get_cell(),
        )
        .await
        .map_err(|error| {
            // Most likely the name of an entity that is still stopping; the caller retries.
            tracing::debug!(kind = K::KIND, %id, %error, "entity did not start");
            EntityError::Busy(K::KIND)
        })?;
        meta::track(&name, K::KIND, Restart::Transient, restarts);
        self.kind.started(id, restarts);
        self.entities.running.insert(
            id,
            Entry {
                actor: actor.clone(),
                last_active: Arc::new(AtomicU64::new(self.entities.now_ms())),
            },
        );
        Ok(actor)
    }

    fn forget(&mut self, cell: &ActorCell, failed: bool) -> Option<Uuid> {
        let id = Self::id_of(cell)?;
        self.entities
            .running
            .remove_if(&id, |_, entry| entry.actor.get_id() == cell.get_id());
        if let Some(name) = cell.get_name() {
            meta::untrack(&name);
        }
        self.kind.stopped(id, failed);
        Some(id)
    }
}

impl<K: EntityKind> Actor for EntityRegistry<K> {
    type Msg = RegistryMsg<K::Msg>;
    type State = RegistryState<K>;
    type Arguments = RegistryArgs<K>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RegistryArgs<K>,
    ) -> Result<RegistryState<K>, ActorProcessingErr> {
        if let Some(name) = myself.get_name() {
            meta::mark_group(&name);
        }
        // Entities of an earlier registry (before a restart) are gone with it.
        args.entities.running.clear();
        myself.send_interval(sweep_interval(args.idle_timeout), || RegistryMsg::Sweep);
        Ok(RegistryState {
            kind: args.kind,
            entities: args.entities,
            idle_timeout: args.idle_timeout,
            failures: HashMap::new(),
            stopped_since_trim: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut RegistryState<K>,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RegistryMsg::Start(id, reply) => {
                let running = state
                    .entities
                    .running
                    .get(&id)
                    .map(|entry| entry.actor.clone());
                let started = match running {
                    Some(actor) if actor.get_status() <= ractor::ActorStatus::Running => Ok(actor),
                    _ => state.spawn(&myself, id, 0).await,
                };
                let _ = reply.send(started);
            }
            RegistryMsg::Sweep => {
                if state.stopped_since_trim >= TRIM_AFTER_STOPS {
                    state.stopped_since_trim = 0;
                    tokio::task::spawn_blocking(give_memory_back);
                }
                let now = state.entities.now_ms();
                let idle_ms = u64::try_from(state.idle_timeout.as_millis()).unwrap_or(u64::MAX);
                for entry in state.entities.running.iter() {
                    let last = entry.last_active.load(Ordering::SeqCst);
                    if now.saturating_sub(last) >= idle_ms {
                        let idle = Idle {
                            last_active: entry.last_active.clone(),
                            seen: last,
                        };
                        let _ = entry.actor.send_message(K::passivate(idle));
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut RegistryState<K>,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, reason)
                if reason.as_deref() != Some(crate::STOPPED_BY_OPERATOR) =>
            {
                state.forget(&cell, false);
                state.stopped_since_trim += 1;
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                let error = crate::STOPPED_BY_OPERATOR.into();
                state.failed(&myself, &cell, error).await;
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                state.failed(&myself, &cell, error).await;
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
        }
        Ok(())
    }
}

impl<K: EntityKind> RegistryState<K> {
    /// An entity failed: restarted from its stored state, unless it fails too often.
    async fn failed(
        &mut self,
        myself: &ActorRef<RegistryMsg<K::Msg>>,
        cell: &ActorCell,
        error: ActorProcessingErr,
    ) {
        let Some(id) = self.forget(cell, true) else {
            return;
        };
        let now = Instant::now();
        let failures = self.failures.entry(id).or_default();
        failures.retain(|at| now.duration_since(*at) < K::RESTART_WINDOW);
        failures.push(now);
        let restarts = failures.len();
        let kind = K::KIND;
        if restarts > K::MAX_RESTARTS {
            tracing::error!(kind, %id, %error, "entity keeps failing; left stopped until its next message");
            return;
        }
        tracing::warn!(kind, %id, %error, restarts, "entity failed; restarting it from its stored state");
        match self.spawn(myself, id, restarts).await {
            Ok(_) => meta::note_failure(&actor_name(kind, id), &error.to_string()),
            Err(error) => {
                tracing::warn!(kind, %id, %error, "restarting the entity failed; its next message will");
            }
        }
    }
}

/// Passivated entities after which the registry gives freed memory back to the system.
const TRIM_AFTER_STOPS: usize = 1000;

/// glibc keeps freed memory for the process; after many entities passivated, hand it back so
/// passivation shows in the resident size (measured: 700 MiB back after 100k carts stopped).
fn give_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only releases free heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn sweep_interval(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(30))
}

#[cfg(test)]
#[path = "entities_tests.rs"]
mod tests;
