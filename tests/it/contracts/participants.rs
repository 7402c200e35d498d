//! The saga's participants, one contract each: every call runs in a transaction of its own
//! that is committed (or dropped), as the saga runs it, and every call is repeated, because
//! a retried step must not do its work twice.

use ordersaga::domain::{Money, OrderId, SkuId, SkuStatus, Username};
use ordersaga::store::inventory::{self, Reservation};
use ordersaga::store::orders::{self, ms_to_time, status};
use ordersaga::store::sagas::{self, Created, TransitionError};
use ordersaga::store::{Db, StoreTx, loyalty, pay_log, violated_constraint};
use ordersaga::workflows::checkout::{
    Alert, CheckoutRequest, Event, Payment, Phase, PricedLine, PricedOrder, RequestedLine,
    SagaState,
};

/// 2026-01-01T00:00:00Z: when the test orders are placed.
const T0: i64 = 1_767_225_600_000;

fn order_id(n: i64) -> OrderId {
    OrderId::new(n).unwrap()
}

fn line(sku: SkuId, num: i32) -> RequestedLine {
    RequestedLine { sku_id: sku, num }
}

/// A line priced as `TestApp::add_sku` stores the SKU (its spu is the SKU id).
fn priced_line(sku: SkuId, price_fen: i64, num: i32) -> PricedLine {
    PricedLine {
        sku_id: sku,
        name: format!("测试商品 {sku}"),
        image: "/static/sku.svg".into(),
        price: Money::from_fen(price_fen),
        num,
        spu_id: sku.get(),
    }
}

fn request(order: OrderId, user: &Username, lines: Vec<RequestedLine>) -> CheckoutRequest {
    CheckoutRequest {
        order_id: order,
        username: user.to_string(),
        lines,
        receiver_contact: "张三".into(),
        receiver_mobile: "13800138000".into(),
        receiver_address: "深圳市南山区 1 号".into(),
        pay_type: "1".into(),
        buyer_message: "请尽快发货".into(),
        points: 10,
        created_at_ms: T0,
        deadline_at_ms: T0 + 30 * 60 * 1000,
        wx_min_close_ms: 5 * 60 * 1000,
    }
}

/// The saga after its stock was reserved at `priced`: what `orders::write` is given.
fn reserved_state(request: CheckoutRequest, priced: PricedOrder) -> SagaState {
    SagaState {
        phase: Phase::StockReserved,
        priced: Some(priced),
        reached: Phase::StockReserved,
        ..SagaState::new(request)
    }
}

fn payment(transaction_id: &str, fen: i64, paid_at_ms: i64) -> Payment {
    Payment {
        transaction_id: transaction_id.into(),
        amount: Money::from_fen(fen),
        paid_at_ms,
    }
}

/// Runs one participant call in a write transaction of its own and commits it.
async fn committed<T, E: std::fmt::Debug>(
    db: &Db,
    call: impl AsyncFnOnce(&mut StoreTx) -> Result<T, E>,
) -> T {
    let mut tx = db.begin_write().await.unwrap();
    let out = call(&mut tx).await.expect("participant call");
    tx.commit().await.unwrap();
    out
}

/// Runs one call in a write transaction that is dropped without commit, as the saga drops
/// a step that failed or came back short.
async fn dropped<T, E>(
    db: &Db,
    call: impl AsyncFnOnce(&mut StoreTx) -> Result<T, E>,
) -> Result<T, E> {
    let mut tx = db.begin_write().await.unwrap();
    let out = call(&mut tx).await;
    drop(tx);
    out
}

/// One SKU's stock as the store sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stock {
    num: i64,
    sale_num: i64,
    reserved: i64,
    committed: i64,
}

