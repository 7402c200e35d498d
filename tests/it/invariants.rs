//! DESIGN.md's invariants, checked in SQL on the real database after any interleaving.

use std::collections::HashMap;

use ordersaga::store::Db;

/// Units per SKU when the test began: `tb_sku.num` before any order.
pub type InitialStock = HashMap<i64, i64>;

pub async fn stock_snapshot(db: &Db) -> InitialStock {
    let rows: Vec<(i64, i64)> = ordersaga::on_pool!(db, |pool| {
        sqlx::query_as("SELECT id, CAST(num AS BIGINT) FROM tb_sku")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    rows.into_iter().collect()
}

/// Checks every invariant; panics with all violations found.
pub async fn assert_invariants(db: &Db, initial: &InitialStock, points_per_order: i64) {
    let mut problems = Vec::new();

    // Stock: num + reserved + committed is conserved per SKU, and sold = committed.
    let rows: Vec<(i64, i64, i64, i64, i64)> = ordersaga::on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT s.id, CAST(s.num AS BIGINT), CAST(s.sale_num AS BIGINT),
                    COALESCE(SUM(CASE WHEN r.state = 'reserved' THEN r.num ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN r.state = 'committed' THEN r.num ELSE 0 END), 0)
             FROM tb_sku s LEFT JOIN stock_reservation r ON r.sku_id = s.id
             GROUP BY s.id, s.num, s.sale_num",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    });
    for (sku, num, sold, reserved, committed) in rows {
        let before = initial
            .get(&sku)
            .copied()
            .unwrap_or(num + reserved + committed);
        if num < 0 {
            problems.push(format!("SKU {sku} has negative stock {num}"));
        }
        if num + reserved + committed != before {
            problems.push(format!(
                "SKU {sku}: num {num} + reserved {reserved} + committed {committed} != {before}"
            ));
        }
        if sold != committed {
            problems.push(format!(
                "SKU {sku}: sale_num {sold} != committed {committed}"
            ));
        }
    }

    // Per saga: what its state says must match the participants' records.
    let sagas: Vec<(String, String, String)> = ordersaga::on_pool!(db, |pool| {
        sqlx::query_as("SELECT order_id, state, username FROM saga")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    for (order, state, _) in &sagas {
        let counts: (i64, i64, i64, i64, i64, i64) = ordersaga::on_pool!(db, |pool| {
            sqlx::query_as(
                "SELECT
                   (SELECT COUNT(*) FROM stock_reservation WHERE order_id = $1 AND state = 'reserved'),
                   (SELECT COUNT(*) FROM stock_reservation WHERE order_id = $1 AND state = 'committed'),
                   (SELECT COUNT(*) FROM points_ledger WHERE order_id = $1 AND kind = 'award'),
                   (SELECT COUNT(*) FROM points_ledger WHERE order_id = $1 AND kind = 'revoke'),
                   (SELECT COUNT(*) FROM tb_order WHERE id = $1 AND pay_status = '1' AND transaction_id IS NOT NULL),
                   (SELECT COUNT(*) FROM tb_order WHERE id = $1 AND order_status = '3')",
            )
            .bind(order)
            .fetch_one(pool)
            .await
            .unwrap()
        });
        let (reserved, committed, award, revoke, paid, closed) = counts;
        let ok = match state.as_str() {
            "completed" => {
                reserved == 0
                    && committed > 0
                    && award == 1
                    && revoke == 0
                    && paid == 1
                    && closed == 0
            }
            "compensated" => {
                reserved == 0 && committed == 0 && award == revoke && paid == 0 && closed == 1
            }
            "failed" => reserved == 0 && committed == 0 && award == revoke && paid == 0,
            "awaiting_payment" => {
                reserved > 0
                    && committed == 0
                    && award == 1
                    && revoke == 0
                    && paid == 0
                    && closed == 0
            }
            "stuck" => paid == 0,
            other => {
                problems.push(format!("saga {order} is mid-step ({other}) after settling"));
                true
            }
        };
        if !ok {
            problems.push(format!(
                "saga {order} is {state} but reserved={reserved} committed={committed} award={award} revoke={revoke} paid={paid} closed={closed}"
            ));
        }
    }

    // Points: each user's balance is the ledger's sum, and 10 per order not undone.
    let users: Vec<(String, i64, i64, i64)> = ordersaga::on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT u.username, CAST(u.points AS BIGINT),
                    COALESCE((SELECT SUM(CASE WHEN kind = 'award' THEN points ELSE -points END) FROM points_ledger l WHERE l.username = u.username), 0),
                    (SELECT COUNT(*) FROM saga s WHERE s.username = u.username AND s.state IN ('completed', 'awaiting_payment', 'paying'))
             FROM tb_user u",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    });
    for (user, points, ledger, live_orders) in users {
        if points != ledger {
            problems.push(format!("{user}: points {points} != ledger {ledger}"));
        }
        if points != points_per_order * live_orders {
            problems.push(format!(
                "{user}: points {points} != {points_per_order} × {live_orders} orders not undone"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "invariants violated:\n{}",
        problems.join("\n")
    );
}
