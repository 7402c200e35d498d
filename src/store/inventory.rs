//! The `Inventory` participant: stock held per (order, SKU) in `stock_reservation`.
//! Every call is idempotent: the reservation rows say what was already done.
//!
//! Per SKU, `tb_sku.num + reserved + committed` never changes: a reservation moves units
//! from `num` into a `reserved` row; release moves them back; commit marks them sold
//! (`sale_num` grows, the row becomes `committed`).

use super::StoreTx;
use crate::domain::{Money, OrderId, SkuId};
use crate::on_conn;
use crate::workflows::checkout::{PricedLine, PricedOrder, RequestedLine};

/// The result of a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Every line is held, priced from `tb_sku`.
    Reserved(PricedOrder),
    /// These SKUs have fewer units than asked (or are not on sale): nothing was held.
    /// The caller must roll the transaction back, which undoes the lines already taken.
    Short(Vec<SkuId>),
}

#[derive(sqlx::FromRow)]
struct Taken {
    name: String,
    image: String,
    price: i64,
    spu_id: i64,
}

/// Reserves every line or reports the short ones. SKUs are taken in id order, so two
/// checkouts of the same SKUs never wait for each other in a cycle (no deadlock); the
/// `num >= $1` guard makes the stock check and the decrement one atomic statement.
pub async fn reserve(
    tx: &mut StoreTx,
    order: OrderId,
    lines: &[RequestedLine],
) -> anyhow::Result<Reservation> {
    let order_key = order.to_string();
    if let Some(done) = reserved_before(tx, &order_key).await? {
        return Ok(Reservation::Reserved(done));
    }
    let mut sorted = lines.to_vec();
    sorted.sort_by_key(|l| l.sku_id);
    let mut priced = Vec::with_capacity(sorted.len());
    let mut short = Vec::new();
    for line in &sorted {
        let taken: Option<Taken> = on_conn!(tx, |conn| {
            sqlx::query_as(
                "UPDATE tb_sku SET num = num - $1
                 WHERE id = $2 AND num >= $1 AND status = '1'
                 RETURNING name, image, CAST(price AS BIGINT) AS price, spu_id",
            )
            .bind(line.num)
            .bind(line.sku_id.get())
            .fetch_optional(&mut *conn)
            .await?
        });
        match taken {
            Some(t) if short.is_empty() => {
                on_conn!(tx, |conn| {
                    sqlx::query(
                        "INSERT INTO stock_reservation (order_id, sku_id, num, state, price)
                         VALUES ($1, $2, $3, 'reserved', $4)",
                    )
                    .bind(&order_key)
                    .bind(line.sku_id.get())
                    .bind(line.num)
                    .bind(t.price)
                    .execute(&mut *conn)
                    .await?;
                });
                priced.push(PricedLine {
                    sku_id: line.sku_id,
                    name: t.name,
                    image: t.image,
                    price: Money::from_fen(t.price),
                    num: line.num,
                    spu_id: t.spu_id,
                });
            }
            // Once one line is short the transaction will be rolled back; the remaining
            // lines are still checked so the shopper learns every SKU that is short.
            Some(_) => {}
            None => short.push(line.sku_id),
        }
    }
    if short.is_empty() {
        Ok(Reservation::Reserved(PricedOrder::from_lines(priced)))
    } else {
        Ok(Reservation::Short(short))
    }
}

/// The order's reservation if one was made before (a repeated call).
async fn reserved_before(tx: &mut StoreTx, order_key: &str) -> anyhow::Result<Option<PricedOrder>> {
    let rows: Vec<(i64, i64, String, String, i64, i64)> = on_conn!(tx, |conn| {
        sqlx::query_as(
            "SELECT r.sku_id, CAST(r.num AS BIGINT), s.name, s.image,
                    CAST(COALESCE(r.price, s.price) AS BIGINT), s.spu_id
             FROM stock_reservation r JOIN tb_sku s ON s.id = r.sku_id
             WHERE r.order_id = $1 ORDER BY r.sku_id",
        )
        .bind(order_key)
        .fetch_all(&mut *conn)
        .await?
    });
    if rows.is_empty() {
        return Ok(None);
    }
    let lines = rows
        .into_iter()
        .map(|(sku, num, name, image, price, spu_id)| {
            Ok(PricedLine {
                sku_id: SkuId::new(sku)?,
                name,
                image,
                price: Money::from_fen(price),
                num: num as i32,
                spu_id,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(PricedOrder::from_lines(lines)))
}

/// Gives the order's reserved units back to `tb_sku.num`. Lines already released or
/// committed are left alone, so a repeat changes nothing.
pub async fn release(tx: &mut StoreTx, order: OrderId) -> anyhow::Result<()> {
    settle(tx, order, Settle::Release).await
}

/// Marks the order's reserved units as sold (`sale_num`), once.
pub async fn commit(tx: &mut StoreTx, order: OrderId) -> anyhow::Result<()> {
    settle(tx, order, Settle::Commit).await
}

/// How a reservation ends.
#[derive(Clone, Copy)]
enum Settle {
    Release,
    Commit,
}

/// Moves the order's `reserved` lines to their final state and applies their units to
/// `tb_sku`. Only `reserved` lines move, so each line is settled once.
async fn settle(tx: &mut StoreTx, order: OrderId, how: Settle) -> anyhow::Result<()> {
    let (mark, apply): (&'static str, &'static str) = match how {
        Settle::Release => (
            "UPDATE stock_reservation SET state = 'released'
             WHERE order_id = $1 AND state = 'reserved' RETURNING sku_id, CAST(num AS BIGINT)",
            "UPDATE tb_sku SET num = num + $1 WHERE id = $2",
        ),
        Settle::Commit => (
            "UPDATE stock_reservation SET state = 'committed'
             WHERE order_id = $1 AND state = 'reserved' RETURNING sku_id, CAST(num AS BIGINT)",
            "UPDATE tb_sku SET sale_num = sale_num + $1 WHERE id = $2",
        ),
    };
    let rows: Vec<(i64, i64)> = on_conn!(tx, |conn| {
        sqlx::query_as(mark)
            .bind(order.to_string())
            .fetch_all(&mut *conn)
            .await?
    });
    for (sku, num) in sorted(rows) {
        on_conn!(tx, |conn| {
            sqlx::query(apply)
                .bind(num)
                .bind(sku)
                .execute(&mut *conn)
                .await?;
        });
    }
    Ok(())
}

/// SKU id order, the same lock order as `reserve`.
fn sorted(mut rows: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    rows.sort_unstable();
    rows
}
