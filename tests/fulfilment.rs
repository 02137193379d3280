//! Orders a shop can fulfil, through nginx against the real stores: the quote is what checkout
//! charges to the minor unit; a price that changed between cart and checkout is a 409 and the
//! cart takes it; an order keeps a copy of its address; shipping needs a carrier and tracking
//! number and the mails show address, shipping, tax and the estimate; admins filter by country.

mod common;

use common::events::Events;
use common::orders::{Ordering, berlin, state_becomes, stock, uuid};
use common::{Shopper, mail_text, problem, products_on_a_shelf, url};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

async fn post_json(shopper: &Shopper, path: &str, body: &Value) -> reqwest::Response {
    shopper
        .client
        .post(url(path))
        .bearer_auth(&shopper.token)
        .json(body)
        .send()
        .await
        .expect("the gateway answers")
}

async fn quote(shopper: &Shopper, shipping: &Value) -> Value {
    let answer = post_json(shopper, "/orders/quote", shipping).await;
    assert_eq!(answer.status(), StatusCode::OK, "quote");
    answer.json().await.expect("a quote")
}

/// Checks out with `shipping` (`address` or `address_id`, and `shipping_method`).
async fn checkout(shopper: &Shopper, shipping: &Value) -> reqwest::Response {
    let mut body = shipping.clone();
    body["payment_method"] = json!("pm_card_visa");
    shopper
        .checkout_body(&Uuid::new_v4().to_string(), &body)
        .await
}

fn address_in(country: &str, postal_code: &str, city: &str) -> Value {
    json!({
        "name": "Grace Hopper", "line1": "1 Main Street", "city": city,
        "postal_code": postal_code, "country": country
    })
}

