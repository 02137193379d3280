//! Per-entity actors (a cart per user, an order per order): a registry starts one on demand,
//! supervises it, and stops the idle ones (passivation). Callers reach running entities through
//! a shared map without going through the registry's mailbox; only starting one does.
//!
//! Kinds that hibernate leave a compact record when an idle entity stops (see [`Idle::leave`]);
//! the next request wakes the entity from it without reading the store, and the record itself is
//! forgotten after the longer idle time.
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
    /// What an idle entity leaves behind when it hibernates: enough to resume without reading
    /// its store. `()` for kinds that only passivate.
    type Dormant: Send + Sync + 'static;
    /// The actors' kind in tree snapshots, and their name prefix (`cart:<id>`).
    const KIND: &'static str;
    const MAX_RESTARTS: usize = 3;
    const RESTART_WINDOW: Duration = Duration::from_secs(10);

    /// The arguments an entity starts with: woken from its record, or from nothing.
    fn args(&self, id: Uuid, dormant: Option<Self::Dormant>) -> Self::Args;
    /// The message that asks an idle entity to stop; it may refuse while it has work, and stops
    /// only if [`Idle::leave`] says so.
    fn passivate(idle: Idle<Self::Dormant>) -> Self::Msg;
    /// An entity started (`restarts`: after this many failures in the window).
    fn started(&self, _id: Uuid, _restarts: usize) {}
    /// An entity stopped, for good or by failing.
    fn stopped(&self, _id: Uuid, _failed: bool) {}
    /// A hibernated entity's record was forgotten: nobody asked for it for the whole idle time.
    fn retire(&self, _id: Uuid, _dormant: Self::Dormant) {}
    /// After every sweep: how many entities are awake and how many hibernate.
    fn counted(&self, _awake: usize, _hibernated: usize) {}
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

/// A hibernated entity's record, and when it was last asked for.
struct Dormant<D> {
    record: D,
    last_active: u64,
}

type Leave<D> = Box<dyn FnOnce(Option<D>) -> bool + Send>;

/// A passivation request: the entity was found idle. Callers send to an entity while holding
/// its place in the shared map, so [`Idle::leave`] — which gives that place up only if no caller
/// reached for the entity since — cannot strand a request on its way.
pub struct Idle<D = ()> {
    hibernates: bool,
    leave: Option<Leave<D>>,
}

impl<D> Idle<D> {
    /// Idle whatever happens (tests, and callers that stop an entity on purpose).
    pub fn regardless() -> Self {
        Self {
            hibernates: false,
            leave: None,
        }
    }

    /// Whether the registry keeps a record for this entity when it leaves.
    pub fn hibernates(&self) -> bool {
        self.hibernates
    }

    /// Takes the entity out of callers' reach if none reached for it since it was found idle,
    /// leaving `record` (when the registry hibernates) for its next request to wake from. The
    /// entity must stop when this says `true`, and must not when it says `false`.
    pub fn leave(self, record: Option<D>) -> bool {
        self.leave.is_none_or(|leave| leave(record))
    }
}

/// Tries to reach an entity whose previous actor is still stopping (passivated the moment a
/// request came): 5 ms doubling, about 0.3 s in all, before the caller hears "busy".
const ATTEMPTS: u32 = 7;

async fn pause(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
}

/// How callers reach entities: running ones through the shared map, others through the registry.
pub struct Entities<M: ractor::Message, D = ()> {
    kind: &'static str,
    running: Arc<DashMap<Uuid, Entry<M>>>,
    dormant: Arc<DashMap<Uuid, Dormant<D>>>,
    registry: String,
    epoch: Instant,
    timeout: Duration,
}

impl<M: ractor::Message, D> Clone for Entities<M, D> {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind,
            running: self.running.clone(),
            dormant: self.dormant.clone(),
            registry: self.registry.clone(),
            epoch: self.epoch,
            timeout: self.timeout,
        }
    }
}

