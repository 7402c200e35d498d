use async_trait::async_trait;

use super::{PayLogEntry, PayLogQueue, QueueStats};
use crate::store::Db;
use crate::{on_pool, on_tx};

/// The queue in the `pay_log` table.
#[derive(Clone)]
pub struct SqlPayLogQueue {
    db: Db,
}

impl SqlPayLogQueue {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    out_trade_no: String,
    username: String,
    total_fee: i64,
    created_at_ms: i64,
    next_check_at_ms: i64,
    attempts: i64,
}

impl From<Row> for PayLogEntry {
    fn from(r: Row) -> Self {
        PayLogEntry {
            out_trade_no: r.out_trade_no,
            username: r.username,
            total_fee: r.total_fee,
            created_at_ms: r.created_at_ms,
            next_check_at_ms: r.next_check_at_ms,
            attempts: r.attempts.max(0) as u32,
        }
    }
}

/// Entries by id, from the SQL record (the Redis adapter reads them here too).
pub(super) async fn entries(db: &Db, ids: &[String]) -> anyhow::Result<Vec<PayLogEntry>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let row: Option<Row> = on_pool!(db, |pool| {
            sqlx::query_as(
                "SELECT out_trade_no, username, total_fee, created_at_ms, next_check_at_ms,
                        CAST(attempts AS BIGINT) AS attempts FROM pay_log WHERE out_trade_no = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        out.extend(row.map(PayLogEntry::from));
    }
    Ok(out)
}

/// Returns whether the entry still exists (its saga may have removed it meanwhile).
pub(super) async fn reschedule(
    db: &Db,
    out_trade_no: &str,
    next_check_at_ms: i64,
) -> anyhow::Result<bool> {
    let updated = on_pool!(db, |pool| {
        sqlx::query(
            "UPDATE pay_log SET next_check_at_ms = $2, attempts = attempts + 1, lease_owner = NULL, lease_until_ms = NULL
             WHERE out_trade_no = $1",
        )
        .bind(out_trade_no)
        .bind(next_check_at_ms)
        .execute(pool)
        .await?
        .rows_affected()
    });
    Ok(updated == 1)
}

/// Depth, due entries and the oldest due one, from the record.
pub(super) async fn stats(db: &Db, now_ms: i64) -> anyhow::Result<QueueStats> {
    let (depth, due, oldest): (i64, i64, Option<i64>) = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT COUNT(*),
                    COALESCE(SUM(CASE WHEN next_check_at_ms <= $1 THEN 1 ELSE 0 END), 0),
                    MIN(CASE WHEN next_check_at_ms <= $1 THEN next_check_at_ms END)
             FROM pay_log",
        )
        .bind(now_ms)
        .fetch_one(pool)
        .await?
    });
    Ok(QueueStats {
        depth,
        due,
        oldest_due_at_ms: oldest,
    })
}

pub(super) async fn remove(db: &Db, out_trade_no: &str) -> anyhow::Result<()> {
    on_pool!(db, |pool| {
        sqlx::query("DELETE FROM pay_log WHERE out_trade_no = $1")
            .bind(out_trade_no)
            .execute(pool)
            .await?;
    });
    Ok(())
}

#[async_trait]
impl PayLogQueue for SqlPayLogQueue {
    async fn claim_due(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<PayLogEntry>> {
        let rows: Vec<Row> = match &self.db {
            // SKIP LOCKED: processes claiming at once take different entries instead of
            // waiting for each other.
            Db::Pg(pool) => {
                sqlx::query_as(
                    "UPDATE pay_log SET lease_owner = $1, lease_until_ms = $2
                     WHERE out_trade_no IN (
                         SELECT out_trade_no FROM pay_log
                         WHERE next_check_at_ms <= $3 AND (lease_until_ms IS NULL OR lease_until_ms <= $3)
                         ORDER BY next_check_at_ms LIMIT $4 FOR UPDATE SKIP LOCKED)
                     RETURNING out_trade_no, username, total_fee, created_at_ms, next_check_at_ms,
                               CAST(attempts AS BIGINT) AS attempts",
                )
                .bind(owner)
                .bind(now_ms + lease_ms)
                .bind(now_ms)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            // SQLite has one writer at a time (BEGIN IMMEDIATE): the same statement is safe.
            Db::Sqlite(_) => on_tx!(&self.db, |conn| {
                sqlx::query_as(
                    "UPDATE pay_log SET lease_owner = $1, lease_until_ms = $2
                     WHERE out_trade_no IN (
                         SELECT out_trade_no FROM pay_log
                         WHERE next_check_at_ms <= $3 AND (lease_until_ms IS NULL OR lease_until_ms <= $3)
                         ORDER BY next_check_at_ms LIMIT $4)
                     RETURNING out_trade_no, username, total_fee, created_at_ms, next_check_at_ms,
                               CAST(attempts AS BIGINT) AS attempts",
                )
                .bind(owner)
                .bind(now_ms + lease_ms)
                .bind(now_ms)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await
            })?,
        };
        let mut entries: Vec<PayLogEntry> = rows.into_iter().map(PayLogEntry::from).collect();
        entries.sort_by_key(|e| e.next_check_at_ms);
        Ok(entries)
    }

    async fn reschedule(&self, out_trade_no: &str, next_check_at_ms: i64) -> anyhow::Result<()> {
        reschedule(&self.db, out_trade_no, next_check_at_ms).await?;
        Ok(())
    }

    async fn remove(&self, out_trade_no: &str) -> anyhow::Result<()> {
        remove(&self.db, out_trade_no).await
    }

    async fn stats(&self, now_ms: i64) -> anyhow::Result<QueueStats> {
        stats(&self.db, now_ms).await
    }

    async fn resync(&self) -> anyhow::Result<usize> {
        Ok(0)
    }

    fn backend_name(&self) -> &'static str {
        "sql"
    }
}
