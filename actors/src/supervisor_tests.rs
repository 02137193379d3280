use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, registry};

use crate::testing::wait_until;
use crate::tree::{SnapshotLimits, snapshot};
use crate::{Backoff, Child, Intensity, Restart, SupervisorSpec, service};

/// A child that does what it is told: panic, fail with an error, or stop normally.
pub(crate) struct Obedient;

pub(crate) enum Order {
    Panic,
    Fail,
    Stop,
}

impl Actor for Obedient {
    type Msg = Order;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Order>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Order>,
        order: Order,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match order {
            Order::Panic => panic!("told to panic"),
            Order::Fail => Err("told to fail".into()),
            Order::Stop => {
                myself.stop(None);
                Ok(())
            }
        }
    }
}

pub(crate) fn obedient(name: &str, restart: Restart) -> Child {
    Child::actor(name, "worker", restart, || (Obedient, ())).backoff(Backoff::None)
}

fn send(name: &str, order: Order) {
    let actor: ActorRef<Order> = registry::where_is(name)
        .unwrap_or_else(|| panic!("{name} is not running"))
        .into();
    actor.send_message(order).expect("send");
}

fn id_of(name: &str) -> Option<ractor::ActorId> {
    registry::where_is(name).map(|cell| cell.get_id())
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_panicking_permanent_child_is_restarted_under_the_same_name() {
    let service =
        service::start(SupervisorSpec::new("t1").child(obedient("t1.worker", Restart::Permanent)))
            .await
            .unwrap();
    let first = id_of("t1.worker").unwrap();

    send("t1.worker", Order::Panic);

    assert!(wait_until(WAIT, || id_of("t1.worker").is_some_and(|id| id != first)).await);
    let tree = snapshot(service.root(), SnapshotLimits::default());
    assert_eq!(tree.find("t1.worker").unwrap().restarts, 1);
    service.stop(WAIT).await;
}

#[tokio::test]
async fn a_child_returning_an_error_is_restarted_like_a_panicking_one() {
    let service =
        service::start(SupervisorSpec::new("t2").child(obedient("t2.worker", Restart::Transient)))
            .await
            .unwrap();
    let first = id_of("t2.worker").unwrap();

    send("t2.worker", Order::Fail);

    assert!(wait_until(WAIT, || id_of("t2.worker").is_some_and(|id| id != first)).await);
    service.stop(WAIT).await;
}

#[tokio::test]
async fn a_transient_child_that_stops_normally_stays_stopped() {
    let service = service::start(
        SupervisorSpec::new("t3")
            .child(obedient("t3.transient", Restart::Transient))
            .child(obedient("t3.permanent", Restart::Permanent)),
    )
    .await
    .unwrap();
    let permanent = id_of("t3.permanent").unwrap();

    send("t3.transient", Order::Stop);
    send("t3.permanent", Order::Stop);

    // The permanent one comes back; by then the transient one would have too.
    assert!(
        wait_until(WAIT, || id_of("t3.permanent")
            .is_some_and(|id| id != permanent))
        .await
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(id_of("t3.transient"), None);
    service.stop(WAIT).await;
}

#[tokio::test]
async fn a_temporary_child_is_never_restarted() {
    let service =
        service::start(SupervisorSpec::new("t4").child(obedient("t4.worker", Restart::Temporary)))
            .await
            .unwrap();

    send("t4.worker", Order::Panic);

    assert!(wait_until(WAIT, || id_of("t4.worker").is_none()).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(id_of("t4.worker"), None);
    assert!(id_of("t4").is_some(), "the supervisor itself carries on");
    service.stop(WAIT).await;
}

#[tokio::test]
async fn a_child_panicking_past_the_intensity_makes_the_service_give_up() {
    let service = service::start(
        SupervisorSpec::new("t5")
            .intensity(Intensity::new(2, Duration::from_secs(10)))
            .child(obedient("t5.worker", Restart::Permanent)),
    )
    .await
    .unwrap();

    // Two restarts are within the intensity; the third failure is one too many.
    for restarts_so_far in 0..3 {
        let before = id_of("t5.worker").unwrap();
        send("t5.worker", Order::Panic);
        if restarts_so_far < 2 {
            assert!(wait_until(WAIT, || id_of("t5.worker").is_some_and(|id| id != before)).await);
        }
    }

    let outcome = tokio::time::timeout(WAIT, service.stopped()).await.unwrap();
    let Err(service::ServiceStopped::GaveUp {
        service: name,
        reason,
    }) = outcome
    else {
        panic!("expected the service to give up, got {outcome:?}");
    };
    assert_eq!(name, "t5");
    assert!(reason.contains("max_restarts"), "{reason}");
    assert_eq!(id_of("t5"), None);
    assert_eq!(id_of("t5.worker"), None);
}

#[tokio::test]
async fn a_nested_supervisor_that_gives_up_is_restarted_by_its_parent() {
    let inner = SupervisorSpec::new("t6.inner")
        .intensity(Intensity::new(1, Duration::from_secs(10)))
        .child(obedient("t6.inner.worker", Restart::Permanent));
    let service = service::start(
        SupervisorSpec::new("t6")
            .child(Child::supervisor(inner, Restart::Permanent).backoff(Backoff::None))
            .child(obedient("t6.sibling", Restart::Permanent)),
    )
    .await
    .unwrap();
    let inner_before = id_of("t6.inner").unwrap();
    let sibling = id_of("t6.sibling").unwrap();
    assert!(wait_until(WAIT, || id_of("t6.inner.worker").is_some()).await);

    let worker = id_of("t6.inner.worker").unwrap();
    send("t6.inner.worker", Order::Panic);
    assert!(
        wait_until(WAIT, || id_of("t6.inner.worker")
            .is_some_and(|id| id != worker))
        .await
    );
    send("t6.inner.worker", Order::Panic);

    // The inner supervisor melts down; the root restarts it, with a fresh worker, and leaves the
    // sibling alone.
    assert!(
        wait_until(WAIT, || id_of("t6.inner")
            .is_some_and(|id| id != inner_before))
        .await
    );
    assert!(wait_until(WAIT, || id_of("t6.inner.worker").is_some()).await);
    assert_eq!(id_of("t6.sibling"), Some(sibling));
    let tree = snapshot(service.root(), SnapshotLimits::default());
    assert_eq!(tree.find("t6.inner").unwrap().restarts, 1);
    service.stop(WAIT).await;
}

#[tokio::test]
async fn a_failing_child_is_restarted_after_its_backoff() {
    let service = service::start(SupervisorSpec::new("t7").child(
        obedient("t7.worker", Restart::Permanent).backoff(Backoff::Exponential {
            first: Duration::from_millis(300),
            max: Duration::from_secs(1),
        }),
    ))
    .await
    .unwrap();

    // The first restart is immediate, the second waits `first`.
    let first = id_of("t7.worker").unwrap();
    send("t7.worker", Order::Panic);
    assert!(wait_until(WAIT, || id_of("t7.worker").is_some_and(|id| id != first)).await);
    let second = id_of("t7.worker").unwrap();
    let failed_at = std::time::Instant::now();
    send("t7.worker", Order::Panic);
    assert!(wait_until(WAIT, || id_of("t7.worker").is_some_and(|id| id != second)).await);
    assert!(failed_at.elapsed() >= Duration::from_millis(300));
    service.stop(WAIT).await;
}

#[tokio::test]
async fn stopping_a_service_stops_every_actor_and_reports_a_clean_stop() {
    let service = service::start(
        SupervisorSpec::new("t8")
            .child(obedient("t8.a", Restart::Permanent))
            .child(obedient("t8.b", Restart::Permanent)),
    )
    .await
    .unwrap();

    service.stop(WAIT).await;

    assert_eq!(
        tokio::time::timeout(WAIT, service.stopped()).await.unwrap(),
        Ok(())
    );
    assert!(wait_until(WAIT, || id_of("t8.a").is_none() && id_of("t8.b").is_none()).await);
}
