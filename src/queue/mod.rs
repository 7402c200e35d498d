//! The pay-log queue: orders waiting for payment, each to be checked with WeChat's
//! orderquery at its next check time. Two adapters behind one trait: SQL (the `pay_log`
//! table, always the record) and Redis (a ZSET index for many processes; rebuilt from SQL
//! whenever Redis comes back empty). See docs/reconciliation.md.

mod redis;
mod sql;

use async_trait::async_trait;

pub use self::redis::RedisPayLogQueue;
pub use self::sql::SqlPayLogQueue;

/// One pay log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayLogEntry {
    pub out_trade_no: String,
    pub username: String,
    pub total_fee: i64,
    pub created_at_ms: i64,
    pub next_check_at_ms: i64,
    /// Checks made so far: picks the next backoff delay.
    pub attempts: u32,
}

/// How deep the queue is, for operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    pub depth: i64,
    pub due: i64,
    /// The longest-waiting due entry's check time (epoch ms).
    pub oldest_due_at_ms: Option<i64>,
}

#[async_trait]
pub trait PayLogQueue: Send + Sync + 'static {
    /// Claims up to `limit` entries due at `now_ms`, leased to `owner` until
    /// `now_ms + lease_ms`. An entry whose lease lapsed (its claimer died) is due again:
    /// at least once, never lost.
    async fn claim_due(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<PayLogEntry>>;

    /// After a check: the next one at `next_check_at_ms`, one more attempt, lease released.
    async fn reschedule(&self, out_trade_no: &str, next_check_at_ms: i64) -> anyhow::Result<()>;

    /// Forgets an entry whose saga is finished (normally the saga's own transaction did).
    async fn remove(&self, out_trade_no: &str) -> anyhow::Result<()>;

    async fn stats(&self, now_ms: i64) -> anyhow::Result<QueueStats>;

    /// Makes the adapter's index agree with the SQL record; returns the entries indexed.
    /// A no-op for SQL.
    async fn resync(&self) -> anyhow::Result<usize>;

    fn backend_name(&self) -> &'static str;
}
