//! `/internal/carts`: what other services ask of carts, with a service token (nginx never routes
//! `/internal/`). At checkout the order service takes the ordered lines out at once, so a second
//! checkout right after the first finds them gone; `OrderPlaced` does the same later and, the cart
//! remembering the order, takes nothing twice. A checkout that found a price changed gives the
//! cart the new one at once (`ProductPriceChanged` does the same a moment later).

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use shop_web::{ApiError, BearerAuth};
use uuid::Uuid;

use crate::actor::CartMsg;
use crate::cart::Change;
use crate::registry::Carts;

pub struct InternalApi {
    pub carts: Carts,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct PlacedOrder {
    order_id: Uuid,
    /// What was ordered of each product.
    #[oai(validator(min_items = 1, max_items = 100))]
    lines: Vec<OrderedLine>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct OrderedLine {
    product_id: Uuid,
    #[oai(validator(minimum(value = "1")))]
    quantity: i32,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct NewPrices {
    #[oai(validator(min_items = 1, max_items = 100))]
    lines: Vec<NewPrice>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct NewPrice {
    product_id: Uuid,
    /// Minor units.
    #[oai(validator(minimum(value = "0")))]
    unit_price: i64,
}

#[derive(ApiResponse)]
enum Repriced {
    /// The cart's lines of these products hold the new prices (lines it does not have are
    /// left alone).
    #[oai(status = 204)]
    Repriced,
}

#[derive(ApiResponse)]
enum Taken {
    /// The lines are out of the cart (or were already, for this order).
    #[oai(status = 204)]
    Taken,
}

#[derive(Tags)]
enum InternalTag {
    /// For other Shop services only
    Internal,
}

#[OpenApi(prefix_path = "/internal/carts", tag = "InternalTag::Internal")]
impl InternalApi {
    /// Take an order's lines out of its customer's cart, once per order.
    #[oai(
        path = "/:user_id/orders",
        method = "post",
        operation_id = "take_ordered_lines"
    )]
    async fn ordered(
        &self,
        auth: BearerAuth,
        user_id: Path<Uuid>,
        body: Json<PlacedOrder>,
    ) -> Result<Taken, ApiError> {
        auth.0.require_service()?;
        let change = Change::Ordered {
            order_id: body.0.order_id,
            lines: body
                .0
                .lines
                .iter()
                .map(|line| (line.product_id, line.quantity))
                .collect(),
        };
        self.carts
            .call(user_id.0, |reply| {
                CartMsg::Change(change.clone(), reply, shop_telemetry::current_traceparent())
            })
            .await?;
        Ok(Taken::Taken)
    }

    /// Give a customer's cart the current prices of some products.
    #[oai(
        path = "/:user_id/prices",
        method = "post",
        operation_id = "reprice_cart"
    )]
    async fn prices(
        &self,
        auth: BearerAuth,
        user_id: Path<Uuid>,
        body: Json<NewPrices>,
    ) -> Result<Repriced, ApiError> {
        auth.0.require_service()?;
        let change = Change::Reprice(
            body.0
                .lines
                .iter()
                .map(|line| (line.product_id, line.unit_price))
                .collect(),
        );
        self.carts
            .call(user_id.0, |reply| {
                CartMsg::Change(change.clone(), reply, shop_telemetry::current_traceparent())
            })
            .await?;
        Ok(Repriced::Repriced)
    }
}
