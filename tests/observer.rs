//! Watching and poking the supervision trees: an operator stops an actor and its supervisor
//! brings it back under the policy it declared.

mod common;

use std::time::Duration;

use common::orders::{Ordering, products};
use common::{Shopper, client, env, get_json, problem};
use reqwest::StatusCode;
use serde_json::Value;

fn find<'a>(node: &'a Value, name: &str) -> Option<&'a Value> {
    if node["name"] == name {
        return Some(node);
    }
    node["children"]
        .as_array()?
        .iter()
        .find_map(|child| find(child, name))
}

async fn metrics_of(service: &str) -> String {
    let url = format!("{}/metrics", env(service));
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn stop(service: &str, name: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = client().post(format!("{}/admin/actors/{name}/stop", env(service)));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// Waits (up to 20 s) until the named actor in the service's tree is running after a restart.
async fn restarted(service: &str, name: &str, token: &str) -> Value {
    let url = format!("{}/admin/tree?sample=1000", env(service));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let tree = get_json(&client(), &url, Some(token)).await;
        if let Some(node) = find(&tree, name)
            && node["restarts"].as_u64() >= Some(1)
            && node["status"] == "running"
        {
            return node.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never came back: {tree}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn stopping_an_actor_takes_an_admin_and_spares_the_root() {
    let customer = Shopper::customer().await;
    let admin = Shopper::admin().await;
    problem(stop("SHOP_CART_URL", "cart.http", None).await, 401).await;
    problem(
        stop("SHOP_CART_URL", "cart.http", Some(&customer.token)).await,
        403,
    )
    .await;
    problem(stop("SHOP_CART_URL", "cart", Some(&admin.token)).await, 409).await;
    problem(
        stop("SHOP_CART_URL", "nobody", Some(&admin.token)).await,
        404,
    )
    .await;
    // An actor of another service is not this service's to stop.
    problem(
        stop("SHOP_CART_URL", "payment.sweeper", Some(&admin.token)).await,
        404,
    )
    .await;
    let tree = get_json(
        &client(),
        format!("{}/admin/tree", env("SHOP_CART_URL")),
        Some(&admin.token),
    )
    .await;
    assert_eq!(tree["status"], "running");
}

#[tokio::test]
async fn a_stopped_permanent_child_is_restarted_by_its_supervisor() {
    let admin = Shopper::admin().await;
    let stopped = stop("SHOP_PAYMENT_URL", "payment.sweeper", Some(&admin.token)).await;
    assert_eq!(stopped.status(), StatusCode::ACCEPTED);
    let node = restarted("SHOP_PAYMENT_URL", "payment.sweeper", &admin.token).await;
    assert_eq!(node["restart"], "permanent");
}

#[tokio::test]
async fn a_stopped_cart_actor_is_restarted_with_its_cart_intact() {
    let shopper = Shopper::customer().await;
    let admin = Shopper::admin().await;
    let shelf = products(&[5]).await;
    shopper.put_in_cart(&shelf[0], 2).await;
    let name = format!("cart:{}", shopper.id);
    let stopped = stop("SHOP_CART_URL", &name, Some(&admin.token)).await;
    assert_eq!(stopped.status(), StatusCode::ACCEPTED);
    let node = restarted("SHOP_CART_URL", &name, &admin.token).await;
    assert_eq!(node["restart"], "transient");
    assert_eq!(node["last_failure"], "stopped by an operator");
    let cart = shopper.cart().await;
    assert_eq!(cart["items"][0]["quantity"], 2, "{cart}");
}

#[tokio::test]
async fn metrics_count_the_actors_alive_and_restarted_by_kind() {
    let shopper = Shopper::customer().await;
    let admin = Shopper::admin().await;
    let shelf = products(&[5]).await;
    shopper.put_in_cart(&shelf[0], 1).await;
    let metrics = metrics_of("SHOP_CART_URL").await;
    assert!(
        metrics.contains("shop_actors_alive{kind=\"registry\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shop_actors_alive{kind=\"cart\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shop_actor_messages_handled{kind=\"cart\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shop_actor_handling_seconds{kind=\"cart\"}"),
        "{metrics}"
    );
    // The cart's own figures in the tree: it handled the add (and its write's result).
    let tree = get_json(
        &client(),
        format!("{}/admin/tree?sample=1000", env("SHOP_CART_URL")),
        Some(&admin.token),
    )
    .await;
    let cart = find(&tree, &format!("cart:{}", shopper.id)).expect("the cart is in the tree");
    assert!(cart["messages"].as_u64() >= Some(1), "{cart}");
    assert!(cart["mean_handling_ms"].as_f64().is_some(), "{cart}");

    let stopped = stop("SHOP_PAYMENT_URL", "payment.outbox", Some(&admin.token)).await;
    assert_eq!(stopped.status(), StatusCode::ACCEPTED);
    restarted("SHOP_PAYMENT_URL", "payment.outbox", &admin.token).await;
    let metrics = metrics_of("SHOP_PAYMENT_URL").await;
    let restarts = metrics
        .lines()
        .find(|line| line.starts_with("shop_actor_restarts{kind=\"relay\"}"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|count| count.parse::<i64>().ok());
    assert!(restarts.is_some_and(|count| count >= 1), "{metrics}");

    // The payment service's consumer reports how far behind shop.orders it is (measured every 5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = metrics_of("SHOP_PAYMENT_URL").await;
        if metrics.contains("shop_kafka_consumer_lag{group=\"payment\",partition=") {
            assert!(metrics.contains("topic=\"shop.orders\""), "{metrics}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no consumer lag: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_observer_page_shows_six_trees_and_stops_a_cart_actor_that_comes_back() {
    let shopper = Shopper::customer().await;
    let seen = common::observer_page(&shopper, "observer.png").await;
    assert_eq!(seen["trees"], 6);
    assert!(seen["restarts"].as_u64() >= Some(1), "{seen}");
    assert!(
        seen["bridge"]
            .as_str()
            .is_some_and(|state| state.starts_with("consumer joined")),
        "{seen}"
    );
}

/// Every consuming service's bridge says its consumer joined, in the tree and on `/metrics`
/// (within a minute: an earlier test binary may have restarted Kafka).
#[tokio::test]
async fn every_consuming_bridge_shows_its_consumer_joined_in_the_tree_and_the_metrics() {
    let admin = Shopper::admin().await;
    for service in common::groups::CONSUMING_SERVICES {
        let base = format!("SHOP_{}_URL", service.to_uppercase());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let tree = get_json(
                &client(),
                format!("{}/admin/tree", env(&base)),
                Some(&admin.token),
            )
            .await;
            let bridge = find(&tree, &format!("{service}.bridge")).expect("a bridge");
            let detail = bridge["detail"].as_str().unwrap_or_default().to_owned();
            let metrics = metrics_of(&base).await;
            let missing: Vec<String> = [
                format!("shop_kafka_consumer_member{{group=\"{service}\"}} 1"),
                format!("shop_kafka_consumer_restarts_total{{group=\"{service}\",reason=\"out_of_group\"}}"),
            ]
            .into_iter()
            .filter(|series| !metrics.contains(series))
            .collect();
            if detail.starts_with("consumer joined: ") && missing.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{service}: bridge state {detail:?}, metrics without {missing:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[tokio::test]
async fn the_gateway_serves_the_page_and_every_services_tree_to_admins_only() {
    let customer = Shopper::customer().await;
    let admin = Shopper::admin().await;
    let page = client().get(common::url("/admin/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Shop observer"));
    for service in common::SERVICES {
        let url = common::url(&format!("/admin/services/{service}/tree"));
        problem(client().get(&url).send().await.unwrap(), 401).await;
        problem(
            customer
                .get(&format!("/admin/services/{service}/tree"))
                .await,
            403,
        )
        .await;
        let tree = get_json(&client(), &url, Some(&admin.token)).await;
        assert_eq!(tree["name"], service);
    }
    problem(admin.get("/admin/services/nobody/tree").await, 404).await;
}
