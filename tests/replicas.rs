//! The replica suite (`dev/test --replicas`): the whole system with two processes of every
//! service behind nginx, which hashes each customer to one of them. What a customer must not
//! notice: which replica answered.
//!
//! `#[ignore]`d in the ordinary run (one process of each there); dev/test --replicas restarts
//! the services as two replicas each and runs these.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::orders::{Ordering, products, state_becomes, stock};
use common::{SERVICES, Shopper, admin, charges_of, client, env, get_json, url, wait_for_mails};
use futures::future::join_all;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

const REPLICAS: usize = 2;

fn instance(response: &Response) -> String {
    response
        .headers()
        .get("x-shop-instance")
        .and_then(|value| value.to_str().ok())
        .expect("every answer names its replica")
        .to_owned()
}

/// Replica `n` of `service`, bypassing nginx (replica k listens on the port + 10·(k−1)).
fn replica_url(service: &str, n: u16) -> String {
    let port: u16 = env(&format!("SHOP_{}_PORT", service.to_uppercase()))
        .parse()
        .expect("a port");
    format!("http://127.0.0.1:{}", port + 10 * (n - 1))
}

#[tokio::test]
#[ignore = "replica suite: dev/test --replicas"]
async fn every_replica_answers_by_number_and_joins_its_services_consumer_group() {
    let admin = Shopper::admin().await;
    let counts = get_json(&client(), url("/admin/replicas"), None).await;
    for service in SERVICES {
        assert_eq!(counts[service], REPLICAS, "{counts}");
        let mut names = HashSet::new();
        for n in 1..=REPLICAS {
            let response = admin
                .get(&format!("/admin/services/{service}/replicas/{n}/tree"))
                .await;
            assert_eq!(response.status(), StatusCode::OK, "{service} replica {n}");
            names.insert(instance(&response));
            let tree: Value = response.json().await.unwrap();
            assert_eq!(tree["name"], service);
        }
        assert_eq!(
            names.len(),
            REPLICAS,
            "two processes of {service}: {names:?}"
        );
        common::problem(
            admin
                .get(&format!("/admin/services/{service}/replicas/3/tree"))
                .await,
            404,
        )
        .await;
    }

    // Both replicas of each consuming service share its partitions (one group per service).
    assert_eq!(common::groups::replicas(), REPLICAS);
    if let Err(broken) =
        common::groups::wait_until_whole(Duration::from_secs(30), Duration::from_secs(1)).await
    {
        panic!("{broken}");
    }
}

#[tokio::test]
#[ignore = "replica suite: dev/test --replicas"]
async fn each_customer_sticks_to_one_replica_and_customers_spread_over_both() {
    let customers = join_all((0..16).map(|_| Shopper::customer())).await;
    let mut cart_replicas = HashSet::new();
    for customer in &customers {
        let opened = customer.post("/carts").await;
        assert!(opened.status().is_success(), "{}", opened.status());
        let mut seen: HashMap<&str, HashSet<String>> = HashMap::new();
        for _ in 0..3 {
            for (service, path) in [("cart", "/carts/me"), ("order", "/orders")] {
                let response = customer.get(path).await;
                assert_eq!(response.status(), StatusCode::OK, "{path}");
                seen.entry(service).or_default().insert(instance(&response));
            }
            // An admin reading the customer's cart by id reaches the same replica.
            let by_id = Shopper::admin()
                .await
                .get(&format!("/carts/{}", customer.id))
                .await;
            seen.entry("cart").or_default().insert(instance(&by_id));
        }
        for (service, replicas) in &seen {
            assert_eq!(replicas.len(), 1, "{service} of one customer: {replicas:?}");
        }
        cart_replicas.extend(seen.remove("cart").unwrap_or_default());
    }
    assert_eq!(
        cart_replicas.len(),
        REPLICAS,
        "16 customers all hashed to {cart_replicas:?}"
    );
}

