//! When the product service cannot be asked, adds answer 503 — never a guessed price — and
//! everything that needs no product look-up goes on working.

mod common;

use serde_json::json;

#[tokio::test]
async fn adds_answer_503_while_the_product_service_is_down() {
    let (settings, cart) = common::settings(&[("SHOP_PRODUCT_URL", "http://127.0.0.1:9")]);
    let (service, shutdown) = common::start(&settings).await;
    let client = reqwest::Client::new();
    let token = common::customer_token(&client).await;

    let add = client
        .post(format!("{cart}/carts/me/items"))
        .bearer_auth(&token)
        .json(&json!({ "product_id": uuid::Uuid::new_v4(), "quantity": 1 }))
        .send()
        .await
        .expect("the cart service answers");
    assert_eq!(add.status().as_u16(), 503);
    assert_eq!(
        add.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let opened = client
        .post(format!("{cart}/carts"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("the cart service answers");
    assert_eq!(opened.status().as_u16(), 201);
    let emptied = client
        .delete(format!("{cart}/carts/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("the cart service answers");
    assert_eq!(emptied.status().as_u16(), 200);
    common::stop(service, shutdown).await;
}
