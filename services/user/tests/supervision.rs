//! The user service's tree under faults, in-process, against the PostgreSQL dev/test started:
//! a killed child comes back and the service keeps answering.

use std::time::Duration;

use shop_actors::testing::wait_until;
use shop_actors::tree::{SnapshotLimits, snapshot};
use shop_config::Settings;
use shop_web::Shutdown;

const WAIT: Duration = Duration::from_secs(10);

fn settings_on_a_free_port() -> (Settings, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port");
    let settings = Settings::from_lookup(&move |name| match name {
        "SHOP_USER_PORT" => Some(port.to_string()),
        _ => std::env::var(name).ok(),
    })
    .expect("the settings dev/test exports are valid");
    (settings, port)
}

async fn status_of(client: &reqwest::Client, url: &str) -> Option<u16> {
    client
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()
        .map(|response| response.status().as_u16())
}

#[tokio::test]
async fn killed_children_of_the_user_service_are_restarted_and_it_keeps_serving() {
    let (settings, port) = settings_on_a_free_port();
    let shutdown = Shutdown::new();
    let service = shop_user::start(&settings, shutdown.clone())
        .await
        .expect("the user service starts");
    // No keep-alive: a killed server's open connections would answer for it.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client");
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(
        status_of(&client, &format!("{base}/ready")).await,
        Some(200)
    );

    // The HTTP server actor is killed: its supervisor starts a new one on the same port.
    let http = ractor::registry::where_is("user.http").expect("user.http runs");
    let killed = http.get_id();
    http.kill();
    let restarted = || {
        let tree = snapshot(service.root(), SnapshotLimits::default());
        tree.find("user.http")
            .is_some_and(|node| node.status == "running" && node.id != killed.to_string())
    };
    assert!(wait_until(WAIT, restarted).await);
    let mut serving = false;
    for _ in 0..50 {
        if status_of(&client, &format!("{base}/health")).await == Some(200) {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(serving, "the restarted server does not answer");

    // A hashing worker is killed: the pool replaces it, and hashing still works.
    let pool = ractor::registry::where_is("user.hasher").expect("the pool runs");
    let workers = pool.get_children().len();
    assert_eq!(workers, settings.user.hasher_workers);
    pool.get_children()[0].kill();
    assert!(wait_until(WAIT, || pool.get_children().len() == workers).await);
    let registered = client
        .post(format!("{base}/users/register"))
        .json(&serde_json::json!({
            "email": format!("sup-{}@shop.test", uuid::Uuid::new_v4().simple()),
            "password": "correct-horse-battery",
            "name": "Supervised",
        }))
        .send()
        .await
        .expect("the service answers");
    assert_eq!(registered.status().as_u16(), 201);

    let tree = snapshot(service.root(), SnapshotLimits::default());
    assert_eq!(tree.find("user.http").map(|node| node.restarts), Some(1));
    assert_eq!(tree.find("user.hasher").map(|node| node.restarts), Some(0));

    shutdown.trigger();
    assert!(shutdown.drained(WAIT).await);
    service.stop(WAIT).await;
    assert_eq!(service.stopped().await, Ok(()));
    assert_eq!(status_of(&client, &format!("{base}/health")).await, None);
}
