//! Login, tokens and cookies over real HTTP.

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ordersaga::auth::Claims;
use ordersaga::domain::Role;
use reqwest::header;
use serde_json::json;

use crate::support::{Backend, TestApp, envelope};

async fn login(
    app: &TestApp,
    username: &str,
    password: &str,
) -> (u16, serde_json::Value, Option<String>) {
    let resp = app
        .http
        .post(app.url("/api/user/login"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .unwrap();
    let cookie = resp
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = envelope(resp).await;
    (status, body, cookie)
}

on_both_backends! {
    async fn login_returns_a_token_and_an_http_only_cookie(app) {
        app.create_user("carol", "s3cret-pass", &[Role::User]).await;
        let (status, body, cookie) = login(&app, "carol", "s3cret-pass").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["code"], 20000);
        let token = body["data"]["token"].as_str().expect("data.token").to_owned();
        let cookie = cookie.expect("Set-Cookie");
        assert!(cookie.starts_with(&format!("Authorization={token}")), "{cookie}");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");

        let claims = app.state.tokens.verify(&token).unwrap();
        assert_eq!(claims.username.as_str(), "carol");
        // The token works as a bearer header and as the cookie.
        let (s, _) = app.get("/api/address/user/list", &token).await;
        assert_eq!(s, 200);
        let resp = app
            .http
            .get(app.url("/api/address/user/list"))
            .header(header::COOKIE, format!("Authorization={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        app.stop().await;
    }
}

on_both_backends! {
    async fn wrong_password_and_unknown_user_get_the_same_401(app) {
        app.create_user("dave", "right-pass", &[Role::User]).await;
        let (s1, b1, c1) = login(&app, "dave", "wrong-pass").await;
        let (s2, b2, c2) = login(&app, "nobody", "right-pass").await;
        let (s3, b3, _) = login(&app, "bad name!", "x").await;
        for (s, b) in [(s1, &b1), (s2, &b2), (s3, &b3)] {
            assert_eq!(s, 401);
            assert_eq!(b["code"], 20002);
        }
        assert_eq!(b1["message"], b2["message"]);
        assert_eq!(b1["message"], b3["message"]);
        assert!(c1.is_none() && c2.is_none(), "no cookie on failure");
        app.stop().await;
    }
}

fn sign(claims: &Claims, alg: Algorithm, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

on_both_backends! {
    async fn missing_forged_unsigned_and_expired_tokens_get_401(app) {
        let (_, good) = app.shopper("erin").await;
        let now = Utc::now().timestamp();
        let claims = Claims { username: "erin".into(), roles: vec![Role::User, Role::Admin], iat: now, exp: now + 3600 };
        let forged = sign(&claims, Algorithm::HS256, &EncodingKey::from_secret(b"not-the-server-secret-not-the-one").unwrap());
        let expired = app
            .state
            .tokens
            .issue(&"erin".parse_username(), &[Role::User], Utc::now() - chrono::Duration::hours(9))
            .unwrap();
        // alg "none": header {"alg":"none"}, the claims, an empty signature.
        let b64 = |v: &serde_json::Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let unsigned = format!("{}.{}.", b64(&json!({"alg":"none","typ":"JWT"})), b64(&serde_json::to_value(&claims).unwrap()));
        // Tampered: a valid token whose payload was swapped.
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] = b64(&serde_json::to_value(&claims).unwrap());
        let tampered = parts.join(".");

        for (what, token) in [("forged", forged), ("expired", expired), ("none", unsigned), ("tampered", tampered), ("garbage", "abc.def".into())] {
            let (status, body) = app.get("/api/cart/list", &token).await;
            assert_eq!((status, body["code"].as_i64()), (401, Some(20002)), "{what}: {body}");
        }
        let (status, body) = app.call(reqwest::Method::GET, "/api/cart/list", None).await;
        assert_eq!((status, body["code"].as_i64()), (401, Some(20002)));
        let (status, _) = app.get("/api/cart/list", &good).await;
        assert_eq!(status, 200, "the genuine token still works");
        app.stop().await;
    }
}

trait ParseUsername {
    fn parse_username(&self) -> ordersaga::domain::Username;
}
impl ParseUsername for str {
    fn parse_username(&self) -> ordersaga::domain::Username {
        ordersaga::domain::Username::parse(self).unwrap()
    }
}

/// The generated secret lives in the database, so a restarted server (or a second one on
/// the same database) accepts tokens issued before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_survive_a_restart_when_the_secret_is_generated() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_, token) = app.shopper("frank").await;
    let args = crate::support::serve_args(&app.db, None);
    let second = ordersaga::app::build_state(&args, "127.0.0.1:9".parse().unwrap())
        .await
        .unwrap();
    assert!(second.tokens.verify(&token).is_ok());
    app.stop().await;
}

/// With only an RS256 public key the server verifies tokens issued elsewhere, refuses
/// HS256 tokens made with the public key as a secret (algorithm confusion), and cannot
/// log anybody in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rs256_public_key_verifies_foreign_tokens_and_turns_login_off() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let app = TestApp::spawn_with(Backend::Sqlite, |args| {
        args.jwt_public_key = Some(format!("{fixtures}/jwt-test-rsa-public.pem").into());
    })
    .await;
    app.create_user("gina", "pw", &[Role::User]).await;
    let private = std::fs::read(format!("{fixtures}/jwt-test-rsa-private.pem")).unwrap();
    let public = std::fs::read(format!("{fixtures}/jwt-test-rsa-public.pem")).unwrap();
    let now = Utc::now().timestamp();
    let claims = Claims {
        username: "gina".into(),
        roles: vec![Role::User],
        iat: now,
        exp: now + 600,
    };
    let rs = sign(
        &claims,
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(&private).unwrap(),
    );
    let (status, _) = app.get("/api/address/user/list", &rs).await;
    assert_eq!(status, 200);
    let confused = sign(
        &claims,
        Algorithm::HS256,
        &EncodingKey::from_secret(&public).unwrap(),
    );
    let (status, _) = app.get("/api/address/user/list", &confused).await;
    assert_eq!(status, 401);
    let (status, body, _) = login(&app, "gina", "pw").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("only verifies"));
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .unwrap();
}

