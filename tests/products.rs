//! The catalogue end to end, through nginx: categories and products, who may write them, every
//! filter, sort and page, stock, and bad input.

mod common;

use std::collections::HashSet;

use common::{
    admin, category, client, customer, get, get_json, problem, product, put_json, unique_word, url,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn id(value: &Value) -> &str {
    value["id"].as_str().expect("an id")
}

async fn delete(client: &reqwest::Client, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = client.delete(url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("the gateway answers")
}

#[tokio::test]
async fn anyone_reads_the_catalogue_customers_cannot_write_it_admins_can() {
    let client = client();
    let admin = admin(&client).await.access_token;
    let customer = customer(&client).await.access_token;

    let shelf = category(&client, &admin, None).await;
    let shelf_path = format!("/categories/{}", id(&shelf));
    assert_eq!(
        get_json(&client, url(&shelf_path), None).await["name"],
        shelf["name"]
    );
    let listed = get_json(&client, url("/categories"), None).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == shelf["id"])
    );

    let new_category = json!({ "name": format!("Category {}", unique_word()) });
    let anonymous = client
        .post(url("/categories"))
        .json(&new_category)
        .send()
        .await
        .unwrap();
    problem(anonymous, 401).await;
    let as_customer = client
        .post(url("/categories"))
        .bearer_auth(&customer)
        .json(&new_category)
        .send()
        .await
        .unwrap();
    problem(as_customer, 403).await;

    let mug = product(&client, &admin, id(&shelf), "Test mug", 1299, 5).await;
    let mug_path = format!("/products/{}", id(&mug));
    let public = get_json(&client, url(&mug_path), None).await;
    assert_eq!(
        public["price"],
        json!({ "amount": 1299, "currency": "EUR" })
    );
    assert_eq!(
        (public["available"].clone(), public["in_stock"].clone()),
        (json!(5), json!(true))
    );
    assert!(public["archived_at"].is_null());

    let everything = json!({
        "sku": mug["sku"], "name": "Mine now", "price": { "amount": 1, "currency": "EUR" },
        "category_id": shelf["id"],
    });
    for response in [
        put_json(&client, url(&mug_path), &customer, &everything).await,
        client
            .patch(url(&mug_path))
            .bearer_auth(&customer)
            .json(&json!({ "name": "Mine now" }))
            .send()
            .await
            .unwrap(),
        delete(&client, &mug_path, Some(&customer)).await,
    ] {
        problem(response, 403).await;
    }

    // PUT replaces every field; PATCH changes only what it names.
    let replaced = put_json(
        &client,
        url(&mug_path),
        &admin,
        &json!({
            "sku": mug["sku"], "name": "Big mug", "description": "holds more",
            "price": { "amount": 1499, "currency": "EUR" }, "category_id": shelf["id"],
        }),
    )
    .await;
    assert_eq!(replaced.status(), StatusCode::OK);
    let patched: Value = client
        .patch(url(&mug_path))
        .bearer_auth(&admin)
        .json(&json!({ "name": "Bigger mug" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["name"], "Bigger mug");
    assert_eq!(patched["description"], "holds more");
    assert_eq!(patched["price"]["amount"], 1499);

    // Deleting archives: gone from the listing, still there by id.
    assert_eq!(
        delete(&client, &mug_path, Some(&admin)).await.status(),
        StatusCode::NO_CONTENT
    );
    let archived = get_json(&client, url(&mug_path), None).await;
    assert!(archived["archived_at"].is_string());
    let listing = get_json(
        &client,
        url(&format!("/products?category={}", id(&shelf))),
        None,
    )
    .await;
    assert_eq!(listing["total"], 0);

    // A category with products (archived ones too) or subcategories stays.
    problem(delete(&client, &shelf_path, Some(&admin)).await, 409).await;
    let empty = category(&client, &admin, None).await;
    let _child = category(&client, &admin, Some(id(&empty))).await;
    let empty_path = format!("/categories/{}", id(&empty));
    problem(delete(&client, &empty_path, Some(&admin)).await, 409).await;
    let leaf = category(&client, &admin, None).await;
    let leaf_path = format!("/categories/{}", id(&leaf));
    assert_eq!(
        delete(&client, &leaf_path, Some(&admin)).await.status(),
        StatusCode::NO_CONTENT
    );
    problem(get(&client, url(&leaf_path), None).await, 404).await;
}

#[tokio::test]
async fn skus_and_category_names_are_unique_and_categories_form_no_cycles() {
    let client = client();
    let admin = admin(&client).await.access_token;
    let parent = category(&client, &admin, None).await;
    let child = category(&client, &admin, Some(id(&parent))).await;

    let same_name = client
        .post(url("/categories"))
        .bearer_auth(&admin)
        .json(&json!({ "name": parent["name"].as_str().unwrap().to_uppercase() }))
        .send()
        .await
        .unwrap();
    problem(same_name, 409).await;

    let cycle = put_json(
        &client,
        url(&format!("/categories/{}", id(&parent))),
        &admin,
        &json!({ "name": parent["name"], "parent_id": child["id"] }),
    )
    .await;
    problem(cycle, 422).await;

    let first = product(&client, &admin, id(&parent), "First", 100, 1).await;
    let copy = client
        .post(url("/products"))
        .bearer_auth(&admin)
        .json(&json!({
            "sku": first["sku"], "name": "Copy", "price": { "amount": 100, "currency": "EUR" },
            "category_id": parent["id"],
        }))
        .send()
        .await
        .unwrap();
    problem(copy, 409).await;
}

/// A category tree of its own with products whose names, prices and stock the test knows.
struct Shelf {
    parent: String,
    word: String,
    /// (id, name, price, stock), in creation order.
    products: Vec<(String, String, i64, i32)>,
}

async fn shelf(client: &reqwest::Client, admin: &str) -> Shelf {
    let parent = category(client, admin, None).await;
    let child = category(client, admin, Some(id(&parent))).await;
    let word = unique_word();
    let mut products = Vec::new();
    for (index, (name, price, stock)) in [
        ("Alpha lamp", 500, 3),
        ("Bravo lamp", 1500, 0),
        ("Charlie lamp", 2500, 7),
        ("Delta lamp", 3500, 1),
        ("Echo lamp", 4500, 0),
    ]
    .into_iter()
    .enumerate()
    {
        // The first two in the child category; only one product has the word in its name.
        let in_category = if index < 2 { id(&child) } else { id(&parent) };
        let name = if index == 3 {
            format!("{name} {word}")
        } else {
            name.to_owned()
        };
        let created = product(client, admin, in_category, &name, price, stock).await;
        if index == 1 || index == 4 {
            // The word in the description only: a weaker match.
            let patched = client
                .patch(url(&format!("/products/{}", id(&created))))
                .bearer_auth(admin)
                .json(&json!({ "description": format!("mentions {word} once") }))
                .send()
                .await
                .unwrap();
            assert_eq!(patched.status(), StatusCode::OK);
        }
        products.push((id(&created).to_owned(), name, price, stock));
    }
    Shelf {
        parent: id(&parent).to_owned(),
        word,
        products,
    }
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            item["name"]
                .as_str()
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_listing_filters_sorts_and_searches() {
    let client = client();
    let admin = admin(&client).await.access_token;
    let shelf = shelf(&client, &admin).await;
    let list = |query: String| {
        let client = client.clone();
        async move { get_json(&client, url(&format!("/products?{query}")), None).await }
    };
    let base = format!("category={}", shelf.parent);

    // The parent category includes its child's products.
    let all = list(format!("{base}&sort=price")).await;
    assert_eq!(all["total"], 5);
    assert_eq!(names(&all), ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]);
    let by_price_down = list(format!("{base}&sort=-price")).await;
    assert_eq!(
        names(&by_price_down),
        ["Echo", "Delta", "Charlie", "Bravo", "Alpha"]
    );
    assert_eq!(names(&list(format!("{base}&sort=-name")).await)[0], "Echo");
    assert_eq!(names(&list(format!("{base}&sort=name")).await)[0], "Alpha");
    assert_eq!(
        names(&list(format!("{base}&sort=oldest")).await)[0],
        "Alpha"
    );
    assert_eq!(names(&list(format!("{base}&sort=newest")).await)[0], "Echo");

    let cheap = list(format!("{base}&min_price=1500&max_price=3500&sort=price")).await;
    assert_eq!(names(&cheap), ["Bravo", "Charlie", "Delta"]);
    let available = list(format!("{base}&in_stock=true&sort=price")).await;
    assert_eq!(names(&available), ["Alpha", "Charlie", "Delta"]);
    assert!(
        available["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["in_stock"] == true)
    );
    assert_eq!(list(format!("{base}&currency=USD")).await["total"], 0);

    // Full text: the name match ranks above the description matches; it works without the
    // category filter too, since the word is this test's own.
    let found = list(format!("q={}", shelf.word)).await;
    assert_eq!(found["total"], 3);
    assert_eq!(names(&found)[0], "Delta");
    let found_and_stocked = list(format!("q={}&in_stock=true", shelf.word)).await;
    assert_eq!(names(&found_and_stocked), ["Delta"]);
    let stemmed = list(format!("q={}+lamps", shelf.word)).await;
    assert_eq!(stemmed["total"], 3, "lamps matches lamp");
}

#[tokio::test]
async fn pages_are_stable_and_cover_every_product_once() {
    let client = client();
    let admin = admin(&client).await.access_token;
    let shelf = shelf(&client, &admin).await;
    for sort in ["price", "-price", "name", "newest", "oldest"] {
        let mut seen = Vec::new();
        for page in 1..=3 {
            let body = get_json(
                &client,
                url(&format!(
                    "/products?category={}&sort={sort}&per_page=2&page={page}",
                    shelf.parent
                )),
                None,
            )
            .await;
            assert_eq!(body["total"], 5);
            assert_eq!(body["page"], page);
            seen.extend(
                body["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["id"].clone()),
            );
        }
        let unique: HashSet<String> = seen.iter().map(Value::to_string).collect();
        assert_eq!((seen.len(), unique.len()), (5, 5), "sort {sort}: {seen:?}");
    }
    let past_the_end = get_json(
        &client,
        url(&format!(
            "/products?category={}&per_page=2&page=9",
            shelf.parent
        )),
        None,
    )
    .await;
    assert_eq!(past_the_end["items"], json!([]));
    assert_eq!(past_the_end["total"], 5);
    assert_eq!(shelf.products.len(), 5);
}

#[tokio::test]
async fn stock_is_counted_adjusted_and_kept_as_a_history() {
    let client = client();
    let admin_account = admin(&client).await;
    let admin = admin_account.access_token.clone();
    let shelf = category(&client, &admin, None).await;
    let item = product(&client, &admin, id(&shelf), "Counted thing", 100, 10).await;
    let stock_path = format!("/products/{}/stock", id(&item));

    let counted = put_json(&client, url(&stock_path), &admin, &json!({ "on_hand": 25 })).await;
    let counted: Value = counted.json().await.unwrap();
    assert_eq!(
        (counted["on_hand"].clone(), counted["available"].clone()),
        (json!(25), json!(25))
    );
    let adjusted = common::create(
        &client,
        &url(&format!("{stock_path}/adjustments")),
        &admin,
        json!({ "delta": -4, "reason": "damaged in the warehouse" }),
    )
    .await;
    assert_eq!(adjusted["on_hand"], 21);
    let below_zero = client
        .post(url(&format!("{stock_path}/adjustments")))
        .bearer_auth(&admin)
        .json(&json!({ "delta": -22, "reason": "too many" }))
        .send()
        .await
        .unwrap();
    problem(below_zero, 422).await;

    let history = get_json(
        &client,
        url(&format!("{stock_path}/adjustments")),
        Some(&admin),
    )
    .await;
    let history = history.as_array().unwrap();
    let deltas: Vec<i64> = history
        .iter()
        .map(|a| a["delta"].as_i64().unwrap())
        .collect();
    assert_eq!(
        deltas,
        [-4, 15, 10],
        "newest first: adjustment, count, initial stock"
    );
    assert_eq!(history[0]["reason"], "damaged in the warehouse");
    assert_eq!(history[0]["on_hand_after"], 21);
    assert_eq!(history[0]["actor"], admin_account.id);
    assert_eq!(history[1]["reason"], "stock count");

    let public = get_json(&client, url(&format!("/products/{}", id(&item))), None).await;
    assert_eq!(public["available"], 21);
    let customer = customer(&client).await.access_token;
    problem(get(&client, url(&stock_path), Some(&customer)).await, 403).await;
}

#[tokio::test]
async fn bad_catalogue_input_answers_a_problem() {
    let client = client();
    let admin = admin(&client).await.access_token;
    let shelf = category(&client, &admin, None).await;
    let item = product(&client, &admin, id(&shelf), "Target", 100, 1).await;
    let valid = json!({
        "sku": format!("T-{}", unique_word()), "name": "Thing",
        "price": { "amount": 100, "currency": "EUR" }, "category_id": shelf["id"],
    });
    let with = |key: &str, value: Value| {
        let mut body = valid.clone();
        body[key] = value;
        body
    };
    for (body, status) in [
        (
            with("price", json!({ "amount": -1, "currency": "EUR" })),
            422,
        ),
        (
            with("price", json!({ "amount": 100, "currency": "EURO" })),
            422,
        ),
        (
            with("price", json!({ "amount": 100, "currency": "eur" })),
            422,
        ),
        (
            with("price", json!({ "amount": 1.5, "currency": "EUR" })),
            400,
        ),
        (with("name", json!("   ")), 422),
        (with("sku", json!("has spaces")), 422),
        (with("category_id", json!(uuid::Uuid::new_v4())), 422),
        (with("category_id", json!("not-a-uuid")), 400),
        (with("stock", json!(-5)), 422),
        (with("colour", json!("blue")), 400),
    ] {
        let response = client
            .post(url("/products"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        problem(response, status).await;
    }
    for (query, status) in [
        ("category=not-a-uuid", 400),
        ("min_price=-5", 422),
        ("min_price=500&max_price=100", 422),
        ("min_price=cheap", 400),
        ("per_page=0", 422),
        ("per_page=101", 422),
        ("page=0", 422),
        ("sort=colour", 400),
        ("sort=relevance", 422),
        ("currency=XXXX", 422),
        ("in_stock=maybe", 400),
    ] {
        problem(
            get(&client, url(&format!("/products?{query}")), None).await,
            status,
        )
        .await;
    }
    let bad_id = problem(get(&client, url("/products/not-a-uuid"), None).await, 400).await;
    let detail = bad_id["detail"].as_str().unwrap();
    assert!(
        detail.contains("path parameter") && !detail.contains("param0"),
        "{detail}"
    );
    problem(
        get(
            &client,
            url(&format!("/products/{}", uuid::Uuid::new_v4())),
            None,
        )
        .await,
        404,
    )
    .await;
    problem(get(&client, url("/categories/not-a-uuid"), None).await, 400).await;
    let path = format!("/products/{}", id(&item));
    let bad_patch = client
        .patch(url(&path))
        .bearer_auth(&admin)
        .json(&json!({ "price": { "amount": 5, "currency": "ABC" } }))
        .send()
        .await
        .unwrap();
    problem(bad_patch, 422).await;
    let no_category = put_json(
        &client,
        url("/categories/00000000-0000-0000-0000-000000000000"),
        &admin,
        &json!({ "name": "Nowhere" }),
    )
    .await;
    problem(no_category, 404).await;
    let bad_parent = common::create_status(
        &client,
        &url("/categories"),
        &admin,
        json!({ "name": format!("C {}", unique_word()), "parent_id": uuid::Uuid::new_v4() }),
    )
    .await;
    assert_eq!(bad_parent, 422);
    for (body, status) in [
        (json!({ "on_hand": -1 }), 422),
        (json!({ "on_hand": "ten" }), 400),
        (json!({ "on_hand": 1, "reason": "" }), 422),
    ] {
        let response = put_json(&client, url(&format!("{path}/stock")), &admin, &body).await;
        problem(response, status).await;
    }
    for (body, status) in [
        (json!({ "delta": 0, "reason": "nothing" }), 422),
        (json!({ "delta": 3 }), 400),
    ] {
        let response = client
            .post(url(&format!("{path}/stock/adjustments")))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        problem(response, status).await;
    }
}
