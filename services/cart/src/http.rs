//! `/carts`: the caller's own cart (customer token); any cart for an admin.

use chrono::{DateTime, Utc};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use shop_web::{ApiError, BearerAuth, Caller};
use uuid::Uuid;

use crate::actor::CartMsg;
use crate::cart::{Cart, Change};
use crate::error::CartError;
use crate::products::Products;
use crate::registry::Carts;

pub struct CartsApi {
    pub carts: Carts,
    pub products: Products,
    pub test_hooks: bool,
}

#[derive(Debug, Object)]
struct CartLine {
    product_id: Uuid,
    /// The product's name and price when it was added.
    name: String,
    /// Minor units of the cart's currency.
    unit_price: i64,
    quantity: i32,
    line_total: i64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
struct CartBody {
    user_id: Uuid,
    /// Goes up by one with every stored change.
    version: i64,
    /// ISO 4217; absent while the cart is empty.
    currency: Option<String>,
    items: Vec<CartLine>,
    /// Units in the cart.
    item_count: i64,
    /// Minor units of `currency`.
    total: i64,
    updated_at: DateTime<Utc>,
}

impl From<Cart> for CartBody {
    fn from(cart: Cart) -> Self {
        let total = cart.total();
        Self {
            user_id: Uuid::parse_str(&cart.user_id).unwrap_or_default(),
            version: cart.version,
            currency: cart.currency,
            item_count: cart.items.iter().map(|item| i64::from(item.quantity)).sum(),
            items: cart
                .items
                .into_iter()
                .map(|item| CartLine {
                    product_id: Uuid::parse_str(&item.product_id).unwrap_or_default(),
                    line_total: item.unit_price * i64::from(item.quantity),
                    name: item.name,
                    unit_price: item.unit_price,
                    quantity: item.quantity,
                })
                .collect(),
            total,
            updated_at: DateTime::from_timestamp_millis(cart.updated_at.timestamp_millis())
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct NewItem {
    product_id: Uuid,
    /// 1 to 99; default 1.
    #[oai(default = "one")]
    quantity: i32,
}

fn one() -> i32 {
    1
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct Quantity {
    /// 0 removes the line; at most 99.
    quantity: i32,
}

#[derive(ApiResponse)]
enum Opened {
    /// The cart was created.
    #[oai(status = 201)]
    Created(Json<CartBody>),
    /// The caller already had a cart.
    #[oai(status = 200)]
    Existing(Json<CartBody>),
}

#[derive(ApiResponse)]
enum Crashed {
    /// The cart was told to crash; its supervisor restarts it.
    #[oai(status = 202)]
    Accepted,
}

#[derive(Tags)]
enum CartTag {
    /// Shopping carts, one per user
    Carts,
}

fn existing(cart: Cart) -> Result<Json<CartBody>, ApiError> {
    if !cart.exists() {
        return Err(CartError::CartNotFound.into());
    }
    Ok(Json(cart.into()))
}

impl CartsApi {
    async fn change(&self, caller: &Caller, change: Change) -> Result<Cart, ApiError> {
        let user_id = caller.user_id()?;
        Ok(self
            .carts
            .call(user_id, |reply| {
                CartMsg::Change(change.clone(), reply, shop_telemetry::current_traceparent())
            })
            .await?)
    }

    async fn read(&self, user_id: Uuid) -> Result<Cart, ApiError> {
        Ok(self.carts.call(user_id, CartMsg::Read).await?)
    }
}

#[OpenApi(prefix_path = "/carts", tag = "CartTag::Carts")]
impl CartsApi {
    /// Make sure the caller has a cart (201 when it is new, 200 when it was there).
    #[oai(path = "/", method = "post", operation_id = "open_cart")]
    async fn open(&self, auth: BearerAuth) -> Result<Opened, ApiError> {
        let user_id = auth.0.user_id()?;
        let current = self.read(user_id).await?;
        if current.exists() {
            return Ok(Opened::Existing(Json(current.into())));
        }
        let created = self.change(&auth.0, Change::Create).await?;
        Ok(Opened::Created(Json(created.into())))
    }

    /// The caller's cart.
    #[oai(path = "/me", method = "get", operation_id = "my_cart")]
    async fn mine(&self, auth: BearerAuth) -> Result<Json<CartBody>, ApiError> {
        existing(self.read(auth.0.user_id()?).await?)
    }

    /// Add a product (to its line if it is in the cart already). Its name and price are taken
    /// from the product service now.
    #[oai(path = "/me/items", method = "post", operation_id = "add_item")]
    async fn add(&self, auth: BearerAuth, body: Json<NewItem>) -> Result<Json<CartBody>, ApiError> {
        let product = self.products.get(body.product_id).await?;
        let change = Change::Add {
            product: (*product).clone(),
            quantity: body.quantity,
        };
        Ok(Json(self.change(&auth.0, change).await?.into()))
    }

    /// Set a line's quantity; 0 removes it.
    #[oai(
        path = "/me/items/:product_id",
        method = "put",
        operation_id = "set_item"
    )]
    async fn set(
        &self,
        auth: BearerAuth,
        product_id: Path<Uuid>,
        body: Json<Quantity>,
    ) -> Result<Json<CartBody>, ApiError> {
        let product = if body.quantity == 0 {
            None
        } else {
            Some((*self.products.get(product_id.0).await?).clone())
        };
        let change = Change::Set {
            product_id: product_id.0,
            product,
            quantity: body.quantity,
        };
        Ok(Json(self.change(&auth.0, change).await?.into()))
    }

    /// Remove a line.
    #[oai(
        path = "/me/items/:product_id",
        method = "delete",
        operation_id = "remove_item"
    )]
    async fn remove(
        &self,
        auth: BearerAuth,
        product_id: Path<Uuid>,
    ) -> Result<Json<CartBody>, ApiError> {
        let change = Change::Remove {
            product_id: product_id.0,
        };
        Ok(Json(self.change(&auth.0, change).await?.into()))
    }

    /// Empty the caller's cart.
    #[oai(path = "/me", method = "delete", operation_id = "empty_cart")]
    async fn empty(&self, auth: BearerAuth) -> Result<Json<CartBody>, ApiError> {
        existing(self.change(&auth.0, Change::Empty).await?)
    }

    /// Any user's cart (admin; a customer may read their own).
    #[oai(path = "/:user_id", method = "get", operation_id = "get_cart")]
    async fn get(&self, auth: BearerAuth, user_id: Path<Uuid>) -> Result<Json<CartBody>, ApiError> {
        auth.0.require_self_or_admin(user_id.0)?;
        existing(self.read(user_id.0).await?)
    }

    /// Test hook (SHOP_TEST_HOOKS=true, admin): make a running cart actor panic.
    #[oai(
        path = "/:user_id/crash",
        method = "post",
        operation_id = "crash_cart",
        hidden
    )]
    async fn crash(&self, auth: BearerAuth, user_id: Path<Uuid>) -> Result<Crashed, ApiError> {
        if !self.test_hooks {
            return Err(ApiError::not_found("no such resource"));
        }
        auth.0.require_admin()?;
        if !self.carts.crash(user_id.0) {
            return Err(ApiError::not_found("that cart is not running"));
        }
        tracing::warn!(user_id = %user_id.0, "cart crash requested through the test hook");
        Ok(Crashed::Accepted)
    }
}
