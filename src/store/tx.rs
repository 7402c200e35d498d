//! One write transaction on either backend, so that a participant's effect, the journal
//! entry and the saga row commit together.

use sqlx::{Postgres, Sqlite, Transaction};

use super::Db;

pub enum StoreTx {
    Pg(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// Runs `$body` with `$conn` bound to the transaction's connection, once per backend.
#[macro_export]
macro_rules! on_conn {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::store::StoreTx::Pg(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::store::StoreTx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

impl Db {
    /// Begins a write transaction: `BEGIN IMMEDIATE` on SQLite (see [`on_tx!`]).
    pub async fn begin_write(&self) -> sqlx::Result<StoreTx> {
        Ok(match self {
            Db::Pg(pool) => StoreTx::Pg(pool.begin().await?),
            Db::Sqlite(pool) => StoreTx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        })
    }
}

impl StoreTx {
    pub async fn commit(self) -> sqlx::Result<()> {
        match self {
            StoreTx::Pg(tx) => tx.commit().await,
            StoreTx::Sqlite(tx) => tx.commit().await,
        }
    }
}
