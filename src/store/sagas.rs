//! The saga row, its journal and its alerts.

use super::{Db, StoreTx};
use crate::domain::OrderId;
use crate::workflows::checkout::{Alert, Event, SagaState};
use crate::{on_conn, on_pool};

/// A saga as stored.
#[derive(Debug, Clone)]
pub struct StoredSaga {
    pub state: SagaState,
    pub version: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// Another writer moved the saga on since it was read: reload and decide again.
    #[error("saga {0} changed since it was read (version {1})")]
    VersionConflict(OrderId, i64),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl From<sqlx::Error> for TransitionError {
    fn from(e: sqlx::Error) -> Self {
        TransitionError::Store(e.into())
    }
}

/// The outcome of creating a saga row.
pub enum Created {
    New,
    /// The same shopper already submitted this Idempotency-Key: that order.
    Existing(OrderId),
}

impl Db {
    /// Stores a new saga (version 0, phase `started`) with its first journal entry. With an
    /// idempotency key already used by the same shopper, nothing is written and the
    /// earlier order is returned.
    pub async fn create_saga(
        &self,
        state: &SagaState,
        idempotency_key: Option<&str>,
        now_ms: i64,
    ) -> anyhow::Result<Created> {
        let req = &state.request;
        let data = serde_json::to_string(state)?;
        let order_key = req.order_id.to_string();
        let mut tx = self.begin_write().await?;
        let inserted = on_conn!(&mut tx, |conn| {
            sqlx::query(
                "INSERT INTO saga (order_id, username, state, version, data, deadline_at_ms, idempotency_key,
                                   created_at_ms, updated_at_ms)
                 VALUES ($1, $2, $3, 0, $4, $5, $6, $7, $7)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&order_key)
            .bind(&req.username)
            .bind(state.phase.name())
            .bind(&data)
            .bind(req.deadline_at_ms)
            .bind(idempotency_key)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?
            .rows_affected()
        });
        if inserted == 0 {
            drop(tx);
            let key = idempotency_key
                .ok_or_else(|| anyhow::anyhow!("order id {order_key} already used"))?;
            let (existing,): (String,) = on_pool!(self, |pool| {
                sqlx::query_as(
                    "SELECT order_id FROM saga WHERE username = $1 AND idempotency_key = $2",
                )
                .bind(&req.username)
                .bind(key)
                .fetch_one(pool)
                .await?
            });
            return Ok(Created::Existing(existing.parse()?));
        }
        journal(
            &mut tx,
            req.order_id,
            0,
            "checkout_submitted",
            state.phase.name(),
            now_ms,
            &data,
        )
        .await?;
        tx.commit().await?;
        Ok(Created::New)
    }

    /// The order an earlier submit with this Idempotency-Key created, if any.
    pub async fn saga_by_idempotency_key(
        &self,
        username: &str,
        key: &str,
    ) -> anyhow::Result<Option<OrderId>> {
        let row: Option<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT order_id FROM saga WHERE username = $1 AND idempotency_key = $2")
                .bind(username)
                .bind(key)
                .fetch_optional(pool)
                .await?
        });
        row.map(|(id,)| Ok(id.parse()?)).transpose()
    }

    pub async fn load_saga(&self, order: OrderId) -> anyhow::Result<Option<StoredSaga>> {
        let row: Option<(String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT data, version FROM saga WHERE order_id = $1")
                .bind(order.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(|(data, version)| {
            Ok(StoredSaga {
                state: serde_json::from_str(&data)?,
                version,
            })
        })
        .transpose()
    }

    /// Ids of sagas interrupted mid-step (neither terminal, nor stuck, nor only waiting for
    /// payment): what a starting process resumes at once.
    pub async fn active_saga_ids(&self) -> anyhow::Result<Vec<OrderId>> {
        let rows: Vec<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT order_id FROM saga WHERE state NOT IN ('completed', 'compensated', 'failed', 'stuck', 'awaiting_payment')
                 ORDER BY created_at_ms",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(|(id,)| Ok(id.parse()?)).collect()
    }

    /// Sagas waiting for payment whose deadline has passed.
    pub async fn expired_saga_ids(&self, now_ms: i64, limit: i64) -> anyhow::Result<Vec<OrderId>> {
        let rows: Vec<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT order_id FROM saga WHERE state = 'awaiting_payment' AND deadline_at_ms <= $1
                 ORDER BY deadline_at_ms LIMIT $2",
            )
            .bind(now_ms)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(|(id,)| Ok(id.parse()?)).collect()
    }

    /// The owner of an order's saga, for access checks.
    pub async fn saga_owner(&self, order: OrderId) -> anyhow::Result<Option<String>> {
        let row: Option<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT username FROM saga WHERE order_id = $1")
                .bind(order.to_string())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(u,)| u))
    }
}

