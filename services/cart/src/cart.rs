//! A cart and the changes made to it: pure, no I/O. The actor applies changes with these rules,
//! in memory, before it writes the whole document.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::CartError;

pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: i32 = 99;

/// A cart: written whole, guarded by `version` (see `store.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cart {
    /// The user's id.
    pub user_id: String,
    /// 0 for a cart never stored; every write adds one.
    pub version: i64,
    /// Every line is in this currency (the first line's).
    pub currency: Option<String>,
    pub items: Vec<Item>,
    /// The latest orders taken out of this cart, newest last: an order's event delivered
    /// again takes nothing twice.
    pub ordered: Vec<String>,
    pub updated_at: bson::DateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub product_id: String,
    /// The product's name and price when it was last added.
    pub name: String,
    pub unit_price: i64,
    pub quantity: i32,
}

/// What the product service says about a product, when the handler asked.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductInfo {
    pub id: Uuid,
    pub name: String,
    pub unit_price: i64,
    pub currency: String,
    pub available: i32,
    pub archived: bool,
}

/// A change to a cart.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Make sure the cart exists (POST /carts).
    Create,
    /// Add `quantity` of a product, to its line if there is one.
    Add {
        product: ProductInfo,
        quantity: i32,
    },
    /// Set a line's quantity; 0 removes it. `product` is needed when there is no line yet.
    Set {
        product_id: Uuid,
        product: Option<ProductInfo>,
        quantity: i32,
    },
    Remove {
        product_id: Uuid,
    },
    Empty,
    /// These lines were ordered (`OrderPlaced`): take them out, as far as they are still in.
    Ordered {
        order_id: Uuid,
        lines: Vec<(Uuid, i32)>,
    },
    /// These products cost this now (`ProductPriceChanged`, or a checkout that found the cart's
    /// price old): their lines, where the cart has them, take the new price.
    Reprice(Vec<(Uuid, i64)>),
}

impl Change {
    /// The change's name, for its span.
    pub fn name(&self) -> &'static str {
        match self {
            Change::Create => "Create",
            Change::Add { .. } => "Add",
            Change::Set { .. } => "Set",
            Change::Remove { .. } => "Remove",
            Change::Empty => "Empty",
            Change::Ordered { .. } => "Ordered",
            Change::Reprice(_) => "Reprice",
        }
    }
}

/// A cart in one allocation, for a hibernated cart's record: a `Cart` spreads over a dozen
/// (every line's strings, every remembered order id).
#[derive(Debug, Clone)]
pub struct PackedCart(Box<[u8]>);

/// What is packed: the cart without its user, whose id the record is kept under.
#[derive(Serialize, Deserialize)]
struct Packing {
    version: i64,
    currency: Option<String>,
    items: Vec<Item>,
    ordered: Vec<String>,
    updated_at: bson::DateTime,
}

/// Orders remembered per cart, for taking each out once.
const REMEMBERED_ORDERS: usize = 20;

impl Cart {
    pub fn empty(user_id: Uuid) -> Self {
        Self {
            user_id: user_id.to_string(),
            version: 0,
            currency: None,
            items: Vec::new(),
            ordered: Vec::new(),
            updated_at: bson::DateTime::now(),
        }
    }

    /// The cart in one allocation (see [`PackedCart`]).
    pub fn pack(&self) -> Result<PackedCart, bson::ser::Error> {
        let packing = Packing {
            version: self.version,
            currency: self.currency.clone(),
            items: self.items.clone(),
            ordered: self.ordered.clone(),
            updated_at: self.updated_at,
        };
        Ok(PackedCart(bson::to_vec(&packing)?.into_boxed_slice()))
    }

    /// The user's cart as packed.
    pub fn unpack(user_id: Uuid, packed: &PackedCart) -> Result<Self, bson::de::Error> {
        let packing: Packing = bson::from_slice(&packed.0)?;
        Ok(Self {
            user_id: user_id.to_string(),
            version: packing.version,
            currency: packing.currency,
            items: packing.items,
            ordered: packing.ordered,
            updated_at: packing.updated_at,
        })
    }

    pub fn exists(&self) -> bool {
        self.version > 0
    }

    fn line(&mut self, product_id: Uuid) -> Option<&mut Item> {
        let id = product_id.to_string();
        self.items.iter_mut().find(|item| item.product_id == id)
    }

