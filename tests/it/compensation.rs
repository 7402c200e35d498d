//! Undoing: cancels, deadlines, and a cancel racing a payment.

use std::sync::Arc;
use std::time::Duration;

use ordersaga::domain::{Money, OrderId, SkuStatus};
use ordersaga::workflows::checkout::{Event, Payment, Requester};

use crate::invariants::{assert_invariants, stock_snapshot};
use crate::support::{Backend, TestApp, wait_until};

fn payment(tx: &str, fen: i64) -> Event {
    Event::PaymentConfirmed {
        payment: Payment {
            transaction_id: tx.into(),
            amount: Money::from_fen(fen),
            paid_at_ms: 1,
        },
    }
}

async fn order_of(app: &TestApp, token: &str) -> OrderId {
    let (status, body) = app.checkout(token).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["orderId"].as_str().unwrap().parse().unwrap()
}

async fn state_of(app: &TestApp, order: OrderId) -> String {
    app.db()
        .load_saga(order)
        .await
        .unwrap()
        .unwrap()
        .state
        .phase
        .name()
        .to_owned()
}

/// Cancelled and expired orders give back stock and points; the cart keeps the lines
/// removed at checkout (a shopper who wants them again adds them again).
async fn unpaid_orders_compensate(backend: Backend) {
    let app = TestApp::spawn_with(backend, |args| args.pay_timeout = Duration::from_secs(2)).await;
    let sku = app.add_sku(5001, 1_500, 20, SkuStatus::OnSale).await;
    let initial = stock_snapshot(app.db()).await;
    let mut orders = Vec::new();
    for i in 0..5 {
        let (user, token) = app.shopper(&format!("unpaid{i}")).await;
        app.fill_cart(&user, sku, 2).await;
        orders.push((user, token.clone(), order_of(&app, &token).await));
    }
    assert_eq!(app.db().sku(sku).await.unwrap().unwrap().num, 10);
    // Two are cancelled by their shoppers, the other three run out of time.
    for (_, token, order) in &orders[..2] {
        let (status, body) = app.post(&format!("/api/order/{order}/cancel"), token).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["state"], "compensated");
    }
    // Cancelling someone else's order is a 404, and cancelling twice a 409.
    let (s, _) = app
        .post(&format!("/api/order/{}/cancel", orders[2].2), &orders[3].1)
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .post(&format!("/api/order/{}/cancel", orders[0].2), &orders[0].1)
        .await;
    assert_eq!(s, 409);
    wait_until(
        Duration::from_secs(20),
        "expired orders compensated",
        || async {
            let mut all = true;
            for (_, _, order) in &orders {
                all &= state_of(&app, *order).await == "compensated";
            }
            all
        },
    )
    .await;
    assert_eq!(
        app.db().sku(sku).await.unwrap().unwrap().num,
        20,
        "stock back where it started"
    );
    for (user, token, order) in &orders {
        assert_eq!(app.db().points(user).await.unwrap(), Some(0));
        assert!(
            app.state.cart.entries(user).await.unwrap().is_empty(),
            "ordered lines stay out of the cart"
        );
        let (_, shown) = app.get(&format!("/api/order/{order}"), token).await;
        assert_eq!(shown["data"]["order"]["orderStatus"], "3", "closed");
        assert!(shown["data"]["order"]["closeTime"].is_string());
    }
    let (pay_logs,): (i64,) = ordersaga::on_pool!(app.db(), |pool| {
        sqlx::query_as("SELECT COUNT(*) FROM pay_log")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(pay_logs, 0, "no pay log outlives its saga");
    assert_invariants(app.db(), &initial, 10).await;
    app.stop().await;
}

each_backend!(
    cancelled_and_expired_orders_give_everything_back,
    unpaid_orders_compensate
);

/// A cancel and a payment delivered at the same moment: each order ends either paid or
/// undone, never both, never neither; a payment that loses is an alert (refund needed).
async fn cancel_races_payment(backend: Backend) {
    let app = Arc::new(TestApp::spawn(backend).await);
    let sku = app.add_sku(5101, 800, 100, SkuStatus::OnSale).await;
    let initial = stock_snapshot(app.db()).await;
    let mut orders = Vec::new();
    for i in 0..20 {
        let (user, token) = app.shopper(&format!("racer{i}")).await;
        app.fill_cart(&user, sku, 1).await;
        orders.push(order_of(&app, &token).await);
    }
    let tasks: Vec<_> = orders
        .iter()
        .enumerate()
        .flat_map(|(i, order)| {
            let order = *order;
            let (a, b) = (app.clone(), app.clone());
            let pay = tokio::spawn(async move {
                a.state
                    .sagas
                    .deliver(order, payment(&format!("wx{i}"), 800))
                    .await
                    .unwrap()
            });
            let cancel = tokio::spawn(async move {
                b.state
                    .sagas
                    .deliver(
                        order,
                        Event::CancelRequested {
                            by: Requester::Shopper("racer".into()),
                        },
                    )
                    .await
                    .unwrap()
            });
            [pay, cancel]
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    app.wait_settled(Duration::from_secs(30)).await;
    wait_until(
        Duration::from_secs(30),
        "every raced order terminal",
        || async {
            let mut all = true;
            for o in &orders {
                all &= matches!(
                    state_of(&app, *o).await.as_str(),
                    "completed" | "compensated"
                );
            }
            all
        },
    )
    .await;
    let mut completed = 0;
    for order in &orders {
        let state = state_of(&app, *order).await;
        let (alerts,): (i64,) = ordersaga::on_pool!(app.db(), |pool| {
            sqlx::query_as(
                "SELECT COUNT(*) FROM saga_alert WHERE order_id = $1 AND kind = 'paid_after_close'",
            )
            .bind(order.to_string())
            .fetch_one(pool)
            .await
            .unwrap()
        });
        match state.as_str() {
            "completed" => {
                completed += 1;
                assert_eq!(alerts, 0, "{order}: paid, so no refund alert");
            }
            "compensated" => assert_eq!(
                alerts, 1,
                "{order}: the payment that lost the race needs a refund"
            ),
            other => panic!("{order} ended {other}"),
        }
    }
    assert_invariants(app.db(), &initial, 10).await;
    let sold = app.db().sku(sku).await.unwrap().unwrap().sale_num;
    assert_eq!(sold, completed, "one unit sold per completed order");
    Arc::into_inner(app).unwrap().stop().await;
}

each_backend!(
    a_cancel_racing_a_payment_ends_in_exactly_one_outcome,
    cancel_races_payment
);

on_both_backends! {
    async fn wrong_amounts_and_late_payments_never_complete_an_order(app) {
        let (user, token) = app.shopper("uma").await;
        let sku = app.add_sku(5201, 2_000, 5, SkuStatus::OnSale).await;
        app.fill_cart(&user, sku, 1).await;
        let order = order_of(&app, &token).await;
        let outcome = app.state.sagas.deliver(order, payment("wx-short", 1_999)).await.unwrap();
        assert_eq!(outcome, ordersaga::workflows::checkout::Outcome::Alerted);
        assert_eq!(state_of(&app, order).await, "awaiting_payment");
        // The same wrong notification again: still one alert.
        app.state.sagas.deliver(order, payment("wx-short", 1_999)).await.unwrap();
        app.post(&format!("/api/order/{order}/cancel"), &token).await;
        app.state.sagas.deliver(order, payment("wx-late", 2_000)).await.unwrap();
        let kinds: Vec<(String,)> = ordersaga::on_pool!(app.db(), |pool| {
            sqlx::query_as("SELECT kind FROM saga_alert WHERE order_id = $1 ORDER BY id").bind(order.to_string()).fetch_all(pool).await.unwrap()
        });
        let kinds: Vec<&str> = kinds.iter().map(|(k,)| k.as_str()).collect();
        assert_eq!(kinds, vec!["wrong_amount", "paid_after_close"]);
        assert_eq!(state_of(&app, order).await, "compensated");
        app.stop().await;
    }
}

on_both_backends! {
    /// Operators act through the admin API; shoppers are refused with 403.
    async fn operators_can_record_a_payment_and_shoppers_cannot(app) {
        let (user, token) = app.shopper("vera").await;
        app.create_user("boss", "x", &[ordersaga::domain::Role::User, ordersaga::domain::Role::Admin]).await;
        let boss = app.state.tokens.issue(&"boss".parse_user(), &[ordersaga::domain::Role::User, ordersaga::domain::Role::Admin], chrono::Utc::now()).unwrap();
        let sku = app.add_sku(5301, 3_000, 5, SkuStatus::OnSale).await;
        app.fill_cart(&user, sku, 2).await;
        let order = order_of(&app, &token).await;
        let path = format!("/admin/api/sagas/{order}/payment");
        let body = serde_json::json!({ "transactionId": "4200001234", "totalFee": 6000 });
        let resp = app.http.post(app.url(&path)).bearer_auth(&token).json(&body).send().await.unwrap();
        let (s, b) = crate::support::envelope(resp).await;
        assert_eq!((s, b["code"].as_i64()), (403, Some(20003)));
        let resp = app.http.post(app.url(&path)).bearer_auth(&boss).json(&body).send().await.unwrap();
        assert_eq!(crate::support::envelope(resp).await.0, 200);
        wait_until(Duration::from_secs(10), "order completed", || async { state_of(&app, order).await == "completed" }).await;
        let (_, shown) = app.get(&format!("/api/order/{order}"), &token).await;
        assert_eq!(shown["data"]["order"]["payStatus"], "1");
        assert_eq!(shown["data"]["order"]["transactionId"], "4200001234");
        let sku_row = app.db().sku(sku).await.unwrap().unwrap();
        assert_eq!((sku_row.num, sku_row.sale_num), (3, 2));
        // Paid: a cancel is refused.
        let (s, _) = app.post(&format!("/api/order/{order}/cancel"), &token).await;
        assert_eq!(s, 409);
        app.stop().await;
    }
}

trait ParseUser {
    fn parse_user(&self) -> ordersaga::domain::Username;
}
impl ParseUser for str {
    fn parse_user(&self) -> ordersaga::domain::Username {
        ordersaga::domain::Username::parse(self).unwrap()
    }
}

on_both_backends! {
    /// A revoke the shopper's balance cannot cover (they spent the points) fails on the
    /// database's CHECK; the saga retries with backoff, gets stuck with an alert and the
    /// error code, and an operator's retry finishes the undo once the balance is fixed.
    async fn a_compensation_that_keeps_failing_gets_stuck_until_an_operator_retries(app) {
        let (user, token) = app.shopper("wendy").await;
        app.create_user("chief", "x", &[ordersaga::domain::Role::User, ordersaga::domain::Role::Admin]).await;
        let chief = app.state.tokens.issue(&"chief".parse_user(), &[ordersaga::domain::Role::User, ordersaga::domain::Role::Admin], chrono::Utc::now()).unwrap();
        let sku = app.add_sku(5401, 1_000, 5, SkuStatus::OnSale).await;
        let initial = stock_snapshot(app.db()).await;
        app.fill_cart(&user, sku, 1).await;
        let order = order_of(&app, &token).await;
        let set_points = |n: i64| {
            let db = app.db().clone();
            async move {
                ordersaga::on_pool!(&db, |pool| {
                    sqlx::query("UPDATE tb_user SET points = $1 WHERE username = 'wendy'").bind(n).execute(pool).await.unwrap();
                });
            }
        };
        set_points(0).await; // spent elsewhere
        let (s, _) = app.post(&format!("/api/order/{order}/cancel"), &token).await;
        assert_eq!(s, 200, "the cancel is accepted even though undoing will take a while");
        wait_until(Duration::from_secs(60), "saga stuck", || async { state_of(&app, order).await == "stuck" }).await;
        let stored = app.db().load_saga(order).await.unwrap().unwrap();
        let error = stored.state.last_error.clone().unwrap();
        assert!(error.starts_with("SAGA-POINTS-002"), "{error}");
        let (alerts,): (i64,) = ordersaga::on_pool!(app.db(), |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM saga_alert WHERE order_id = $1 AND kind = 'stuck'").bind(order.to_string()).fetch_one(pool).await.unwrap()
        });
        assert_eq!(alerts, 1);
        assert_eq!(app.db().sku(sku).await.unwrap().unwrap().num, 4, "nothing after the failing step was undone yet");

        set_points(10).await; // the operator restores the balance
        let resp = app.http.post(app.url(&format!("/admin/api/sagas/{order}/retry"))).bearer_auth(&chief).send().await.unwrap();
        assert_eq!(crate::support::envelope(resp).await.0, 200);
        wait_until(Duration::from_secs(20), "saga compensated", || async { state_of(&app, order).await == "compensated" }).await;
        assert_eq!(app.db().points(&user).await.unwrap(), Some(0));
        assert_invariants(app.db(), &initial, 10).await;
        app.stop().await;
    }
}
