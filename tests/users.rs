//! The user service end to end, through nginx: accounts, sessions, permissions, bad input.

mod common;

use std::time::{Duration, Instant};

use common::{
    PASSWORD, client, customer, get, get_json, problem, put_json, register, unique_email, url,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn a_customer_registers_signs_in_updates_refreshes_and_signs_out() {
    let client = client();
    let email = unique_email();

    let registered = register(&client, &email.to_uppercase(), PASSWORD).await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let location = registered.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let user: Value = registered.json().await.unwrap();
    assert_eq!(user["email"], email, "emails are kept lower-cased");
    assert_eq!(user["role"], "customer");
    assert_eq!(location, format!("/users/{}", user["id"].as_str().unwrap()));
    assert!(user.get("password_hash").is_none());

    let tokens: Value = common::login(&client, &email, PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let access = tokens["access_token"].as_str().unwrap();
    let first_refresh = tokens["refresh_token"].as_str().unwrap();

    let me = get_json(&client, url("/users/me"), Some(access)).await;
    assert_eq!(me["id"], user["id"]);

    let updated = put_json(
        &client,
        url(&location),
        access,
        &json!({ "name": "Ada Lovelace", "phone": "+4915112345678" }),
    )
    .await;
    assert_eq!(updated.status(), StatusCode::OK);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["name"], "Ada Lovelace");
    assert_eq!(updated["phone"], "+4915112345678");
    let fetched = get_json(&client, url(&location), Some(access)).await;
    assert_eq!(fetched["name"], "Ada Lovelace");

    // A refresh gives a new pair; the new access token works.
    let refreshed = refresh(&client, first_refresh).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    let refreshed: Value = refreshed.json().await.unwrap();
    let second_refresh = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first_refresh);
    let me_again = get(
        &client,
        url("/users/me"),
        Some(refreshed["access_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(me_again.status(), StatusCode::OK);

    // The first refresh token again: reuse. It is refused, and so is its successor.
    let reused = problem(refresh(&client, first_refresh).await, 401).await;
    assert!(
        reused["detail"].as_str().unwrap().contains("used before"),
        "{reused}"
    );
    problem(refresh(&client, &second_refresh).await, 401).await;

    // A new login is a new family; logout ends it.
    let tokens: Value = common::login(&client, &email, PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let logout = client
        .post(url("/users/logout"))
        .json(&json!({ "refresh_token": refresh_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    problem(refresh(&client, refresh_token).await, 401).await;
}

async fn refresh(client: &reqwest::Client, token: &str) -> reqwest::Response {
    client
        .post(url("/users/refresh"))
        .json(&json!({ "refresh_token": token }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_customer_cannot_read_or_change_another_user_but_an_admin_can() {
    let client = client();
    let alice = customer(&client).await;
    let bob = customer(&common::client()).await;

    let read = get(
        &client,
        url(&format!("/users/{}", bob.id)),
        Some(&alice.access_token),
    )
    .await;
    let body = problem(read, 403).await;
    assert!(body.get("email").is_none());
    let change = put_json(
        &client,
        url(&format!("/users/{}", bob.id)),
        &alice.access_token,
        &json!({ "name": "Mallory" }),
    )
    .await;
    problem(change, 403).await;
    // Not even whether an id exists is told to a customer.
    let missing = get(
        &client,
        url(&format!("/users/{}", uuid::Uuid::new_v4())),
        Some(&alice.access_token),
    )
    .await;
    problem(missing, 403).await;

    let admin = common::admin(&client).await;
    let read = get_json(
        &client,
        url(&format!("/users/{}", bob.id)),
        Some(&admin.access_token),
    )
    .await;
    assert_eq!(read["email"], bob.email);
    let missing = get(
        &client,
        url(&format!("/users/{}", uuid::Uuid::new_v4())),
        Some(&admin.access_token),
    )
    .await;
    problem(missing, 404).await;
}

#[tokio::test]
async fn only_an_admin_changes_roles_and_the_new_role_is_in_the_next_token() {
    let client = client();
    let carol = customer(&client).await;
    let promote_self = put_json(
        &client,
        url(&format!("/users/{}", carol.id)),
        &carol.access_token,
        &json!({ "role": "admin" }),
    )
    .await;
    problem(promote_self, 403).await;

    let admin = common::admin(&client).await;
    let promoted = put_json(
        &client,
        url(&format!("/users/{}", carol.id)),
        &admin.access_token,
        &json!({ "role": "admin" }),
    )
    .await;
    assert_eq!(promoted.status(), StatusCode::OK);
    let refreshed: Value = refresh(&client, &carol.refresh_token)
        .await
        .json()
        .await
        .unwrap();
    let others = get(
        &client,
        url(&format!("/users/{}", admin.id)),
        Some(refreshed["access_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(others.status(), StatusCode::OK);

    // Carol, now an admin, cannot demote herself (the shop could be left without an admin);
    // the first admin can demote her.
    let carol_now = refreshed["access_token"].as_str().unwrap();
    let demote_self = put_json(
        &client,
        url(&format!("/users/{}", carol.id)),
        carol_now,
        &json!({ "role": "customer" }),
    )
    .await;
    let refused = problem(demote_self, 403).await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("own admin role"),
        "{refused}"
    );
    let demoted = put_json(
        &client,
        url(&format!("/users/{}", carol.id)),
        &admin.access_token,
        &json!({ "role": "customer" }),
    )
    .await;
    assert_eq!(demoted.status(), StatusCode::OK);
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_signs_out_every_session() {
    let client = client();
    let dave = customer(&client).await;
    let path = format!("/users/{}", dave.id);

    let without_current = put_json(
        &client,
        url(&path),
        &dave.access_token,
        &json!({ "password": "a-new-password" }),
    )
    .await;
    problem(without_current, 422).await;
    let wrong_current = put_json(
        &client,
        url(&path),
        &dave.access_token,
        &json!({ "password": "a-new-password", "current_password": "not-the-password" }),
    )
    .await;
    problem(wrong_current, 403).await;

    let changed = put_json(
        &client,
        url(&path),
        &dave.access_token,
        &json!({ "password": "a-new-password", "current_password": PASSWORD }),
    )
    .await;
    assert_eq!(changed.status(), StatusCode::OK);
    problem(refresh(&client, &dave.refresh_token).await, 401).await;
    problem(common::login(&client, &dave.email, PASSWORD).await, 401).await;
    assert_eq!(
        common::login(&client, &dave.email, "a-new-password")
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_create_exactly_one_account() {
    let email = unique_email();
    let attempts = (0..8).map(|_| {
        let email = email.clone();
        async move { register(&client(), &email, PASSWORD).await.status() }
    });
    let statuses = futures::future::join_all(attempts).await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicts), (1, 7), "{statuses:?}");
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_let_at_most_one_through_and_end_the_family() {
    let client = client();
    let erin = customer(&client).await;
    let attempts = (0..6).map(|_| {
        let (client, token) = (client.clone(), erin.refresh_token.clone());
        async move {
            let response = refresh(&client, &token).await;
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            (status, body)
        }
    });
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<_> = results
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .collect();
    assert!(winners.len() <= 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|(status, _)| *status != StatusCode::OK)
            .all(|(status, _)| *status == StatusCode::UNAUTHORIZED),
        "{results:?}"
    );
    // The losers presented a used token: the winner's new token is revoked with the family.
    if let Some((_, body)) = winners.first() {
        let next = body["refresh_token"].as_str().unwrap();
        problem(refresh(&client, next).await, 401).await;
    }
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer_in_about_the_same_time() {
    let client = client();
    let frank = customer(&client).await;
    // Alternate, so both see the same load; compare medians.
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let response = common::login(&client, &unique_email(), "some-password").await;
        unknown.push(started.elapsed());
        bodies.push(problem(response, 401).await["detail"].clone());
        let started = Instant::now();
        let response = common::login(&client, &frank.email, "some-password").await;
        wrong.push(started.elapsed());
        bodies.push(problem(response, 401).await["detail"].clone());
        // Stay under the gateway's login rate limit.
        tokio::time::sleep(Duration::from_millis(450)).await;
    }
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "{bodies:?}"
    );
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2].as_secs_f64()
    };
    let ratio = median(&mut unknown) / median(&mut wrong);
    assert!(
        (0.5..2.0).contains(&ratio),
        "unknown email {unknown:?} vs wrong password {wrong:?}"
    );
}

#[tokio::test]
async fn every_user_endpoint_answers_bad_input_with_a_problem() {
    let client = client();
    let grace = customer(&client).await;
    let me = format!("/users/{}", grace.id);
    // A fresh client address per request: this many tries would trip the login rate limit.
    let post = |path: &str, body: Value| common::client().post(url(path)).json(&body);

    // register
    for (body, status) in [
        (
            json!({ "email": "not-an-email", "password": PASSWORD, "name": "X" }),
            422,
        ),
        (
            json!({ "email": unique_email(), "password": "short", "name": "X" }),
            422,
        ),
        (
            json!({ "email": unique_email(), "password": "p".repeat(129), "name": "X" }),
            422,
        ),
        (
            json!({ "email": unique_email(), "password": PASSWORD, "name": "" }),
            422,
        ),
        (
            json!({ "email": unique_email(), "password": PASSWORD, "name": "X", "phone": "12" }),
            422,
        ),
        (
            json!({ "email": unique_email(), "password": PASSWORD, "name": "X", "role": "admin" }),
            400,
        ),
        (
            json!({ "email": unique_email(), "password": PASSWORD }),
            400,
        ),
        (
            json!({ "email": unique_email(), "password": PASSWORD, "name": ["X"] }),
            400,
        ),
    ] {
        problem(post("/users/register", body).send().await.unwrap(), status).await;
    }
    let duplicate = register(&common::client(), &grace.email, PASSWORD).await;
    problem(duplicate, 409).await;
    let malformed = common::client()
        .post(url("/users/register"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    problem(malformed, 400).await;
    let not_json = common::client()
        .post(url("/users/register"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    let status = not_json.status().as_u16();
    assert!(matches!(status, 400 | 415), "{status}");
    problem(not_json, status).await;

    // login, refresh, logout, service-token
    problem(
        post("/users/login", json!({ "email": grace.email }))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    problem(
        post(
            "/users/login",
            json!({ "email": grace.email, "password": "wrong-password" }),
        )
        .send()
        .await
        .unwrap(),
        401,
    )
    .await;
    problem(post("/users/refresh", json!({})).send().await.unwrap(), 400).await;
    problem(
        post("/users/refresh", json!({ "refresh_token": "made-up" }))
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    problem(
        post("/users/logout", json!({ "token": "x" }))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    problem(
        post(
            "/users/service-token",
            json!({ "client_id": "shop-services", "client_secret": "guess-guess-guess" }),
        )
        .send()
        .await
        .unwrap(),
        401,
    )
    .await;
    problem(
        post("/users/service-token", json!({ "client_id": 1 }))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;

    // me, get, put
    let anonymous = problem(client.get(url("/users/me")).send().await.unwrap(), 401).await;
    assert!(
        anonymous["detail"]
            .as_str()
            .unwrap()
            .contains("bearer token is required"),
        "{anonymous}"
    );
    problem(
        client
            .get(url("/users/not-a-uuid"))
            .bearer_auth(&grace.access_token)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    for (body, status) in [
        (json!({ "phone": "0151 1234" }), 422),
        (json!({ "email": "nope" }), 422),
        (json!({ "name": "   " }), 422),
        (json!({ "nickname": "x" }), 400),
        (json!({ "role": "superuser" }), 400),
    ] {
        let response = put_json(&client, url(&me), &grace.access_token, &body).await;
        problem(response, status).await;
    }

    // jwks takes no input; other methods are refused.
    let wrong_method = client
        .delete(url("/users/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    problem(wrong_method, 405).await;
}

#[tokio::test]
async fn registering_publishes_user_registered_in_the_request_s_trace() {
    let events = common::events::Events::watch().await;
    let client = client();
    let email = unique_email();
    // An id of a trace id's shape (as nginx makes them) is the trace's id.
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let response = client
        .post(url("/users/register"))
        .header("x-request-id", &request_id)
        .json(&json!({ "email": email, "password": PASSWORD, "name": "Grace Hopper" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let user: Value = response.json().await.unwrap();
    let id: uuid::Uuid = user["id"].as_str().unwrap().parse().unwrap();

    let seen = events.wait_for(id, "UserRegistered").await;
    let shop_schemas::Envelope::UserRegistered(event) = seen.event else {
        unreachable!("wait_for matched the name")
    };
    assert_eq!(event.email, email);
    assert_eq!(event.name, "Grace Hopper");
    // The message carries the trace context of the registration (`traceparent`).
    let trace = seen
        .trace_id
        .as_deref()
        .expect("the message carries its trace");
    assert_eq!(
        shop_telemetry::trace_id_of(trace),
        Some(request_id.as_str())
    );

    // A refused registration (the email is taken) publishes nothing.
    let again = register(&client, &email, PASSWORD).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(events.about(id).len(), 1, "exactly one UserRegistered");
}

/// `count` wrong passwords for `email`, each from a client of its own (the gateway's
/// per-address limit stays out of it); their statuses.
async fn wrong_logins(email: &str, count: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..count {
        statuses.push(
            common::login(&client(), email, "not-the-password")
                .await
                .status()
                .as_u16(),
        );
    }
    statuses
}

#[tokio::test]
async fn five_failed_logins_throttle_the_account_alike_whether_it_exists_or_not() {
    let client = client();
    let account = customer(&client).await;
    let unknown = common::unique_email();
    for email in [&account.email, &unknown] {
        assert_eq!(wrong_logins(email, 5).await, [401; 5], "{email}");
        // The sixth is refused before any password is checked: the right one too.
        let refused = common::login(&client, email, PASSWORD).await;
        let retry_after: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&retry_after), "{retry_after}");
        let body = problem(refused, 429).await;
        assert_eq!(
            body["detail"],
            "too many failed sign-ins for this account; try again later"
        );
    }
}

#[tokio::test]
async fn a_successful_login_forgets_the_failures_before_it() {
    let client = client();
    let account = customer(&client).await;
    assert_eq!(wrong_logins(&account.email, 4).await, [401; 4]);
    assert_eq!(
        common::login(&client, &account.email, PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        wrong_logins(&account.email, 4).await,
        [401; 4],
        "counted from zero again"
    );
}
