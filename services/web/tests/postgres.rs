//! Which database errors count as "unavailable" (503 to clients, retried by consumers), against
//! the real PostgreSQL dev/test runs.

use shop_web::postgres::unavailable;

async fn pool() -> sqlx::PgPool {
    let settings =
        shop_config::Settings::from_env().expect("the settings dev/test exports are valid");
    shop_web::postgres::connect(&settings.postgres, "shop_user", &[])
        .await
        .expect("the user database")
}

#[tokio::test]
async fn a_connection_the_server_terminates_is_unavailable_a_bad_query_is_not() {
    let pool = pool().await;
    let mut connection = pool.acquire().await.expect("a connection");
    // What every connection sees when PostgreSQL shuts down: 57P01, admin shutdown.
    let terminated = sqlx::query("select pg_terminate_backend(pg_backend_pid())")
        .execute(&mut *connection)
        .await
        .expect_err("the server ends the connection");
    assert!(unavailable(&terminated), "{terminated:?}");

    let wrong = sqlx::query("select no_such_column from users")
        .execute(&pool)
        .await
        .expect_err("the query is wrong");
    assert!(!unavailable(&wrong), "{wrong:?}");
    let missing = sqlx::query_scalar::<_, i64>("select 1 where false")
        .fetch_one(&pool)
        .await
        .expect_err("no row");
    assert!(!unavailable(&missing), "{missing:?}");
}