    /// Applies `change`, or leaves the cart as it was and says why not.
    pub fn apply(&mut self, change: &Change) -> Result<(), CartError> {
        match change {
            Change::Create => Ok(()),
            Change::Add { product, quantity } => {
                valid_quantity(*quantity)?;
                let current = self.line(product.id).map_or(0, |line| line.quantity);
                let wanted = current + quantity;
                if wanted > MAX_QUANTITY {
                    return Err(CartError::Invalid(format!(
                        "at most {MAX_QUANTITY} of one product per cart ({current} already in it)"
                    )));
                }
                self.put(product, wanted)
            }
            Change::Set {
                product_id,
                product,
                quantity,
            } => {
                if *quantity == 0 {
                    self.remove(*product_id);
                    return Ok(());
                }
                valid_quantity(*quantity)?;
                match product {
                    Some(product) => self.put(product, *quantity),
                    None => Err(CartError::Invalid("the product is needed".into())),
                }
            }
            Change::Remove { product_id } => {
                if self.line(*product_id).is_none() {
                    return Err(CartError::LineNotFound);
                }
                self.remove(*product_id);
                Ok(())
            }
            Change::Empty => {
                self.items.clear();
                self.currency = None;
                Ok(())
            }
            Change::Ordered { order_id, lines } => {
                let order_id = order_id.to_string();
                if !self.exists() || self.ordered.contains(&order_id) {
                    return Ok(());
                }
                for (product_id, quantity) in lines {
                    let id = product_id.to_string();
                    for item in self.items.iter_mut().filter(|item| item.product_id == id) {
                        item.quantity -= quantity;
                    }
                }
                self.items.retain(|item| item.quantity > 0);
                if self.items.is_empty() {
                    self.currency = None;
                }
                self.ordered.push(order_id);
                let excess = self.ordered.len().saturating_sub(REMEMBERED_ORDERS);
                self.ordered.drain(..excess);
                Ok(())
            }
            Change::Reprice(prices) => {
                for (product_id, unit_price) in prices {
                    if *unit_price < 0 {
                        return Err(CartError::Invalid("a price is not negative".into()));
                    }
                    if let Some(line) = self.line(*product_id) {
                        line.unit_price = *unit_price;
                    }
                }
                Ok(())
            }
        }
    }

    /// Sets the line of `product` to `quantity`, with the product's current name and price.
    fn put(&mut self, product: &ProductInfo, quantity: i32) -> Result<(), CartError> {
        if product.archived {
            return Err(CartError::Invalid(format!(
                "product {} is no longer sold",
                product.id
            )));
        }
        if quantity > product.available {
            return Err(CartError::NotEnoughStock {
                product_id: product.id,
                available: product.available,
            });
        }
        if let Some(currency) = &self.currency
            && *currency != product.currency
            && !self.items.is_empty()
        {
            return Err(CartError::Invalid(format!(
                "this cart is in {currency}; product {} is priced in {}",
                product.id, product.currency
            )));
        }
        match self.line(product.id) {
            Some(line) => {
                line.quantity = quantity;
                line.name.clone_from(&product.name);
                line.unit_price = product.unit_price;
            }
            None => {
                if self.items.len() >= MAX_LINES {
                    return Err(CartError::Invalid(format!(
                        "a cart has at most {MAX_LINES} different products"
                    )));
                }
                self.items.push(Item {
                    product_id: product.id.to_string(),
                    name: product.name.clone(),
                    unit_price: product.unit_price,
                    quantity,
                });
            }
        }
        self.currency = Some(product.currency.clone());
        Ok(())
    }

    fn remove(&mut self, product_id: Uuid) {
        let id = product_id.to_string();
        self.items.retain(|item| item.product_id != id);
        if self.items.is_empty() {
            self.currency = None;
        }
    }

    pub fn total(&self) -> i64 {
        self.items
            .iter()
            .map(|item| item.unit_price * i64::from(item.quantity))
            .sum()
    }
}

