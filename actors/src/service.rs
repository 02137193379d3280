//! Running a service's tree: the root supervisor under a guardian that notices when the tree gives
//! up, says so in one clear log line, and lets the process end with an error instead of lingering
//! half-alive.

use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use tokio::sync::watch;

use crate::supervisor::SupervisorSpec;

/// Why a service's tree stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceStopped {
    #[error("service {service} gave up: {reason}")]
    GaveUp { service: String, reason: String },
}

/// A running service tree.
pub struct Service {
    name: String,
    root: ActorCell,
    guardian: ActorRef<()>,
    outcome: watch::Receiver<Option<Result<(), ServiceStopped>>>,
}

/// Starts `spec` as the root of a service and waits until its direct children have started.
pub async fn start(spec: SupervisorSpec) -> Result<Service, SpawnErr> {
    let name = spec.name().to_owned();
    let expected_children = spec.children_count();
    let (sender, outcome) = watch::channel(None);
    let (guardian, _) = Actor::spawn(
        Some(format!("{name}.guardian")),
        Guardian,
        GuardianArgs {
            spec,
            outcome: sender,
        },
    )
    .await?;
    let root = guardian
        .get_children()
        .into_iter()
        .next()
        .ok_or_else(|| SpawnErr::StartupFailed("the root supervisor did not start".into()))?;
    crate::supervisor::wait_for_children(
        &root,
        expected_children,
        crate::supervisor::CHILDREN_START_TIMEOUT,
    )
    .await;
    Ok(Service {
        name,
        root,
        guardian,
        outcome,
    })
}

impl Service {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The root supervisor: where a tree snapshot starts.
    pub fn root(&self) -> &ActorCell {
        &self.root
    }

    /// Resolves when the tree stops: `Ok` after [`Service::stop`], `Err` when it gave up.
    pub async fn stopped(&self) -> Result<(), ServiceStopped> {
        let mut outcome = self.outcome.clone();
        loop {
            if let Some(result) = outcome.borrow_and_update().clone() {
                return result;
            }
            if outcome.changed().await.is_err() {
                return Ok(());
            }
        }
    }

    /// Stops the whole tree and waits up to `timeout` for it. Children are not restarted: the
    /// root stops, and ractor takes its children down with it.
    pub async fn stop(&self, timeout: Duration) {
        let _ = self.root.stop_and_wait(None, Some(timeout)).await;
        let _ = self.guardian.stop_and_wait(None, Some(timeout)).await;
    }
}

struct Guardian;

struct GuardianArgs {
    spec: SupervisorSpec,
    outcome: watch::Sender<Option<Result<(), ServiceStopped>>>,
}

struct GuardianState {
    service: String,
    outcome: watch::Sender<Option<Result<(), ServiceStopped>>>,
}

impl Actor for Guardian {
    type Msg = ();
    type State = GuardianState;
    type Arguments = GuardianArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        args: GuardianArgs,
    ) -> Result<GuardianState, ActorProcessingErr> {
        let service = args.spec.name().to_owned();
        args.spec.spawn_linked(myself.get_cell()).await?;
        tracing::info!(service = %service, "supervision tree started");
        Ok(GuardianState {
            service,
            outcome: args.outcome,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<()>,
        _message: (),
        _state: &mut GuardianState,
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut GuardianState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(_, error) => {
                let reason = error.to_string();
                tracing::error!(
                    service = %state.service,
                    %reason,
                    "supervision tree gave up: restart intensity exceeded below the root; stopping the service"
                );
                state.outcome.send_replace(Some(Err(ServiceStopped::GaveUp {
                    service: state.service.clone(),
                    reason,
                })));
                myself.stop(None);
            }
            SupervisionEvent::ActorTerminated(..) => {
                tracing::info!(service = %state.service, "supervision tree stopped");
                state.outcome.send_replace(Some(Ok(())));
                myself.stop(None);
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<()>,
        state: &mut GuardianState,
    ) -> Result<(), ActorProcessingErr> {
        state.outcome.send_if_modified(|outcome| {
            if outcome.is_none() {
                *outcome = Some(Ok(()));
                true
            } else {
                false
            }
        });
        Ok(())
    }
}