/// How a delivery to a running entity went.
enum Delivery<M> {
    Sent,
    /// Not running: start it.
    Absent(M),
    /// Its actor stopped before the message reached it.
    Stopped(M, ractor::ActorId),
}

impl<M: ractor::Message, D: Send + Sync + 'static> Entities<M, D> {
    /// Entities of `kind` kept by the registry actor named `registry`; a call waits `timeout`.
    pub fn new(kind: &'static str, registry: impl Into<String>, timeout: Duration) -> Self {
        Self {
            kind,
            running: Arc::new(DashMap::new()),
            dormant: Arc::new(DashMap::new()),
            registry: registry.into(),
            epoch: Instant::now(),
            timeout,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Running entities, and hibernated ones.
    pub fn counts(&self) -> (usize, usize) {
        (self.running.len(), self.dormant.len())
    }

    /// Sends to the running entity, marking it active, while holding its place in the map: an
    /// idle entity that [`Idle::leave`]s either sees this activity or is already out of reach.
    fn deliver(&self, id: Uuid, message: M) -> Delivery<M> {
        let Some(entry) = self.running.get(&id) else {
            return Delivery::Absent(message);
        };
        entry.last_active.store(self.now_ms(), Ordering::SeqCst);
        match entry.actor.send_message(message) {
            Ok(()) => Delivery::Sent,
            Err(MessagingErr::SendErr(message)) => Delivery::Stopped(message, entry.actor.get_id()),
            // Other errors do not hand the message back; they do not happen for local actors.
            Err(_) => Delivery::Sent,
        }
    }

    /// Starts the entity (waking it from its record, if it hibernated) through the registry.
    async fn start(&self, id: Uuid) -> Result<(), EntityError> {
        let registry: ActorRef<RegistryMsg<M>> = ractor::registry::where_is(self.registry.clone())
            .ok_or(EntityError::Busy(self.kind))?
            .into();
        match registry
            .call(|reply| RegistryMsg::Start(id, reply), Some(self.timeout))
            .await
        {
            Ok(CallResult::Success(started)) => started.map(|_| ()),
            _ => Err(EntityError::Busy(self.kind)),
        }
    }

    /// The entity stopped before the message reached it: forget it, so the next try starts it
    /// again.
    fn forget_stopped(&self, id: Uuid, actor: ractor::ActorId) {
        self.running
            .remove_if(&id, |_, entry| entry.actor.get_id() == actor);
    }

    /// Hands `message` to the entity, starting or waking it if needed.
    async fn send_starting(&self, id: Uuid, message: M) -> Result<(), EntityError> {
        let mut message = message;
        for attempt in 0..ATTEMPTS {
            match self.deliver(id, message) {
                Delivery::Sent => return Ok(()),
                Delivery::Absent(unsent) => {
                    message = unsent;
                    // Most likely fails while the previous actor of this entity is still stopping.
                    if self.start(id).await.is_err() {
                        pause(attempt).await;
                    }
                }
                Delivery::Stopped(unsent, actor) => {
                    message = unsent;
                    self.forget_stopped(id, actor);
                    pause(attempt).await;
                }
            }
        }
        Err(EntityError::Busy(self.kind))
    }

    /// Sends the entity a request, starting it if needed, and waits for the answer.
    pub async fn call<R: Send + 'static>(
        &self,
        id: Uuid,
        message: impl FnOnce(RpcReplyPort<R>) -> M,
    ) -> Result<R, EntityError> {
        let (reply, answer) = ractor::concurrency::oneshot();
        self.send_starting(id, message(reply.into())).await?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(answer)) => Ok(answer),
            // Timed out, or stopped while holding the request (a crash): whether the request
            // took effect is unknown, so it is not retried here.
            Ok(Err(_)) | Err(_) => Err(EntityError::Busy(self.kind)),
        }
    }

    /// Sends the entity a message, starting it if needed, without waiting for an answer.
    pub async fn send(&self, id: Uuid, message: M) -> Result<(), EntityError> {
        self.send_starting(id, message).await
    }

    /// Sends `message` to the entity only if it is running (a hibernated one is not woken).
    pub fn send_if_running(&self, id: Uuid, message: M) -> bool {
        matches!(self.deliver(id, message), Delivery::Sent)
    }
}

