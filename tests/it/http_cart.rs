//! The cart over HTTP: prices always from tb_sku, bad input changes nothing.

use ordersaga::domain::SkuStatus;

on_both_backends! {
    async fn the_cart_lists_current_prices_from_the_catalogue(app) {
        let (_, token) = app.shopper("lena").await;
        let phone = app.add_sku(1001, 199_900, 10, SkuStatus::OnSale).await;
        let cable = app.add_sku(1002, 2_990, 100, SkuStatus::OnSale).await;
        let (s, b) = app.post(&format!("/api/cart/add?id={phone}&num=2"), &token).await;
        assert_eq!((s, b["data"]["num"].as_i64()), (200, Some(2)), "{b}");
        // GET works too, as in the seed.
        let (s, _) = app.get(&format!("/api/cart/add?id={cable}&num=3"), &token).await;
        assert_eq!(s, 200);

        // The price changes after the line was added: the cart shows the new one.
        ordersaga::on_pool!(app.db(), |pool| {
            sqlx::query("UPDATE tb_sku SET price = 189900 WHERE id = $1").bind(phone.get()).execute(pool).await.unwrap();
        });
        let (_, b) = app.get("/api/cart/list", &token).await;
        let lines = b["data"]["lines"].as_array().unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["skuId"], phone.get());
        assert_eq!(lines[0]["price"], 189_900);
        assert_eq!(lines[0]["money"], 2 * 189_900);
        assert_eq!(lines[1]["money"], 3 * 2_990);
        assert_eq!(b["data"]["totalNum"], 5);
        assert_eq!(b["data"]["totalMoney"], 2 * 189_900 + 3 * 2_990);

        let (_, b) = app.get(&format!("/api/cart/add?id={cable}&num=-3"), &token).await;
        assert_eq!(b["data"]["num"], 0, "the line is gone at 0");
        let (s, b) = app.post(&format!("/api/cart/remove?id={phone}"), &token).await;
        assert_eq!(s, 200);
        assert_eq!(b["data"]["lines"].as_array().unwrap().len(), 0);
        app.stop().await;
    }
}

on_both_backends! {
    async fn bad_cart_requests_are_refused_and_change_nothing(app) {
        let (_, token) = app.shopper("mia").await;
        let (_, other) = app.shopper("noah").await;
        let sku = app.add_sku(2001, 500, 10, SkuStatus::OnSale).await;
        let off = app.add_sku(2002, 500, 10, SkuStatus::OffShelf).await;
        app.post(&format!("/api/cart/add?id={sku}&num=5"), &token).await;

        for (path, status) in [
            ("/api/cart/add?id=999999&num=1".to_owned(), 404),
            (format!("/api/cart/add?id={off}&num=1"), 404),
            (format!("/api/cart/add?id={sku}&num=1000"), 400),
            (format!("/api/cart/add?id={sku}&num=995"), 400),
            (format!("/api/cart/add?id={sku}&num=0"), 400),
            (format!("/api/cart/add?id={sku}&num=abc"), 400),
            (format!("/api/cart/add?id={sku}&num=99999999999999999999"), 400),
            ("/api/cart/add?num=1".to_owned(), 400),
            ("/api/cart/add?id=-4&num=1".to_owned(), 400),
            ("/api/cart/remove?id=x".to_owned(), 400),
        ] {
            let (s, b) = app.post(&path, &token).await;
            assert_eq!(s, status, "{path}: {b}");
            assert!(!b["message"].as_str().unwrap().is_empty());
        }
        let (_, b) = app.get("/api/cart/list", &token).await;
        let lines = b["data"]["lines"].as_array().unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["num"], 5, "refused requests changed nothing");
        let (_, b) = app.get("/api/cart/list", &other).await;
        assert!(b["data"]["lines"].as_array().unwrap().is_empty(), "another shopper's cart is untouched");
        app.stop().await;
    }
}

on_both_backends! {
    async fn the_address_list_shows_only_the_callers_addresses(app) {
        let (olga, olga_token) = app.shopper("olga").await;
        let (pete, pete_token) = app.shopper("pete").await;
        app.add_address(&olga, "Olga home", false).await;
        let default = app.add_address(&olga, "Olga office", true).await;
        app.add_address(&pete, "Pete home", true).await;
        let (s, b) = app.get("/api/address/user/list", &olga_token).await;
        assert_eq!(s, 200);
        let list = b["data"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["id"], default);
        assert_eq!(list[0]["isDefault"], "1");
        assert!(list.iter().all(|a| a["username"] == "olga"));
        let (_, b) = app.get("/api/address/user/list", &pete_token).await;
        assert_eq!(b["data"].as_array().unwrap().len(), 1);
        assert_eq!(b["data"][0]["contact"], "Pete home");
        let _ = pete;
        app.stop().await;
    }
}
