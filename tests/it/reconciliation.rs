//! The pay-log reconciler: payments WeChat never told us about are found by orderquery.

use std::sync::Arc;
use std::time::Duration;

use ordersaga::domain::{OrderId, SkuStatus};
use ordersaga::wxpay::sim::{ApiFault, Faults};

use crate::invariants::{assert_invariants, stock_snapshot};
use crate::support::{Backend, TestApp, wait_until};

/// `n` orders with their WeChat orders created, paid at WeChat with every notification
/// dropped.
async fn silently_paid_orders(app: &TestApp, n: usize, tag: &str) -> Vec<OrderId> {
    let sim = app.state.wxpay_sim.clone().unwrap();
    sim.set_faults(Faults {
        drop_all_notifications: true,
        ..Faults::default()
    });
    let sku = app.add_sku(9001, 1_200, 100, SkuStatus::OnSale).await;
    let mut orders = Vec::new();
    for i in 0..n {
        let (user, token) = app.shopper(&format!("{tag}{i}")).await;
        app.fill_cart(&user, sku, 1).await;
        let (status, body) = app.checkout(&token).await;
        assert_eq!(status, 200, "{body}");
        let order: OrderId = body["data"]["orderId"].as_str().unwrap().parse().unwrap();
        let (status, _) = app
            .get(&format!("/api/pay/native?orderId={order}"), &token)
            .await;
        assert_eq!(status, 200);
        sim.pay(&order.to_string()).await.unwrap();
        orders.push(order);
    }
    orders
}

async fn phases(app: &TestApp, orders: &[OrderId]) -> Vec<String> {
    let mut out = Vec::new();
    for o in orders {
        out.push(
            app.db()
                .load_saga(*o)
                .await
                .unwrap()
                .unwrap()
                .state
                .phase
                .name()
                .to_owned(),
        );
    }
    out
}

async fn payments_recorded(app: &TestApp, order: OrderId) -> i64 {
    let (n,): (i64,) = ordersaga::on_pool!(app.db(), |pool| {
        sqlx::query_as(
            "SELECT COUNT(*) FROM saga_event WHERE order_id = $1 AND kind = 'payment_recorded'",
        )
        .bind(order.to_string())
        .fetch_one(pool)
        .await
        .unwrap()
    });
    n
}

/// Ticks the reconciler until `done`, failing after `deadline`.
async fn tick_until<F, Fut>(app: &TestApp, deadline: Duration, what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_until(deadline, what, || async {
        app.state.reconciler.tick();
        done().await
    })
    .await;
}

async fn reconciliation_alone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let initial = stock_snapshot(app.db()).await;
    let orders = silently_paid_orders(&app, 5, "quiet").await;
    assert!(
        phases(&app, &orders)
            .await
            .iter()
            .all(|p| p == "awaiting_payment"),
        "nobody told us yet"
    );
    tick_until(
        &app,
        Duration::from_secs(30),
        "every paid order completed",
        || async { phases(&app, &orders).await.iter().all(|p| p == "completed") },
    )
    .await;
    for o in &orders {
        assert_eq!(
            payments_recorded(&app, *o).await,
            1,
            "{o}: recorded exactly once"
        );
        assert_eq!(
            app.state
                .wxpay_sim
                .as_ref()
                .unwrap()
                .order(&o.to_string())
                .unwrap()
                .notifications_acknowledged,
            0
        );
    }
    // More passes change nothing: the entries are gone with their sagas.
    for _ in 0..3 {
        ordersaga::actors::reconciler::reconcile_once(&app.state.reconciler.deps)
            .await
            .unwrap();
    }
    let stats = app.state.reconciler.stats().await.unwrap();
    assert_eq!(stats.paid_by_reconciliation, 5, "{stats:?}");
    assert_eq!(stats.queue.depth, 0, "{stats:?}");
    assert_invariants(app.db(), &initial, 10).await;
    app.stop().await;
}
each_backend!(
    with_every_notification_dropped_paid_orders_complete_through_reconciliation,
    reconciliation_alone
);

async fn failing_orderquery_backs_off(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let orders = silently_paid_orders(&app, 2, "flaky").await;
    let sim = app.state.wxpay_sim.clone().unwrap();
    sim.set_faults(Faults {
        drop_all_notifications: true,
        orderquery: Some(ApiFault::SystemError),
        ..Faults::default()
    });
    let attempts = || async {
        let rows: Vec<(i64, i64)> = ordersaga::on_pool!(app.db(), |pool| {
            sqlx::query_as("SELECT CAST(attempts AS BIGINT), next_check_at_ms FROM pay_log ORDER BY out_trade_no").fetch_all(pool).await.unwrap()
        });
        rows
    };
    tick_until(
        &app,
        Duration::from_secs(30),
        "each entry failed twice and backed off",
        || async { attempts().await.iter().all(|(a, _)| *a >= 2) },
    )
    .await;
    let stats = app.state.reconciler.stats().await.unwrap();
    assert!(stats.failed >= 4, "{stats:?}");
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        attempts().await.iter().all(|(_, next)| *next > now - 1_000),
        "rescheduled into the future"
    );
    assert!(
        phases(&app, &orders)
            .await
            .iter()
            .all(|p| p == "awaiting_payment")
    );
    // WeChat recovers: the next passes find the payments.
    sim.set_faults(Faults {
        drop_all_notifications: true,
        ..Faults::default()
    });
    tick_until(
        &app,
        Duration::from_secs(30),
        "completed after recovery",
        || async { phases(&app, &orders).await.iter().all(|p| p == "completed") },
    )
    .await;
    app.stop().await;
}
each_backend!(
    orderquery_failing_with_systemerror_backs_off_then_succeeds,
    failing_orderquery_backs_off
);

