//! Checkout over HTTP: the saga's forward steps, validation, idempotency, the hot SKU.

use std::sync::Arc;
use std::time::Duration;

use ordersaga::domain::SkuStatus;
use serde_json::json;

use crate::invariants::{assert_invariants, stock_snapshot};
use crate::support::{Backend, TestApp, envelope};

on_both_backends! {
    async fn a_checkout_reserves_prices_from_the_catalogue_and_waits_for_payment(app) {
        let (user, token) = app.shopper("quinn").await;
        let phone = app.add_sku(3001, 199_900, 10, SkuStatus::OnSale).await;
        let case = app.add_sku(3002, 4_900, 10, SkuStatus::OnSale).await;
        let keep = app.add_sku(3003, 100, 10, SkuStatus::OnSale).await;
        let initial = stock_snapshot(app.db()).await;
        app.fill_cart(&user, phone, 2).await;
        app.fill_cart(&user, case, 1).await;
        app.fill_cart(&user, keep, 4).await;
        // The cart's stored price is stale: the catalogue's price at reservation counts.
        ordersaga::on_pool!(app.db(), |pool| {
            sqlx::query("UPDATE tb_sku SET price = 189900 WHERE id = $1").bind(phone.get()).execute(pool).await.unwrap();
        });
        let address = app.add_address(&user, "Quinn", true).await;
        let resp = app
            .http
            .post(app.url("/api/order"))
            .bearer_auth(&token)
            .json(&json!({ "addressId": address, "skuIds": [phone.get(), case.get()], "buyerMessage": "请尽快发货" }))
            .send()
            .await
            .unwrap();
        let (status, body) = envelope(resp).await;
        assert_eq!(status, 200, "{body}");
        let data = &body["data"];
        assert_eq!(data["state"], "awaiting_payment");
        assert_eq!(data["payMoney"], 2 * 189_900 + 4_900);
        assert_eq!(data["totalNum"], 3);
        assert!(data["payDeadline"].as_str().is_some());
        let order_id = data["orderId"].as_str().unwrap().to_owned();

        let (_, shown) = app.get(&format!("/api/order/{order_id}"), &token).await;
        assert_eq!(shown["data"]["order"]["receiverContact"], "Quinn");
        assert_eq!(shown["data"]["order"]["payStatus"], "0");
        assert_eq!(shown["data"]["items"].as_array().unwrap().len(), 2);
        assert_eq!(shown["data"]["items"][0]["price"], 189_900);
        // Only the ordered lines left the cart.
        let entries = app.state.cart.entries(&user).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].sku_id, keep);
        assert_eq!(app.db().points(&user).await.unwrap(), Some(10));
        assert_eq!(app.db().sku(phone).await.unwrap().unwrap().num, 8);

        // Another shopper cannot see it; the list shows it.
        let (_, other) = app.shopper("rosa").await;
        let (s, _) = app.get(&format!("/api/order/{order_id}"), &other).await;
        assert_eq!(s, 404);
        let (_, list) = app.get("/api/order/list", &token).await;
        assert_eq!(list["data"]["items"][0]["order"]["id"], order_id.as_str());
        assert_eq!(list["data"]["items"][0]["state"], "awaiting_payment");
        assert_invariants(app.db(), &initial, 10).await;
        app.stop().await;
    }
}

