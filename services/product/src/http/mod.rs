//! The product service's REST API: one poem-openapi API per resource.

mod categories;
mod prices;
mod products;
mod reservations;

use poem_openapi::Tags;

pub use categories::CategoriesApi;
pub use prices::PricesApi;
pub use products::ProductsApi;
pub use reservations::ReservationsApi;

#[derive(Tags)]
enum ProductTag {
    /// The category tree
    Categories,
    /// Products, their prices and stock
    Products,
    /// Stock held for orders (Shop services only; not reachable through the gateway)
    Reservations,
}
