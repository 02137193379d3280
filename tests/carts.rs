//! Carts end to end, through nginx: the REST surface, every validation rule, concurrency on one
//! cart, a crashing cart actor, hibernation and passivation.

mod common;

use std::time::Duration;

use common::{Shopper, admin, client, get, get_json, problem, put_json, url};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Products (as the admin) with the given stock, in a category of their own.
async fn products(stock: &[i32]) -> Vec<String> {
    common::products_on_a_shelf("Cart thing", 250, stock).await
}

fn quantity_of(cart: &Value, product: &str) -> i64 {
    cart["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["product_id"] == product)
        .map_or(0, |line| line["quantity"].as_i64().unwrap())
}

#[tokio::test]
async fn a_customer_opens_fills_changes_and_empties_a_cart() {
    let ann = Shopper::customer().await;
    let items = products(&[10, 10]).await;

    problem(
        get(&ann.client, url("/carts/me"), Some(&ann.token)).await,
        404,
    )
    .await;
    let opened = ann
        .client
        .post(url("/carts"))
        .bearer_auth(&ann.token)
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), StatusCode::CREATED);
    let again = ann
        .client
        .post(url("/carts"))
        .bearer_auth(&ann.token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let empty = ann.cart().await;
    assert_eq!(
        (empty["version"].clone(), empty["total"].clone()),
        (json!(1), json!(0))
    );

    assert_eq!(ann.add(&items[0], 2).await.status(), StatusCode::OK);
    let cart: Value = ann.add(&items[0], 3).await.json().await.unwrap();
    assert_eq!(
        quantity_of(&cart, &items[0]),
        5,
        "adding again adds to the line"
    );
    let cart: Value = ann.add(&items[1], 1).await.json().await.unwrap();
    let line = &cart["items"][0];
    assert_eq!(line["name"], "Cart thing 0");
    assert_eq!(
        (line["unit_price"].clone(), line["line_total"].clone()),
        (json!(250), json!(1250))
    );
    assert_eq!(cart["total"], 5 * 250 + 251);
    assert_eq!(cart["item_count"], 6);
    assert_eq!(cart["currency"], "EUR");
    assert_eq!(cart["version"], 4);

    let set = put_json(
        &ann.client,
        url(&format!("/carts/me/items/{}", items[0])),
        &ann.token,
        &json!({ "quantity": 7 }),
    )
    .await;
    assert_eq!(quantity_of(&set.json().await.unwrap(), &items[0]), 7);
    let zero = put_json(
        &ann.client,
        url(&format!("/carts/me/items/{}", items[0])),
        &ann.token,
        &json!({ "quantity": 0 }),
    )
    .await;
    assert_eq!(quantity_of(&zero.json().await.unwrap(), &items[0]), 0);
    let removed: Value = ann
        .client
        .delete(url(&format!("/carts/me/items/{}", items[1])))
        .bearer_auth(&ann.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(removed["items"], json!([]));
    let missing = ann
        .client
        .delete(url(&format!("/carts/me/items/{}", items[1])))
        .bearer_auth(&ann.token)
        .send()
        .await
        .unwrap();
    problem(missing, 404).await;

    ann.add(&items[1], 2).await;
    let emptied: Value = ann
        .client
        .delete(url("/carts/me"))
        .bearer_auth(&ann.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (emptied["items"].clone(), emptied["total"].clone()),
        (json!([]), json!(0))
    );
    assert!(emptied["version"].as_i64().unwrap() > 4);
}

#[tokio::test]
async fn an_admin_reads_any_cart_a_customer_only_their_own() {
    let ann = Shopper::customer().await;
    let bob = Shopper::customer().await;
    let items = products(&[5]).await;
    ann.add(&items[0], 1).await;
    let path = format!("/carts/{}", ann.id);

    problem(get(&bob.client, url(&path), Some(&bob.token)).await, 403).await;
    assert_eq!(
        get(&ann.client, url(&path), Some(&ann.token))
            .await
            .status(),
        StatusCode::OK
    );
    let admin = admin(&bob.client).await.access_token;
    let read = get_json(&bob.client, url(&path), Some(&admin)).await;
    assert_eq!(quantity_of(&read, &items[0]), 1);
    problem(get(&bob.client, url("/carts/me"), None).await, 401).await;
    let service = common::service_token(&bob.client).await;
    problem(
        get(&bob.client, url("/carts/me"), Some(&service)).await,
        403,
    )
    .await;
}

#[tokio::test]
async fn every_cart_rule_is_enforced_with_a_problem() {
    let ann = Shopper::customer().await;
    let items = products(&[3, 100]).await;

    for quantity in [0, -1, 100] {
        problem(ann.add(&items[1], quantity).await, 422).await;
    }
    ann.add(&items[1], 90).await;
    problem(ann.add(&items[1], 10).await, 422).await;

    // Never more than is available.
    let short = problem(ann.add(&items[0], 4).await, 409).await;
    assert_eq!(short["available"], 3);
    assert_eq!(short["product_id"], items[0]);

    problem(ann.add(&uuid::Uuid::new_v4().to_string(), 1).await, 422).await;
    let client = client();
    let admin = admin(&client).await.access_token;
    let archived = products(&[5]).await.remove(0);
    client
        .delete(url(&format!("/products/{archived}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    problem(ann.add(&archived, 1).await, 422).await;

    for (body, status) in [
        (json!({ "product_id": "not-a-uuid", "quantity": 1 }), 400),
        (json!({ "product_id": items[1], "quantity": "two" }), 400),
        (json!({ "product_id": items[1], "gift": true }), 400),
        (json!({}), 400),
    ] {
        let response = ann
            .client
            .post(url("/carts/me/items"))
            .bearer_auth(&ann.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        problem(response, status).await;
    }
    let bad_path = put_json(
        &ann.client,
        url("/carts/me/items/nope"),
        &ann.token,
        &json!({ "quantity": 1 }),
    )
    .await;
    problem(bad_path, 400).await;
    let bad_quantity = put_json(
        &ann.client,
        url(&format!("/carts/me/items/{}", items[1])),
        &ann.token,
        &json!({ "quantity": 100 }),
    )
    .await;
    problem(bad_quantity, 422).await;
    problem(
        get(&ann.client, url("/carts/not-a-uuid"), Some(&admin)).await,
        400,
    )
    .await;
    let cart = ann.cart().await;
    assert_eq!(
        quantity_of(&cart, &items[1]),
        90,
        "refused changes changed nothing"
    );
}

#[tokio::test]
async fn a_cart_holds_at_most_fifty_lines() {
    let ann = Shopper::customer().await;
    let items = products(&[5; 51]).await;
    for item in &items[..50] {
        assert_eq!(ann.add(item, 1).await.status(), StatusCode::OK);
    }
    let body = problem(ann.add(&items[50], 1).await, 422).await;
    assert!(body["detail"].as_str().unwrap().contains("50"));
}

#[tokio::test]
async fn sixty_four_clients_adding_fifty_times_to_one_cart_lose_nothing() {
    let ann = Shopper::customer().await;
    // 40 products: 3200 adds make 80 of each, under the 99 a line holds.
    let items = products(&[1000; 40]).await;
    let adds = (0..64).map(|client_index| {
        let (token, items) = (ann.token.clone(), items.clone());
        async move {
            let client = client();
            let mut acknowledged = vec![0i64; items.len()];
            for n in 0..50 {
                let product = (client_index + n) % items.len();
                let response = client
                    .post(url("/carts/me/items"))
                    .bearer_auth(&token)
                    .json(&json!({ "product_id": items[product], "quantity": 1 }))
                    .send()
                    .await
                    .unwrap();
                if response.status() == StatusCode::OK {
                    acknowledged[product] += 1;
                }
            }
            acknowledged
        }
    });
    let results = futures::future::join_all(adds).await;
    let mut acknowledged = vec![0i64; items.len()];
    for result in results {
        for (product, count) in result.into_iter().enumerate() {
            acknowledged[product] += count;
        }
    }
    assert_eq!(
        acknowledged.iter().sum::<i64>(),
        64 * 50,
        "every add was acknowledged"
    );
    let cart = ann.cart().await;
    for (product, item) in items.iter().enumerate() {
        assert_eq!(
            quantity_of(&cart, item),
            acknowledged[product],
            "product {product}"
        );
    }
    // Group commit: far fewer writes than adds.
    let version = cart["version"].as_i64().unwrap();
    assert!(version < 64 * 50, "version {version}");
}

#[tokio::test]
async fn a_crashing_cart_is_restarted_loses_nothing_acknowledged_and_spares_other_carts() {
    let ann = Shopper::customer().await;
    let bob = Shopper::customer().await;
    let items = products(&[1000]).await;
    let admin = admin(&ann.client).await.access_token;
    assert_eq!(ann.add(&items[0], 3).await.status(), StatusCode::OK);
    assert_eq!(bob.add(&items[0], 1).await.status(), StatusCode::OK);

    let crash = format!("{}/carts/{}/crash", common::env("SHOP_CART_URL"), ann.id);
    let crashed = ann
        .client
        .post(&crash)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(crashed.status(), StatusCode::ACCEPTED);
    // Bob's cart goes on as if nothing happened.
    for _ in 0..10 {
        assert_eq!(bob.add(&items[0], 1).await.status(), StatusCode::OK);
    }
    // Ann's is restarted by the registry; a request that reached it while it was crashing
    // was never acknowledged (503), and once it is back every add goes through.
    let restarted = |tree: &Value| {
        tree["children"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|child| child["name"] == "cart.registry")
            .flat_map(|registry| registry["children"].as_array().unwrap().clone())
            .any(|cart| cart["name"] == format!("cart:{}", ann.id) && cart["restarts"] == 1)
    };
    let tree_url = format!("{}/admin/tree?sample=1000", common::env("SHOP_CART_URL"));
    let mut back = false;
    for _ in 0..40 {
        if restarted(&get_json(&ann.client, &tree_url, Some(&admin)).await) {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "Ann's cart was not restarted");
    for _ in 0..5 {
        assert_eq!(ann.add(&items[0], 1).await.status(), StatusCode::OK);
    }
    assert_eq!(quantity_of(&ann.cart().await, &items[0]), 3 + 5);
    assert_eq!(quantity_of(&bob.cart().await, &items[0]), 11);

    let tree = get_json(
        &ann.client,
        format!("{}/admin/tree?sample=1000", common::env("SHOP_CART_URL")),
        Some(&admin),
    )
    .await;
    let registry = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|child| child["name"] == "cart.registry")
        .unwrap();
    let ann_actor = registry["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|child| child["name"] == format!("cart:{}", ann.id))
        .expect("Ann's cart is running");
    assert_eq!(ann_actor["restarts"], 1);
    assert_eq!(ann_actor["kind"], "cart");
    assert_eq!(ann_actor["restart"], "transient");
}

/// Sets the quantity of the first line of one stored version of the user's cart, behind the cart
/// service's back: what a read then answers shows whether it came from the store.
async fn tamper_with_stored_version(user: &str, version: i64, quantity: i32) {
    let client = mongodb::Client::with_uri_str(common::env("SHOP_MONGODB_URL"))
        .await
        .expect("the cart store");
    let versions = client
        .database("shop_cart")
        .collection::<mongodb::bson::Document>("cart_versions");
    let changed = versions
        .update_one(
            mongodb::bson::doc! { "_id": format!("{user}:{version}") },
            mongodb::bson::doc! { "$set": { "items.0.quantity": quantity } },
        )
        .await
        .expect("the stored version is changed");
    assert_eq!(
        changed.matched_count, 1,
        "version {version} of {user} is stored"
    );
}

/// dev/test runs carts with SHOP_CART_HIBERNATE=1s and SHOP_CART_IDLE=3s.
#[tokio::test]
async fn an_idle_cart_hibernates_wakes_from_its_record_and_is_forgotten_later() {
    let ann = Shopper::customer().await;
    let items = products(&[50]).await;
    assert_eq!(ann.add(&items[0], 4).await.status(), StatusCode::OK);
    let admin = admin(&ann.client).await.access_token;
    let tree_url = format!("{}/admin/tree?sample=100000", common::env("SHOP_CART_URL"));
    let running = |tree: &Value| {
        tree["children"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|child| child["name"] == "cart.registry")
            .flat_map(|registry| registry["children"].as_array().unwrap().clone())
            .any(|cart| cart["name"] == format!("cart:{}", ann.id))
    };
    let hibernation = || async {
        for _ in 0..40 {
            if !running(&get_json(&ann.client, &tree_url, Some(&admin)).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the idle cart is still awake");
    };
    assert!(running(
        &get_json(&ann.client, &tree_url, Some(&admin)).await
    ));

    // Hibernated; the store is then changed behind its back: the cart wakes from its record.
    hibernation().await;
    tamper_with_stored_version(&ann.id, 1, 40).await;
    assert_eq!(
        quantity_of(&ann.cart().await, &items[0]),
        4,
        "from the record"
    );
    assert!(running(
        &get_json(&ann.client, &tree_url, Some(&admin)).await
    ));

    // Hibernate, wake by a write, again and again: nothing acknowledged is lost.
    for expected in 5..=7 {
        hibernation().await;
        let added = ann.add(&items[0], 1).await;
        assert_eq!(added.status(), StatusCode::OK);
        let cart: Value = added.json().await.unwrap();
        assert_eq!(quantity_of(&cart, &items[0]), expected);
    }
    hibernation().await;
    assert_eq!(quantity_of(&ann.cart().await, &items[0]), 7);

    // Idle past SHOP_CART_IDLE: the record is forgotten, the next request reads the store.
    tokio::time::sleep(Duration::from_secs(5)).await;
    tamper_with_stored_version(&ann.id, 4, 70).await;
    assert_eq!(
        quantity_of(&ann.cart().await, &items[0]),
        70,
        "read from the store"
    );
}

#[tokio::test]
async fn the_internal_cart_api_takes_an_orders_lines_once_and_is_for_services_only() {
    let shopper = Shopper::customer().await;
    let product = &common::products_on_a_shelf("Internal cart thing", 500, &[20]).await[0];
    assert_eq!(shopper.add(product, 3).await.status(), StatusCode::OK);
    let client = client();
    let base = format!(
        "{}/internal/carts/{}/orders",
        common::env("SHOP_CART_URL").trim_end_matches('/'),
        shopper.id
    );
    let order = json!({ "order_id": uuid::Uuid::new_v4(), "lines": [{ "product_id": product, "quantity": 2 }] });

    // Customers, admins, nobody at all, and anyone through nginx: refused.
    let admin = admin(&client).await.access_token;
    for token in [&shopper.token, &admin] {
        let response = client
            .post(&base)
            .bearer_auth(token)
            .json(&order)
            .send()
            .await
            .unwrap();
        problem(response, 403).await;
    }
    problem(client.post(&base).json(&order).send().await.unwrap(), 401).await;
    let service = common::service_token(&client).await;
    let through_nginx = client
        .post(url(&format!("/internal/carts/{}/orders", shopper.id)))
        .bearer_auth(&service)
        .json(&order)
        .send()
        .await
        .unwrap();
    problem(through_nginx, 404).await;

    // Bad bodies: a problem each, and the cart untouched.
    for bad in [
        json!({ "order_id": uuid::Uuid::new_v4(), "lines": [] }),
        json!({ "order_id": uuid::Uuid::new_v4(), "lines": [{ "product_id": product, "quantity": 0 }] }),
        json!({ "order_id": "not-a-uuid", "lines": [{ "product_id": product, "quantity": 1 }] }),
    ] {
        let response = client
            .post(&base)
            .bearer_auth(&service)
            .json(&bad)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(status == 400 || status == 422, "{bad}: {status}");
    }
    assert_eq!(shopper.cart().await["items"][0]["quantity"], 3);

    // The order's lines leave the cart once, however often it is said.
    for _ in 0..2 {
        let response = client
            .post(&base)
            .bearer_auth(&service)
            .json(&order)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(shopper.cart().await["items"][0]["quantity"], 1);
}

/// The cart service's own figure (the sum of a metric's samples).
async fn cart_metric(name: &str) -> f64 {
    common::metric_sum(&common::env("SHOP_CART_URL"), name).await
}

/// `shop load cart` over 500 carts at a pace that leaves each idle for a second now and then:
/// carts hibernate and wake all through the run (dev/test: SHOP_CART_HIBERNATE=1s), and no
/// acknowledged add is lost.
#[tokio::test]
async fn cart_load_across_continual_hibernation_loses_no_update() {
    let woken_before = cart_metric("shop_cart_woken_total").await;
    let report = std::env::temp_dir().join(format!(
        "shop-hibernating-load-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    let report_path = report.to_string_lossy().into_owned();
    common::shop(&[
        "load",
        "cart",
        "--users",
        "500",
        "--requests",
        "3000",
        "--concurrency",
        "4",
        "--json",
        &report_path,
    ])
    .await;
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["lost_updates"], json!([]), "{report}");
    assert_eq!(report["errors_by_status"], json!({}), "{report}");
    let woken = cart_metric("shop_cart_woken_total").await - woken_before;
    assert!(
        woken >= 50.0,
        "carts hibernated and woke during the run: {woken} woken"
    );
}
