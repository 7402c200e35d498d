//! What operators read: sagas by filter, a saga's journal, alerts, and activity figures.

use super::Db;
use crate::domain::OrderId;
use crate::on_pool;
use crate::workflows::checkout::SagaState;

/// Filters for the saga list; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct SagaFilter {
    pub state: Option<String>,
    pub username: Option<String>,
    pub order_id: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Continue after this (created_at_ms, order_id): stable under inserts.
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SagaRow {
    pub order_id: String,
    pub username: String,
    pub state: String,
    pub data: String,
    pub deadline_at_ms: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl SagaRow {
    pub fn saga(&self) -> anyhow::Result<SagaState> {
        Ok(serde_json::from_str(&self.data)?)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JournalRow {
    pub seq: i64,
    pub kind: String,
    pub state: String,
    pub at_ms: i64,
    pub data: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertRow {
    pub id: i64,
    pub order_id: String,
    pub kind: String,
    pub data: String,
    pub created_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
    pub resolved_by: Option<String>,
}

/// Which alerts to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFilter {
    Open,
    Resolved,
    All,
}

pub enum Resolve {
    Done,
    NotFound,
    AlreadyResolved,
}

impl Db {
    /// Sagas newest first (created time, then order id), at most `limit`.
    pub async fn list_sagas(&self, f: &SagaFilter) -> anyhow::Result<Vec<SagaRow>> {
        let (after_ms, after_id) = f
            .after
            .clone()
            .map_or((None, None), |(ms, id)| (Some(ms), Some(id)));
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT order_id, username, state, data, deadline_at_ms, last_error, created_at_ms, updated_at_ms
                 FROM saga
                 WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR username = $2) AND ($3 IS NULL OR order_id = $3)
                   AND ($4 IS NULL OR created_at_ms >= $4) AND ($5 IS NULL OR created_at_ms < $5)
                   AND ($6 IS NULL OR created_at_ms < $6 OR (created_at_ms = $6 AND order_id < $7))
                 ORDER BY created_at_ms DESC, order_id DESC
                 LIMIT $8",
            )
            .bind(&f.state)
            .bind(&f.username)
            .bind(&f.order_id)
            .bind(f.since_ms)
            .bind(f.until_ms)
            .bind(after_ms)
            .bind(after_id)
            .bind(f.limit)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn saga_row(&self, order: OrderId) -> anyhow::Result<Option<SagaRow>> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT order_id, username, state, data, deadline_at_ms, last_error, created_at_ms, updated_at_ms
                 FROM saga WHERE order_id = $1",
            )
            .bind(order.to_string())
            .fetch_optional(pool)
            .await?
        }))
    }

    pub async fn journal(&self, order: OrderId) -> anyhow::Result<Vec<JournalRow>> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as("SELECT seq, kind, state, at_ms, data FROM saga_event WHERE order_id = $1 ORDER BY seq")
                .bind(order.to_string())
                .fetch_all(pool)
                .await?
        }))
    }

    /// Alerts, newest first; of one order when `order` is given.
    pub async fn alerts(
        &self,
        order: Option<OrderId>,
        filter: AlertFilter,
        limit: i64,
    ) -> anyhow::Result<Vec<AlertRow>> {
        let resolved: Option<bool> = match filter {
            AlertFilter::Open => Some(false),
            AlertFilter::Resolved => Some(true),
            AlertFilter::All => None,
        };
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, order_id, kind, data, created_at_ms, resolved_at_ms, resolved_by FROM saga_alert
                 WHERE ($1 IS NULL OR order_id = $1)
                   AND ($2 IS NULL OR (CASE WHEN resolved_at_ms IS NULL THEN 0 ELSE 1 END) = $2)
                 ORDER BY id DESC LIMIT $3",
            )
            .bind(order.map(|o| o.to_string()))
            .bind(resolved.map(i32::from))
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn resolve_alert(&self, id: i64, by: &str, now_ms: i64) -> anyhow::Result<Resolve> {
        let updated = on_pool!(self, |pool| {
            sqlx::query("UPDATE saga_alert SET resolved_at_ms = $2, resolved_by = $3 WHERE id = $1 AND resolved_at_ms IS NULL")
                .bind(id)
                .bind(now_ms)
                .bind(by)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 1 {
            return Ok(Resolve::Done);
        }
        let exists: Option<(i64,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT id FROM saga_alert WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(if exists.is_some() {
            Resolve::AlreadyResolved
        } else {
            Resolve::NotFound
        })
    }

    /// Sagas per state.
    pub async fn saga_counts(&self) -> anyhow::Result<Vec<(String, i64)>> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as("SELECT state, COUNT(*) FROM saga GROUP BY state ORDER BY state")
                .fetch_all(pool)
                .await?
        }))
    }

    /// Journal entries since `since_ms` (at most `limit`, newest kept), for activity
    /// figures and step latencies: (order, seq, kind, at_ms).
    pub async fn recent_events(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<(String, i64, String, i64)>> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT order_id, seq, kind, at_ms FROM saga_event WHERE at_ms >= $1
                 ORDER BY at_ms DESC LIMIT $2",
            )
            .bind(since_ms)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }
}
