//! The pay-log queue's SQL record: one row per order waiting for payment. The saga writes
//! and removes it inside its own transactions; the reconciler (`queue`, `PayReconciler`)
//! drains it.

use super::StoreTx;
use crate::domain::{Money, OrderId};
use crate::on_conn;

/// Writes the order's pay log, first checked at `first_check_at_ms` (WeChat's notification
/// usually comes before).
pub async fn enqueue(
    tx: &mut StoreTx,
    order: OrderId,
    user: &str,
    amount: Money,
    now_ms: i64,
    first_check_at_ms: i64,
) -> anyhow::Result<()> {
    on_conn!(tx, |conn| {
        sqlx::query(
            "INSERT INTO pay_log (out_trade_no, username, total_fee, created_at_ms, next_check_at_ms, attempts)
             VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (out_trade_no) DO NOTHING",
        )
        .bind(order.to_string())
        .bind(user)
        .bind(amount.fen())
        .bind(now_ms)
        .bind(first_check_at_ms)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

/// Removes the order's entry (paid or closed); absent entries are fine.
pub async fn remove(tx: &mut StoreTx, order: OrderId) -> anyhow::Result<()> {
    on_conn!(tx, |conn| {
        sqlx::query("DELETE FROM pay_log WHERE out_trade_no = $1")
            .bind(order.to_string())
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}
