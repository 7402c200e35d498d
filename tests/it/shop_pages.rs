//! The shop's own pages over HTTP: the checkout page (`/order`) shows where the parcel goes
//! and what it costs; `/orders` lists the shopper's orders, only theirs, with pay and
//! cancel where they apply.

use std::time::Duration;

use ordersaga::domain::SkuStatus;
use reqwest::header;

use crate::support::{TestApp, wait_until};

/// GETs a page with the auth cookie, as a browser does; (status, body).
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

/// The HTML from the tag that contains `needle` up to `end`: one element to look into.
fn element<'a>(html: &'a str, needle: &str, end: &str) -> &'a str {
    let at = html
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not on the page: {html}"));
    let start = html[..at].rfind('<').unwrap();
    let stop = at + html[at..].find(end).unwrap() + end.len();
    &html[start..stop]
}

async fn redirects_to_login(app: &TestApp, path: &str, from: &str) {
    let resp = app.http.get(app.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), 303, "{path} without a cookie");
    assert_eq!(
        resp.headers()[header::LOCATION],
        format!("/login?from={from}").as_str()
    );
}

on_both_backends! {
    async fn the_checkout_page_shows_the_default_address_the_lines_and_the_total(app) {
        redirects_to_login(&app, "/order", "%2Forder").await;

        let (olga, token) = app.shopper("olga").await;
        let (pete, _) = app.shopper("pete").await;
        let home = app.add_address(&olga, "Olga home", false).await;
        let office = app.add_address(&olga, "Olga office", true).await;
        app.add_address(&pete, "Pete home", true).await;
        let pen = app.add_sku(3001, 1_230, 10, SkuStatus::OnSale).await;
        let lamp = app.add_sku(3002, 99_900, 5, SkuStatus::OnSale).await;
        app.fill_cart(&olga, pen, 2).await;
        app.fill_cart(&olga, lamp, 1).await;

        // The home page's check-out button leads here.
        let (s, html) = page(&app, "/", &token).await;
        assert_eq!(s, 200);
        assert!(element(&html, r#"id="checkout""#, ">").contains(r#"href="/order""#), "{html}");

        let (s, html) = page(&app, "/order", &token).await;
        assert_eq!(s, 200, "{html}");
        assert!(html.contains("结算"));
        // The default address is chosen; the other one can be.
        let default_radio = element(&html, &format!(r#"id="address-{office}""#), ">");
        assert!(default_radio.contains(r#"type="radio" name="addressId""#), "{default_radio}");
        assert!(default_radio.contains(&format!(r#"value="{office}""#)), "{default_radio}");
        assert!(default_radio.contains(" checked"), "the default is preselected: {default_radio}");
        let other_radio = element(&html, &format!(r#"id="address-{home}""#), ">");
        assert!(other_radio.contains(r#"type="radio" name="addressId""#), "{other_radio}");
        assert!(!other_radio.contains("checked"), "only the default is preselected: {other_radio}");
        assert_eq!(html.matches(r#"type="radio" name="addressId""#).count(), 2);
        assert!(html.contains("Olga office") && html.contains("Olga home"));
        assert!(!html.contains("Pete home"), "another shopper's address is not offered");

        // The shipping list at catalogue prices, one row per line.
        let row = element(&html, &format!(r#"data-sku="{pen}""#), "</tr>");
        assert!(row.contains("测试商品 3001"), "{row}");
        assert!(row.contains("¥12.30"), "unit price: {row}");
        assert!(row.contains(">2<"), "quantity: {row}");
        assert!(row.contains("¥24.60"), "subtotal: {row}");
        assert!(row.contains(r#"<td class="line-error""#), "{row}");
        let row = element(&html, &format!(r#"data-sku="{lamp}""#), "</tr>");
        assert!(row.contains("¥999.00") && row.contains(">1<"), "{row}");
        assert_eq!(html.matches("<tr data-sku=").count(), 2);
        // 2 + 1 items, ¥24.60 + ¥999.00.
        assert!(element(&html, r#"id="total-num""#, "</span>").contains(">3<"), "{html}");
        assert!(element(&html, r#"id="total-money""#, "</strong>").contains(">¥1023.60<"), "{html}");
        for id in ["buyer-message", "submit-order", "order-error"] {
            assert!(html.contains(&format!(r#"id="{id}""#)), "#{id}");
        }
        assert!(html.contains("Idempotency-Key"), "the submit carries an idempotency key");
        assert!(html.contains(r#"href="/orders""#), "the nav links to my orders");

        // Showing the page changed nothing: the cart is still there.
        let (_, cart) = app.get("/api/cart/list", &token).await;
        assert_eq!(cart["data"]["totalNum"], 3);
        app.stop().await;
    }
}

on_both_backends! {
    async fn an_empty_cart_shows_a_message_and_no_address_asks_for_a_receiver(app) {
        let (quinn, token) = app.shopper("quinn").await;
        app.add_address(&quinn, "Quinn home", true).await;
        let (s, html) = page(&app, "/order", &token).await;
        assert_eq!(s, 200);
        let empty = element(&html, r#"id="order-empty""#, "</div>");
        assert!(empty.contains("购物车是空的"), "{empty}");
        assert!(empty.contains(r#"href="/""#), "a way back to the shop: {empty}");
        assert!(!html.contains(r#"id="submit-order""#), "no form for an empty cart");
        assert!(!html.contains(r#"type="radio" name="addressId""#));

        // A shopper without a saved address types the receiver in.
        let (rosa, token) = app.shopper("rosa").await;
        let sku = app.add_sku(3101, 500, 10, SkuStatus::OnSale).await;
        app.fill_cart(&rosa, sku, 1).await;
        let (s, html) = page(&app, "/order", &token).await;
        assert_eq!(s, 200);
        assert!(!html.contains(r#"type="radio" name="addressId""#));
        for id in ["receiver-contact", "receiver-mobile", "receiver-address", "submit-order"] {
            assert!(html.contains(&format!(r#"id="{id}""#)), "#{id}: {html}");
        }
        app.stop().await;
    }
}

on_both_backends! {
    async fn my_orders_are_listed_newest_first_with_pay_and_cancel_until_cancelled(app) {
        redirects_to_login(&app, "/orders", "%2Forders").await;

        let (sara, token) = app.shopper("sara").await;
        let (tom, tom_token) = app.shopper("tom").await;
        let sku = app.add_sku(3201, 1_990, 50, SkuStatus::OnSale).await;

        let (s, html) = page(&app, "/orders", &token).await;
        assert_eq!(s, 200);
        assert!(html.contains(r#"id="orders-empty""#), "{html}");

        let mut orders = Vec::new();
        for num in [1, 3] {
            app.fill_cart(&sara, sku, num).await;
            let (s, b) = app.checkout(&token).await;
            assert_eq!(s, 200, "{b}");
            orders.push(b["data"]["orderId"].as_str().unwrap().to_owned());
        }
        let (older, newer) = (&orders[0], &orders[1]);
        app.fill_cart(&tom, sku, 2).await;
        let (s, b) = app.checkout(&tom_token).await;
        assert_eq!(s, 200, "{b}");
        let toms = b["data"]["orderId"].as_str().unwrap().to_owned();

        let (s, html) = page(&app, "/orders", &token).await;
        assert_eq!(s, 200);
        let newer_at = html.find(&format!(r#"data-order="{newer}""#)).expect("the newer order is listed");
        let older_at = html.find(&format!(r#"data-order="{older}""#)).expect("the older order is listed");
        assert!(newer_at < older_at, "newest first");
        assert!(!html.contains(&toms), "another shopper's order never appears");
        let row = element(&html, &format!(r#"data-order="{older}""#), "</tr>");
        assert!(row.contains("待支付"), "{row}");
        assert!(row.contains("¥19.90"), "amount: {row}");
        assert!(row.contains(&format!(r#"href="/pay?orderId={older}""#)), "pay link: {row}");
        assert!(row.contains(&format!(r#"data-cancel="{older}""#)), "cancel button: {row}");
        assert!(element(&html, &format!(r#"data-order="{newer}""#), "</tr>").contains("¥59.70"));

        let (_, html) = page(&app, "/orders", &tom_token).await;
        assert!(html.contains(&format!(r#"data-order="{toms}""#)));
        assert!(!html.contains(older.as_str()) && !html.contains(newer.as_str()), "sara's orders are not tom's");

        // What the cancel button does; the page then shows the order as cancelled.
        let (s, b) = app.post(&format!("/api/order/{older}/cancel"), &token).await;
        assert_eq!(s, 200, "{b}");
        let row_of_older = || async {
            let (_, html) = page(&app, "/orders", &token).await;
            element(&html, &format!(r#"data-order="{older}""#), "</tr>").to_owned()
        };
        wait_until(Duration::from_secs(15), "the order shows as cancelled", || async {
            row_of_older().await.contains("已取消")
        })
        .await;
        let row = row_of_older().await;
        assert!(row.contains(r#"data-state="compensated""#), "{row}");
        assert!(!row.contains("data-cancel="), "no cancel button once cancelled: {row}");
        assert!(!row.contains("/pay?orderId="), "no pay link once cancelled: {row}");
        let (_, html) = page(&app, "/orders", &token).await;
        let row = element(&html, &format!(r#"data-order="{newer}""#), "</tr>");
        assert!(row.contains("待支付") && row.contains("data-cancel="), "the other order is untouched: {row}");
        app.stop().await;
    }
}
