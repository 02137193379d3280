//! Each service's own PostgreSQL database: created when missing, migrated, pooled.

use std::time::Duration;

use shop_config::{PostgresSettings, Url};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("connecting to PostgreSQL at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("creating database {database}: {source}")]
    Create {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating database {database}: {source}")]
    Migrate {
        database: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

/// A pooled connection idle this long is tested before it is handed out.
const TEST_IF_IDLE_FOR: Duration = Duration::from_millis(500);

/// Connects to `database` on the server of `settings`, creating it if it does not exist and
/// applying each migrator's migrations in turn (the service's own, then shared ones such as the
/// bridge's outbox and inbox, each tracked in its own table).
pub async fn connect(
    settings: &PostgresSettings,
    database: &str,
    migrators: &[&Migrator],
) -> Result<PgPool, DatabaseError> {
    ensure_database(settings, database).await?;
    let url = settings.database_url(database);
    let options = options(&url)?;
    let pool = PgPoolOptions::new()
        .max_connections(settings.pool_size)
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings every connection as it goes back to the pool (a broken one is closed), and
        // by default again as it is handed out: a second round trip per use. Only a connection
        // that sat idle (through a server restart, say) is tested before it is handed out.
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= TEST_IF_IDLE_FOR {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .map_err(|source| DatabaseError::Connect {
            url: redacted(&url),
            source,
        })?;
    for migrator in migrators {
        migrator
            .run(&pool)
            .await
            .map_err(|source| DatabaseError::Migrate {
                database: database.to_owned(),
                source,
            })?;
    }
    Ok(pool)
}

async fn ensure_database(settings: &PostgresSettings, database: &str) -> Result<(), DatabaseError> {
    let server = settings.url.clone();
    let mut connection =
        options(&server)?
            .connect()
            .await
            .map_err(|source| DatabaseError::Connect {
                url: redacted(&server),
                source,
            })?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(database)
            .fetch_one(&mut connection)
            .await
            .map_err(|source| DatabaseError::Create {
                database: database.to_owned(),
                source,
            })?;
    if !exists {
        // Identifiers cannot be bound; the names are ours (shop_user, …), never input.
        debug_assert!(
            database
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        );
        let created = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "create database \"{database}\""
        )))
        .execute(&mut connection)
        .await;
        match created {
            Ok(_) => tracing::info!(database, "created database"),
            // Another process (shop migrate, a replica) created it first: 42P04 when it had
            // committed, 23505 on the catalogue's unique index when both were creating it at once.
            Err(sqlx::Error::Database(error))
                if matches!(error.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(source) => {
                return Err(DatabaseError::Create {
                    database: database.to_owned(),
                    source,
                });
            }
        }
    }
    let _ = connection.close().await;
    Ok(())
}

fn options(url: &Url) -> Result<PgConnectOptions, DatabaseError> {
    url.as_str()
        .parse::<PgConnectOptions>()
        .map_err(|source| DatabaseError::Connect {
            url: redacted(url),
            source,
        })
}

fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("********"));
    }
    url.to_string()
}

/// The readiness check of a service whose store is this pool.
pub fn readiness(pool: PgPool) -> crate::ReadinessCheck {
    std::sync::Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            sqlx::query("select 1")
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(|error| format!("PostgreSQL: {error}"))
        })
    })
}

/// Whether `error` says the database cannot be reached just now (pool exhausted or closed, the
/// connection lost, the server shutting down or starting up, too many connections), so the same
/// work is worth trying again shortly — as opposed to a query that is wrong for good.
pub fn unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            // SQLSTATE class 08: connection exceptions; 57P01-57P03: admin or crash shutdown,
            // cannot connect now; 53300: too many connections.
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}