fn valid_quantity(quantity: i32) -> Result<(), CartError> {
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(CartError::Invalid(format!(
            "quantity must be 1 to {MAX_QUANTITY}, not {quantity}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: u128, available: i32) -> ProductInfo {
        ProductInfo {
            id: Uuid::from_u128(id),
            name: format!("product {id}"),
            unit_price: 250,
            currency: "EUR".into(),
            available,
            archived: false,
        }
    }

    fn add(id: u128, quantity: i32) -> Change {
        Change::Add {
            product: product(id, 1000),
            quantity,
        }
    }

    fn cart() -> Cart {
        Cart::empty(Uuid::nil())
    }

    #[test]
    fn a_packed_cart_unpacks_to_the_same_cart() {
        let mut packed_one = cart();
        packed_one.apply(&add(1, 3)).expect("added");
        packed_one.apply(&add(2, 1)).expect("added");
        packed_one.version = 7;
        packed_one.ordered = vec![Uuid::from_u128(9).to_string()];
        let user = Uuid::parse_str(&packed_one.user_id).expect("a user id");
        let packed = packed_one.pack().expect("packs");
        assert_eq!(Cart::unpack(user, &packed).expect("unpacks"), packed_one);
    }

    #[test]
    fn adding_twice_adds_to_the_line_and_totals_follow() {
        let mut cart = cart();
        cart.apply(&add(1, 2)).unwrap();
        cart.apply(&add(1, 3)).unwrap();
        cart.apply(&add(2, 1)).unwrap();
        assert_eq!(cart.items.len(), 2);
        assert_eq!(cart.items[0].quantity, 5);
        assert_eq!(cart.total(), 6 * 250);
        assert_eq!(cart.currency.as_deref(), Some("EUR"));
    }

    #[test]
    fn quantities_are_1_to_99_per_line() {
        let mut cart = cart();
        assert!(cart.apply(&add(1, 0)).is_err());
        assert!(cart.apply(&add(1, 100)).is_err());
        cart.apply(&add(1, 99)).unwrap();
        assert!(cart.apply(&add(1, 1)).is_err());
        assert_eq!(cart.items[0].quantity, 99);
    }

    #[test]
    fn a_cart_has_at_most_50_lines() {
        let mut cart = cart();
        for id in 0..50 {
            cart.apply(&add(id, 1)).unwrap();
        }
        assert!(matches!(
            cart.apply(&add(50, 1)),
            Err(CartError::Invalid(_))
        ));
        // More of a line already there is fine.
        cart.apply(&add(3, 1)).unwrap();
    }

    #[test]
    fn never_more_than_is_available_and_never_an_archived_product() {
        let mut cart = cart();
        let scarce = product(1, 2);
        cart.apply(&Change::Add {
            product: scarce.clone(),
            quantity: 2,
        })
        .unwrap();
        assert_eq!(
            cart.apply(&Change::Add {
                product: scarce,
                quantity: 1
            }),
            Err(CartError::NotEnoughStock {
                product_id: Uuid::from_u128(1),
                available: 2
            })
        );
        let gone = ProductInfo {
            archived: true,
            ..product(2, 10)
        };
        assert!(
            cart.apply(&Change::Add {
                product: gone,
                quantity: 1
            })
            .is_err()
        );
    }

    #[test]
    fn one_currency_per_cart() {
        let mut cart = cart();
        cart.apply(&add(1, 1)).unwrap();
        let dollars = ProductInfo {
            currency: "USD".into(),
            ..product(2, 10)
        };
        assert!(
            cart.apply(&Change::Add {
                product: dollars.clone(),
                quantity: 1
            })
            .is_err()
        );
        cart.apply(&Change::Empty).unwrap();
        cart.apply(&Change::Add {
            product: dollars,
            quantity: 1,
        })
        .unwrap();
    }

    #[test]
    fn setting_zero_removes_and_removing_a_missing_line_is_an_error() {
        let mut cart = cart();
        cart.apply(&add(1, 4)).unwrap();
        let set = |quantity| Change::Set {
            product_id: Uuid::from_u128(1),
            product: Some(product(1, 1000)),
            quantity,
        };
        cart.apply(&set(7)).unwrap();
        assert_eq!(cart.items[0].quantity, 7);
        cart.apply(&set(0)).unwrap();
        assert!(cart.items.is_empty());
        assert_eq!(
            cart.apply(&Change::Remove {
                product_id: Uuid::from_u128(1)
            }),
            Err(CartError::LineNotFound)
        );
    }

    #[test]
    fn a_refused_change_leaves_the_cart_as_it_was() {
        let mut cart = cart();
        cart.apply(&add(1, 50)).unwrap();
        let before = cart.clone();
        assert!(cart.apply(&add(1, 60)).is_err());
        assert_eq!(cart, before);
    }
}
