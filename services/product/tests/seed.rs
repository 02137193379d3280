//! `shop seed` against the PostgreSQL dev/test started: the demo catalogue, made once.

use shop_config::Settings;

#[tokio::test]
async fn seeding_makes_the_demo_catalogue_once() {
    let settings = Settings::from_env().expect("the settings dev/test exports are valid");
    // Whether or not another run seeded before, a second seed adds nothing.
    shop_product::seed(&settings).await.expect("the first seed");
    let again = shop_product::seed(&settings)
        .await
        .expect("the second seed");
    assert_eq!(again, shop_product::Seeded::default());

    let pool = shop_product::migrate(&settings)
        .await
        .expect("the database");
    let (products, categories, sold_out): (i64, i64, i64) = sqlx::query_as(
        "select count(*), count(distinct p.category_id), count(*) filter (where s.on_hand = 0)
         from products p join stock s on s.product_id = p.id where p.sku like 'SEED-%'",
    )
    .fetch_one(&pool)
    .await
    .expect("a count");
    assert_eq!((products, categories), (300, 10));
    assert!((30..=60).contains(&sold_out), "{sold_out} sold out");
}