on_both_backends! {
    async fn bad_checkouts_are_refused_and_take_nothing(app) {
        let (user, token) = app.shopper("sam").await;
        let sku = app.add_sku(3101, 1_000, 3, SkuStatus::OnSale).await;
        let initial = stock_snapshot(app.db()).await;
        // Empty cart.
        let (s, b) = app.checkout(&token).await;
        assert_eq!(s, 400, "{b}");
        app.fill_cart(&user, sku, 2).await;
        for (body, field) in [
            (json!({ "addressId": 999999 }), "addressId"),
            (json!({ "receiverContact": "x" }), "receiverMobile"),
            (json!({ "addressId": 1, "payType": "7" }), "payType"),
            (json!({ "skuIds": [42], "receiverContact": "a", "receiverMobile": "1", "receiverAddress": "b" }), "skuIds"),
            (json!({ "unknownField": 1 }), "body"),
        ] {
            let resp = app.http.post(app.url("/api/order")).bearer_auth(&token).json(&body).send().await.unwrap();
            let (s, b) = envelope(resp).await;
            assert_eq!(s, 400, "{body}: {b}");
            assert!(b["message"].as_str().unwrap().contains(field), "{body}: {b}");
        }
        // More than in stock: 409 naming the SKU, nothing taken, the cart kept.
        app.fill_cart(&user, sku, 2).await;
        let (s, b) = app.checkout(&token).await;
        assert_eq!((s, b["code"].as_i64()), (409, Some(20001)), "{b}");
        assert_eq!(b["data"]["skuIds"], json!([sku.get()]));
        assert_eq!(app.state.cart.entries(&user).await.unwrap()[0].num, 4);
        assert_eq!(app.db().points(&user).await.unwrap(), Some(0));
        app.wait_settled(Duration::from_secs(10)).await;
        assert_invariants(app.db(), &initial, 10).await;
        let (_, list) = app.get("/api/order/list", &token).await;
        assert_eq!(list["data"]["total"], 0, "a refused checkout writes no order");
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_double_submit_with_the_same_idempotency_key_returns_the_same_order(app) {
        let (user, token) = app.shopper("tara").await;
        let sku = app.add_sku(3201, 500, 10, SkuStatus::OnSale).await;
        app.fill_cart(&user, sku, 1).await;
        let body = json!({ "receiverContact": "T", "receiverMobile": "1", "receiverAddress": "A" });
        let send = || app.http.post(app.url("/api/order")).bearer_auth(&token).header("Idempotency-Key", "form-123").json(&body).send();
        let (s1, b1) = envelope(send().await.unwrap()).await;
        let (s2, b2) = envelope(send().await.unwrap()).await;
        assert_eq!((s1, s2), (200, 200), "{b1} {b2}");
        assert_eq!(b1["data"]["orderId"], b2["data"]["orderId"]);
        assert_eq!(app.db().sku(sku).await.unwrap().unwrap().num, 9, "stock taken once");
        assert_eq!(app.saga_states().await.len(), 1);
        app.stop().await;
    }
}

/// 500 shoppers race for 100 units: exactly 100 orders, 400 refusals, stock exactly 0.
async fn hot_sku(backend: Backend) {
    let app = Arc::new(
        TestApp::spawn_with(backend, |args| {
            args.checkout_wait = Duration::from_secs(100);
            args.request_timeout = Duration::from_secs(120);
        })
        .await,
    );
    let sku = app.add_sku(4001, 9_900, 100, SkuStatus::OnSale).await;
    let initial = stock_snapshot(app.db()).await;
    let mut tokens = Vec::new();
    for i in 0..500 {
        let (user, token) = app.shopper(&format!("hot{i}")).await;
        app.fill_cart(&user, sku, 1).await;
        tokens.push(token);
    }
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let app = app.clone();
            tokio::spawn(async move { app.checkout(&token).await })
        })
        .collect();
    let mut ok = 0;
    let mut short = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => {
                assert_eq!(body["data"]["state"], "awaiting_payment");
                ok += 1;
            }
            409 => {
                assert_eq!(body["data"]["skuIds"], json!([sku.get()]));
                short += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, short), (100, 400));
    app.wait_settled(Duration::from_secs(60)).await;
    let states = app.saga_states().await;
    assert_eq!(
        states
            .iter()
            .filter(|(_, s)| s == "awaiting_payment")
            .count(),
        100
    );
    assert_eq!(states.iter().filter(|(_, s)| s == "failed").count(), 400);
    assert_eq!(app.db().sku(sku).await.unwrap().unwrap().num, 0);
    let (points,): (i64,) = ordersaga::on_pool!(app.db(), |pool| {
        sqlx::query_as("SELECT CAST(SUM(points) AS BIGINT) FROM tb_user")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(points, 10 * 100);
    assert_invariants(app.db(), &initial, 10).await;
    Arc::into_inner(app).expect("all tasks done").stop().await;
}

each_backend!(hot_sku_sells_exactly_its_stock, hot_sku);
