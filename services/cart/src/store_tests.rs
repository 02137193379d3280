//! The store against the real FerretDB dev/test runs: finding the newest version however far the
//! head lags, and never losing a write to a tidy, which is what a cart moved between replicas
//! (or restarted) relies on.

use std::time::Duration;

use shop_config::Settings;

use super::*;

async fn store() -> CartStore {
    let settings = Settings::from_env().expect("the settings dev/test exports are valid");
    CartStore::connect(settings.cart.mongodb_url.as_str())
        .await
        .expect("the cart store")
}

/// Versions 1 to `count` of a new user's cart, one item more in each; no head yet.
async fn versions(store: &CartStore, count: i64) -> Uuid {
    let user = Uuid::new_v4();
    let mut cart = Cart::empty(user);
    for version in 1..=count {
        cart.version = version;
        cart.items = vec![Item {
            product_id: Uuid::new_v4().to_string(),
            name: format!("thing {version}"),
            unit_price: 100,
            quantity: 1,
        }];
        store
            .write(&cart, version - 1, false)
            .await
            .expect("a write");
    }
    user
}

async fn loaded_version(store: &CartStore, user: Uuid) -> i64 {
    store
        .load(user)
        .await
        .expect("the load")
        .expect("a cart")
        .version
}

#[tokio::test]
async fn a_cart_whose_head_lags_far_behind_loads_its_newest_version() {
    let store = store().await;
    // A process that was killed never moved the head.
    let user = versions(&store, 300).await;
    assert_eq!(loaded_version(&store, user).await, 300);
    store.tidy(user, 100, 1).await;
    assert_eq!(loaded_version(&store, user).await, 300);
    assert!(
        store
            .version(&user.to_string(), 99)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.load(Uuid::new_v4()).await.unwrap().map(|c| c.version),
        None
    );
}

#[tokio::test]
async fn a_write_into_a_gap_a_tidy_left_is_a_conflict_and_taken_back() {
    let store = store().await;
    let user = versions(&store, 5).await;
    // Another replica's actor had the cart at version 5, and tidied 1 to 4 away.
    store.tidy(user, 5, 1).await;
    // A writer still at version 1 writes 2: the `_id` is free again.
    let mut stale = Cart::empty(user);
    stale.version = 2;
    let written = store.write(&stale, 1, true).await;
    assert!(matches!(written, Err(StoreError::Conflict)), "{written:?}");
    assert!(
        store.version(&user.to_string(), 2).await.unwrap().is_none(),
        "the write behind the head was taken back"
    );
    assert_eq!(loaded_version(&store, user).await, 5);
    // A writer that is up to date is not refused.
    let mut current = Cart::empty(user);
    current.version = 6;
    store
        .write(&current, 5, true)
        .await
        .expect("the next version");
    assert_eq!(loaded_version(&store, user).await, 6);
}

#[tokio::test]
async fn a_load_while_another_actor_tidies_finds_the_newest_version() {
    let store = store().await;
    let user = versions(&store, 120).await;
    let tidy = {
        let store = store.clone();
        tokio::spawn(async move { store.tidy(user, 120, 1).await })
    };
    let mut loads = Vec::new();
    for _ in 0..12 {
        let store = store.clone();
        loads.push(tokio::spawn(async move { store.load(user).await }));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for load in loads {
        let loaded = load
            .await
            .unwrap()
            .expect("the load")
            .map(|cart| cart.version);
        assert_eq!(loaded, Some(120), "a load during the tidy");
    }
    tidy.await.unwrap();
    assert_eq!(loaded_version(&store, user).await, 120);
}

#[tokio::test]
async fn a_version_another_replica_wrote_is_found_by_a_read() {
    let store = store().await;
    let user = versions(&store, 3).await;
    assert!(store.newer_than(user, 3, true).await.unwrap().is_none());
    let mut elsewhere = Cart::empty(user);
    elsewhere.version = 4;
    store.write(&elsewhere, 3, true).await.unwrap();
    let newer = store.newer_than(user, 3, false).await.unwrap();
    assert_eq!(newer.map(|cart| cart.version), Some(4));
}

/// One `insert_many` carrying three carts' next versions, one of which another process stored
/// first: that cart alone hears "conflict" (its actor reloads and re-applies); the other two
/// are stored and answered.
#[tokio::test]
async fn a_batch_with_one_conflicting_cart_stores_and_answers_the_others() {
    let store = store().await;
    let (first, conflicting, third) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut elsewhere = Cart::empty(conflicting);
    elsewhere.version = 1;
    store
        .write(&elsewhere, 0, false)
        .await
        .expect("stored first");

    let mut answers = Vec::new();
    let batch = [first, conflicting, third]
        .into_iter()
        .map(|user| {
            let (done, answer) = oneshot::channel();
            answers.push(answer);
            let mut version = Version::from_cart(&Cart::empty(user), 1);
            version.items = vec![Item {
                product_id: Uuid::new_v4().to_string(),
                name: "batched".into(),
                unit_price: 100,
                quantity: 2,
            }];
            Insert { version, done }
        })
        .collect();
    insert_batch(&store.versions, batch).await;
    let mut outcomes = Vec::new();
    for answer in answers {
        outcomes.push(answer.await.expect("every insert is answered"));
    }
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    assert!(
        matches!(outcomes[1], Err(StoreError::Conflict)),
        "{:?}",
        outcomes[1]
    );
    assert!(outcomes[2].is_ok(), "{:?}", outcomes[2]);
    for user in [first, third] {
        let stored = store.load(user).await.unwrap().expect("stored");
        assert_eq!((stored.version, stored.items.len()), (1, 1));
    }
    let kept = store.load(conflicting).await.unwrap().expect("stored");
    assert!(kept.items.is_empty(), "the other process's version stays");
}

/// Many carts writing at once through the gatherer: every write is stored, in fewer inserts.
#[tokio::test]
async fn many_carts_writing_at_once_are_all_stored() {
    let store = store().await;
    let users: Vec<Uuid> = (0..200).map(|_| Uuid::new_v4()).collect();
    let writes = users.iter().map(|user| {
        let store = store.clone();
        let mut cart = Cart::empty(*user);
        cart.version = 1;
        async move { store.write(&cart, 0, false).await }
    });
    for written in futures::future::join_all(writes).await {
        written.expect("stored");
    }
    for user in users {
        assert_eq!(loaded_version(&store, user).await, 1);
    }
}

#[tokio::test]
async fn a_ready_store_has_the_indexes_its_queries_off_the_write_path_need() {
    let store = store().await;
    store.ping().await.expect("the store is ready");
    // Again, as every replica and every later check does: making them again is harmless.
    store.ping().await.expect("the store is still ready");
    let names = store
        .versions
        .list_index_names()
        .await
        .expect("the index names");
    for index in ["items_product_id", "user_newest"] {
        assert!(
            names.iter().any(|name| name == index),
            "{index} among {names:?}"
        );
    }
    // And they serve: the carts holding a product are found through it.
    let user = versions(&store, 1).await;
    let product = store
        .load(user)
        .await
        .expect("a load")
        .expect("the cart")
        .items[0]
        .product_id
        .parse()
        .expect("a product id");
    assert_eq!(
        store.users_holding(product).await.expect("the holders"),
        vec![user]
    );
}