#[tokio::test]
#[ignore = "replica suite: dev/test --replicas"]
async fn customers_buying_at_once_are_charged_once_and_mailed_once_each() {
    let shelf = products(&[100]).await;
    let customers = join_all((0..8).map(|_| Shopper::customer())).await;
    let admin = Shopper::admin().await;
    let bought = join_all(customers.iter().map(|customer| async {
        customer.put_in_cart(&shelf[0], 2).await;
        let order = customer.checkout("pm_card_visa").await;
        let id = order["id"].as_str().unwrap().to_owned();
        state_becomes(customer, &id, "paid").await;
        for (action, state) in [
            ("ship?carrier=DHL&tracking_number=T-1", "shipped"),
            ("deliver", "delivered"),
        ] {
            let response = admin.post(&format!("/orders/{id}/{action}")).await;
            assert_eq!(response.status(), StatusCode::OK, "{action}");
            state_becomes(customer, &id, state).await;
        }
        let cart = customer.cart().await;
        assert_eq!(cart["items"], json!([]), "the cart was emptied: {cart}");
        id
    }))
    .await;
    for id in &bought {
        assert_eq!(charges_of(id.parse().unwrap()).await, 1, "order {id}");
    }
    let left = stock(&shelf[0]).await;
    assert_eq!(left["on_hand"], 100 - 2 * 8, "{left}");
    assert_eq!(left["reserved"], 0, "{left}");
    // Welcome, confirmation, receipt, shipped, delivered: each once, though two replicas of the
    // notification service sweep for messages to send.
    for customer in &customers {
        let subjects = wait_for_mails(&customer.email, 5).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let again = common::mails_to(&customer.email).await;
        assert_eq!(again.len(), 5, "{subjects:?} then {again:?}");
        assert_eq!(again.iter().collect::<HashSet<_>>().len(), 5, "{again:?}");
    }
}

#[tokio::test]
#[ignore = "replica suite: dev/test --replicas"]
async fn a_cart_changed_on_the_other_replica_is_read_and_kept_on_its_own() {
    changed_on_the_other_replica(false).await;
}

/// As above, with the cart hibernated on its own replica meanwhile (dev/test: after 1 s idle,
/// forgotten after 3 s): woken from its record, it still finds the other replica's change.
#[tokio::test]
#[ignore = "replica suite: dev/test --replicas"]
async fn a_cart_changed_on_the_other_replica_while_hibernated_is_read_and_kept_on_waking() {
    changed_on_the_other_replica(true).await;
}

/// Whether the replica holds the customer's cart as an awake actor.
async fn awake_on(replica: u16, customer: &Shopper) -> bool {
    let admin = admin(&customer.client).await.access_token;
    let tree = get_json(
        &client(),
        format!("{}/admin/tree?sample=100000", replica_url("cart", replica)),
        Some(&admin),
    )
    .await;
    tree.to_string()
        .contains(&format!("\"cart:{}\"", customer.id))
}