/// Records a transition inside `tx`: the saga row moves from `version` to `version + 1`
/// (or the call fails with `VersionConflict`) and the journal gets its entry.
pub async fn record_transition(
    tx: &mut StoreTx,
    version: i64,
    event: &Event,
    next: &SagaState,
    now_ms: i64,
) -> Result<(), TransitionError> {
    let order = next.request.order_id;
    let data = serde_json::to_string(next).map_err(anyhow::Error::from)?;
    let updated = on_conn!(tx, |conn| {
        sqlx::query(
            "UPDATE saga SET state = $3, version = $2 + 1, data = $4, last_error = $5, updated_at_ms = $6
             WHERE order_id = $1 AND version = $2",
        )
        .bind(order.to_string())
        .bind(version)
        .bind(next.phase.name())
        .bind(&data)
        .bind(&next.last_error)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    if updated != 1 {
        return Err(TransitionError::VersionConflict(order, version));
    }
    let event_data = serde_json::to_string(event).map_err(anyhow::Error::from)?;
    journal(
        tx,
        order,
        version + 1,
        event.kind(),
        next.phase.name(),
        now_ms,
        &event_data,
    )
    .await?;
    Ok(())
}

async fn journal(
    tx: &mut StoreTx,
    order: OrderId,
    seq: i64,
    kind: &str,
    state: &str,
    now_ms: i64,
    data: &str,
) -> anyhow::Result<()> {
    on_conn!(tx, |conn| {
        sqlx::query("INSERT INTO saga_event (order_id, seq, kind, state, at_ms, data) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(order.to_string())
            .bind(seq)
            .bind(kind)
            .bind(state)
            .bind(now_ms)
            .bind(data)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

/// Records an operator alert once (a repeated notification does not repeat it).
pub async fn raise_alert(tx: &mut StoreTx, alert: &Alert, now_ms: i64) -> anyhow::Result<()> {
    let (order, dedup) = match alert {
        Alert::WrongAmount { order, payment, .. }
        | Alert::PaidAfterClose { order, payment }
        | Alert::DuplicatePayment { order, payment } => (
            *order,
            format!("{}:{order}:{}", alert.kind(), payment.transaction_id),
        ),
        Alert::Stuck { order, step, .. } => (*order, format!("stuck:{order}:{step:?}:{now_ms}")),
    };
    let data = serde_json::to_string(alert)?;
    on_conn!(tx, |conn| {
        sqlx::query(
            "INSERT INTO saga_alert (order_id, kind, dedup_key, data, created_at_ms)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(order.to_string())
        .bind(alert.kind())
        .bind(dedup)
        .bind(data)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

/// Records an alert that is not a workflow decision (e.g. the reconciler finding a refund),
/// once per (kind, order, detail).
pub async fn record_alert(
    db: &Db,
    order: OrderId,
    kind: &str,
    detail: &str,
    now_ms: i64,
) -> anyhow::Result<()> {
    let dedup = format!("{kind}:{order}:{detail}");
    let data = serde_json::json!({ "kind": kind, "order": order, "detail": detail }).to_string();
    on_pool!(db, |pool| {
        sqlx::query(
            "INSERT INTO saga_alert (order_id, kind, dedup_key, data, created_at_ms)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(order.to_string())
        .bind(kind)
        .bind(dedup)
        .bind(data)
        .bind(now_ms)
        .execute(pool)
        .await?;
    });
    Ok(())
}
