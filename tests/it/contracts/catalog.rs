use ordersaga::domain::{SkuId, SkuStatus};

on_both_backends! {
    async fn skus_are_read_in_id_order_and_missing_ids_are_skipped(app) {
        let b = app.add_sku(20, 150, 3, SkuStatus::OnSale).await;
        let a = app.add_sku(10, 99, 5, SkuStatus::OffShelf).await;
        let missing = SkuId::new(999).unwrap();
        let skus = app.db().skus(&[b, missing, a]).await.unwrap();
        let ids: Vec<SkuId> = skus.iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![a, b]);
        assert_eq!(skus[0].price_fen.fen(), 99);
        assert!(!skus[0].is_on_sale());
        assert!(skus[1].is_on_sale());
        assert_eq!(app.db().sku(missing).await.unwrap(), None);
        assert_eq!(app.db().skus_on_sale(10).await.unwrap().len(), 1);
        app.stop().await;
    }
}

on_both_backends! {
    async fn the_schema_refuses_negative_stock(app) {
        let sku = app.add_sku(30, 100, 1, SkuStatus::OnSale).await;
        let err = ordersaga::on_pool!(app.db(), |pool| {
            sqlx::query("UPDATE tb_sku SET num = num - 2 WHERE id = $1").bind(sku.get()).execute(pool).await.unwrap_err()
        });
        let constraint = ordersaga::store::violated_constraint(&err);
        assert_eq!(constraint.as_deref(), Some("ck_tb_sku_num_non_negative"), "{err}");
        assert_eq!(app.db().sku(sku).await.unwrap().unwrap().num, 1, "stock unchanged");
        app.stop().await;
    }
}
