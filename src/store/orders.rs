//! The `Orders` participant: `tb_order` and `tb_order_item`. The order id is the
//! idempotency key: writing twice, closing twice or recording the payment twice changes
//! nothing the second time.

use chrono::{DateTime, TimeZone, Utc};

use super::StoreTx;
use crate::domain::OrderId;
use crate::on_conn;
use crate::workflows::checkout::{Payment, SagaState};

/// `tb_order.order_status` / `pay_status` values (the seed's codes, plus `3` closed).
pub mod status {
    pub const ORDER_OPEN: &str = "0";
    pub const ORDER_CLOSED: &str = "3";
    pub const PAY_UNPAID: &str = "0";
    pub const PAY_PAID: &str = "1";
}

pub fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Writes the unpaid order and its items, priced as reserved.
pub async fn write(tx: &mut StoreTx, state: &SagaState) -> anyhow::Result<()> {
    let req = &state.request;
    let priced = state
        .priced
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("SAGA-ORDER-001: order written before it was priced"))?;
    let order_key = req.order_id.to_string();
    let created = ms_to_time(req.created_at_ms);
    let inserted = on_conn!(tx, |conn| {
        sqlx::query(
            "INSERT INTO tb_order (id, total_num, total_money, pre_money, post_fee, pay_money, pay_type,
                                   create_time, update_time, username, buyer_message, buyer_rate,
                                   receiver_contact, receiver_mobile, receiver_address, source_type,
                                   order_status, pay_status, consign_status, is_delete)
             VALUES ($1, $2, $3, 0, 0, $3, $4, $5, $5, $6, $7, '0', $8, $9, $10, '1', '0', '0', '0', '0')
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&order_key)
        .bind(priced.total_num)
        .bind(priced.pay_money.fen())
        .bind(&req.pay_type)
        .bind(created)
        .bind(&req.username)
        .bind(&req.buyer_message)
        .bind(&req.receiver_contact)
        .bind(&req.receiver_mobile)
        .bind(&req.receiver_address)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    if inserted == 0 {
        return Ok(());
    }
    for line in &priced.lines {
        let money = line.price.fen() * i64::from(line.num);
        on_conn!(tx, |conn| {
            sqlx::query(
                "INSERT INTO tb_order_item (id, spu_id, sku_id, order_id, name, price, num, money, pay_money,
                                            image, post_fee, is_return)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, 0, '0')",
            )
            .bind(format!("{order_key}-{}", line.sku_id))
            .bind(line.spu_id.to_string())
            .bind(line.sku_id.get())
            .bind(&order_key)
            .bind(&line.name)
            .bind(line.price.fen())
            .bind(line.num)
            .bind(money)
            .bind(&line.image)
            .execute(&mut *conn)
            .await?;
        });
    }
    Ok(())
}

/// Closes an unpaid order: order_status 3, close time set. A paid or closed order is left
/// as it is.
pub async fn close(tx: &mut StoreTx, order: OrderId, now_ms: i64) -> anyhow::Result<()> {
    let now = ms_to_time(now_ms);
    on_conn!(tx, |conn| {
        sqlx::query(
            "UPDATE tb_order SET order_status = '3', close_time = $2, update_time = $2
             WHERE id = $1 AND pay_status = '0' AND order_status = '0'",
        )
        .bind(order.to_string())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

/// Records the payment on an open, unpaid order: pay_status 1, pay time, transaction id.
/// Once; a closed order is never marked paid (that payment is an operator alert).
pub async fn mark_paid(
    tx: &mut StoreTx,
    order: OrderId,
    payment: &Payment,
    now_ms: i64,
) -> anyhow::Result<()> {
    on_conn!(tx, |conn| {
        sqlx::query(
            "UPDATE tb_order SET pay_status = '1', pay_time = $2, transaction_id = $3, update_time = $4
             WHERE id = $1 AND pay_status = '0' AND order_status = '0'",
        )
        .bind(order.to_string())
        .bind(ms_to_time(payment.paid_at_ms))
        .bind(&payment.transaction_id)
        .bind(ms_to_time(now_ms))
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

/// `tb_order` as the API shows it (the seed's field names).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct OrderRow {
    pub id: String,
    pub total_num: i64,
    pub total_money: i64,
    pub pay_money: i64,
    pub pay_type: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub pay_time: Option<DateTime<Utc>>,
    pub close_time: Option<DateTime<Utc>>,
    pub username: String,
    pub buyer_message: Option<String>,
    pub receiver_contact: Option<String>,
    pub receiver_mobile: Option<String>,
    pub receiver_address: Option<String>,
    pub transaction_id: Option<String>,
    pub order_status: String,
    pub pay_status: String,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemRow {
    pub id: String,
    pub sku_id: i64,
    pub name: String,
    pub price: i64,
    pub num: i64,
    pub money: i64,
    pub image: Option<String>,
}

/// `SELECT <the columns of OrderRow> [, extra columns] FROM tb_order <tail>`.
macro_rules! select_orders {
    ($tail:literal) => {
        select_orders!("", $tail)
    };
    ($extra:literal, $tail:literal) => {
        concat!(
            "SELECT id, CAST(total_num AS BIGINT) AS total_num, CAST(total_money AS BIGINT) AS total_money, ",
            "CAST(pay_money AS BIGINT) AS pay_money, pay_type, create_time, update_time, pay_time, close_time, ",
            "username, buyer_message, receiver_contact, receiver_mobile, receiver_address, transaction_id, ",
            "order_status, pay_status",
            $extra,
            " FROM tb_order ",
            $tail
        )
    };
}

#[derive(sqlx::FromRow)]
struct OrderWithState {
    #[sqlx(flatten)]
    order: OrderRow,
    saga_state: String,
}

impl super::Db {
    pub async fn order(
        &self,
        order: OrderId,
    ) -> anyhow::Result<Option<(OrderRow, Vec<OrderItemRow>)>> {
        let key = order.to_string();
        let row: Option<OrderRow> = crate::on_pool!(self, |pool| {
            sqlx::query_as(select_orders!("WHERE id = $1"))
                .bind(&key)
                .fetch_optional(pool)
                .await?
        });
        let Some(row) = row else { return Ok(None) };
        let items: Vec<OrderItemRow> = crate::on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, sku_id, name, CAST(price AS BIGINT) AS price, CAST(num AS BIGINT) AS num,
                        CAST(money AS BIGINT) AS money, image
                 FROM tb_order_item WHERE order_id = $1 ORDER BY sku_id",
            )
            .bind(&key)
            .fetch_all(pool)
            .await?
        });
        Ok(Some((row, items)))
    }

    /// The user's orders, newest first, with their saga's state.
    pub async fn orders_of(
        &self,
        username: &str,
        limit: i64,
        offset: i64,
    ) -> anyhow::Result<(Vec<(OrderRow, String)>, i64)> {
        // One statement: each order with its saga's state.
        let rows: Vec<OrderWithState> = crate::on_pool!(self, |pool| {
            sqlx::query_as(select_orders!(
                ", COALESCE((SELECT state FROM saga WHERE saga.order_id = tb_order.id), 'unknown') AS saga_state",
                "WHERE username = $1 ORDER BY create_time DESC, id DESC LIMIT $2 OFFSET $3"
            ))
            .bind(username)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?
        });
        let (total,): (i64,) = crate::on_pool!(self, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM tb_order WHERE username = $1")
                .bind(username)
                .fetch_one(pool)
                .await?
        });
        let out = rows.into_iter().map(|r| (r.order, r.saga_state)).collect();
        Ok((out, total))
    }
}
