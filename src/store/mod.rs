//! The SQL store: one connection pool to PostgreSQL (production) or SQLite (the embedded
//! default), the migrations of both, and the queries of the shop's own tables.
//!
//! Both backends run the same SQL text wherever the dialects agree (sqlx maps `$N`
//! placeholders on SQLite too); [`on_pool!`] and [`on_tx!`] expand one body per backend so a
//! query is written once and type-checked twice. Where the dialects differ (`FOR UPDATE SKIP
//! LOCKED`, `now()`), the function matches on [`Db`] explicitly.
//!
//! The saga's participants live here too, one module each (`inventory`, `orders`,
//! `loyalty`, `pay_log`, `sagas`): functions on a [`StoreTx`], so that a step's effect,
//! its journal entry and the saga row commit in one transaction.

mod accounts;
pub mod admin;
mod catalog;
mod demo;
pub mod inventory;
pub mod loyalty;
pub mod orders;
pub mod pay_log;
pub mod sagas;
mod tx;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

pub use accounts::{LoginRecord, NewUser};
pub use catalog::NewSku;
pub use demo::{DEMO_LOGINS, seed_demo};
pub use tx::StoreTx;

static PG_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// A pool on one of the two backends. Cloning is cheap (the pools are reference counted).
#[derive(Clone, Debug)]
pub enum Db {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$pool` bound to the backend's pool: the same code, checked against both.
#[macro_export]
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Pg($pool) => $body,
            $crate::store::Db::Sqlite($pool) => $body,
        }
    };
}

/// Runs `$body` inside one write transaction, with `$conn` the transaction's connection, and
/// commits if it evaluates to `Ok`. A `?` inside the body leaves the function and rolls the
/// transaction back; so would a `return`, which is why bodies never use one. On SQLite the transaction is `BEGIN IMMEDIATE`: a deferred one
/// that reads and then writes fails with "database is locked" when another writer commits
/// first, whatever the busy timeout; an immediate one waits for the write lock instead.
#[macro_export]
macro_rules! on_tx {
    ($db:expr, |$conn:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Pg(pool) => {
                let mut tx = pool.begin().await?;
                let $conn = &mut *tx;
                let out = $body;
                if out.is_ok() {
                    tx.commit().await?;
                }
                out
            }
            $crate::store::Db::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let $conn = &mut *tx;
                let out = $body;
                if out.is_ok() {
                    tx.commit().await?;
                }
                out
            }
        }
    };
}

/// How to reach the database, parsed from `--database-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    Postgres(String),
    /// A file path; its folder is created if missing.
    Sqlite(String),
}

impl FromStr for DbUrl {
    type Err = String;
    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DbUrl::Postgres(url.to_owned()));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err(
                    "a SQLite database needs a file path, e.g. sqlite://data/ordersaga.db".into(),
                );
            }
            return Ok(DbUrl::Sqlite(path.to_owned()));
        }
        Err(format!(
            "unsupported database URL `{url}`: use postgres://... or sqlite://<path>"
        ))
    }
}

impl std::fmt::Display for DbUrl {
    /// The URL without any password, for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbUrl::Sqlite(path) => write!(f, "sqlite://{path}"),
            DbUrl::Postgres(url) => match url::Url::parse(url) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    write!(f, "{u}")
                }
                Err(_) => f.write_str("postgres://(unparsable)"),
            },
        }
    }
}

impl Db {
    /// Opens a pool of at most `max_connections`. SQLite gets WAL (readers never wait for
    /// the writer), a 5 s busy timeout, foreign keys and `synchronous = FULL` (a commit
    /// acknowledged to a shopper survives power loss).
    pub async fn connect(url: &DbUrl, max_connections: u32) -> anyhow::Result<Db> {
        match url {
            DbUrl::Postgres(url) => {
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await
                    .with_context(|| format!("connecting to {}", DbUrl::Postgres(url.clone())))?;
                Ok(Db::Pg(pool))
            }
            DbUrl::Sqlite(path) => {
                if let Some(dir) = Path::new(path)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating the folder {}", dir.display()))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true);
                let pool = SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .with_context(|| format!("opening sqlite://{path}"))?;
                Ok(Db::Sqlite(pool))
            }
        }
    }

    /// Applies the migrations this build carries that the database has not seen yet.
    /// PostgreSQL takes an advisory lock, so processes starting together are safe.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Pg(pool) => PG_MIGRATIONS.run(pool).await,
            Db::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
        }
        .context("applying migrations (an applied migration file was edited, or the database is newer than this build?)")
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> anyhow::Result<()> {
        on_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Db::Pg(_) => "postgres",
            Db::Sqlite(_) => "sqlite",
        }
    }

    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

/// The name of the constraint a database error violated, if it was one.
pub fn violated_constraint(err: &sqlx::Error) -> Option<String> {
    let db_err = err.as_database_error()?;
    if let Some(name) = db_err.constraint() {
        return Some(name.to_owned());
    }
    // SQLite reports CHECK failures only in the message: "CHECK constraint failed: <name>".
    db_err
        .message()
        .strip_prefix("CHECK constraint failed: ")
        .map(|name| name.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_select_the_backend() {
        assert_eq!(
            "sqlite://data/x.db".parse::<DbUrl>(),
            Ok(DbUrl::Sqlite("data/x.db".into()))
        );
        assert!(matches!(
            "postgres://u@h/db".parse::<DbUrl>(),
            Ok(DbUrl::Postgres(_))
        ));
        assert!("mysql://x".parse::<DbUrl>().is_err());
        assert!("sqlite::memory:".parse::<DbUrl>().is_err());
    }

    #[test]
    fn passwords_never_reach_the_logs() {
        let url: DbUrl = "postgres://shop:s3cret@db:5432/shop".parse().unwrap();
        let shown = url.to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