async fn stock(db: &Db, sku: SkuId) -> Stock {
    let (num, sale_num, reserved, committed): (i64, i64, i64, i64) =
        ordersaga::on_pool!(db, |pool| {
            sqlx::query_as(
                "SELECT CAST(s.num AS BIGINT), CAST(s.sale_num AS BIGINT),
                    COALESCE(SUM(CASE WHEN r.state = 'reserved' THEN r.num ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN r.state = 'committed' THEN r.num ELSE 0 END), 0)
             FROM tb_sku s LEFT JOIN stock_reservation r ON r.sku_id = s.id
             WHERE s.id = $1 GROUP BY s.id, s.num, s.sale_num",
            )
            .bind(sku.get())
            .fetch_one(pool)
            .await
            .unwrap()
        });
    Stock {
        num,
        sale_num,
        reserved,
        committed,
    }
}

/// Per SKU, `num + reserved + committed` is what the SKU started with, stock never goes
/// negative and `sale_num` counts exactly the committed units.
async fn assert_conserved(db: &Db, initial: &[(SkuId, i64)], when: &str) {
    for &(sku, units) in initial {
        let s = stock(db, sku).await;
        assert_eq!(
            s.num + s.reserved + s.committed,
            units,
            "SKU {sku} {when}: {s:?}"
        );
        assert!(s.num >= 0, "SKU {sku} {when}: {s:?}");
        assert_eq!(s.sale_num, s.committed, "SKU {sku} {when}: {s:?}");
    }
}

/// The order's reservation rows: (SKU, units, state), in SKU order.
async fn reservations(db: &Db, order: OrderId) -> Vec<(i64, i64, String)> {
    ordersaga::on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT sku_id, CAST(num AS BIGINT), state FROM stock_reservation WHERE order_id = $1 ORDER BY sku_id",
        )
        .bind(order.to_string())
        .fetch_all(pool)
        .await
        .unwrap()
    })
}

/// Rows of `table` whose `column` is the order's id.
async fn rows_for(db: &Db, table: &str, column: &str, order: OrderId) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1");
    let (n,): (i64,) = ordersaga::on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(order.to_string())
            .fetch_one(pool)
            .await
            .unwrap()
    });
    n
}

/// The order's points ledger: (kind, points), awards first.
async fn ledger(db: &Db, order: OrderId) -> Vec<(String, i64)> {
    ordersaga::on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT kind, CAST(points AS BIGINT) FROM points_ledger WHERE order_id = $1 ORDER BY kind",
        )
        .bind(order.to_string())
        .fetch_all(pool)
        .await
        .unwrap()
    })
}

/// The saga's journal: (seq, kind, state after).
async fn journal(db: &Db, order: OrderId) -> Vec<(i64, String, String)> {
    ordersaga::on_pool!(db, |pool| {
        sqlx::query_as("SELECT seq, kind, state FROM saga_event WHERE order_id = $1 ORDER BY seq")
            .bind(order.to_string())
            .fetch_all(pool)
            .await
            .unwrap()
    })
}

