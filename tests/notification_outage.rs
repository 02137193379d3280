//! The mail server goes away: messages wait (`retrying`), and go out when it is back. Its own
//! test binary, since it takes Mailpit down.

mod common;

use std::time::Duration;

use common::{Shopper, dev, get_json, url, wait_for_mails};
use serde_json::Value;

async fn welcome_of(shopper: &Shopper) -> Option<Value> {
    let page = get_json(
        &shopper.client,
        url("/notifications/me"),
        Some(&shopper.token),
    )
    .await;
    page["items"].as_array().and_then(|items| {
        items
            .iter()
            .find(|item| item["template"] == "welcome")
            .cloned()
    })
}

async fn welcome_becomes(shopper: &Shopper, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(welcome) = welcome_of(shopper).await
            && welcome["status"] == status
        {
            return welcome;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the welcome never became {status}: {:?}",
            welcome_of(shopper).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn with_the_smtp_server_down_a_mail_is_retried_and_sent_when_it_is_back() {
    dev("stop_pid mailpit");
    let shopper = Shopper::customer().await;
    let retrying = welcome_becomes(&shopper, "retrying").await;
    assert!(
        retrying["last_error"].as_str().unwrap().contains("smtp"),
        "{retrying}"
    );

    dev("start_mailpit");
    let sent = welcome_becomes(&shopper, "sent").await;
    assert!(sent["attempts"].as_i64().unwrap() >= 2, "{sent}");
    let subjects = wait_for_mails(&shopper.email, 1).await;
    assert_eq!(subjects.len(), 1);
    assert!(subjects[0].starts_with("Welcome to Shop"));
}
