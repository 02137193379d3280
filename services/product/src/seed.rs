//! `shop seed`: a demo catalogue of 10 categories and 300 products with stock, for `dev/up` and
//! load tests. Idempotent: categories are matched by name and products by SKU; what exists
//! already (and its stock) is left as it is.

use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ProductError;

const CATEGORIES: &[(&str, &str, &[&str])] = &[
    (
        "Books",
        "Paper and stories",
        &[
            "novel",
            "cookbook",
            "atlas",
            "poetry collection",
            "biography",
            "field guide",
        ],
    ),
    (
        "Electronics",
        "Things with batteries",
        &[
            "headphones",
            "charger",
            "speaker",
            "keyboard",
            "webcam",
            "power bank",
        ],
    ),
    (
        "Kitchen",
        "Cook, bake, serve",
        &[
            "mug",
            "skillet",
            "knife",
            "teapot",
            "cutting board",
            "whisk",
        ],
    ),
    (
        "Garden",
        "Grow things outside",
        &[
            "trowel",
            "watering can",
            "planter",
            "hose",
            "seed kit",
            "pruner",
        ],
    ),
    (
        "Toys",
        "For play",
        &[
            "puzzle",
            "kite",
            "robot kit",
            "board game",
            "plush bear",
            "yo-yo",
        ],
    ),
    (
        "Sports",
        "Move more",
        &[
            "yoga mat",
            "football",
            "water bottle",
            "jump rope",
            "tennis racket",
            "helmet",
        ],
    ),
    (
        "Music",
        "Make and hear sound",
        &[
            "ukulele",
            "harmonica",
            "vinyl record",
            "guitar strings",
            "metronome",
            "drumsticks",
        ],
    ),
    (
        "Clothing",
        "Wear it",
        &[
            "scarf",
            "beanie",
            "raincoat",
            "wool socks",
            "t-shirt",
            "gloves",
        ],
    ),
    (
        "Beauty",
        "Care and scent",
        &[
            "soap bar",
            "face cream",
            "hair brush",
            "lip balm",
            "shampoo",
            "candle",
        ],
    ),
    (
        "Office",
        "Desk and paper",
        &[
            "notebook",
            "fountain pen",
            "desk lamp",
            "stapler",
            "planner",
            "pencil set",
        ],
    ),
];

const ADJECTIVES: &[&str] = &["Classic", "Compact", "Deluxe", "Eco", "Handmade"];

/// What `seed` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    pub categories: u64,
    pub products: u64,
}

/// A small, fixed pseudo-random number per index, so every run makes the same catalogue.
fn mix(index: u64) -> u64 {
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 32)
}

pub async fn seed(pool: &PgPool) -> Result<Seeded, ProductError> {
    let mut transaction = pool.begin().await?;
    let mut seeded = Seeded::default();
    for (category_index, (category, description, nouns)) in CATEGORIES.iter().enumerate() {
        seeded.categories += sqlx::query(
            "insert into categories (id, name, description) values ($1, $2, $3)
             on conflict ((lower(name))) do nothing",
        )
        .bind(Uuid::now_v7())
        .bind(category)
        .bind(description)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        let category_id: Uuid =
            sqlx::query_scalar("select id from categories where lower(name) = lower($1)")
                .bind(category)
                .fetch_one(&mut *transaction)
                .await?;

        let mut ids = Vec::new();
        let mut skus = Vec::new();
        let mut names = Vec::new();
        let mut descriptions = Vec::new();
        let mut prices = Vec::new();
        let mut stock = Vec::new();
        for (noun_index, noun) in nouns.iter().enumerate() {
            for (adjective_index, adjective) in ADJECTIVES.iter().enumerate() {
                let index = (category_index * 100 + noun_index * 10 + adjective_index) as u64;
                let random = mix(index);
                ids.push(Uuid::now_v7());
                skus.push(format!(
                    "SEED-{}-{:03}",
                    category.to_uppercase(),
                    noun_index * 10 + adjective_index
                ));
                names.push(format!("{adjective} {noun}"));
                descriptions.push(format!(
                    "A {} {noun} from our {} range. {}",
                    adjective.to_lowercase(),
                    category.to_lowercase(),
                    [
                        "Built to last.",
                        "A customer favourite.",
                        "Light and practical.",
                        "Makes a fine gift."
                    ][(random % 4) as usize]
                ));
                // 1.99 to 250.99, ending in .99
                prices.push(((random >> 8) % 249 + 1) as i64 * 100 + 99);
                // Every seventh product is sold out.
                stock.push(if index.is_multiple_of(7) {
                    0
                } else {
                    ((random >> 16) % 200 + 1) as i32
                });
            }
        }
        let inserted: Vec<Uuid> = sqlx::query_scalar(
            "insert into products (id, sku, name, description, price_minor, currency, category_id)
             select id, sku, name, description, price, 'EUR', $6
             from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[])
                  as p (id, sku, name, description, price)
             on conflict (sku) do nothing
             returning id",
        )
        .bind(&ids)
        .bind(&skus)
        .bind(&names)
        .bind(&descriptions)
        .bind(&prices)
        .bind(category_id)
        .fetch_all(&mut *transaction)
        .await?;
        seeded.products += inserted.len() as u64;
        sqlx::query(
            "insert into stock (product_id, on_hand)
             select id, on_hand from unnest($1::uuid[], $2::int[]) as s (id, on_hand)
             where id = any($3)",
        )
        .bind(&ids)
        .bind(&stock)
        .bind(&inserted)
        .execute(&mut *transaction)
        .await?;
    }
    transaction.commit().await?;
    Ok(seeded)
}