async fn changed_on_the_other_replica(hibernated: bool) {
    let shelf = products(&[50, 50, 50]).await;
    let customer = Shopper::customer().await;
    let first = customer.add(&shelf[0], 1).await;
    assert_eq!(first.status(), StatusCode::OK);
    let own = instance(&first);
    let own_number = if own == "cart" { 1 } else { 2 };
    let woken_before = cart_metric(own_number, "shop_cart_woken_total").await;
    if hibernated {
        let since = std::time::Instant::now();
        while awake_on(own_number, &customer).await {
            assert!(
                since.elapsed() < Duration::from_secs(3),
                "the cart did not hibernate"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A change that reaches the other replica (as after nginx moved the customer there).
    let other = if own == "cart" { 2 } else { 1 };
    let elsewhere = client()
        .post(format!("{}/carts/me/items", replica_url("cart", other)))
        .bearer_auth(&customer.token)
        .json(&json!({ "product_id": shelf[1], "quantity": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::OK);
    assert_ne!(instance(&elsewhere), own);

    let quantities = |cart: &Value| -> HashMap<String, i64> {
        cart["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                let id = item["product_id"].as_str().unwrap().to_owned();
                (id, item["quantity"].as_i64().unwrap())
            })
            .collect()
    };
    let read = customer.cart().await;
    let expected = HashMap::from([(shelf[0].clone(), 1), (shelf[1].clone(), 2)]);
    assert_eq!(
        quantities(&read),
        expected,
        "its own replica reads the other's change"
    );
    let third = customer.add(&shelf[2], 3).await;
    assert_eq!(third.status(), StatusCode::OK);
    assert_eq!(instance(&third), own);
    let kept = customer.cart().await;
    let expected = HashMap::from([
        (shelf[0].clone(), 1),
        (shelf[1].clone(), 2),
        (shelf[2].clone(), 3),
    ]);
    assert_eq!(quantities(&kept), expected, "the next change kept it");
    if hibernated {
        let woken = cart_metric(own_number, "shop_cart_woken_total").await;
        assert!(woken > woken_before, "woken from its record, not read");
    }
}

/// The sum of a metric's samples on a cart replica.
async fn cart_metric(replica: u16, name: &str) -> f64 {
    common::metric_sum(&replica_url("cart", replica), name).await
}

/// Requests the cart replicas handled so far (their own metrics).
async fn cart_requests(replica: u16) -> f64 {
    common::metric_sum_where(&replica_url("cart", replica), |line| {
        line.starts_with("shop_http_requests_total") && line.contains("service=\"cart\"")
    })
    .await
}

#[tokio::test]
#[ignore = "replica suite: dev/test --replicas"]
async fn cart_load_on_both_replicas_loses_no_update() {
    for (scenario, args) in [
        ("hot", &["--hot", "--requests", "3000"][..]),
        ("many", &["--users", "200", "--requests", "6000"][..]),
    ] {
        let before = [cart_requests(1).await, cart_requests(2).await];
        let report = std::env::temp_dir().join(format!("shop-replicas-{scenario}.json"));
        let report_path = report.to_string_lossy().into_owned();
        let mut load = vec![
            "load",
            "cart",
            "--concurrency",
            "32",
            "--json",
            &report_path,
        ];
        load.extend_from_slice(args);
        common::shop(&load).await;
        let report: Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).expect("the JSON report");
        assert_eq!(report["lost_updates"], json!([]), "{scenario}: {report}");
        assert_eq!(
            report["errors_by_status"],
            json!({}),
            "{scenario}: {report}"
        );
        if scenario == "many" {
            let after = [cart_requests(1).await, cart_requests(2).await];
            for replica in 0..2 {
                assert!(
                    after[replica] - before[replica] > 500.0,
                    "customers spread over both cart replicas: {before:?} → {after:?}"
                );
            }
        }
    }
}

#[tokio::test]
#[ignore = "replica suite: dev/test --replicas"]
async fn the_observer_page_shows_every_replicas_tree() {
    let shopper = Shopper::customer().await;
    let seen = common::observer_page(&shopper, "observer-replicas.png").await;
    assert_eq!(seen["trees"], 6 * REPLICAS);
    assert!(seen["restarts"].as_u64() >= Some(1), "{seen}");
}

#[tokio::test]
#[ignore = "replica suite: dev/test --replicas"]
async fn shop_tree_all_prints_every_replicas_tree() {
    let printed = common::shop(&["tree", "--all", "--no-color"]).await;
    for service in SERVICES {
        for label in [service.to_owned(), format!("{service}-2")] {
            assert!(printed.contains(&format!("== {label}  http")), "{printed}");
        }
        let roots = printed
            .matches(&format!("\n{service} [supervisor] running"))
            .count();
        assert_eq!(roots, REPLICAS, "{service}: {printed}");
    }
}

#[tokio::test]
#[ignore = "replica suite: dev/test --replicas"]
async fn the_gateway_answers_a_replica_number_it_does_not_know_with_404() {
    let admin = Shopper::admin().await;
    for path in [
        "/admin/services/cart/replicas/0/tree",
        "/admin/services/cart/replicas/9/tree",
        "/admin/services/nobody/replicas/1/tree",
    ] {
        common::problem(admin.get(path).await, 404).await;
    }
}