on_both_backends! {
    async fn the_login_page_returns_the_shopper_to_a_local_page_only(app) {
        app.create_user("hana", "hana-pass", &[Role::User]).await;
        // A page that needs a login sends the browser to /login with where it came from.
        let resp = app.http.get(app.url("/?tab=cart")).send().await.unwrap();
        assert_eq!(resp.status(), 303);
        assert_eq!(resp.headers()[header::LOCATION], "/login?from=%2F%3Ftab%3Dcart");

        let page = app.http.get(app.url("/login?from=%2Forder")).send().await.unwrap().text().await.unwrap();
        // minijinja escapes `/` as `&#x2f;` in attributes; the browser reads it back as `/`.
        let page = page.replace("&#x2f;", "/");
        assert!(page.contains(r#"name="from" value="/order""#), "the form carries `from`: {page}");

        let form = |from: &str| vec![("username", "hana".to_owned()), ("password", "hana-pass".to_owned()), ("from", from.to_owned())];
        let resp = app.http.post(app.url("/login")).form(&form("/order")).send().await.unwrap();
        assert_eq!(resp.status(), 303);
        assert_eq!(resp.headers()[header::LOCATION], "/order");
        let cookie = resp.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
        let token = cookie.split(';').next().unwrap().trim_start_matches("Authorization=").to_owned();

        for evil in ["https://evil.example/", "//evil.example", "/\\evil.example"] {
            let resp = app.http.post(app.url("/login")).form(&form(evil)).send().await.unwrap();
            assert_eq!(resp.headers()[header::LOCATION], "/", "{evil}");
        }

        let bad = vec![("username", "hana"), ("password", "nope"), ("from", "/order")];
        let resp = app.http.post(app.url("/login")).form(&bad).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.text().await.unwrap().contains("wrong username or password"));

        // With the cookie, the page renders.
        let resp = app.http.get(app.url("/")).header(header::COOKIE, format!("Authorization={token}")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.text().await.unwrap().contains("hana"));
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_cookie_cannot_carry_a_cross_site_state_change(app) {
        let (_, token) = app.shopper("ivan").await;
        let sku = app.add_sku(41, 100, 5, ordersaga::domain::SkuStatus::OnSale).await;
        let cookie = format!("Authorization={token}");
        let path = format!("/api/cart/add?id={sku}&num=1");
        let resp = app.http.post(app.url(&path)).header(header::COOKIE, &cookie).header(header::ORIGIN, "https://evil.example").send().await.unwrap();
        let (status, body) = envelope(resp).await;
        assert_eq!((status, body["code"].as_i64()), (403, Some(20003)));
        let resp = app.http.post(app.url(&path)).header(header::COOKIE, &cookie).header("sec-fetch-site", "cross-site").send().await.unwrap();
        assert_eq!(resp.status(), 403);
        let (_, cart) = app.get("/api/cart/list", &token).await;
        assert_eq!(cart["data"]["lines"].as_array().unwrap().len(), 0, "nothing was added");
        // The same request from our own origin goes through.
        let origin = format!("http://{}", app.addr);
        let resp = app.http.post(app.url(&path)).header(header::COOKIE, &cookie).header(header::ORIGIN, origin).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        app.stop().await;
    }
}
