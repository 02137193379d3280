//! Declaring a supervision tree.
//!
//! A service says what its tree looks like — each child with its name, a kind label, an explicit
//! [`Restart`] policy and a [`Backoff`], and each supervisor with its [`Intensity`] — and this module
//! turns the declaration into `ractor-supervisor` supervisors. That crate does the supervising
//! (one-for-one restarts, per-child backoff, meltdown when the intensity is exceeded); this module
//! adds the declaration syntax and records what the tree snapshot shows (kind, start time,
//! restarts).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorRef, SpawnErr};
use ractor_supervisor::{
    ChildSpec as RsChildSpec, SpawnFn, Supervisor, SupervisorArguments, SupervisorMsg,
    SupervisorOptions, SupervisorStrategy,
};

use crate::meta;
use crate::policy::{Backoff, Intensity, Restart};

/// The kind label of every supervisor in a snapshot.
pub const SUPERVISOR_KIND: &str = "supervisor";

/// A supervisor and the children it starts, in order.
#[derive(Clone)]
pub struct SupervisorSpec {
    name: String,
    intensity: Intensity,
    children: Vec<Child>,
}

/// One child of a supervisor: how to start it and what to do when it stops.
#[derive(Clone)]
pub struct Child {
    name: String,
    kind: String,
    restart: Restart,
    backoff: Backoff,
    start: StartFn,
}

type StartFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<ActorCell, SpawnErr>> + Send>>;
type StartFn = Arc<dyn Fn(ActorCell, String) -> StartFuture + Send + Sync>;

impl Child {
    /// A child actor. `make` builds a fresh actor and its arguments for every (re)start, so a
    /// restarted child never inherits the state that made it fail.
    pub fn actor<A, F>(
        name: impl Into<String>,
        kind: impl Into<String>,
        restart: Restart,
        make: F,
    ) -> Self
    where
        A: Actor,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        let start: StartFn = Arc::new(move |supervisor, name| {
            let make = make.clone();
            Box::pin(async move {
                let (actor, arguments) = make();
                let (actor_ref, _) =
                    Actor::spawn_linked(Some(name), actor, arguments, supervisor).await?;
                Ok(actor_ref.get_cell())
            })
        });
        Self {
            name: name.into(),
            kind: kind.into(),
            restart,
            backoff: Backoff::default(),
            start,
        }
    }

    /// A child that is itself a supervisor, with its own children and intensity. When it gives up
    /// (too many restarts below it), this parent sees it fail and applies `restart` to it.
    pub fn supervisor(spec: SupervisorSpec, restart: Restart) -> Self {
        let name = spec.name.clone();
        let start: StartFn = Arc::new(move |parent, name| {
            let spec = spec.clone();
            Box::pin(async move {
                let (actor_ref, _) =
                    Actor::spawn_linked(Some(name), Supervisor, spec.arguments(), parent).await?;
                Ok(actor_ref.get_cell())
            })
        });
        Self {
            name,
            kind: SUPERVISOR_KIND.to_owned(),
            restart,
            backoff: Backoff::default(),
            start,
        }
    }

    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn into_spec(self, intensity: Intensity) -> RsChildSpec {
        let Child {
            name,
            kind,
            restart,
            backoff,
            start,
        } = self;
        let starts = Arc::new(AtomicUsize::new(0));
        RsChildSpec {
            id: name,
            restart: restart.into(),
            spawn_fn: SpawnFn::new(move |supervisor, name| {
                let start = start.clone();
                let starts = starts.clone();
                let kind = kind.clone();
                async move {
                    let restarts = starts.fetch_add(1, Ordering::Relaxed);
                    let cell = start(supervisor, name.clone()).await?;
                    meta::record_start(&name, &kind, Some(restart), restarts);
                    if restarts > 0 {
                        tracing::warn!(actor = %name, kind = %kind, restarts, "restarted");
                    }
                    Ok(cell)
                }
            }),
            backoff_fn: backoff.to_backoff_fn(),
            // A child that stayed up for a whole intensity window starts its backoff afresh.
            reset_after: Some(intensity.within),
        }
    }
}

impl SupervisorSpec {
    /// `name` is the supervisor's actor name; it must be unique in the process, so services
    /// prefix their actors with the service name (`user`, `user.http`, …).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            intensity: Intensity::default(),
            children: Vec::new(),
        }
    }

    pub fn intensity(mut self, intensity: Intensity) -> Self {
        self.intensity = intensity;
        self
    }

    pub fn child(mut self, child: Child) -> Self {
        self.children.push(child);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn children_count(&self) -> usize {
        self.children.len()
    }

    fn arguments(&self) -> SupervisorArguments {
        let intensity = self.intensity;
        SupervisorArguments {
            child_specs: self
                .children
                .iter()
                .cloned()
                .map(|child| child.into_spec(intensity))
                .collect(),
            options: SupervisorOptions {
                strategy: SupervisorStrategy::OneForOne,
                max_restarts: intensity.max_restarts,
                max_window: intensity.within,
                // Restarts older than the window are forgotten by the window itself; a quiet
                // period of twice the window clears the log outright.
                reset_after: Some(intensity.within.saturating_mul(2)),
            },
        }
    }

    /// Starts this supervisor under `parent`. Its children start right after it does.
    pub async fn spawn_linked(
        self,
        parent: ActorCell,
    ) -> Result<ActorRef<SupervisorMsg>, SpawnErr> {
        let (actor_ref, _) = Actor::spawn_linked(
            Some(self.name.clone()),
            Supervisor,
            self.arguments(),
            parent,
        )
        .await?;
        meta::record_start(&self.name, SUPERVISOR_KIND, None, 0);
        Ok(actor_ref)
    }

    /// Starts this supervisor with no parent (tests; services use [`crate::service::start`]).
    pub async fn spawn(self) -> Result<ActorRef<SupervisorMsg>, SpawnErr> {
        let (actor_ref, _) =
            Actor::spawn(Some(self.name.clone()), Supervisor, self.arguments()).await?;
        meta::record_start(&self.name, SUPERVISOR_KIND, None, 0);
        Ok(actor_ref)
    }
}

/// How long [`wait_for_children`] waits by default: a supervisor starts its children in
/// `post_start`, just after `spawn` returns.
pub const CHILDREN_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until `supervisor` has `count` live children (its children start asynchronously).
pub async fn wait_for_children(supervisor: &ActorCell, count: usize, timeout: Duration) -> bool {
    crate::testing::wait_until(timeout, || supervisor.get_children().len() >= count).await
}

#[cfg(test)]
#[path = "supervisor_tests.rs"]
pub(crate) mod tests;
