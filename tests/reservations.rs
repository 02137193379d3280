//! Reservations against the product service's internal API (service token, not through nginx):
//! all or nothing, idempotent, committed, released, expired — and never an oversell, whatever
//! the concurrency.

mod common;

use std::time::Duration;

use common::{admin, category, client, problem, product, product_service, service_token, url};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

struct Internal {
    client: Client,
    token: String,
    base: String,
}

impl Internal {
    async fn new() -> Self {
        let client = client();
        let token = service_token(&client).await;
        Self {
            client,
            token,
            base: format!("{}/internal/reservations", product_service()),
        }
    }

    async fn reserve(&self, order: Uuid, lines: Value) -> reqwest::Response {
        self.reserve_body(json!({ "order_id": order, "lines": lines }))
            .await
    }

    async fn reserve_body(&self, body: Value) -> reqwest::Response {
        self.client
            .post(&self.base)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("the product service answers")
    }

    async fn act(&self, order: Uuid, action: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/{order}/{action}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the product service answers")
    }

    /// Waits until the order's reservation has expired (its hold was short).
    async fn expired(&self, order: Uuid) {
        let mut status = Value::Null;
        for _ in 0..60 {
            status = self.get(order).await.json::<Value>().await.unwrap()["status"].clone();
            if status == "expired" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("the reservation of {order} did not expire: {status}");
    }

    async fn get(&self, order: Uuid) -> reqwest::Response {
        self.client
            .get(format!("{}/{order}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the product service answers")
    }
}

/// A product with `stock` units, and a function reading its stock back (as the admin).
async fn stocked(stock: i32) -> (String, impl AsyncFn() -> (i64, i64)) {
    let client = client();
    let admin = admin(&client).await.access_token;
    let shelf = category(&client, &admin, None).await;
    let created = product(
        &client,
        &admin,
        shelf["id"].as_str().unwrap(),
        "Reserved thing",
        100,
        stock,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let stock_url = url(&format!("/products/{id}/stock"));
    let read = move || {
        let (client, admin, stock_url) = (client.clone(), admin.clone(), stock_url.clone());
        async move {
            let stock = common::get_json(&client, stock_url, Some(&admin)).await;
            (
                stock["on_hand"].as_i64().unwrap(),
                stock["reserved"].as_i64().unwrap(),
            )
        }
    };
    (id, read)
}

fn line(product: &str, quantity: i32) -> Value {
    json!({ "product_id": product, "quantity": quantity })
}

#[tokio::test]
async fn a_reservation_is_all_or_nothing_and_names_every_short_line() {
    let internal = Internal::new().await;
    let (plenty, plenty_stock) = stocked(5).await;
    let (scarce, scarce_stock) = stocked(1).await;
    let (empty, _) = stocked(0).await;

    let response = internal
        .reserve(
            Uuid::new_v4(),
            json!([line(&plenty, 2), line(&scarce, 2), line(&empty, 1)]),
        )
        .await;
    let body = problem(response, 409).await;
    let mut short = body["short"].as_array().unwrap().clone();
    short.sort_by_key(|s| s["available"].as_i64());
    assert_eq!(
        short,
        vec![
            json!({ "product_id": empty, "requested": 1, "available": 0 }),
            json!({ "product_id": scarce, "requested": 2, "available": 1 }),
        ]
    );
    assert!(body["detail"].as_str().unwrap().contains(&scarce));
    // Nothing was reserved, not even the line that had enough.
    assert_eq!(plenty_stock().await, (5, 0));
    assert_eq!(scarce_stock().await, (1, 0));
}

#[tokio::test]
async fn the_same_reservation_twice_reserves_once_and_answers_the_same() {
    let internal = Internal::new().await;
    let (a, a_stock) = stocked(10).await;
    let (b, _) = stocked(10).await;
    let order = Uuid::new_v4();

    let first = internal
        .reserve(order, json!([line(&a, 3), line(&b, 1)]))
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["status"], "reserved");
    // The same lines, listed in another order, are the same request.
    let again = internal
        .reserve(order, json!([line(&b, 1), line(&a, 3)]))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(a_stock().await, (10, 3));

    let other_lines = internal.reserve(order, json!([line(&a, 4)])).await;
    problem(other_lines, 409).await;
    assert_eq!(a_stock().await, (10, 3));
}

#[tokio::test]
async fn commit_sells_release_gives_back_and_both_are_idempotent() {
    let internal = Internal::new().await;
    let (item, stock) = stocked(10).await;
    let sold = Uuid::new_v4();
    let cancelled = Uuid::new_v4();
    assert_eq!(
        internal
            .reserve(sold, json!([line(&item, 4)]))
            .await
            .status(),
        201
    );
    assert_eq!(
        internal
            .reserve(cancelled, json!([line(&item, 3)]))
            .await
            .status(),
        201
    );
    assert_eq!(stock().await, (10, 7));

    let committed: Value = internal.act(sold, "commit").await.json().await.unwrap();
    assert_eq!(committed["status"], "committed");
    assert_eq!(stock().await, (6, 3));
    assert_eq!(internal.act(sold, "commit").await.status(), StatusCode::OK);
    assert_eq!(stock().await, (6, 3));
    problem(internal.act(sold, "release").await, 409).await;

    let released: Value = internal
        .act(cancelled, "release")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(released["status"], "released");
    assert_eq!(stock().await, (6, 0));
    assert_eq!(
        internal.act(cancelled, "release").await.status(),
        StatusCode::OK
    );
    problem(internal.act(cancelled, "commit").await, 409).await;
    assert_eq!(stock().await, (6, 0));

    problem(internal.act(Uuid::new_v4(), "commit").await, 404).await;
    problem(internal.get(Uuid::new_v4()).await, 404).await;
}

#[tokio::test]
async fn a_reservation_not_closed_in_time_expires_and_gives_its_stock_back() {
    let internal = Internal::new().await;
    let (item, stock) = stocked(5).await;
    let order = Uuid::new_v4();
    let reserved = internal
        .reserve_body(json!({ "order_id": order, "lines": [line(&item, 2)], "hold_seconds": 1 }))
        .await;
    assert_eq!(reserved.status(), StatusCode::CREATED);
    assert_eq!(stock().await, (5, 2));

    internal.expired(order).await;
    assert_eq!(stock().await, (5, 0));
    // Releasing it again is harmless.
    assert_eq!(
        internal.act(order, "release").await.status(),
        StatusCode::OK
    );
    assert_eq!(stock().await, (5, 0));
    // Paid after all, heard late (events held up past the margin): the sale takes its units
    // from what is available, once.
    let sold: Value = internal.act(order, "commit").await.json().await.unwrap();
    assert_eq!(sold["status"], "committed");
    assert_eq!(stock().await, (3, 0));
    assert_eq!(internal.act(order, "commit").await.status(), StatusCode::OK);
    assert_eq!(stock().await, (3, 0));
}

#[tokio::test]
async fn a_sale_heard_after_its_units_went_to_others_takes_nothing() {
    let internal = Internal::new().await;
    let (item, stock) = stocked(3).await;
    let late = Uuid::new_v4();
    let reserved = internal
        .reserve_body(json!({ "order_id": late, "lines": [line(&item, 2)], "hold_seconds": 1 }))
        .await;
    assert_eq!(reserved.status(), StatusCode::CREATED);
    internal.expired(late).await;
    let other = Uuid::new_v4();
    assert_eq!(
        internal
            .reserve(other, json!([line(&item, 3)]))
            .await
            .status(),
        201
    );
    assert_eq!(stock().await, (3, 3));
    // No oversell: the late sale is refused whole, and the reservation stays expired.
    problem(internal.act(late, "commit").await, 409).await;
    assert_eq!(stock().await, (3, 3));
    let status = internal.get(late).await.json::<Value>().await.unwrap()["status"].clone();
    assert_eq!(status, "expired");
}

#[tokio::test]
async fn reservations_are_for_services_only_and_not_reachable_through_the_gateway() {
    let internal = Internal::new().await;
    let client = client();
    let admin = admin(&client).await.access_token;
    let customer = common::customer(&client).await.access_token;
    let body =
        json!({ "order_id": Uuid::new_v4(), "lines": [line(&Uuid::new_v4().to_string(), 1)] });
    for token in [&admin, &customer] {
        let response = client
            .post(&internal.base)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        problem(response, 403).await;
    }
    let anonymous = client
        .post(&internal.base)
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(anonymous, 401).await;
    let through_nginx = client
        .post(url("/internal/reservations"))
        .bearer_auth(&internal.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(through_nginx, 404).await;
}

#[tokio::test]
async fn bad_reservation_input_answers_a_problem() {
    let internal = Internal::new().await;
    let (item, stock) = stocked(5).await;
    let (archived, _) = stocked(5).await;
    let client = client();
    let admin = admin(&client).await.access_token;
    let gone = client
        .delete(url(&format!("/products/{archived}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);

    let order = Uuid::new_v4();
    for (body, status) in [
        (json!({ "order_id": order, "lines": [] }), 422),
        (json!({ "order_id": order, "lines": [line(&item, 0)] }), 422),
        (
            json!({ "order_id": order, "lines": [line(&item, -2)] }),
            422,
        ),
        (
            json!({ "order_id": order, "lines": [line(&item, 10_001)] }),
            422,
        ),
        (
            json!({ "order_id": order, "lines": [line(&Uuid::new_v4().to_string(), 1)] }),
            422,
        ),
        (
            json!({ "order_id": order, "lines": [line(&archived, 1)] }),
            422,
        ),
        (
            json!({ "order_id": order, "lines": [line(&item, 1)], "hold_seconds": 0 }),
            422,
        ),
        (
            json!({ "order_id": order, "lines": [line(&item, 1)], "hold_seconds": 90000 }),
            422,
        ),
        (
            json!({ "order_id": "not-a-uuid", "lines": [line(&item, 1)] }),
            400,
        ),
        (
            json!({ "order_id": order, "lines": [line("not-a-uuid", 1)] }),
            400,
        ),
        (
            json!({ "order_id": order, "lines": [line(&item, 1)], "rush": true }),
            400,
        ),
        (json!({ "lines": [line(&item, 1)] }), 400),
    ] {
        problem(internal.reserve_body(body).await, status).await;
    }
    let bad_id = internal
        .client
        .post(format!("{}/not-a-uuid/commit", internal.base))
        .bearer_auth(&internal.token)
        .send()
        .await
        .unwrap();
    problem(bad_id, 400).await;
    assert_eq!(stock().await, (5, 0));
}

#[tokio::test]
async fn sixty_four_clients_racing_for_the_last_ten_units_get_exactly_ten() {
    let internal = Internal::new().await;
    let (item, stock) = stocked(10).await;
    let attempts = (0..64).map(|_| {
        let (client, token, base, item) = (
            client(),
            internal.token.clone(),
            internal.base.clone(),
            item.clone(),
        );
        async move {
            client
                .post(base)
                .bearer_auth(token)
                .json(&json!({ "order_id": Uuid::new_v4(), "lines": [line(&item, 1)] }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    let won = statuses.iter().filter(|s| **s == 201).count();
    let short = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((won, short), (10, 54), "{statuses:?}");
    assert_eq!(stock().await, (10, 10));
}

#[tokio::test]
async fn concurrent_multi_line_reservations_never_deadlock_or_oversell() {
    let internal = Internal::new().await;
    let mut products = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (id, read) = stocked(30).await;
        products.push(id);
        readers.push(read);
    }
    // 48 orders, each over 2 to 4 of the products, listed in scrambled orders, so that without
    // ordered locking two of them would wait on each other.
    let orders: Vec<(Uuid, Vec<(usize, i32)>)> = (0..48)
        .map(|n| {
            let count = 2 + n % 3;
            let lines = (0..count)
                .map(|k| ((n * 7 + k * 3) % 4, 1 + ((n + k) % 5) as i32))
                .collect::<Vec<_>>();
            (Uuid::new_v4(), lines)
        })
        .collect();
    let attempts = orders.iter().map(|(order, lines)| {
        let (client, token, base) = (client(), internal.token.clone(), internal.base.clone());
        let body = json!({
            "order_id": order,
            "lines": lines.iter().map(|(p, q)| line(&products[*p], *q)).collect::<Vec<_>>(),
        });
        async move {
            let response = client
                .post(base)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&201) && statuses.contains(&409),
        "{statuses:?}"
    );

    // What the winners hold is exactly what is reserved, and never more than on hand.
    let mut expected = [0i64; 4];
    for ((_, lines), status) in orders.iter().zip(&statuses) {
        if *status == 201 {
            for (product, quantity) in lines {
                expected[*product] += i64::from(*quantity);
            }
        }
    }
    for (index, read) in readers.iter().enumerate() {
        let (on_hand, reserved) = read().await;
        assert_eq!(
            (on_hand, reserved),
            (30, expected[index]),
            "product {index}"
        );
        assert!(reserved <= on_hand);
    }

    // Half the winners buy, half cancel, all at once: sold units leave, the rest come back.
    let winners: Vec<(usize, Uuid)> = orders
        .iter()
        .zip(&statuses)
        .filter(|(_, status)| **status == 201)
        .map(|((order, _), _)| *order)
        .enumerate()
        .collect();
    let closings = winners.iter().map(|(index, order)| {
        let (client, token, base) = (client(), internal.token.clone(), internal.base.clone());
        let action = if index % 2 == 0 { "commit" } else { "release" };
        async move {
            client
                .post(format!("{base}/{order}/{action}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let closed = futures::future::join_all(closings).await;
    assert!(closed.iter().all(|s| *s == 200), "{closed:?}");
    let mut sold = [0i64; 4];
    for (index, order) in &winners {
        if index % 2 == 0 {
            let (_, lines) = orders.iter().find(|(id, _)| id == order).unwrap();
            for (product, quantity) in lines {
                sold[*product] += i64::from(*quantity);
            }
        }
    }
    for (index, read) in readers.iter().enumerate() {
        assert_eq!(read().await, (30 - sold[index], 0), "product {index}");
    }
}

#[tokio::test]
async fn the_expiry_actor_is_in_the_product_services_tree() {
    let client = client();
    let admin = admin(&client).await.access_token;
    let tree = common::get_json(
        &client,
        format!("{}/admin/tree", product_service()),
        Some(&admin),
    )
    .await;
    assert_eq!(tree["name"], "product");
    let children: Vec<(String, String, String)> = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|child| {
            (
                child["name"].as_str().unwrap().to_owned(),
                child["kind"].as_str().unwrap().to_owned(),
                child["restart"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(children.contains(&("product.http".into(), "http".into(), "permanent".into())));
    assert!(children.contains(&(
        "product.reservations".into(),
        "timer".into(),
        "permanent".into()
    )));
}
