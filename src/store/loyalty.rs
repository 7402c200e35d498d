//! The `Loyalty` participant: points per order in `points_ledger`, at most one award and
//! one revoke per order, and `tb_user.points` moved by exactly what the ledger says.

use super::StoreTx;
use crate::domain::OrderId;
use crate::on_conn;

/// Awards `points` for the order, once.
pub async fn award(
    tx: &mut StoreTx,
    order: OrderId,
    user: &str,
    points: i64,
    now_ms: i64,
) -> anyhow::Result<()> {
    if points <= 0 {
        return Ok(());
    }
    let inserted = on_conn!(tx, |conn| {
        sqlx::query(
            "INSERT INTO points_ledger (order_id, kind, username, points, at_ms)
             VALUES ($1, 'award', $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(order.to_string())
        .bind(user)
        .bind(points)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    if inserted == 1 {
        on_conn!(tx, |conn| {
            sqlx::query("UPDATE tb_user SET points = points + $2 WHERE username = $1")
                .bind(user)
                .bind(points)
                .execute(&mut *conn)
                .await?;
        });
    }
    Ok(())
}

/// Takes back what the order's award gave, once; nothing if there was no award.
pub async fn revoke(tx: &mut StoreTx, order: OrderId, now_ms: i64) -> anyhow::Result<()> {
    let revoked: Option<(String, i64)> = on_conn!(tx, |conn| {
        sqlx::query_as(
            "INSERT INTO points_ledger (order_id, kind, username, points, at_ms)
             SELECT order_id, 'revoke', username, points, $2 FROM points_ledger
             WHERE order_id = $1 AND kind = 'award'
             ON CONFLICT DO NOTHING
             RETURNING username, CAST(points AS BIGINT)",
        )
        .bind(order.to_string())
        .bind(now_ms)
        .fetch_optional(&mut *conn)
        .await?
    });
    if let Some((user, points)) = revoked {
        // The CHECK (points >= 0) refuses a revoke the shopper's balance cannot cover;
        // the compensation then fails visibly (and the saga gets stuck) instead of
        // leaving a negative balance.
        on_conn!(tx, |conn| {
            sqlx::query("UPDATE tb_user SET points = points - $2 WHERE username = $1")
                .bind(&user)
                .bind(points)
                .execute(&mut *conn)
                .await?;
        });
    }
    Ok(())
}