/// Ends an entity from its own handler, its work done (a settled order). `stop` would drop the
/// requests already queued behind the current one, and their callers would hear "busy" for an
/// entity that was there; draining handles those first, refuses whatever comes after, and
/// [`Entities`] starts the entity afresh for that.
pub fn finish<M: ractor::Message>(myself: &ActorRef<M>) {
    // Fails only when the actor is stopping already, which is what was asked.
    let _ = myself.drain();
}

/// When idle entities stop.
#[derive(Debug, Clone, Copy)]
pub struct Idleness {
    /// An entity idle this long hibernates (stops, leaving its record); `None`: it does not.
    hibernate_after: Option<Duration>,
    /// An entity (or its record) idle this long is forgotten.
    forget_after: Duration,
}

impl Idleness {
    /// Entities idle for `idle` stop and leave nothing.
    pub fn passivate_after(idle: Duration) -> Self {
        Self {
            hibernate_after: None,
            forget_after: idle,
        }
    }

    /// Entities idle for `hibernate` stop and leave a record, forgotten once idle for `forget`;
    /// with `hibernate` not shorter than `forget`, they only passivate.
    pub fn hibernate_after(hibernate: Duration, forget: Duration) -> Self {
        Self {
            hibernate_after: (hibernate < forget).then_some(hibernate),
            forget_after: forget,
        }
    }

    /// How long an entity's actor stays without a message.
    fn awake_for(&self) -> Duration {
        self.hibernate_after.unwrap_or(self.forget_after)
    }
}

/// The registry of `kind`'s entities, as a permanent child of the service's root supervisor.
pub fn registry_child<K: EntityKind + Clone>(
    name: &str,
    kind: K,
    entities: Entities<K::Msg, K::Dormant>,
    idleness: Idleness,
) -> crate::Child {
    crate::Child::actor(name, "registry", Restart::Permanent, move || {
        let args = RegistryArgs {
            kind: kind.clone(),
            entities: entities.clone(),
            idleness,
        };
        (EntityRegistry::<K>::default(), args)
    })
}

/// The registry actor: starts, supervises, hibernates and passivates entities of one kind.
pub struct EntityRegistry<K: EntityKind>(std::marker::PhantomData<K>);

impl<K: EntityKind> Default for EntityRegistry<K> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

pub struct RegistryArgs<K: EntityKind> {
    pub kind: K,
    pub entities: Entities<K::Msg, K::Dormant>,
    pub idleness: Idleness,
}

pub enum RegistryMsg<M: ractor::Message> {
    Start(Uuid, RpcReplyPort<Result<ActorRef<M>, EntityError>>),
    /// Look for idle entities.
    Sweep,
}

pub struct RegistryState<K: EntityKind> {
    kind: K,
    entities: Entities<K::Msg, K::Dormant>,
    idleness: Idleness,
    failures: HashMap<Uuid, Vec<Instant>>,
    /// Entities stopped since memory was last given back to the system.
    stopped_since_trim: usize,
}

