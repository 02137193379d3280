//! `/internal/reservations`: stock held for orders. For Shop services only (a `service` token);
//! nginx never routes `/internal/`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use shop_web::{ApiError, BearerAuth};
use sqlx::PgPool;
use uuid::Uuid;

use super::ProductTag;
use crate::inventory::{self, Line, Reservation, Reserved};

/// The longest a caller may ask stock to be held.
const MAX_HOLD: Duration = Duration::from_secs(24 * 60 * 60);

pub struct ReservationsApi {
    pub pool: PgPool,
    /// How long stock is held when the caller does not say.
    pub default_hold: Duration,
}

#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
struct ReservationLine {
    product_id: Uuid,
    /// 1 to 10000.
    quantity: i32,
    /// The price (minor units) the caller priced the line at: if the product's price is not
    /// that any more, nothing is reserved and the answer is 409 with `price_changed`.
    #[oai(skip_serializing_if_is_none)]
    unit_price: Option<i64>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct ReservationRequest {
    /// One reservation per order: asking again with the same lines answers the same reservation.
    order_id: Uuid,
    lines: Vec<ReservationLine>,
    /// How long to hold the stock before it is released by itself (default: the service's
    /// SHOP_RESERVATION_TTL; at most a day).
    hold_seconds: Option<u32>,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
enum ReservationStatus {
    Reserved,
    Committed,
    Released,
    Expired,
    /// Sold, then the order was cancelled before shipping: the units are back on hand.
    Returned,
}

#[derive(Debug, Object)]
struct ReservationBody {
    order_id: Uuid,
    status: ReservationStatus,
    lines: Vec<ReservationLine>,
    /// When a reservation still `reserved` releases its stock by itself.
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

impl From<Reservation> for ReservationBody {
    fn from(reservation: Reservation) -> Self {
        let status = match reservation.status.as_str() {
            "committed" => ReservationStatus::Committed,
            "released" => ReservationStatus::Released,
            "expired" => ReservationStatus::Expired,
            "returned" => ReservationStatus::Returned,
            _ => ReservationStatus::Reserved,
        };
        Self {
            order_id: reservation.order_id,
            status,
            lines: reservation
                .lines
                .into_iter()
                .map(|line| ReservationLine {
                    product_id: line.product_id,
                    quantity: line.quantity,
                    unit_price: None,
                })
                .collect(),
            expires_at: reservation.expires_at,
            created_at: reservation.created_at,
        }
    }
}

#[derive(ApiResponse)]
enum ReserveAnswer {
    /// Every line is reserved.
    #[oai(status = 201)]
    Created(Json<ReservationBody>),
    /// This order's reservation was made by an earlier, identical request.
    #[oai(status = 200)]
    Existing(Json<ReservationBody>),
}

#[OpenApi(
    prefix_path = "/internal/reservations",
    tag = "ProductTag::Reservations"
)]
impl ReservationsApi {
    /// Reserve every line for an order, or none: a short line answers 409 naming each short
    /// product and what is available.
    #[oai(path = "/", method = "post", operation_id = "reserve")]
    async fn reserve(
        &self,
        auth: BearerAuth,
        body: Json<ReservationRequest>,
    ) -> Result<ReserveAnswer, ApiError> {
        auth.0.require_service()?;
        let body = body.0;
        let hold = match body.hold_seconds {
            None => self.default_hold,
            Some(seconds) => {
                let hold = Duration::from_secs(u64::from(seconds));
                if hold.is_zero() || hold > MAX_HOLD {
                    return Err(ApiError::unprocessable("hold_seconds must be 1 to 86400"));
                }
                hold
            }
        };
        let lines: Vec<Line> = body
            .lines
            .iter()
            .map(|line| Line {
                product_id: line.product_id,
                quantity: line.quantity,
            })
            .collect();
        let mut expected = std::collections::BTreeMap::new();
        for line in &body.lines {
            if let Some(price) = line.unit_price
                && expected
                    .insert(line.product_id, price)
                    .is_some_and(|other| other != price)
            {
                return Err(ApiError::unprocessable(format!(
                    "product {} is in two lines at two prices",
                    line.product_id
                )));
            }
        }
        let (reservation, reserved) =
            inventory::reserve(&self.pool, body.order_id, &lines, &expected, hold).await?;
        Ok(match reserved {
            Reserved::Now => ReserveAnswer::Created(Json(reservation.into())),
            Reserved::Before => ReserveAnswer::Existing(Json(reservation.into())),
        })
    }

    /// An order's reservation.
    #[oai(path = "/:order_id", method = "get", operation_id = "get_reservation")]
    async fn get(
        &self,
        auth: BearerAuth,
        order_id: Path<Uuid>,
    ) -> Result<Json<ReservationBody>, ApiError> {
        auth.0.require_service()?;
        Ok(Json(
            inventory::reservation(&self.pool, order_id.0).await?.into(),
        ))
    }

    /// The order is paid: the reserved units are sold (on hand and reserved both go down).
    /// Committing again changes nothing; a released or expired reservation answers 409.
    #[oai(
        path = "/:order_id/commit",
        method = "post",
        operation_id = "commit_reservation"
    )]
    async fn commit(
        &self,
        auth: BearerAuth,
        order_id: Path<Uuid>,
    ) -> Result<Json<ReservationBody>, ApiError> {
        auth.0.require_service()?;
        Ok(Json(
            inventory::commit(&self.pool, order_id.0).await?.into(),
        ))
    }

    /// The order is off: the reserved units are available again. Releasing again (or an expired
    /// reservation) changes nothing; a committed one answers 409.
    #[oai(
        path = "/:order_id/release",
        method = "post",
        operation_id = "release_reservation"
    )]
    async fn release(
        &self,
        auth: BearerAuth,
        order_id: Path<Uuid>,
    ) -> Result<Json<ReservationBody>, ApiError> {
        auth.0.require_service()?;
        Ok(Json(
            inventory::release(&self.pool, order_id.0).await?.into(),
        ))
    }
}
