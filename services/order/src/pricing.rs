//! What an order costs — its lines, shipping and tax — computed one way for the quote and for
//! checkout, so the quote is what checkout charges to the minor unit.
//!
//! **Rounding rule:** tax is computed per line (and once for shipping), on that amount in minor
//! units, and rounded half up to a whole minor unit; the order's tax is the sum of those. With
//! prices that include tax (VAT-style), a line's tax is the part of its total that is tax,
//! `total × r / (1 + r)`, and the total charged is goods plus shipping; with prices before tax,
//! it is `total × r`, and the total charged is goods plus shipping plus tax. Either way the
//! parts add up to the total exactly.

use shop_config::ShippingRate;
use uuid::Uuid;

/// One line as priced: what the customer pays for it, and the tax in that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i32,
    pub unit_price: i64,
    /// `quantity × unit_price`.
    pub total: i64,
    /// The tax of this line (included in `total` when prices include tax).
    pub tax: i64,
}

/// A line to price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i32,
    pub unit_price: i64,
}

/// The order's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    pub lines: Vec<PricedLine>,
    /// The goods: the sum of the lines' totals.
    pub subtotal: i64,
    /// What shipping costs (0 above the method's free threshold).
    pub shipping: i64,
    /// All tax: the lines' and shipping's.
    pub tax: i64,
    /// What is charged.
    pub total: i64,
    /// Hundredths of a percent (1900 is 19%).
    pub tax_rate: u32,
    pub prices_include_tax: bool,
}

/// `amount × numerator / denominator`, rounded half up, for non-negative amounts.
fn round_half_up(amount: i64, numerator: i64, denominator: i64) -> i64 {
    let (amount, numerator, denominator) = (
        i128::from(amount),
        i128::from(numerator),
        i128::from(denominator),
    );
    let rounded = (2 * amount * numerator + denominator) / (2 * denominator);
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

/// The tax in (or on) `amount` at `rate` hundredths of a percent.
pub fn tax_of(amount: i64, rate: u32, prices_include_tax: bool) -> i64 {
    let rate = i64::from(rate);
    if prices_include_tax {
        round_half_up(amount, rate, 10_000 + rate)
    } else {
        round_half_up(amount, rate, 10_000)
    }
}

/// Prices `lines` shipped at `shipping`'s rate, taxed at `tax_rate`.
pub fn price(
    lines: Vec<Line>,
    shipping: ShippingRate,
    tax_rate: u32,
    prices_include_tax: bool,
) -> Priced {
    let lines: Vec<PricedLine> = lines
        .into_iter()
        .map(|line| {
            let total = i64::from(line.quantity).saturating_mul(line.unit_price);
            PricedLine {
                tax: tax_of(total, tax_rate, prices_include_tax),
                product_id: line.product_id,
                name: line.name,
                quantity: line.quantity,
                unit_price: line.unit_price,
                total,
            }
        })
        .collect();
    let subtotal: i64 = lines.iter().map(|line| line.total).sum();
    let shipping = match shipping.free_from {
        Some(free_from) if subtotal >= free_from => 0,
        _ => shipping.price,
    };
    let tax = lines.iter().map(|line| line.tax).sum::<i64>()
        + tax_of(shipping, tax_rate, prices_include_tax);
    let total = if prices_include_tax {
        subtotal + shipping
    } else {
        subtotal + shipping + tax
    };
    Priced {
        lines,
        subtotal,
        shipping,
        tax,
        total,
        tax_rate,
        prices_include_tax,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(quantity: i32, unit_price: i64) -> Line {
        Line {
            product_id: Uuid::nil(),
            name: "thing".into(),
            quantity,
            unit_price,
        }
    }

    fn rate(price: i64, free_from: Option<i64>) -> ShippingRate {
        ShippingRate {
            price,
            free_from,
            min_days: 1,
            max_days: 3,
        }
    }

    #[test]
    fn three_at_33_cents_with_19_percent_included() {
        let priced = price(vec![line(3, 33)], rate(490, None), 1900, true);
        // 99 × 19/119 = 15.81 → 16; shipping 490 × 19/119 = 78.24 → 78.
        assert_eq!(priced.lines[0].tax, 16);
        assert_eq!(
            (priced.subtotal, priced.shipping, priced.tax),
            (99, 490, 94)
        );
        assert_eq!(priced.total, 589);
    }

    #[test]
    fn three_at_33_cents_with_19_percent_on_top() {
        let priced = price(vec![line(3, 33)], rate(490, None), 1900, false);
        // 99 × 0.19 = 18.81 → 19; 490 × 0.19 = 93.1 → 93.
        assert_eq!(priced.lines[0].tax, 19);
        assert_eq!(priced.tax, 112);
        assert_eq!(priced.total, 99 + 490 + 112);
    }

    #[test]
    fn seven_percent_rounds_per_line_and_the_parts_add_up() {
        let lines = vec![line(3, 33), line(1, 5), line(7, 1999)];
        let included = price(lines.clone(), rate(0, None), 700, true);
        // 99 × 7/107 = 6.48 → 6; 5 × 7/107 = 0.33 → 0; 13993 × 7/107 = 915.44 → 915.
        let taxes: Vec<i64> = included.lines.iter().map(|l| l.tax).collect();
        assert_eq!(taxes, [6, 0, 915]);
        assert_eq!(included.tax, 921);
        assert_eq!(included.total, included.subtotal);
        let on_top = price(lines, rate(0, None), 700, false);
        // 6.93 → 7; 0.35 → 0; 979.51 → 980.
        let taxes: Vec<i64> = on_top.lines.iter().map(|l| l.tax).collect();
        assert_eq!(taxes, [7, 0, 980]);
        assert_eq!(on_top.total, on_top.subtotal + on_top.tax);
    }

    #[test]
    fn a_half_minor_unit_rounds_up() {
        // 50 × 1% = 0.5 → 1; 150 × 1% = 1.5 → 2.
        assert_eq!(tax_of(50, 100, false), 1);
        assert_eq!(tax_of(150, 100, false), 2);
        assert_eq!(tax_of(49, 100, false), 0);
    }

    #[test]
    fn shipping_is_free_from_the_threshold_on() {
        let below = price(vec![line(1, 4999)], rate(490, Some(5000)), 1900, true);
        let at = price(vec![line(1, 5000)], rate(490, Some(5000)), 1900, true);
        assert_eq!((below.shipping, below.total), (490, 5489));
        assert_eq!((at.shipping, at.total), (0, 5000));
    }

    #[test]
    fn no_tax_where_the_rate_is_zero() {
        let priced = price(vec![line(2, 1000)], rate(1990, None), 0, false);
        assert_eq!((priced.tax, priced.total), (0, 3990));
    }
}