fn actor_name(kind: &str, id: Uuid) -> String {
    format!("{kind}:{id}")
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl<K: EntityKind> RegistryState<K> {
    fn id_of(cell: &ActorCell) -> Option<Uuid> {
        cell.get_name()?
            .strip_prefix(K::KIND)?
            .strip_prefix(':')
            .and_then(|id| Uuid::parse_str(id).ok())
    }

    /// Starts the entity: woken from its record when it hibernated (not after a failure: then
    /// from its store).
    async fn spawn(
        &mut self,
        myself: &ActorRef<RegistryMsg<K::Msg>>,
        id: Uuid,
        restarts: usize,
    ) -> Result<ActorRef<K::Msg>, EntityError> {
        let name = actor_name(K::KIND, id);
        if ractor::registry::where_is(name.clone()).is_some() {
            // Its previous actor is still stopping; the caller retries.
            return Err(EntityError::Busy(K::KIND));
        }
        let dormant = self
            .entities
            .dormant
            .remove(&id)
            .map(|(_, dormant)| dormant);
        let record = dormant
            .filter(|_| restarts == 0)
            .map(|dormant| dormant.record);
        let (actor, _) = Actor::spawn_linked(
            Some(name.clone()),
            K::Actor::default(),
            self.kind.args(id, record),
            myself.get_cell(),
        )
        .await
        .map_err(|error| {
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
        // A successor may have started under the same name already (a hibernated entity woken
        // at once): its figures stay.
        if !self.entities.running.contains_key(&id)
            && let Some(name) = cell.get_name()
        {
            meta::untrack(&name);
        }
        self.kind.stopped(id, failed);
        Some(id)
    }

    /// Asks every entity idle long enough to stop (hibernating, if this kind does), and forgets
    /// the records of those asked for by nobody since.
    fn sweep(&mut self, registry: &str) {
        let entities = &self.entities;
        let now = entities.now_ms();
        let awake_ms = millis(self.idleness.awake_for());
        let hibernates = self.idleness.hibernate_after.is_some();
        for entry in entities.running.iter() {
            let seen = entry.last_active.load(Ordering::SeqCst);
            if now.saturating_sub(seen) < awake_ms {
                continue;
            }
            let (id, actor) = (*entry.key(), entry.actor.get_id());
            let (running, dormant) = (entities.running.clone(), entities.dormant.clone());
            let leave: Leave<K::Dormant> = Box::new(move |record| {
                let left = record.is_some();
                if let Some(record) = record {
                    // Before the entity leaves the map: a caller that misses it finds this.
                    dormant.insert(
                        id,
                        Dormant {
                            record,
                            last_active: seen,
                        },
                    );
                }
                let gone = running
                    .remove_if(&id, |_, entry| {
                        entry.actor.get_id() == actor
                            && entry.last_active.load(Ordering::SeqCst) == seen
                    })
                    .is_some();
                if left && !gone {
                    dormant.remove(&id);
                }
                gone
            });
            let idle = Idle {
                hibernates,
                leave: Some(leave),
            };
            let _ = entry.actor.send_message(K::passivate(idle));
        }
        let forget_ms = millis(self.idleness.forget_after);
        let expired: Vec<Uuid> = entities
            .dormant
            .iter()
            .filter(|dormant| now.saturating_sub(dormant.last_active) >= forget_ms)
            .map(|dormant| *dormant.key())
            .collect();
        for id in expired {
            let removed = entities.dormant.remove_if(&id, |_, dormant| {
                now.saturating_sub(dormant.last_active) >= forget_ms
            });
            if let Some((id, dormant)) = removed {
                self.kind.retire(id, dormant.record);
                self.stopped_since_trim += 1;
            }
        }
        let (awake, hibernated) = entities.counts();
        self.kind.counted(awake, hibernated);
        if hibernates {
            meta::set_detail(registry, &format!("{awake} awake, {hibernated} hibernated"));
        }
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
        // Entities of an earlier registry (before a restart) are gone with it; so are their
        // records, so that every entity starts from its store again.
        args.entities.running.clear();
        args.entities.dormant.clear();
        let interval = sweep_interval(args.idleness.awake_for());
        myself.send_interval(interval, || RegistryMsg::Sweep);
        Ok(RegistryState {
            kind: args.kind,
            entities: args.entities,
            idleness: args.idleness,
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
                state.sweep(&myself.get_name().unwrap_or_default());
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
