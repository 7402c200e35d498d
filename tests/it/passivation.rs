//! Sagas that only wait leave memory and come back for their payment or their deadline.

use std::time::Duration;

use ordersaga::domain::{Money, OrderId, SkuStatus};
use ordersaga::workflows::checkout::{Event, Outcome, Payment};

use crate::invariants::{assert_invariants, stock_snapshot};
use crate::support::{Backend, TestApp, wait_until};

async fn passivation(backend: Backend) {
    let app = TestApp::spawn_with(backend, |args| {
        args.passivate_after = Duration::from_millis(300);
        args.pay_timeout = Duration::from_secs(3);
    })
    .await;
    let sku = app.add_sku(6001, 700, 10, SkuStatus::OnSale).await;
    let initial = stock_snapshot(app.db()).await;
    let mut orders: Vec<OrderId> = Vec::new();
    for i in 0..2 {
        let (user, token) = app.shopper(&format!("idle{i}")).await;
        app.fill_cart(&user, sku, 1).await;
        let (status, body) = app.checkout(&token).await;
        assert_eq!(status, 200, "{body}");
        orders.push(body["data"]["orderId"].as_str().unwrap().parse().unwrap());
    }
    wait_until(
        Duration::from_secs(10),
        "waiting sagas passivated",
        || async { app.state.sagas.active_count().await.unwrap() == 0 },
    )
    .await;
    // The payment brings the first back from disk and completes it.
    let payment = Payment {
        transaction_id: "wx-idle".into(),
        amount: Money::from_fen(700),
        paid_at_ms: 1,
    };
    let outcome = app
        .state
        .sagas
        .deliver(orders[0], Event::PaymentConfirmed { payment })
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Applied);
    // The second, out of memory, is found by the deadline sweep and undone.
    wait_until(
        Duration::from_secs(20),
        "one completed, one compensated",
        || async {
            let a = app
                .db()
                .load_saga(orders[0])
                .await
                .unwrap()
                .unwrap()
                .state
                .phase
                .name();
            let b = app
                .db()
                .load_saga(orders[1])
                .await
                .unwrap()
                .unwrap()
                .state
                .phase
                .name();
            (a, b) == ("completed", "compensated")
        },
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "finished sagas leave memory",
        || async { app.state.sagas.active_count().await.unwrap() == 0 },
    )
    .await;
    assert_invariants(app.db(), &initial, 10).await;
    app.stop().await;
}

each_backend!(passivated_sagas_still_complete_and_expire, passivation);