/// A pass stuck on hanging orderquery calls: ticks meanwhile are dropped, never overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_never_overlap_even_when_orderquery_hangs() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let orders = silently_paid_orders(&app, 1, "hang").await;
    let sim = app.state.wxpay_sim.clone().unwrap();
    sim.set_faults(Faults {
        drop_all_notifications: true,
        orderquery: Some(ApiFault::Timeout),
        ..Faults::default()
    });
    wait_until(Duration::from_secs(10), "the entry is due", || async {
        app.state
            .reconciler
            .deps
            .queue
            .stats(chrono::Utc::now().timestamp_millis())
            .await
            .unwrap()
            .due
            > 0
    })
    .await;
    app.state.reconciler.tick();
    wait_until(Duration::from_secs(10), "a pass running", || async {
        app.state.reconciler.stats().await.unwrap().running
    })
    .await;
    for _ in 0..10 {
        app.state.reconciler.tick();
    }
    let stats = app.state.reconciler.stats().await.unwrap();
    assert_eq!(stats.passes, 1, "{stats:?}");
    assert!(stats.ticks_skipped >= 10, "{stats:?}");
    // The hanging calls time out (1 s each, 3 attempts); the pass ends and the next one,
    // with WeChat healthy again, finds the payment.
    wait_until(Duration::from_secs(30), "the slow pass ends", || async {
        !app.state.reconciler.stats().await.unwrap().running
    })
    .await;
    sim.set_faults(Faults {
        drop_all_notifications: true,
        ..Faults::default()
    });
    tick_until(&app, Duration::from_secs(30), "completed", || async {
        phases(&app, &orders).await == ["completed"]
    })
    .await;
    app.stop().await;
}

/// Redis keeps nothing on disk here: emptied while orders wait, its index is rebuilt from
/// the database and the payments still reconcile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_redis_is_rebuilt_from_the_database_and_payments_still_reconcile() {
    // A Redis database of its own, so emptying it (FLUSHDB) cannot touch other tests.
    const DB_INDEX: u8 = 9;
    let url = format!(
        "{}/{DB_INDEX}",
        crate::support::redis_url().trim_end_matches('/')
    );
    let app =
        TestApp::spawn_with(Backend::PostgresRedis, |a| a.redis_url = Some(url.clone())).await;
    assert_eq!(app.state.reconciler.deps.queue.backend_name(), "redis");
    let orders = silently_paid_orders(&app, 3, "flush").await;
    ordersaga::actors::reconciler::reconcile_once(&app.state.reconciler.deps)
        .await
        .unwrap();
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty());
    tick_until(
        &app,
        Duration::from_secs(30),
        "completed after the flush",
        || async { phases(&app, &orders).await.iter().all(|p| p == "completed") },
    )
    .await;
    let synced: bool = redis::cmd("EXISTS")
        .arg(format!("{}paylog:synced", app.redis_prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(synced, "the index was rebuilt");
    for o in &orders {
        assert_eq!(payments_recorded(&app, *o).await, 1);
    }
    app.stop().await;
}

async fn never_paid(backend: Backend) {
    let app = TestApp::spawn_with(backend, |a| a.pay_timeout = Duration::from_secs(2)).await;
    let initial = stock_snapshot(app.db()).await;
    let (user, token) = app.shopper("neverpays").await;
    let sku = app.add_sku(9101, 500, 5, SkuStatus::OnSale).await;
    app.fill_cart(&user, sku, 1).await;
    let (_, body) = app.checkout(&token).await;
    let order: OrderId = body["data"]["orderId"].as_str().unwrap().parse().unwrap();
    app.get(&format!("/api/pay/native?orderId={order}"), &token)
        .await;
    tick_until(
        &app,
        Duration::from_secs(30),
        "compensated at the deadline",
        || async { phases(&app, &[order]).await == ["compensated"] },
    )
    .await;
    let stats = app.state.reconciler.stats().await.unwrap();
    assert!(
        stats.queried >= 1,
        "it was checked while waiting: {stats:?}"
    );
    assert_eq!(stats.queue.depth, 0, "its entry is gone with the saga");
    assert_eq!(
        app.state
            .wxpay_sim
            .as_ref()
            .unwrap()
            .order(&order.to_string())
            .unwrap()
            .state,
        "CLOSED"
    );
    assert_invariants(app.db(), &initial, 10).await;
    app.stop().await;
}
each_backend!(
    an_order_never_paid_stops_being_checked_at_its_deadline_and_compensates,
    never_paid
);

/// With the schedule on (every second), a silently paid order completes on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_reconciler_finds_payments_without_help() {
    let app = Arc::new(
        TestApp::spawn_with(Backend::Sqlite, |a| a.reconcile_cron = "* * * * * *".into()).await,
    );
    let orders = silently_paid_orders(&app, 2, "cron").await;
    wait_until(
        Duration::from_secs(30),
        "completed by the schedule",
        || async { phases(&app, &orders).await.iter().all(|p| p == "completed") },
    )
    .await;
    Arc::into_inner(app).unwrap().stop().await;
}
