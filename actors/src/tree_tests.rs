use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::supervisor::tests::obedient;
use crate::testing::wait_until;
use crate::tree::{SnapshotLimits, snapshot};
use crate::{Child, Restart, SupervisorSpec, meta, service};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_snapshot_shows_exactly_the_tree_that_was_built() {
    let pool = SupervisorSpec::new("s1.pool")
        .child(obedient("s1.pool.a", Restart::Permanent))
        .child(obedient("s1.pool.b", Restart::Transient));
    let service = service::start(
        SupervisorSpec::new("s1")
            .child(obedient("s1.http", Restart::Permanent))
            .child(Child::supervisor(pool, Restart::Permanent)),
    )
    .await
    .unwrap();
    let pool_cell = ractor::registry::where_is("s1.pool").unwrap();
    assert!(wait_until(WAIT, || pool_cell.get_children().len() == 2).await);

    let tree = snapshot(service.root(), SnapshotLimits::default());

    assert_eq!(
        outline(&tree),
        vec![
            "s1 supervisor running",
            "  s1.http worker running permanent",
            "  s1.pool supervisor running permanent",
            "    s1.pool.a worker running permanent",
            "    s1.pool.b worker running transient",
        ]
    );
    assert!(tree.started_at.is_some());
    assert!(tree.children.iter().all(|child| child.restarts == 0));
    let json = serde_json::to_value(&tree).unwrap();
    assert_eq!(json["children"][1]["children"][0]["name"], "s1.pool.a");
    assert_eq!(json["children"][1]["children"][0]["restart"], "permanent");
    service.stop(WAIT).await;
}

fn outline(node: &crate::ActorNode) -> Vec<String> {
    fn walk(node: &crate::ActorNode, depth: usize, out: &mut Vec<String>) {
        let policy = node
            .restart
            .map(|restart| {
                format!(
                    " {}",
                    serde_json::to_value(restart).unwrap().as_str().unwrap()
                )
            })
            .unwrap_or_default();
        out.push(format!(
            "{}{} {} {}{}",
            "  ".repeat(depth),
            node.name.as_deref().unwrap_or("-"),
            node.kind,
            node.status,
            policy
        ));
        let mut children: Vec<_> = node.children.iter().collect();
        children.sort_by_key(|child| child.name.clone());
        for child in children {
            walk(child, depth + 1, out);
        }
    }
    let mut out = Vec::new();
    walk(node, 0, &mut out);
    out
}

/// A registry that starts plain children by itself, like the cart registry will.
struct Registry;

impl Actor for Registry {
    type Msg = usize;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<usize>, _: ()) -> Result<(), ActorProcessingErr> {
        meta::mark_group(&myself.get_name().unwrap_or_default());
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<usize>,
        count: usize,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        for index in 0..count {
            let name = format!("s2.entity.{index}");
            Actor::spawn_linked(
                Some(name.clone()),
                crate::supervisor::tests::Obedient,
                (),
                myself.get_cell(),
            )
            .await?;
            meta::track(&name, "entity", Restart::Temporary, 0);
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_dynamic_group_is_summarised_as_a_count_and_the_first_few() {
    let service = service::start(SupervisorSpec::new("s2").child(Child::actor(
        "s2.registry",
        "registry",
        Restart::Permanent,
        || (Registry, ()),
    )))
    .await
    .unwrap();
    let registry: ActorRef<usize> = ractor::registry::where_is("s2.registry").unwrap().into();
    registry.send_message(250).unwrap();
    assert!(wait_until(WAIT, || registry.get_children().len() == 250).await);

    let tree = snapshot(
        service.root(),
        SnapshotLimits {
            group_sample: 5,
            max_children: 100,
        },
    );

    let group = tree.find("s2.registry").unwrap();
    assert_eq!(group.kind, "registry");
    assert_eq!(group.children.len(), 5);
    assert_eq!(group.children_total, Some(250));
    assert!(group.children.iter().all(|child| child.kind == "entity"));
    assert!(serde_json::to_string(&tree).unwrap().len() < 4_000);
    assert!(group.render_text().contains("… 245 more"));
    service.stop(WAIT).await;
}
