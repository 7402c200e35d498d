//! The operators' dashboard pages, over HTTP (the browser-driven tests come later).

use std::time::Duration;

use ordersaga::domain::{Role, SkuStatus};
use reqwest::header;

use crate::support::{TestApp, wait_until};

async fn page(app: &TestApp, path: &str, token: &str) -> (u16, String) {
    let resp = app
        .http
        .get(app.url(path))
        .header(header::COOKIE, format!("Authorization={token}"))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

on_both_backends! {
    async fn operators_see_sagas_by_state_search_them_and_open_a_timeline(app) {
        let admin = app.create_user("boss", "x", &[Role::User, Role::Admin]).await;
        let ops = app.state.tokens.issue(&admin, &[Role::User, Role::Admin], chrono::Utc::now()).unwrap();
        let sku = app.add_sku(9600, 1_000, 10, SkuStatus::OnSale).await;
        let mut orders = Vec::new();
        for i in 0..2 {
            let (user, token) = app.shopper(&format!("dash{i}")).await;
            app.fill_cart(&user, sku, 1).await;
            let (_, body) = app.checkout(&token).await;
            orders.push((token, body["data"]["orderId"].as_str().unwrap().to_owned()));
        }
        app.post(&format!("/api/order/{}/cancel", orders[1].1), &orders[1].0).await;
        wait_until(Duration::from_secs(10), "compensated", || async {
            app.db().load_saga(orders[1].1.parse().unwrap()).await.unwrap().unwrap().state.phase.name() == "compensated"
        }).await;

        // Not logged in: to the login page. A shopper: 403.
        let resp = app.http.get(app.url("/admin")).send().await.unwrap();
        assert_eq!(resp.status(), 303);
        assert_eq!(resp.headers()[header::LOCATION], "/login?from=%2Fadmin");
        let (s, _) = page(&app, "/admin", &orders[0].0).await;
        assert_eq!(s, 403);

        let (s, html) = page(&app, "/admin", &ops).await;
        assert_eq!(s, 200);
        assert!(html.contains("awaiting_payment: 1") && html.contains("compensated: 1"), "counts by state");
        assert!(html.contains(&format!("data-order=\"{}\"", orders[0].1)) && html.contains(&format!("data-order=\"{}\"", orders[1].1)));
        assert!(html.contains("id=\"reconciler\"") && html.contains("Queue depth"));

        let (_, filtered) = page(&app, "/admin?state=compensated", &ops).await;
        assert!(filtered.contains(&format!("data-order=\"{}\"", orders[1].1)));
        assert!(!filtered.contains(&format!("data-order=\"{}\"", orders[0].1)), "filtered by state");
        let (_, searched) = page(&app, &format!("/admin?orderId={}", orders[0].1), &ops).await;
        assert!(searched.contains(&format!("data-order=\"{}\"", orders[0].1)));
        assert!(!searched.contains(&format!("data-order=\"{}\"", orders[1].1)), "search by order id");

        let (s, saga) = page(&app, &format!("/admin/sagas/{}", orders[1].1), &ops).await;
        assert_eq!(s, 200);
        for kind in ["checkout_submitted", "stock_reserved", "cancel_requested", "points_revoked", "order_closed", "stock_released"] {
            assert!(saga.contains(&format!("data-kind=\"{kind}\"")), "timeline shows {kind}");
        }
        assert!(saga.contains("class=\"compensation\" data-kind=\"points_revoked\""), "compensations drawn as such");
        assert!(!saga.contains("id=\"cancel\""), "no cancel for an undone saga");
        let (_, waiting) = page(&app, &format!("/admin/sagas/{}", orders[0].1), &ops).await;
        assert!(waiting.contains("id=\"cancel\""), "cancel offered while waiting for payment");
        app.stop().await;
    }
}
