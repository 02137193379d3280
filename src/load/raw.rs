//! `--raw-store`: the MongoDB-compatible store's own rate for the operation carts use — inserting
//! a new cart-sized document (every cart change is a new version, see the cart store) — one per
//! request, at the same concurrency, with the same write concern as the cart service. Run
//! against a scratch database, never the carts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use mongodb::options::{ClientOptions, WriteConcern};

/// Inserts per second of new cart-sized documents by `concurrency` clients, one at a time each.
pub async fn inserts_per_second(
    url: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let mut options = ClientOptions::parse(url).await?;
    let mut durable = WriteConcern::majority();
    durable.journal = Some(true);
    options.write_concern = Some(durable);
    options.max_pool_size = Some(concurrency as u32 + 4);
    let client = mongodb::Client::with_options(options)?;
    let collection = client
        .database("shop_load_raw")
        .collection::<mongodb::bson::Document>("documents");
    collection.drop().await.ok();

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|worker| {
            let (collection, stop, done) = (collection.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let user = uuid::Uuid::new_v4().to_string();
                let mut version = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    version += 1;
                    // The shape of a cart version with one line.
                    let document = doc! {
                        "_id": format!("{user}:{version}"),
                        "user": &user,
                        "version": version,
                        "currency": "EUR",
                        "items": [{
                            "product_id": uuid::Uuid::new_v4().to_string(),
                            "name": format!("raw store thing {worker}"),
                            "unit_price": 250_i64,
                            "quantity": 1,
                        }],
                        "ordered": [],
                        "updated_at": mongodb::bson::DateTime::now(),
                    };
                    let insert = collection.insert_one(document);
                    // A store that stops answering must not stop the measurement.
                    if let Ok(Ok(_)) =
                        tokio::time::timeout(Duration::from_secs(10), insert.into_future()).await
                    {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    collection.drop().await.ok();
    Ok(rate)
}
