//! The operators' API: lists, filters, pages, timelines, actions, alerts, stats, metrics.

use std::time::Duration;

use ordersaga::domain::{Money, OrderId, Role, SkuStatus};
use ordersaga::workflows::checkout::{Event, Payment};
use reqwest::Method;
use serde_json::Value;

use crate::support::{TestApp, wait_until};

async fn operator(app: &TestApp) -> String {
    let user = app
        .create_user("ops", "x", &[Role::User, Role::Admin])
        .await;
    app.state
        .tokens
        .issue(&user, &[Role::User, Role::Admin], chrono::Utc::now())
        .unwrap()
}

async fn orders(app: &TestApp, n: usize, tag: &str) -> Vec<(String, OrderId)> {
    let sku = app.add_sku(9500, 1_000, 100, SkuStatus::OnSale).await;
    let mut out = Vec::new();
    for i in 0..n {
        let (user, token) = app.shopper(&format!("{tag}{i}")).await;
        app.fill_cart(&user, sku, 1).await;
        let (status, body) = app.checkout(&token).await;
        assert_eq!(status, 200, "{body}");
        out.push((
            token,
            body["data"]["orderId"].as_str().unwrap().parse().unwrap(),
        ));
    }
    out
}

fn ids(body: &Value) -> Vec<String> {
    body["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["orderId"].as_str().unwrap().to_owned())
        .collect()
}

on_both_backends! {
    async fn operators_list_filter_and_page_through_sagas_newest_first(app) {
        let ops = operator(&app).await;
        let made = orders(&app, 5, "lister").await;
        let (_, cancelled) = &made[1];
        app.state.sagas.deliver(*cancelled, Event::CancelRequested { by: ordersaga::workflows::checkout::Requester::Shopper("x".into()) }).await.unwrap();
        wait_until(Duration::from_secs(10), "compensated", || async {
            app.db().load_saga(*cancelled).await.unwrap().unwrap().state.phase.name() == "compensated"
        }).await;

        let (s, all) = app.get("/admin/api/sagas", &ops).await;
        assert_eq!(s, 200, "{all}");
        let mut expected: Vec<String> = made.iter().map(|(_, o)| o.to_string()).collect();
        expected.reverse();
        assert_eq!(ids(&all), expected, "newest first");
        assert_eq!(all["data"]["items"][0]["state"], "awaiting_payment");
        assert_eq!(all["data"]["items"][0]["payMoney"], 1_000);

        let (_, page1) = app.get("/admin/api/sagas?limit=2", &ops).await;
        let cursor = page1["data"]["nextCursor"].as_str().unwrap().to_owned();
        let (_, page2) = app.get(&format!("/admin/api/sagas?limit=2&cursor={cursor}"), &ops).await;
        let (_, page3) = app.get(&format!("/admin/api/sagas?limit=2&cursor={}", page2["data"]["nextCursor"].as_str().unwrap()), &ops).await;
        let paged: Vec<String> = [ids(&page1), ids(&page2), ids(&page3)].concat();
        assert_eq!(paged, expected, "pages cover everything once, in order");
        assert!(page3["data"]["nextCursor"].is_null());

        let (_, by_state) = app.get("/admin/api/sagas?state=compensated", &ops).await;
        assert_eq!(ids(&by_state), vec![cancelled.to_string()]);
        let (_, by_user) = app.get("/admin/api/sagas?username=lister3", &ops).await;
        assert_eq!(ids(&by_user), vec![made[3].1.to_string()]);
        let (_, by_id) = app.get(&format!("/admin/api/sagas?orderId={}", made[0].1), &ops).await;
        assert_eq!(ids(&by_id), vec![made[0].1.to_string()]);
        let (_, future) = app.get("/admin/api/sagas?since=2099-01-01T00:00:00Z", &ops).await;
        assert!(ids(&future).is_empty());
        for bad in ["state=bogus", "limit=0", "limit=x", "since=yesterday", "cursor=nope"] {
            let (s, b) = app.get(&format!("/admin/api/sagas?{bad}"), &ops).await;
            assert_eq!(s, 400, "{bad}: {b}");
        }
        app.stop().await;
    }
}

on_both_backends! {
    async fn the_admin_api_is_for_operators_only(app) {
        let (_, shopper) = app.shopper("nosy").await;
        for path in ["/admin/api/sagas", "/admin/api/alerts", "/admin/api/stats", "/admin/api/sagas/1"] {
            let (s, b) = app.get(path, &shopper).await;
            assert_eq!((s, b["code"].as_i64()), (403, Some(20003)), "{path}");
            let (s, b) = app.call(Method::GET, path, None).await;
            assert_eq!((s, b["code"].as_i64()), (401, Some(20002)), "{path}");
        }
        let (s, _) = app.post("/admin/api/sagas/1/cancel", &shopper).await;
        assert_eq!(s, 403);
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_sagas_timeline_shows_every_step_and_who_acted(app) {
        let ops = operator(&app).await;
        let made = orders(&app, 1, "timeline").await;
        let order = made[0].1;
        let (s, _) = app.post(&format!("/admin/api/sagas/{order}/cancel"), &ops).await;
        assert_eq!(s, 200);
        wait_until(Duration::from_secs(10), "compensated", || async {
            app.db().load_saga(order).await.unwrap().unwrap().state.phase.name() == "compensated"
        }).await;
        let (s, shown) = app.get(&format!("/admin/api/sagas/{order}"), &ops).await;
        assert_eq!(s, 200, "{shown}");
        let timeline = shown["data"]["timeline"].as_array().unwrap();
        let kinds: Vec<&str> = timeline.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, [
            "checkout_submitted", "stock_reserved", "order_written", "points_awarded", "cart_cleared",
            "pay_log_enqueued", "cancel_requested", "points_revoked", "order_closed", "stock_released",
        ]);
        let cancel = &timeline[6];
        assert_eq!(cancel["data"]["by"]["Operator"], "ops", "journaled with who did it: {cancel}");
        assert!(timeline.iter().all(|e| e["sincePreviousMs"].as_i64().unwrap() >= 0));
        assert_eq!(shown["data"]["saga"]["state"], "compensated");
        assert_eq!(shown["data"]["saga"]["endReason"]["kind"], "cancelled");
        assert_eq!(shown["data"]["order"]["orderStatus"], "3");
        // Cancelling again is refused, with the reason.
        let (s, again) = app.post(&format!("/admin/api/sagas/{order}/cancel"), &ops).await;
        assert_eq!(s, 409, "{again}");
        let (s, _) = app.get("/admin/api/sagas/999999", &ops).await;
        assert_eq!(s, 404);
        app.stop().await;
    }
}

on_both_backends! {
    async fn alerts_are_listed_and_resolved_once(app) {
        let ops = operator(&app).await;
        let made = orders(&app, 1, "alerted").await;
        let order = made[0].1;
        let wrong = Payment { transaction_id: "4200000000000000000000000099".into(), amount: Money::from_fen(1), paid_at_ms: 1 };
        app.state.sagas.deliver(order, Event::PaymentConfirmed { payment: wrong }).await.unwrap();
        let (_, open) = app.get("/admin/api/alerts", &ops).await;
        let items = open["data"]["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["kind"], "wrong_amount");
        assert_eq!(items[0]["orderId"], order.to_string());
        let id = items[0]["id"].as_i64().unwrap();
        let (s, _) = app.post(&format!("/admin/api/alerts/{id}/resolve"), &ops).await;
        assert_eq!(s, 200);
        let (s, _) = app.post(&format!("/admin/api/alerts/{id}/resolve"), &ops).await;
        assert_eq!(s, 409, "resolved once");
        let (_, open) = app.get("/admin/api/alerts", &ops).await;
        assert!(open["data"]["items"].as_array().unwrap().is_empty());
        let (_, resolved) = app.get("/admin/api/alerts?resolved=true", &ops).await;
        assert_eq!(resolved["data"]["items"][0]["resolvedBy"], "ops");
        let (s, _) = app.post("/admin/api/alerts/424242/resolve", &ops).await;
        assert_eq!(s, 404);
        app.stop().await;
    }
}

on_both_backends! {
    async fn stats_and_metrics_move_when_sagas_run(app) {
        let ops = operator(&app).await;
        let metric = |text: &str, name: &str| -> f64 {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once(' '))
                .filter(|(k, _)| k == &name)
                .map(|(_, v)| v.trim().parse::<f64>().expect("a number"))
                .sum()
        };
        let scrape = || async { app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap() };
        let before = scrape().await;
        let made = orders(&app, 3, "metered").await;
        let order = made[0].1;
        let sim = app.state.wxpay_sim.clone().unwrap();
        app.get(&format!("/api/pay/native?orderId={order}"), &made[0].0).await;
        sim.pay(&order.to_string()).await.unwrap();
        wait_until(Duration::from_secs(10), "completed", || async {
            app.db().load_saga(order).await.unwrap().unwrap().state.phase.name() == "completed"
        }).await;
        let after = scrape().await;
        // Every line is `name{labels} value` or a comment: the text format parses.
        for line in after.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (_, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
            value.parse::<f64>().unwrap_or_else(|_| panic!("not a number: {line}"));
        }
        assert_eq!(metric(&after, "ordersaga_sagas_started_total") - metric(&before, "ordersaga_sagas_started_total"), 3.0);
        assert_eq!(metric(&after, "ordersaga_sagas_completed_total") - metric(&before, "ordersaga_sagas_completed_total"), 1.0);
        assert!(after.contains("ordersaga_saga_step_duration_seconds_bucket{step=\"stock_reserved\""), "step histograms");
        assert!(metric(&after, "ordersaga_notifications_total{result=\"accepted\"}") >= 1.0);
        assert!(after.contains("ordersaga_reconciler_queue_depth"));

        let (s, stats) = app.get("/admin/api/stats", &ops).await;
        assert_eq!(s, 200, "{stats}");
        let d = &stats["data"];
        assert_eq!(d["byState"]["awaiting_payment"], 2);
        assert_eq!(d["byState"]["completed"], 1);
        let checkouts: i64 = d["checkoutsPerMinute"].as_array().unwrap().iter().map(|m| m["count"].as_i64().unwrap()).sum();
        assert_eq!(checkouts, 3);
        assert!(d["stepLatencyMs"]["stock_reserved"]["p50"].as_i64().is_some(), "{d}");
        assert_eq!(d["reconciler"]["queue"]["depth"], 2, "the two unpaid orders wait in the pay-log queue");
        app.stop().await;
    }
}
