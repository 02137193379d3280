//! `--raw-store`: the MongoDB-compatible store's own single-document update rate, at the same
//! concurrency, with the same write concern as the cart service — the baseline cart figures are
//! ratios to. Run against a scratch database, never the carts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use mongodb::options::{ClientOptions, WriteConcern};

/// Updates per second of `documents` documents (1: all clients on one) by `concurrency` clients.
pub async fn updates_per_second(
    url: &str,
    concurrency: usize,
    documents: usize,
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
    // The documents first: concurrent upserts of one new document race in some stores.
    let documents = documents.max(1);
    let seed: Vec<mongodb::bson::Document> = (0..documents as i64)
        .map(|id| doc! { "_id": id, "n": 0 })
        .collect();
    for chunk in seed.chunks(1000) {
        collection.insert_many(chunk.to_vec()).await?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|worker| {
            let (collection, stop, done) = (collection.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut n = worker as u64;
                while !stop.load(Ordering::Relaxed) {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let id = (n >> 33) % documents as u64;
                    let update = collection
                        .update_one(doc! { "_id": id as i64 }, doc! { "$inc": { "n": 1 } });
                    // A store that stops answering must not stop the measurement.
                    if let Ok(Ok(_)) =
                        tokio::time::timeout(Duration::from_secs(10), update.into_future()).await
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
