//! Every answer, errors included, is the seed's envelope with a real status.

use reqwest::{Method, header};

use crate::support::envelope;

on_both_backends! {
    async fn errors_come_in_the_envelope_with_a_real_status(app) {
        let (_, token) = app.shopper("kim").await;
        let (s, b) = app.get("/no/such/route", &token).await;
        assert_eq!((s, b["code"].as_i64()), (404, Some(20001)));
        let (s, _) = app.call(Method::DELETE, "/api/cart/list", Some(&token)).await;
        assert_eq!(s, 405);

        let resp = app.http.post(app.url("/api/user/login")).header(header::CONTENT_TYPE, "application/json").body("{\"username\":").send().await.unwrap();
        let (s, b) = envelope(resp).await;
        assert_eq!(s, 400);
        assert!(b["message"].as_str().unwrap().starts_with("body:"), "{b}");

        let resp = app.http.post(app.url("/api/user/login")).body("username=x").send().await.unwrap();
        assert_eq!(envelope(resp).await.0, 400, "no JSON content type");

        let big = format!("{{\"username\":\"{}\",\"password\":\"x\"}}", "a".repeat(20 * 1024));
        let resp = app.http.post(app.url("/api/user/login")).header(header::CONTENT_TYPE, "application/json").body(big).send().await.unwrap();
        assert_eq!(envelope(resp).await.0, 413);

        // Every response carries a request id, to find it in the logs.
        let resp = app.http.get(app.url("/healthz")).send().await.unwrap();
        assert!(resp.headers().contains_key("x-request-id"));
        app.stop().await;
    }
}

on_both_backends! {
    async fn readiness_follows_the_database(app) {
        let (s, b) = app.call(Method::GET, "/readyz", None).await;
        assert_eq!(s, 200, "{b}");
        let expected_cart = if app.state.redis.is_some() { "redis" } else { "sql" };
        assert_eq!(b["data"]["cart"], expected_cart);
        // Break the real database connection: the process stays up, readiness goes.
        app.db().close().await;
        let (s, b) = app.call(Method::GET, "/readyz", None).await;
        assert_eq!((s, b["code"].as_i64()), (503, Some(20001)), "{b}");
        let (s, _) = app.call(Method::GET, "/healthz", None).await;
        assert_eq!(s, 200);
        app.stop().await;
    }
}
