//! Sampling: with `SHOP_TRACE_SAMPLE_RATIO=0` a trace begun in a service is not kept, and no
//! span of it reaches the trace store; the same request at the ratio dev/test runs with (1) is
//! kept. With tracing off (no `SHOP_TRACE_ENDPOINT`) nothing is exported, and an event still
//! carries its request's id in `trace-id`. Alone in its test binary: it restarts the user
//! service with those settings, and again without them.

mod common;

use std::time::Duration;

use common::{Shopper, dev, env, url};
use reqwest::StatusCode;

/// Puts the user service back as dev/test runs it, however the test ends.
struct UserServiceRestored;

impl Drop for UserServiceRestored {
    fn drop(&mut self) {
        dev("rm -f \"$DATA/env.override\"; stop_pid user && start_services");
    }
}

/// Signs the shopper's profile out with a request id of our own making (32 hex digits: the
/// trace id the user service begins its trace with), and answers that id.
async fn read_profile(shopper: &Shopper) -> String {
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let response = shopper
        .client
        .get(url("/users/me"))
        .bearer_auth(&shopper.token)
        .header("x-request-id", &request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    request_id
}

/// Whether the trace store has any span of `trace_id`, asked straight (not through the
/// services, so nothing here can begin a trace of its own).
async fn stored(trace_id: &str) -> bool {
    let response = reqwest::get(format!(
        "{}/api/traces/{trace_id}",
        env("SHOP_TRACE_QUERY_URL")
    ))
    .await
    .unwrap();
    response.status() == StatusCode::OK
}

#[tokio::test]
async fn at_ratio_zero_no_span_reaches_the_store() {
    let shopper = Shopper::customer().await;
    // Spans go out in batches every half second: two seconds is four of them.
    let settle = Duration::from_secs(2);

    let kept = read_profile(&shopper).await;
    tokio::time::sleep(settle).await;
    assert!(stored(&kept).await, "at ratio 1 the trace is kept");

    let restored = UserServiceRestored;
    dev("stop_pid user && SHOP_TRACE_SAMPLE_RATIO=0 start_services");
    let dropped = [
        read_profile(&shopper).await,
        read_profile(&shopper).await,
        read_profile(&shopper).await,
    ];
    tokio::time::sleep(settle).await;
    for trace_id in &dropped {
        assert!(
            !stored(trace_id).await,
            "trace {trace_id} reached the store"
        );
    }
    // Off: no exporter. The registration's event still names its request in `trace-id` (and
    // carries no `traceparent`), so the logs of both ends find each other.
    let events = common::events::Events::watch().await;
    // An override, as the env file would set the endpoint again.
    dev(
        "stop_pid user && echo 'export SHOP_TRACE_ENDPOINT=' >\"$DATA/env.override\" \
         && start_services && rm \"$DATA/env.override\"",
    );
    let untraced = read_profile(&shopper).await;
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let registered = shopper
        .client
        .post(url("/users/register"))
        .header("x-request-id", &request_id)
        .json(&serde_json::json!({ "email": common::unique_email(), "password": common::PASSWORD, "name": "Ada" }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let user: serde_json::Value = registered.json().await.unwrap();
    let id: uuid::Uuid = user["id"].as_str().unwrap().parse().unwrap();
    let seen = events.wait_for(id, "UserRegistered").await;
    assert_eq!(seen.trace_id.as_deref(), Some(request_id.as_str()));
    tokio::time::sleep(settle).await;
    for trace_id in [&untraced, &request_id] {
        assert!(
            !stored(trace_id).await,
            "tracing off, yet {trace_id} reached the store"
        );
    }
    drop(restored);

    let kept_again = read_profile(&shopper).await;
    tokio::time::sleep(settle).await;
    assert!(
        stored(&kept_again).await,
        "back at ratio 1 the trace is kept"
    );
}
