//! The address book (`/users/me/addresses`) through nginx: saving, reading, changing and
//! removing addresses, the default, the limit, every bad field, and other people's addresses.

mod common;

use common::{Shopper, client, problem, url};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn address(city: &str) -> Value {
    json!({
        "name": "Ada Lovelace", "line1": "Unter den Linden 1", "city": city,
        "postal_code": "10117", "country": "de", "phone": "+4930123456"
    })
}

async fn save(shopper: &Shopper, body: &Value) -> reqwest::Response {
    shopper
        .client
        .post(url("/users/me/addresses"))
        .bearer_auth(&shopper.token)
        .json(body)
        .send()
        .await
        .expect("the gateway answers")
}

async fn put(shopper: &Shopper, id: &str, body: &Value) -> reqwest::Response {
    shopper
        .client
        .put(url(&format!("/users/me/addresses/{id}")))
        .bearer_auth(&shopper.token)
        .json(body)
        .send()
        .await
        .expect("the gateway answers")
}

async fn delete(shopper: &Shopper, id: &str) -> reqwest::Response {
    shopper
        .client
        .delete(url(&format!("/users/me/addresses/{id}")))
        .bearer_auth(&shopper.token)
        .send()
        .await
        .expect("the gateway answers")
}

#[tokio::test]
async fn an_address_book_keeps_addresses_and_one_default() {
    let shopper = Shopper::customer().await;
    let first = save(&shopper, &address("Berlin")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        location,
        format!("/users/me/addresses/{}", first["id"].as_str().unwrap())
    );
    assert_eq!(first["default"], true, "the first address is the default");
    assert_eq!(first["country"], "DE", "upper-cased");

    let mut second = address("Hamburg");
    second["postal_code"] = json!("20095");
    second["default"] = json!(true);
    let second: Value = save(&shopper, &second).await.json().await.unwrap();
    assert_eq!(second["default"], true);

    let list: Value = shopper
        .get("/users/me/addresses")
        .await
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0]["default"], false,
        "one default: the newest asked for it"
    );
    assert_eq!(items[1]["default"], true);

    let id = first["id"].as_str().unwrap();
    let mut changed = address("Potsdam");
    changed["postal_code"] = json!("14467");
    let changed: Value = put(&shopper, id, &changed).await.json().await.unwrap();
    assert_eq!(changed["city"], "Potsdam");
    let read: Value = shopper
        .get(&format!("/users/me/addresses/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["city"], "Potsdam");

    assert_eq!(delete(&shopper, id).await.status(), StatusCode::NO_CONTENT);
    problem(shopper.get(&format!("/users/me/addresses/{id}")).await, 404).await;
    problem(delete(&shopper, id).await, 404).await;
}

#[tokio::test]
async fn every_bad_field_is_a_422_naming_it() {
    let shopper = Shopper::customer().await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("name", json!(""), "name"),
        ("line1", json!("x".repeat(201)), "line1"),
        ("city", json!("   "), "city"),
        ("region", json!("r".repeat(101)), "region"),
        ("country", json!("XX"), "country"),
        ("country", json!("DEU"), "country"),
        ("postal_code", json!("1011"), "postal_code"),
        ("phone", json!("030 123456"), "phone"),
    ];
    for (field, value, named) in cases {
        let mut body = address("Berlin");
        body[field] = value;
        let answer = problem(save(&shopper, &body).await, 422).await;
        assert_eq!(answer["field"], named, "{field}: {answer}");
        assert!(
            answer["detail"].as_str().unwrap().starts_with(named),
            "{answer}"
        );
    }
    // A postal code of another country's shape.
    let mut british = address("London");
    british["country"] = json!("GB");
    british["postal_code"] = json!("10117");
    assert_eq!(
        problem(save(&shopper, &british).await, 422).await["field"],
        "postal_code"
    );
    british["postal_code"] = json!("sw1a1aa");
    let saved: Value = save(&shopper, &british).await.json().await.unwrap();
    assert_eq!(saved["postal_code"], "SW1A 1AA", "tidied");
    // Not an address at all.
    let not_json = shopper
        .client
        .post(url("/users/me/addresses"))
        .bearer_auth(&shopper.token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    problem(not_json, 400).await;
    let missing_city =
        json!({ "name": "A", "line1": "B", "postal_code": "10117", "country": "DE" });
    problem(save(&shopper, &missing_city).await, 400).await;
    // And on a change too.
    let id = saved["id"].as_str().unwrap();
    let mut wrong = address("Berlin");
    wrong["country"] = json!("ZZ");
    assert_eq!(
        problem(put(&shopper, id, &wrong).await, 422).await["field"],
        "country"
    );
}

#[tokio::test]
async fn an_address_book_holds_at_most_twenty() {
    let shopper = Shopper::customer().await;
    for n in 0..20 {
        let saved = save(&shopper, &address(&format!("Berlin {n}"))).await;
        assert_eq!(saved.status(), StatusCode::CREATED, "address {n}");
    }
    problem(save(&shopper, &address("Berlin 21")).await, 409).await;
}

#[tokio::test]
async fn another_customers_address_is_not_found_and_strangers_are_refused() {
    let owner = Shopper::customer().await;
    let saved: Value = save(&owner, &address("Berlin")).await.json().await.unwrap();
    let id = saved["id"].as_str().unwrap();
    let other = Shopper::customer().await;
    problem(other.get(&format!("/users/me/addresses/{id}")).await, 404).await;
    problem(put(&other, id, &address("Taken")).await, 404).await;
    problem(delete(&other, id).await, 404).await;
    let read: Value = owner
        .get(&format!("/users/me/addresses/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["city"], "Berlin", "untouched");
    let anonymous = client()
        .get(url("/users/me/addresses"))
        .send()
        .await
        .unwrap();
    problem(anonymous, 401).await;
}