fn journaled(entries: &[(i64, &str, &str)]) -> Vec<(i64, String, String)> {
    entries
        .iter()
        .map(|&(seq, kind, state)| (seq, kind.to_owned(), state.to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Inventory

on_both_backends! {
    async fn a_reservation_takes_stock_once_at_catalogue_prices_and_a_repeat_returns_the_same_priced_order(app) {
        let db = app.db();
        let a = app.add_sku(10, 99, 3, SkuStatus::OnSale).await;
        let b = app.add_sku(20, 150, 5, SkuStatus::OnSale).await;
        let initial = [(a, 3), (b, 5)];
        let order = order_id(7001);
        // Out of id order: the store takes SKUs in id order whatever the caller gives.
        let lines = [line(b, 2), line(a, 1)];

        let first = committed(db, async |tx| inventory::reserve(tx, order, &lines).await).await;
        let expected = PricedOrder::from_lines(vec![priced_line(a, 99, 1), priced_line(b, 150, 2)]);
        assert_eq!(expected.total_num, 3);
        assert_eq!(expected.pay_money, Money::from_fen(99 + 2 * 150));
        assert_eq!(first, Reservation::Reserved(expected));
        assert_eq!(stock(db, a).await.num, 2);
        assert_eq!(stock(db, b).await.num, 3);
        assert_eq!(
            reservations(db, order).await,
            vec![(a.get(), 1, "reserved".into()), (b.get(), 2, "reserved".into())]
        );
        assert_conserved(db, &initial, "after the reservation").await;

        let again = committed(db, async |tx| inventory::reserve(tx, order, &lines).await).await;
        assert_eq!(again, first, "a repeat returns what the first reservation priced");
        assert_eq!(stock(db, a).await.num, 2, "a repeat takes nothing more");
        assert_eq!(stock(db, b).await.num, 3, "a repeat takes nothing more");
        assert_eq!(reservations(db, order).await.len(), 2);
        assert_conserved(db, &initial, "after the repeat").await;

        // The catalogue price changes afterwards: a repeat still answers with the price
        // the reservation was made at.
        ordersaga::on_pool!(db, |pool| {
            sqlx::query("UPDATE tb_sku SET price = 120 WHERE id = $1").bind(a.get()).execute(pool).await.unwrap();
        });
        let after_change = committed(db, async |tx| inventory::reserve(tx, order, &lines).await).await;
        assert_eq!(after_change, first, "a repeat is priced as reserved, not at today's price");
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_short_reservation_names_exactly_the_short_skus_and_its_rollback_takes_nothing(app) {
        let db = app.db();
        let plenty = app.add_sku(10, 100, 5, SkuStatus::OnSale).await;
        let scarce = app.add_sku(20, 200, 1, SkuStatus::OnSale).await;
        let off_sale = app.add_sku(30, 300, 5, SkuStatus::OffShelf).await;
        let later = app.add_sku(40, 400, 5, SkuStatus::OnSale).await;
        let initial = [(plenty, 5), (scarce, 1), (off_sale, 5), (later, 5)];
        let order = order_id(7002);
        // A line that fits comes before the short ones in id order and one after them: both
        // are decremented inside the transaction, and the rollback must undo that.
        let lines = [line(later, 1), line(scarce, 2), line(off_sale, 1), line(plenty, 2)];

        let result = dropped(db, async |tx| inventory::reserve(tx, order, &lines).await).await.unwrap();
        let Reservation::Short(mut short) = result else {
            panic!("a SKU with 1 unit cannot give 2: {result:?}");
        };
        short.sort();
        assert_eq!(short, vec![scarce, off_sale], "an off-sale SKU is short too, whatever its stock");
        for (sku, units) in initial {
            assert_eq!(stock(db, sku).await.num, units, "SKU {sku} unchanged after the rollback");
        }
        assert!(reservations(db, order).await.is_empty(), "nothing held for the order");
        assert_conserved(db, &initial, "after the short reservation").await;

        // An off-sale SKU alone, with plenty of units, is short.
        let result = dropped(db, async |tx| inventory::reserve(tx, order, &[line(off_sale, 1)]).await).await.unwrap();
        assert_eq!(result, Reservation::Short(vec![off_sale]));
        assert_eq!(stock(db, off_sale).await.num, 5);

        // Nothing was left behind: the same order can still reserve what is there.
        let fits = [line(plenty, 2), line(scarce, 1)];
        let result = committed(db, async |tx| inventory::reserve(tx, order, &fits).await).await;
        assert_eq!(
            result,
            Reservation::Reserved(PricedOrder::from_lines(vec![priced_line(plenty, 100, 2), priced_line(scarce, 200, 1)]))
        );
        assert_eq!(stock(db, plenty).await.num, 3);
        assert_eq!(stock(db, scarce).await.num, 0);
        assert_conserved(db, &initial, "after the reservation that fits").await;
        app.stop().await;
    }
}

on_both_backends! {
    async fn releasing_twice_gives_the_stock_back_once_and_a_later_commit_sells_nothing(app) {
        let db = app.db();
        let a = app.add_sku(10, 99, 4, SkuStatus::OnSale).await;
        let b = app.add_sku(20, 150, 6, SkuStatus::OnSale).await;
        let initial = [(a, 4), (b, 6)];
        let order = order_id(7003);
        let other = order_id(7004);
        let lines = [line(a, 2), line(b, 3)];
        committed(db, async |tx| inventory::reserve(tx, order, &lines).await).await;
        // Another order holds units of the same SKUs: releasing this one must not free them.
        committed(db, async |tx| inventory::reserve(tx, other, &[line(a, 1)]).await).await;
        assert_eq!(stock(db, a).await.num, 1);
        assert_eq!(stock(db, b).await.num, 3);

        committed(db, async |tx| inventory::release(tx, order).await).await;
        assert_eq!(stock(db, a).await.num, 3);
        assert_eq!(stock(db, b).await.num, 6);
        assert_conserved(db, &initial, "after the release").await;

        committed(db, async |tx| inventory::release(tx, order).await).await;
        assert_eq!(stock(db, a).await.num, 3, "a second release gives nothing back");
        assert_eq!(stock(db, b).await.num, 6, "a second release gives nothing back");
        assert_eq!(
            reservations(db, order).await,
            vec![(a.get(), 2, "released".into()), (b.get(), 3, "released".into())]
        );
        assert_conserved(db, &initial, "after the second release").await;

        committed(db, async |tx| inventory::commit(tx, order).await).await;
        for (sku, _) in initial {
            assert_eq!(stock(db, sku).await.sale_num, 0, "released units are not sold");
        }
        assert_eq!(stock(db, a).await.num, 3);
        assert_eq!(stock(db, b).await.num, 6);
        assert!(reservations(db, order).await.iter().all(|(_, _, state)| state == "released"));
        assert_eq!(reservations(db, other).await, vec![(a.get(), 1, "reserved".into())]);
        assert_conserved(db, &initial, "after a commit of a released order").await;
        app.stop().await;
    }
}

on_both_backends! {
    async fn committing_twice_sells_once_and_a_later_release_gives_nothing_back(app) {
        let db = app.db();
        let a = app.add_sku(10, 99, 4, SkuStatus::OnSale).await;
        let b = app.add_sku(20, 150, 6, SkuStatus::OnSale).await;
        let initial = [(a, 4), (b, 6)];
        let order = order_id(7005);
        let lines = [line(b, 3), line(a, 2)];
        committed(db, async |tx| inventory::reserve(tx, order, &lines).await).await;

        committed(db, async |tx| inventory::commit(tx, order).await).await;
        assert_eq!(stock(db, a).await, Stock { num: 2, sale_num: 2, reserved: 0, committed: 2 });
        assert_eq!(stock(db, b).await, Stock { num: 3, sale_num: 3, reserved: 0, committed: 3 });
        assert_conserved(db, &initial, "after the commit").await;

        committed(db, async |tx| inventory::commit(tx, order).await).await;
        assert_eq!(stock(db, a).await.sale_num, 2, "a second commit sells nothing more");
        assert_eq!(stock(db, b).await.sale_num, 3, "a second commit sells nothing more");
        assert_conserved(db, &initial, "after the second commit").await;

        committed(db, async |tx| inventory::release(tx, order).await).await;
        assert_eq!(stock(db, a).await, Stock { num: 2, sale_num: 2, reserved: 0, committed: 2 });
        assert_eq!(stock(db, b).await, Stock { num: 3, sale_num: 3, reserved: 0, committed: 3 });
        assert_eq!(
            reservations(db, order).await,
            vec![(a.get(), 2, "committed".into()), (b.get(), 3, "committed".into())]
        );
        assert_conserved(db, &initial, "after a release of a committed order").await;
        app.stop().await;
    }
}

// ---------------------------------------------------------------------------------------
// Orders

on_both_backends! {
    async fn writing_an_order_twice_stores_one_order_with_its_items_as_priced(app) {
        let db = app.db();
        let (user, _) = app.shopper("alice").await;
        let a = app.add_sku(10, 99, 5, SkuStatus::OnSale).await;
        let b = app.add_sku(20, 150, 5, SkuStatus::OnSale).await;
        let order = order_id(8001);
        let priced = PricedOrder::from_lines(vec![priced_line(a, 99, 1), priced_line(b, 150, 2)]);
        let state = reserved_state(request(order, &user, vec![line(a, 1), line(b, 2)]), priced);

        committed(db, async |tx| orders::write(tx, &state).await).await;
        committed(db, async |tx| orders::write(tx, &state).await).await;

        assert_eq!(rows_for(db, "tb_order", "id", order).await, 1);
        assert_eq!(rows_for(db, "tb_order_item", "order_id", order).await, 2);
        let (row, items) = db.order(order).await.unwrap().expect("the order was written");
        assert_eq!(row.id, order.to_string());
        assert_eq!(row.username, "alice");
        assert_eq!(row.total_num, 3);
        assert_eq!(row.total_money, 99 + 2 * 150);
        assert_eq!(row.pay_money, 99 + 2 * 150);
        assert_eq!(row.pay_type, "1");
        assert_eq!(row.create_time, ms_to_time(T0));
        assert_eq!(row.buyer_message.as_deref(), Some("请尽快发货"));
        assert_eq!(row.receiver_contact.as_deref(), Some("张三"));
        assert_eq!(row.receiver_mobile.as_deref(), Some("13800138000"));
        assert_eq!(row.receiver_address.as_deref(), Some("深圳市南山区 1 号"));
        assert_eq!(row.order_status, status::ORDER_OPEN);
        assert_eq!(row.pay_status, status::PAY_UNPAID);
        assert_eq!((row.pay_time, row.close_time, row.transaction_id), (None, None, None));
        let items: Vec<(String, i64, String, i64, i64, i64)> = items
            .into_iter()
            .map(|i| (i.id, i.sku_id, i.name, i.price, i.num, i.money))
            .collect();
        assert_eq!(
            items,
            vec![
                (format!("{order}-{a}"), a.get(), format!("测试商品 {a}"), 99, 1, 99),
                (format!("{order}-{b}"), b.get(), format!("测试商品 {b}"), 150, 2, 300),
            ]
        );
        app.stop().await;
    }
}

on_both_backends! {
    async fn closing_twice_closes_once_and_a_closed_order_cannot_be_marked_paid(app) {
        let db = app.db();
        let (user, _) = app.shopper("alice").await;
        let a = app.add_sku(10, 99, 5, SkuStatus::OnSale).await;
        let order = order_id(8002);
        let priced = PricedOrder::from_lines(vec![priced_line(a, 99, 2)]);
        let state = reserved_state(request(order, &user, vec![line(a, 2)]), priced);
        committed(db, async |tx| orders::write(tx, &state).await).await;

        committed(db, async |tx| orders::close(tx, order, T0 + 1_000).await).await;
        committed(db, async |tx| orders::close(tx, order, T0 + 2_000).await).await;
        let (row, _) = db.order(order).await.unwrap().unwrap();
        assert_eq!(row.order_status, status::ORDER_CLOSED);
        assert_eq!(row.close_time, Some(ms_to_time(T0 + 1_000)), "the first close counts");
        assert_eq!(row.update_time, ms_to_time(T0 + 1_000));
        assert_eq!(row.pay_status, status::PAY_UNPAID);

        let late = payment("wx-late", 198, T0 + 3_000);
        committed(db, async |tx| orders::mark_paid(tx, order, &late, T0 + 3_000).await).await;
        let (row, _) = db.order(order).await.unwrap().unwrap();
        assert_eq!(row.pay_status, status::PAY_UNPAID, "a closed order stays unpaid: {row:?}");
        assert_eq!(row.transaction_id, None);
        assert_eq!(row.pay_time, None);
        assert_eq!(row.order_status, status::ORDER_CLOSED);
        assert_eq!(row.close_time, Some(ms_to_time(T0 + 1_000)));
        app.stop().await;
    }
}

on_both_backends! {
    async fn marking_paid_twice_keeps_the_first_payment_and_a_paid_order_cannot_be_closed(app) {
        let db = app.db();
        let (user, _) = app.shopper("alice").await;
        let a = app.add_sku(10, 99, 5, SkuStatus::OnSale).await;
        let order = order_id(8003);
        let priced = PricedOrder::from_lines(vec![priced_line(a, 99, 2)]);
        let state = reserved_state(request(order, &user, vec![line(a, 2)]), priced);
        committed(db, async |tx| orders::write(tx, &state).await).await;

        let first = payment("wx-first", 198, T0 + 1_000);
        let second = payment("wx-second", 198, T0 + 2_000);
        committed(db, async |tx| orders::mark_paid(tx, order, &first, T0 + 1_500).await).await;
        committed(db, async |tx| orders::mark_paid(tx, order, &second, T0 + 2_500).await).await;
        let (row, _) = db.order(order).await.unwrap().unwrap();
        assert_eq!(row.pay_status, status::PAY_PAID);
        assert_eq!(row.transaction_id.as_deref(), Some("wx-first"), "the first payment is recorded");
        assert_eq!(row.pay_time, Some(ms_to_time(T0 + 1_000)));
        assert_eq!(row.update_time, ms_to_time(T0 + 1_500));

        committed(db, async |tx| orders::close(tx, order, T0 + 3_000).await).await;
        let (row, _) = db.order(order).await.unwrap().unwrap();
        assert_eq!(row.order_status, status::ORDER_OPEN, "a paid order is never closed");
        assert_eq!(row.close_time, None);
        assert_eq!(row.pay_status, status::PAY_PAID);
        assert_eq!(row.transaction_id.as_deref(), Some("wx-first"));
        app.stop().await;
    }
}

// ---------------------------------------------------------------------------------------
// Loyalty

on_both_backends! {
    async fn points_are_awarded_once_and_revoked_once(app) {
        let db = app.db();
        let (user, _) = app.shopper("alice").await;
        let order = order_id(9001);

        committed(db, async |tx| loyalty::award(tx, order, user.as_str(), 10, T0).await).await;
        committed(db, async |tx| loyalty::award(tx, order, user.as_str(), 10, T0 + 1).await).await;
        assert_eq!(db.points(&user).await.unwrap(), Some(10), "a second award gives nothing");
        assert_eq!(ledger(db, order).await, vec![("award".into(), 10)]);

        committed(db, async |tx| loyalty::revoke(tx, order, T0 + 2).await).await;
        committed(db, async |tx| loyalty::revoke(tx, order, T0 + 3).await).await;
        assert_eq!(db.points(&user).await.unwrap(), Some(0), "a second revoke takes nothing");
        assert_eq!(ledger(db, order).await, vec![("award".into(), 10), ("revoke".into(), 10)]);
        app.stop().await;
    }
}

on_both_backends! {
    async fn revoking_points_that_were_never_awarded_changes_nothing(app) {
        let db = app.db();
        let (user, _) = app.shopper("alice").await;
        let earlier = order_id(9002);
        let never_awarded = order_id(9003);
        committed(db, async |tx| loyalty::award(tx, earlier, user.as_str(), 10, T0).await).await;

        committed(db, async |tx| loyalty::revoke(tx, never_awarded, T0 + 1).await).await;
        assert_eq!(db.points(&user).await.unwrap(), Some(10), "another order's points are kept");
        assert!(ledger(db, never_awarded).await.is_empty());
        assert_eq!(ledger(db, earlier).await, vec![("award".into(), 10)]);
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_revoke_the_balance_cannot_cover_fails_and_its_rollback_changes_nothing(app) {
        let db = app.db();
        let (user, _) = app.shopper("alice").await;
        let order = order_id(9004);
        committed(db, async |tx| loyalty::award(tx, order, user.as_str(), 10, T0).await).await;
        // The shopper spent 7 of the 10 points elsewhere.
        ordersaga::on_pool!(db, |pool| {
            sqlx::query("UPDATE tb_user SET points = 3 WHERE username = $1")
                .bind(user.as_str())
                .execute(pool)
                .await
                .unwrap();
        });

        let err = dropped(db, async |tx| loyalty::revoke(tx, order, T0 + 1).await)
            .await
            .expect_err("a revoke may not take the balance below zero");
        let sql_err = err.downcast_ref::<sqlx::Error>().unwrap_or_else(|| panic!("not an SQL error: {err:#}"));
        assert_eq!(violated_constraint(sql_err).as_deref(), Some("ck_tb_user_points_non_negative"), "{err:#}");
        assert_eq!(db.points(&user).await.unwrap(), Some(3), "balance unchanged");
        assert_eq!(ledger(db, order).await, vec![("award".into(), 10)], "no revoke recorded");
        app.stop().await;
    }
}

// ---------------------------------------------------------------------------------------
// Pay log

on_both_backends! {
    async fn a_pay_log_entry_is_enqueued_once_and_removing_it_twice_is_fine(app) {
        let db = app.db();
        let (user, _) = app.shopper("alice").await;
        let order = order_id(9101);

        committed(db, async |tx| pay_log::enqueue(tx, order, user.as_str(), Money::from_fen(399), T0, T0 + 10_000).await).await;
        committed(db, async |tx| pay_log::enqueue(tx, order, user.as_str(), Money::from_fen(399), T0 + 5, T0 + 10_005).await).await;
        let rows: Vec<(String, String, i64, i64, i64, i64)> = ordersaga::on_pool!(db, |pool| {
            sqlx::query_as(
                "SELECT out_trade_no, username, total_fee, created_at_ms, next_check_at_ms, CAST(attempts AS BIGINT)
                 FROM pay_log",
            )
            .fetch_all(pool)
            .await
            .unwrap()
        });
        assert_eq!(
            rows,
            vec![(order.to_string(), "alice".into(), 399, T0, T0 + 10_000, 0)],
            "one entry, as first enqueued"
        );

        committed(db, async |tx| pay_log::remove(tx, order).await).await;
        committed(db, async |tx| pay_log::remove(tx, order).await).await;
        assert_eq!(rows_for(db, "pay_log", "out_trade_no", order).await, 0);
        // Removing an entry that was never there is fine too.
        committed(db, async |tx| pay_log::remove(tx, order_id(9102)).await).await;
        app.stop().await;
    }
}

// ---------------------------------------------------------------------------------------
// Saga journal

on_both_backends! {
    async fn a_transition_needs_the_version_it_read_and_is_journaled_once(app) {
        let db = app.db();
        let (user, _) = app.shopper("alice").await;
        let a = app.add_sku(10, 99, 5, SkuStatus::OnSale).await;
        let order = order_id(9201);
        let started = SagaState::new(request(order, &user, vec![line(a, 2)]));
        assert!(matches!(db.create_saga(&started, None, T0).await.unwrap(), Created::New));
        let stored = db.load_saga(order).await.unwrap().expect("saga stored");
        assert_eq!((stored.version, &stored.state), (0, &started));
        assert_eq!(journal(db, order).await, journaled(&[(0, "checkout_submitted", "started")]));

        let priced = PricedOrder::from_lines(vec![priced_line(a, 99, 2)]);
        let next = reserved_state(started.request.clone(), priced.clone());
        let event = Event::StockReserved { priced };
        committed(db, async |tx| sagas::record_transition(tx, 0, &event, &next, T0 + 1).await).await;
        let stored = db.load_saga(order).await.unwrap().unwrap();
        assert_eq!((stored.version, &stored.state), (1, &next));
        let expected = journaled(&[(0, "checkout_submitted", "started"), (1, "stock_reserved", "stock_reserved")]);
        assert_eq!(journal(db, order).await, expected);

        // A second writer that also read version 0 loses: nothing it wrote survives.
        let mut stale = next.clone();
        stale.phase = Phase::OrderWritten;
        stale.reached = Phase::OrderWritten;
        let result = dropped(db, async |tx| sagas::record_transition(tx, 0, &Event::OrderWritten, &stale, T0 + 2).await).await;
        match result {
            Err(TransitionError::VersionConflict(o, 0)) if o == order => {}
            other => panic!("expected a version conflict at version 0, got {other:?}"),
        }
        let stored = db.load_saga(order).await.unwrap().unwrap();
        assert_eq!((stored.version, &stored.state), (1, &next));
        assert_eq!(journal(db, order).await, expected);
        let (state,): (String,) = ordersaga::on_pool!(db, |pool| {
            sqlx::query_as("SELECT state FROM saga WHERE order_id = $1").bind(order.to_string()).fetch_one(pool).await.unwrap()
        });
        assert_eq!(state, "stock_reserved");
        app.stop().await;
    }
}

on_both_backends! {
    async fn the_same_idempotency_key_from_the_same_shopper_returns_the_first_order(app) {
        let db = app.db();
        let (alice, _) = app.shopper("alice").await;
        let (bob, _) = app.shopper("bob").await;
        let a = app.add_sku(10, 99, 5, SkuStatus::OnSale).await;
        let first = order_id(9301);
        let second = order_id(9302);
        let bobs = order_id(9303);
        let submit = |order: OrderId, user: &Username| SagaState::new(request(order, user, vec![line(a, 1)]));

        assert!(matches!(db.create_saga(&submit(first, &alice), Some("key-1"), T0).await.unwrap(), Created::New));
        match db.create_saga(&submit(second, &alice), Some("key-1"), T0 + 1).await.unwrap() {
            Created::Existing(existing) => assert_eq!(existing, first),
            Created::New => panic!("a repeated Idempotency-Key created a second saga"),
        }
        assert!(db.load_saga(second).await.unwrap().is_none(), "no saga for the repeat");
        assert!(journal(db, second).await.is_empty(), "no journal for the repeat");
        assert_eq!(db.saga_by_idempotency_key("alice", "key-1").await.unwrap(), Some(first));

        // The key is the shopper's own: another shopper's key of the same text is another order.
        assert!(matches!(db.create_saga(&submit(bobs, &bob), Some("key-1"), T0 + 2).await.unwrap(), Created::New));
        assert_eq!(db.saga_by_idempotency_key("bob", "key-1").await.unwrap(), Some(bobs));
        assert_eq!(journal(db, first).await, journaled(&[(0, "checkout_submitted", "started")]));
        app.stop().await;
    }
}

on_both_backends! {
    async fn an_alert_raised_twice_is_recorded_once(app) {
        let db = app.db();
        let order = order_id(9401);
        let alert = Alert::PaidAfterClose { order, payment: payment("wx-late", 198, T0) };

        committed(db, async |tx| sagas::raise_alert(tx, &alert, T0 + 1).await).await;
        committed(db, async |tx| sagas::raise_alert(tx, &alert, T0 + 2).await).await;
        let rows: Vec<(String, String, i64)> = ordersaga::on_pool!(db, |pool| {
            sqlx::query_as("SELECT order_id, kind, created_at_ms FROM saga_alert ORDER BY id")
                .fetch_all(pool)
                .await
                .unwrap()
        });
        assert_eq!(rows, vec![(order.to_string(), "paid_after_close".into(), T0 + 1)]);

        // A different payment for the same order is another alert.
        let other = Alert::PaidAfterClose { order, payment: payment("wx-other", 198, T0) };
        committed(db, async |tx| sagas::raise_alert(tx, &other, T0 + 3).await).await;
        assert_eq!(rows_for(db, "saga_alert", "order_id", order).await, 2);
        app.stop().await;
    }
}
