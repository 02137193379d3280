//! Failed sign-ins, per account: credential stuffing spreads its tries over many addresses,
//! so the gateway's per-address limit never slows it; this does. Keyed by the normalised email
//! whether an account has it or not, so a throttled answer tells nothing about the account.
//!
//! From the [`FREE_FAILURES`]th failure within [`WINDOW`], the address is throttled: 30 s,
//! doubling with every further failure, at most [`LONGEST`]. While throttled every try — even
//! with the right password — is answered 429 with `Retry-After`, before any password is
//! checked. A successful sign-in clears the count.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Failures allowed within the window before the address is throttled.
pub const FREE_FAILURES: i32 = 5;
/// Failures older than this are forgotten.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The first throttle; each further failure doubles it.
pub const FIRST: Duration = Duration::from_secs(30);
/// The longest throttle.
pub const LONGEST: Duration = Duration::from_secs(15 * 60);

/// How long an address with `failures` recent failures is throttled after the last one.
pub fn throttle_after(failures: i32) -> Option<Duration> {
    let beyond = u32::try_from(failures - FREE_FAILURES).ok()?;
    let doublings = beyond.min(16);
    Some(FIRST.saturating_mul(1 << doublings).min(LONGEST))
}

/// How long `email` must still wait, if it is throttled now.
pub async fn remaining(pool: &PgPool, email: &str) -> Result<Option<Duration>, sqlx::Error> {
    let until: Option<DateTime<Utc>> = sqlx::query_scalar(
        "select throttled_until from login_failures
         where email = $1 and throttled_until > now()",
    )
    .bind(email)
    .fetch_optional(pool)
    .await?
    .flatten();
    Ok(until.and_then(|until| (until - Utc::now()).to_std().ok()))
}

/// Counts a failed sign-in for `email` (atomically: concurrent failures all count).
pub async fn record_failure(pool: &PgPool, email: &str) -> Result<(), sqlx::Error> {
    let failures: i32 = sqlx::query_scalar(
        "insert into login_failures (email, failures, window_started_at)
         values ($1, 1, now())
         on conflict (email) do update set
             failures = case when login_failures.window_started_at > now() - $2
                             then login_failures.failures + 1 else 1 end,
             window_started_at = case when login_failures.window_started_at > now() - $2
                                      then login_failures.window_started_at else now() end
         returning failures",
    )
    .bind(email)
    .bind(WINDOW)
    .fetch_one(pool)
    .await?;
    if let Some(throttle) = throttle_after(failures) {
        tracing::warn!(
            failures,
            throttle_s = throttle.as_secs(),
            "repeated failed sign-ins; the account is throttled"
        );
        sqlx::query("update login_failures set throttled_until = now() + $2 where email = $1")
            .bind(email)
            .bind(throttle)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Forgets the failures of `email` (it signed in).
pub async fn clear(pool: &PgPool, email: &str) -> Result<(), sqlx::Error> {
    sqlx::query("delete from login_failures where email = $1")
        .bind(email)
        .execute(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_are_free_then_the_throttle_doubles_up_to_fifteen_minutes() {
        let throttles: Vec<Option<u64>> = (1..=12)
            .map(|failures| throttle_after(failures).map(|t| t.as_secs()))
            .collect();
        assert_eq!(
            throttles,
            vec![
                None,
                None,
                None,
                None,
                Some(30),
                Some(60),
                Some(120),
                Some(240),
                Some(480),
                Some(900),
                Some(900),
                Some(900)
            ]
        );
    }
}
