//! The catalogue's rules: what a valid category, product and price are, and how listings are
//! filtered and sorted. No I/O here.

use iso_currency::Currency;
use uuid::Uuid;

use crate::error::ProductError;

const MAX_NAME: usize = 200;
const MAX_DESCRIPTION: usize = 5000;
const MAX_SKU: usize = 64;
/// 10 billion in minor units: far above any real price, far below overflow.
pub const MAX_PRICE_MINOR: i64 = 10_000_000_000;
pub const MAX_PER_PAGE: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryInput {
    pub name: String,
    pub description: String,
    pub parent_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInput {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price_minor: i64,
    pub currency: String,
    pub category_id: Uuid,
}

impl CategoryInput {
    pub fn validated(self) -> Result<Self, ProductError> {
        Ok(Self {
            name: valid_name(&self.name)?,
            description: valid_description(&self.description)?,
            parent_id: self.parent_id,
        })
    }
}

impl ProductInput {
    pub fn validated(self) -> Result<Self, ProductError> {
        Ok(Self {
            sku: valid_sku(&self.sku)?,
            name: valid_name(&self.name)?,
            description: valid_description(&self.description)?,
            price_minor: valid_price(self.price_minor)?,
            currency: valid_currency(&self.currency)?,
            category_id: self.category_id,
        })
    }
}

fn invalid(message: impl Into<String>) -> ProductError {
    ProductError::Invalid(message.into())
}

fn valid_name(name: &str) -> Result<String, ProductError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "name must be 1 to {MAX_NAME} printable characters"
        )));
    }
    Ok(name.to_owned())
}

fn valid_description(description: &str) -> Result<String, ProductError> {
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(invalid(format!(
            "description must be at most {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(description.trim().to_owned())
}

fn valid_sku(sku: &str) -> Result<String, ProductError> {
    let sku = sku.trim();
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if sku.is_empty() || sku.len() > MAX_SKU || !sku.chars().all(allowed) {
        return Err(invalid(format!(
            "sku must be 1 to {MAX_SKU} letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(sku.to_owned())
}

pub fn valid_price(amount: i64) -> Result<i64, ProductError> {
    if !(0..=MAX_PRICE_MINOR).contains(&amount) {
        return Err(invalid(format!(
            "price.amount must be 0 to {MAX_PRICE_MINOR} minor units (cents), not {amount}"
        )));
    }
    Ok(amount)
}

/// An ISO 4217 code, upper case (EUR, USD, JPY).
pub fn valid_currency(code: &str) -> Result<String, ProductError> {
    match Currency::from_code(code) {
        Some(currency) => Ok(currency.code().to_owned()),
        None => Err(invalid(format!(
            "currency must be an ISO 4217 code such as EUR or USD, not {code:?}"
        ))),
    }
}

/// How a listing is ordered. Every order ends with the product id, so pages never overlap or
/// skip a product that ties on the sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Best full-text match first (the default when searching).
    Relevance,
    PriceAscending,
    PriceDescending,
    NameAscending,
    NameDescending,
    /// The default when not searching.
    Newest,
    Oldest,
}

/// A listing request, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub category: Option<Uuid>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub currency: Option<String>,
    pub in_stock: bool,
    pub search: Option<String>,
    pub sort: Sort,
    pub page: u32,
    pub per_page: u32,
}

impl ListQuery {
    pub fn validated(mut self) -> Result<Self, ProductError> {
        if let Some(min) = self.min_price {
            valid_price(min)?;
        }
        if let Some(max) = self.max_price {
            valid_price(max)?;
        }
        if let (Some(min), Some(max)) = (self.min_price, self.max_price)
            && min > max
        {
            return Err(invalid("min_price is above max_price"));
        }
        if let Some(currency) = &self.currency {
            self.currency = Some(valid_currency(currency)?);
        }
        self.search = self
            .search
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty());
        if self
            .search
            .as_ref()
            .is_some_and(|text| text.chars().count() > 200)
        {
            return Err(invalid("q must be at most 200 characters"));
        }
        if self.sort == Sort::Relevance && self.search.is_none() {
            return Err(invalid("sort=relevance needs a search (q)"));
        }
        if self.page == 0 {
            return Err(invalid("page starts at 1"));
        }
        if !(1..=MAX_PER_PAGE).contains(&self.per_page) {
            return Err(invalid(format!("per_page must be 1 to {MAX_PER_PAGE}")));
        }
        Ok(self)
    }

    pub fn offset(&self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.per_page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product() -> ProductInput {
        ProductInput {
            sku: " MUG-01 ".into(),
            name: " Blue mug ".into(),
            description: "".into(),
            price_minor: 1299,
            currency: "EUR".into(),
            category_id: Uuid::nil(),
        }
    }

    fn query() -> ListQuery {
        ListQuery {
            category: None,
            min_price: None,
            max_price: None,
            currency: None,
            in_stock: false,
            search: None,
            sort: Sort::Newest,
            page: 1,
            per_page: 20,
        }
    }

    #[test]
    fn a_valid_product_is_trimmed() {
        let product = product().validated().unwrap();
        assert_eq!(
            (product.sku.as_str(), product.name.as_str()),
            ("MUG-01", "Blue mug")
        );
    }

    #[test]
    fn prices_are_whole_non_negative_minor_units_with_an_iso_currency() {
        assert!(
            ProductInput {
                price_minor: -1,
                ..product()
            }
            .validated()
            .is_err()
        );
        assert!(
            ProductInput {
                price_minor: 0,
                ..product()
            }
            .validated()
            .is_ok()
        );
        assert!(
            ProductInput {
                price_minor: MAX_PRICE_MINOR + 1,
                ..product()
            }
            .validated()
            .is_err()
        );
        for bad in ["eur", "EURO", "XYZ", ""] {
            assert!(
                ProductInput {
                    currency: bad.into(),
                    ..product()
                }
                .validated()
                .is_err(),
                "{bad}"
            );
        }
        assert_eq!(valid_currency("JPY").unwrap(), "JPY");
    }

    #[test]
    fn names_and_skus_are_checked() {
        assert!(
            ProductInput {
                name: "  ".into(),
                ..product()
            }
            .validated()
            .is_err()
        );
        assert!(
            ProductInput {
                sku: "has space".into(),
                ..product()
            }
            .validated()
            .is_err()
        );
        assert!(
            ProductInput {
                sku: "x".repeat(65),
                ..product()
            }
            .validated()
            .is_err()
        );
    }

    #[test]
    fn listing_requests_are_checked() {
        assert!(query().validated().is_ok());
        assert!(
            ListQuery {
                min_price: Some(10),
                max_price: Some(5),
                ..query()
            }
            .validated()
            .is_err()
        );
        assert!(
            ListQuery {
                min_price: Some(-1),
                ..query()
            }
            .validated()
            .is_err()
        );
        assert!(ListQuery { page: 0, ..query() }.validated().is_err());
        assert!(
            ListQuery {
                per_page: 101,
                ..query()
            }
            .validated()
            .is_err()
        );
        assert!(
            ListQuery {
                sort: Sort::Relevance,
                ..query()
            }
            .validated()
            .is_err()
        );
        let blank = ListQuery {
            search: Some("   ".into()),
            ..query()
        }
        .validated()
        .unwrap();
        assert_eq!(blank.search, None);
        assert_eq!(
            ListQuery {
                page: 3,
                per_page: 20,
                ..query()
            }
            .offset(),
            40
        );
    }
}