async fn admin_patch_price(product: &str, amount: i64) {
    let admin = Shopper::admin().await;
    let answer = admin
        .client
        .patch(url(&format!("/products/{product}")))
        .bearer_auth(&admin.token)
        .json(&json!({ "price": { "amount": amount, "currency": "EUR" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "changing the price");
}

#[tokio::test]
async fn a_quote_is_what_checkout_charges_to_the_minor_unit() {
    let cases: Vec<(&str, Value, i64, i64)> = vec![
        // (what, shipping, quantity, expected shipping)
        (
            "Germany, standard, under the free threshold",
            json!({ "address": berlin(), "shipping_method": "standard" }),
            1,
            490,
        ),
        (
            "Germany, standard, over it: free",
            json!({ "address": berlin(), "shipping_method": "standard" }),
            3,
            0,
        ),
        (
            "France, express",
            json!({ "address": address_in("FR", "75008", "Paris"), "shipping_method": "express" }),
            1,
            1990,
        ),
        (
            "Japan, standard",
            json!({ "address": address_in("JP", "100-0001", "Tokyo"), "shipping_method": "standard" }),
            2,
            1990,
        ),
    ];
    for (what, shipping, quantity, expected_shipping) in cases {
        let shopper = Shopper::customer().await;
        let shelf = products_on_a_shelf("Quoted thing", 1999, &[10]).await;
        shopper.put_in_cart(&shelf[0], quantity).await;
        let quoted = quote(&shopper, &shipping).await;
        assert_eq!(
            quoted["shipping"]["cost"], expected_shipping,
            "{what}: {quoted}"
        );
        assert_eq!(quoted["subtotal"], 1999 * quantity, "{what}");
        let placed = checkout(&shopper, &shipping).await;
        assert_eq!(placed.status(), StatusCode::CREATED, "{what}");
        let order: Value = placed.json().await.unwrap();
        for (ours, theirs) in [
            (&order["total"], &quoted["total"]),
            (&order["subtotal"], &quoted["subtotal"]),
            (&order["tax"], &quoted["tax"]),
            (&order["shipping"]["cost"], &quoted["shipping"]["cost"]),
            (&order["lines"][0]["tax"], &quoted["lines"][0]["tax"]),
        ] {
            assert_eq!(ours, theirs, "{what}: order {order} quote {quoted}");
        }
        // Prices include tax by default: the total is goods plus shipping.
        assert_eq!(
            quoted["total"].as_i64(),
            Some(1999 * quantity + expected_shipping),
            "{what}"
        );
        // And the customer is charged exactly that.
        let id = order["id"].as_str().unwrap();
        state_becomes(&shopper, id, "paid").await;
        let payments: Value = shopper
            .get(&format!("/payments?order_id={id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(payments["items"][0]["amount"], order["total"], "{what}");
    }
}

#[tokio::test]
async fn a_saved_address_ships_and_the_order_keeps_its_copy_when_the_book_changes() {
    let shopper = Shopper::customer().await;
    let saved: Value = post_json(&shopper, "/users/me/addresses", &berlin())
        .await
        .json()
        .await
        .unwrap();
    let address_id = saved["id"].as_str().unwrap().to_owned();
    let shelf = products_on_a_shelf("Kept thing", 1200, &[5]).await;
    shopper.put_in_cart(&shelf[0], 1).await;
    let shipping = json!({ "address_id": address_id, "shipping_method": "express" });
    let quoted = quote(&shopper, &shipping).await;
    assert_eq!(quoted["address"]["city"], "Berlin");
    let order: Value = checkout(&shopper, &shipping).await.json().await.unwrap();
    assert_eq!(order["shipping"]["address"]["city"], "Berlin");
    assert_eq!(order["shipping"]["method"], "express");
    assert_eq!(order["total"], quoted["total"]);

    let mut moved = berlin();
    moved["city"] = json!("Potsdam");
    moved["postal_code"] = json!("14467");
    let changed = shopper
        .client
        .put(url(&format!("/users/me/addresses/{address_id}")))
        .bearer_auth(&shopper.token)
        .json(&moved)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    let read = shopper.order(order["id"].as_str().unwrap()).await;
    assert_eq!(
        read["shipping"]["address"]["city"], "Berlin",
        "the copy stays"
    );
    assert_eq!(read["shipping"]["address"]["postal_code"], "10117");
}

#[tokio::test]
async fn bad_shipping_choices_are_refused_and_nothing_is_reserved() {
    let shopper = Shopper::customer().await;
    let shelf = products_on_a_shelf("Refused thing", 1000, &[5]).await;
    shopper.put_in_cart(&shelf[0], 2).await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({ "address": berlin(), "shipping_method": "overnight" }),
            422,
            "shipping_method",
        ),
        (json!({ "shipping_method": "standard" }), 422, "address"),
        (
            json!({ "address": berlin(), "address_id": Uuid::new_v4(), "shipping_method": "standard" }),
            422,
            "address",
        ),
        (
            json!({ "address": address_in("XX", "1", "Nowhere"), "shipping_method": "standard" }),
            422,
            "country",
        ),
        (
            json!({ "address": address_in("DE", "1", "Berlin"), "shipping_method": "standard" }),
            422,
            "postal_code",
        ),
    ];
    for (shipping, status, field) in cases {
        for path in ["/orders/quote", "/orders"] {
            let answer = if path == "/orders" {
                checkout(&shopper, &shipping).await
            } else {
                post_json(&shopper, path, &shipping).await
            };
            let body = problem(answer, status).await;
            assert_eq!(body["field"], field, "{path} {shipping}: {body}");
        }
    }
    // Another customer's saved address: not found.
    let other = Shopper::customer().await;
    let theirs: Value = post_json(&other, "/users/me/addresses", &berlin())
        .await
        .json()
        .await
        .unwrap();
    let shipping = json!({ "address_id": theirs["id"], "shipping_method": "standard" });
    problem(checkout(&shopper, &shipping).await, 404).await;
    problem(post_json(&shopper, "/orders/quote", &shipping).await, 404).await;
    assert_eq!(stock(&shelf[0]).await["reserved"], 0, "nothing reserved");
}

async fn cart_price(shopper: &Shopper) -> i64 {
    shopper.cart().await["items"][0]["unit_price"]
        .as_i64()
        .unwrap_or_default()
}

/// Changes a product's price in the product database itself, without the event (as if it
/// were late): the cart still holds the old price when the customer checks out.
async fn price_changed_quietly(product: &str, amount: i64) {
    let settings = shop_config::Settings::from_env().expect("the settings dev/test exports");
    let pool = shop_web::postgres::connect(&settings.postgres, "shop_product", &[])
        .await
        .expect("the product database");
    let product: Uuid = product.parse().expect("a product id");
    sqlx::query("update products set price_minor = $2 where id = $1")
        .bind(product)
        .bind(amount)
        .execute(&pool)
        .await
        .expect("the price changed");
}

#[tokio::test]
async fn a_price_raised_or_lowered_before_checkout_is_409_then_charged_as_changed() {
    for (before, after) in [(1000, 1250), (1000, 800)] {
        let shopper = Shopper::customer().await;
        let shelf = products_on_a_shelf("Repriced thing", before, &[5]).await;
        shopper.put_in_cart(&shelf[0], 2).await;
        price_changed_quietly(&shelf[0], after).await;
        assert_eq!(
            cart_price(&shopper).await,
            before,
            "the cart has not heard yet"
        );
        let shipping = json!({ "address": berlin(), "shipping_method": "standard" });
        // The quote already shows what checkout will charge, and says which lines changed.
        let quoted = quote(&shopper, &shipping).await;
        assert_eq!(quoted["lines"][0]["unit_price"], after);
        assert_eq!(quoted["price_changes"][0]["old_price"], before);
        let answer = checkout(&shopper, &shipping).await;
        let body = problem(answer, 409).await;
        assert_eq!(body["code"], "price_changed", "{body}");
        assert_eq!(body["price_changed"][0]["product_id"], shelf[0].as_str());
        assert_eq!(body["price_changed"][0]["old_price"], before);
        assert_eq!(body["price_changed"][0]["new_price"], after);
        assert_eq!(stock(&shelf[0]).await["reserved"], 0, "nothing reserved");
        assert_eq!(
            cart_price(&shopper).await,
            after,
            "the cart holds the new price"
        );
        let order: Value = checkout(&shopper, &shipping).await.json().await.unwrap();
        assert_eq!(order["lines"][0]["unit_price"], after);
        assert_eq!(order["subtotal"], 2 * after);
        assert_eq!(order["total"], quoted["total"], "what the quote said");
    }
}

#[tokio::test]
async fn a_price_change_reaches_the_carts_that_hold_the_product() {
    let shelf = products_on_a_shelf("Announced thing", 1500, &[10]).await;
    let (holder, other) = (Shopper::customer().await, Shopper::customer().await);
    holder.put_in_cart(&shelf[0], 1).await;
    let unrelated = products_on_a_shelf("Unrelated thing", 700, &[10]).await;
    other.put_in_cart(&unrelated[0], 1).await;
    admin_patch_price(&shelf[0], 1700).await;
    // ProductPriceChanged, through Kafka, to the cart service: before any checkout.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while cart_price(&holder).await != 1700 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cart never took the new price: {}",
            holder.cart().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        cart_price(&other).await,
        700,
        "another product's cart is untouched"
    );
    // The quote now shows no change to pay attention to.
    let quoted = quote(
        &holder,
        &json!({ "address": berlin(), "shipping_method": "standard" }),
    )
    .await;
    assert_eq!(quoted["price_changes"], json!([]));
    assert_eq!(quoted["lines"][0]["unit_price"], 1700);
}

#[tokio::test]
async fn a_purchase_ships_with_carrier_and_tracking_and_the_mails_say_so() {
    let events = Events::watch().await;
    let shopper = Shopper::customer().await;
    let admin = Shopper::admin().await;
    let shelf = products_on_a_shelf("Shipped thing", 2000, &[5]).await;
    shopper.put_in_cart(&shelf[0], 1).await;
    let shipping = json!({ "address": berlin(), "shipping_method": "standard" });
    let order: Value = checkout(&shopper, &shipping).await.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    state_becomes(&shopper, &id, "paid").await;

    // Shipping needs both: without them, 422 naming what is missing.
    let no_carrier = problem(
        admin
            .post(&format!("/orders/{id}/ship?tracking_number=T-77"))
            .await,
        422,
    )
    .await;
    assert_eq!(no_carrier["field"], "carrier");
    let no_tracking = problem(
        admin.post(&format!("/orders/{id}/ship?carrier=DHL")).await,
        422,
    )
    .await;
    assert_eq!(no_tracking["field"], "tracking_number");
    // What schemathesis once sent: a NUL in the tracking number (PostgreSQL refuses it in text).
    let garbled = problem(
        admin
            .post(&format!(
                "/orders/{id}/ship?carrier=DHL&tracking_number=T%00%C2%9C77"
            ))
            .await,
        422,
    )
    .await;
    assert_eq!(garbled["field"], "tracking_number");
    let shipped: Value = admin
        .post(&format!(
            "/orders/{id}/ship?carrier=DHL&tracking_number=T-77"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            shipped["carrier"].as_str(),
            shipped["tracking_number"].as_str()
        ),
        (Some("DHL"), Some("T-77"))
    );
    let event = events.wait_for(uuid(&order["id"]), "OrderShipped").await;
    let shop_schemas::Envelope::OrderShipped(event) = event.event else {
        panic!("not OrderShipped");
    };
    assert_eq!(event.carrier.as_deref(), Some("DHL"));
    assert_eq!(
        (event.delivery_min_days, event.delivery_max_days),
        (Some(1), Some(3))
    );

    let short = uuid(&order["id"]).simple().to_string()[..8].to_owned();
    let confirmation = mail_text(&shopper.email, &format!("Your order {short} —")).await;
    for expected in [
        "Unter den Linden 1",
        "10117 Berlin",
        "Shipping (standard): €4.90",
        "Total: €24.90",
        "tax",
    ] {
        assert!(
            confirmation.contains(expected),
            "{expected:?} in {confirmation}"
        );
    }
    let shipping_mail = mail_text(&shopper.email, "on its way").await;
    for expected in [
        "Carrier: DHL",
        "Tracking number: T-77",
        "Expected in 1–3 working days",
    ] {
        assert!(
            shipping_mail.contains(expected),
            "{expected:?} in {shipping_mail}"
        );
    }
}

#[tokio::test]
async fn admins_list_orders_by_the_country_they_ship_to() {
    let shopper = Shopper::customer().await;
    let admin = Shopper::admin().await;
    let shelf = products_on_a_shelf("Listed thing", 1000, &[5, 5]).await;
    shopper.put_in_cart(&shelf[0], 1).await;
    checkout(
        &shopper,
        &json!({ "address": berlin(), "shipping_method": "standard" }),
    )
    .await;
    shopper.put_in_cart(&shelf[1], 1).await;
    let paris =
        json!({ "address": address_in("FR", "75008", "Paris"), "shipping_method": "standard" });
    let french: Value = checkout(&shopper, &paris).await.json().await.unwrap();
    let listed: Value = admin
        .get(&format!(
            "/orders?customer_id={}&country=fr&state=pending",
            shopper.id
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["items"][0]["id"], french["id"]);
    let body = problem(admin.get("/orders?country=France").await, 422).await;
    assert_eq!(body["field"], "country");
}
