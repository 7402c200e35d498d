use ordersaga::domain::Role;

on_both_backends! {
    async fn users_are_created_once_and_keep_their_roles(app) {
        let admin = app.create_user("ops", "x", &[Role::User, Role::Admin]).await;
        // Creating again (a repeated demo seed) changes nothing and does not fail.
        app.create_user("ops", "other", &[Role::User]).await;
        let login = app.db().find_login(&admin).await.unwrap().expect("user exists");
        assert!(bcrypt::verify("x", &login.password_hash).unwrap(), "the first password stays");
        assert_eq!(login.roles, vec![Role::User, Role::Admin]);
        assert!(login.is_active);
        let nobody = ordersaga::domain::Username::parse("nobody").unwrap();
        assert!(app.db().find_login(&nobody).await.unwrap().is_none());
        assert_eq!(app.db().points(&admin).await.unwrap(), Some(0));
        app.stop().await;
    }
}

on_both_backends! {
    async fn addresses_list_the_default_first_and_only_the_owners(app) {
        let (alice, _) = app.shopper("alice").await;
        let (bob, _) = app.shopper("bob").await;
        let a1 = app.add_address(&alice, "A-first", false).await;
        let a2 = app.add_address(&alice, "A-default", true).await;
        let a3 = app.add_address(&alice, "A-third", false).await;
        app.add_address(&bob, "B-default", true).await;
        let listed: Vec<i64> = app.db().addresses(&alice).await.unwrap().iter().map(|a| a.id).collect();
        assert_eq!(listed, vec![a2, a1, a3]);
        // A new default takes the mark from the old one: never two defaults.
        let a4 = app.add_address(&alice, "A-new-default", true).await;
        let list = app.db().addresses(&alice).await.unwrap();
        assert_eq!(list[0].id, a4);
        assert_eq!(list.iter().filter(|a| a.is_default.as_deref() == Some("1")).count(), 1);
        assert!(list.iter().all(|a| a.username == "alice"));
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_generated_secret_is_created_once_even_when_asked_concurrently(app) {
        let db = app.db().clone();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move { db.secret_or_insert("contract_secret", move || format!("candidate-{i}")).await })
            })
            .collect();
        let mut values = Vec::new();
        for t in tasks {
            values.push(t.await.unwrap().unwrap());
        }
        values.dedup();
        assert_eq!(values.len(), 1, "all callers must agree: {values:?}");
        let stored = db.secret("contract_secret").await.unwrap();
        assert_eq!(stored.as_deref(), Some(values[0].as_str()));
        app.stop().await;
    }
}
