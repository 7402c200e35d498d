use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::{PayLogEntry, PayLogQueue, QueueStats, sql};
use crate::on_pool;
use crate::store::Db;

/// The queue indexed in Redis: ZSET `{prefix}paylog:due` (member out_trade_no, score the
/// next check time) and ZSET `{prefix}paylog:lease` (score the lease expiry). The entries
/// themselves stay in SQL (`pay_log`): Redis here keeps nothing on disk, so it is an index
/// that is rebuilt from SQL whenever the marker key `{prefix}paylog:synced` is missing
/// (Redis restarted or flushed), and topped up each pass with entries created since the
/// last one.
pub struct RedisPayLogQueue {
    conn: ConnectionManager,
    db: Db,
    prefix: String,
    /// Newest `created_at_ms` already indexed; entries from a little before it are looked
    /// at again each pass, to catch transactions that committed late.
    indexed_up_to_ms: AtomicI64,
}

/// How far back each incremental resync looks, for commits that landed out of order.
const RESYNC_MARGIN_MS: i64 = 60_000;

/// Moves lapsed leases back to due, then due entries to leased, atomically.
/// KEYS: due, lease. ARGV: now, lease until, limit.
const CLAIM: &str = r#"
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, m in ipairs(expired) do
  redis.call('ZREM', KEYS[2], m)
  redis.call('ZADD', KEYS[1], ARGV[1], m)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZADD', KEYS[2], ARGV[2], m)
end
return due
"#;

impl RedisPayLogQueue {
    pub fn new(conn: ConnectionManager, db: Db, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            db,
            prefix: prefix.into(),
            indexed_up_to_ms: AtomicI64::new(0),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}paylog:{name}", self.prefix)
    }

    /// Indexes SQL entries created since `since_ms` that Redis does not know (ZADD NX: a
    /// leased or rescheduled entry keeps its place). With `full`, also drops members
    /// whose SQL entry is gone and sets the marker.
    async fn index_from_sql(&self, since_ms: i64, full: bool) -> anyhow::Result<usize> {
        let rows: Vec<(String, i64, i64)> = on_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT out_trade_no, next_check_at_ms, created_at_ms FROM pay_log WHERE created_at_ms >= $1")
                .bind(since_ms)
                .fetch_all(pool)
                .await?
        });
        let mut conn = self.conn.clone();
        let (due, lease) = (self.key("due"), self.key("lease"));
        let mut pipe = redis::pipe();
        pipe.atomic();
        if full {
            pipe.del(&due).del(&lease);
        }
        for (id, next, _) in &rows {
            if full {
                pipe.zadd(&due, id, *next);
            } else {
                // NX on the due set, and not if it is currently leased.
                pipe.cmd("ZADD").arg(&due).arg("NX").arg(*next).arg(id);
            }
        }
        if full {
            pipe.set(self.key("synced"), 1);
        }
        let _: () = pipe.query_async(&mut conn).await?;
        if !full {
            // An entry leased right now must not also sit in the due set.
            let leased: Vec<String> = redis::cmd("ZRANGE")
                .arg(&lease)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await?;
            if !leased.is_empty() {
                let _: () = redis::cmd("ZREM")
                    .arg(&due)
                    .arg(leased)
                    .query_async(&mut conn)
                    .await?;
            }
        }
        if let Some(newest) = rows.iter().map(|r| r.2).max() {
            self.indexed_up_to_ms.fetch_max(newest, Ordering::Relaxed);
        }
        Ok(rows.len())
    }
}

#[async_trait]
impl PayLogQueue for RedisPayLogQueue {
    async fn claim_due(
        &self,
        _owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<PayLogEntry>> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = redis::Script::new(CLAIM)
            .key(self.key("due"))
            .key(self.key("lease"))
            .arg(now_ms)
            .arg(now_ms + lease_ms)
            .arg(limit)
            .invoke_async(&mut conn)
            .await?;
        let entries = sql::entries(&self.db, &ids).await?;
        // Members whose SQL entry is gone belong to finished sagas.
        let gone: Vec<&String> = ids
            .iter()
            .filter(|id| !entries.iter().any(|e| &e.out_trade_no == *id))
            .collect();
        if !gone.is_empty() {
            let _: () = redis::cmd("ZREM")
                .arg(self.key("lease"))
                .arg(gone)
                .query_async(&mut conn)
                .await?;
        }
        Ok(entries)
    }

    async fn reschedule(&self, out_trade_no: &str, next_check_at_ms: i64) -> anyhow::Result<()> {
        let exists = sql::reschedule(&self.db, out_trade_no, next_check_at_ms).await?;
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic().zrem(self.key("lease"), out_trade_no);
        if exists {
            pipe.zadd(self.key("due"), out_trade_no, next_check_at_ms);
        } else {
            // Its saga finished and removed it: drop it from the index too.
            pipe.zrem(self.key("due"), out_trade_no);
        }
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    async fn remove(&self, out_trade_no: &str) -> anyhow::Result<()> {
        sql::remove(&self.db, out_trade_no).await?;
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .zrem(self.key("lease"), out_trade_no)
            .zrem(self.key("due"), out_trade_no)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// From the SQL record: the index may still hold members of sagas that finished since
    /// (they are dropped when next claimed).
    async fn stats(&self, now_ms: i64) -> anyhow::Result<QueueStats> {
        sql::stats(&self.db, now_ms).await
    }

    async fn resync(&self) -> anyhow::Result<usize> {
        let mut conn = self.conn.clone();
        let synced: bool = redis::cmd("EXISTS")
            .arg(self.key("synced"))
            .query_async(&mut conn)
            .await?;
        if !synced {
            let n = self.index_from_sql(0, true).await?;
            tracing::info!(
                entries = n,
                "pay-log index rebuilt in Redis from the database"
            );
            return Ok(n);
        }
        let since = self.indexed_up_to_ms.load(Ordering::Relaxed) - RESYNC_MARGIN_MS;
        self.index_from_sql(since, false).await
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }
}
