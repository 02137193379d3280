//! The shop's commercial rules as configuration: shipping methods by country zone, and tax
//! rates by country. Typed, parsed and checked at start like every other setting.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Shipping methods and the zones they price by (`SHOP_SHIPPING`, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingTable {
    /// ISO 4217: the currency of every price below (the catalogue's).
    pub currency: String,
    /// In order: a country is in the first zone that lists it; `"*"` lists every country.
    pub zones: Vec<Zone>,
    pub methods: Vec<ShippingMethod>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: String,
    /// ISO 3166-1 alpha-2 codes, or `"*"`.
    pub countries: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingMethod {
    /// What checkout asks for: `standard`, `express`.
    pub code: String,
    pub name: String,
    /// Its rate in each zone it serves (a zone it does not list, it does not ship to).
    pub rates: BTreeMap<String, ShippingRate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingRate {
    /// Minor units.
    pub price: i64,
    /// Goods worth at least this much (minor units) ship free.
    #[serde(default)]
    pub free_from: Option<i64>,
    /// Working days from dispatch to the door.
    pub min_days: u32,
    pub max_days: u32,
}

impl ShippingTable {
    /// The zone a country (upper-case alpha-2) is in.
    pub fn zone_of(&self, country: &str) -> Option<&Zone> {
        self.zones.iter().find(|zone| {
            zone.countries
                .iter()
                .any(|listed| listed == "*" || listed == country)
        })
    }

    /// The method `code` and its rate for `country`, if it ships there.
    pub fn rate(&self, code: &str, country: &str) -> Option<(&ShippingMethod, ShippingRate)> {
        let zone = self.zone_of(country)?;
        let method = self.methods.iter().find(|method| method.code == code)?;
        let rate = method.rates.get(&zone.name)?;
        Some((method, *rate))
    }

    /// Every method that ships to `country`, with its rate there.
    pub fn methods_for(&self, country: &str) -> Vec<(&ShippingMethod, ShippingRate)> {
        self.methods
            .iter()
            .filter_map(|method| self.rate(&method.code, country))
            .collect()
    }

    /// What is wrong with the table, in words, if anything.
    pub fn check(&self) -> Result<(), String> {
        if !crate::known_currency(&self.currency) {
            return Err(format!("currency {:?} is not ISO 4217", self.currency));
        }
        for zone in &self.zones {
            for country in &zone.countries {
                if country != "*" && !known_country(country) {
                    return Err(format!(
                        "zone {:?} lists {country:?}, not an ISO 3166-1 alpha-2 code",
                        zone.name
                    ));
                }
            }
        }
        if self.methods.is_empty() {
            return Err("no shipping method".to_owned());
        }
        for method in &self.methods {
            for (zone, rate) in &method.rates {
                if !self.zones.iter().any(|known| &known.name == zone) {
                    return Err(format!(
                        "method {:?} prices zone {zone:?}, which is not defined",
                        method.code
                    ));
                }
                if rate.price < 0 || rate.free_from.is_some_and(|free| free < 0) {
                    return Err(format!("method {:?}: a negative amount", method.code));
                }
                if rate.min_days > rate.max_days {
                    return Err(format!(
                        "method {:?} in {zone:?}: min_days is above max_days",
                        method.code
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether `code` is an ISO 3166-1 alpha-2 country code (upper case).
pub fn known_country(code: &str) -> bool {
    isocountry::CountryCode::for_alpha2(code).is_ok()
}

/// The built-in table: euros, Germany, the rest of the EU, the world.
pub const DEFAULT_SHIPPING: &str = r#"{
  "currency": "EUR",
  "zones": [
    {"name": "domestic", "countries": ["DE"]},
    {"name": "eu", "countries": ["AT","BE","BG","CY","CZ","DK","EE","ES","FI","FR","GR","HR","HU","IE","IT","LT","LU","LV","MT","NL","PL","PT","RO","SE","SI","SK"]},
    {"name": "world", "countries": ["*"]}
  ],
  "methods": [
    {"code": "standard", "name": "Standard", "rates": {
      "domestic": {"price": 490, "free_from": 5000, "min_days": 1, "max_days": 3},
      "eu": {"price": 990, "free_from": 10000, "min_days": 3, "max_days": 6},
      "world": {"price": 1990, "min_days": 5, "max_days": 12}}},
    {"code": "express", "name": "Express", "rates": {
      "domestic": {"price": 990, "min_days": 1, "max_days": 1},
      "eu": {"price": 1990, "min_days": 1, "max_days": 3},
      "world": {"price": 3990, "min_days": 2, "max_days": 5}}}
  ]
}"#;

/// Tax rates by country (`SHOP_TAX_RATES`: `DE:19,FR:20,…,*:0`, percent with up to two
/// decimals), held in hundredths of a percent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxTable {
    rates: BTreeMap<String, u32>,
    /// For a country not listed (`*`); none means such a country cannot be taxed, so it is not
    /// sold to.
    otherwise: Option<u32>,
}

impl TaxTable {
    /// The rate for `country`, in hundredths of a percent (1900 is 19%).
    pub fn rate(&self, country: &str) -> Option<u32> {
        self.rates.get(country).copied().or(self.otherwise)
    }

    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        let mut table = TaxTable {
            rates: BTreeMap::new(),
            otherwise: None,
        };
        for pair in raw
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
        {
            let (country, percent) = pair
                .split_once(':')
                .ok_or_else(|| format!("{pair:?} is not COUNTRY:PERCENT"))?;
            let rate = basis_points(percent.trim())
                .ok_or_else(|| format!("{percent:?} is not a percentage from 0 to 100"))?;
            match country.trim() {
                "*" => table.otherwise = Some(rate),
                code if known_country(code) => {
                    table.rates.insert(code.to_owned(), rate);
                }
                code => return Err(format!("{code:?} is not an ISO 3166-1 alpha-2 code")),
            }
        }
        Ok(table)
    }
}

/// `19`, `8.1`, `5.5` as hundredths of a percent.
fn basis_points(percent: &str) -> Option<u32> {
    let (whole, fraction) = percent.split_once('.').unwrap_or((percent, ""));
    if whole.is_empty() || fraction.len() > 2 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let fraction: u32 = format!("{fraction:0<2}").parse().ok()?;
    let rate = whole.checked_mul(100)?.checked_add(fraction)?;
    (rate <= 10_000).then_some(rate)
}

/// Standard VAT rates of the EU (as of 2025), and a few others; 0 elsewhere. Check them
/// against your tax adviser before going live.
pub const DEFAULT_TAX_RATES: &str = "AT:20,BE:21,BG:20,CY:19,CZ:21,DE:19,DK:25,EE:24,ES:21,\
FI:25.5,FR:20,GR:24,HR:25,HU:27,IE:23,IT:22,LT:21,LU:17,LV:21,MT:18,NL:21,PL:23,PT:23,RO:21,\
SE:25,SI:22,SK:23,GB:20,CH:8.1,NO:25,JP:10,US:0,*:0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_tables_are_valid_and_cover_the_seeded_currency() {
        let shipping: ShippingTable = serde_json::from_str(DEFAULT_SHIPPING).unwrap();
        assert_eq!(shipping.check(), Ok(()));
        assert_eq!(shipping.currency, "EUR");
        assert_eq!(shipping.zone_of("DE").unwrap().name, "domestic");
        assert_eq!(shipping.zone_of("FR").unwrap().name, "eu");
        assert_eq!(shipping.zone_of("JP").unwrap().name, "world");
        let (_, rate) = shipping.rate("standard", "NL").unwrap();
        assert_eq!((rate.price, rate.free_from), (990, Some(10_000)));
        assert!(shipping.rate("overnight", "DE").is_none());
        let tax = TaxTable::parse(DEFAULT_TAX_RATES).unwrap();
        assert_eq!(tax.rate("DE"), Some(1900));
        assert_eq!(tax.rate("FI"), Some(2550));
        assert_eq!(tax.rate("CH"), Some(810));
        assert_eq!(tax.rate("BR"), Some(0));
    }

    #[test]
    fn a_tax_table_says_what_is_wrong() {
        assert!(TaxTable::parse("DE:19,XX:5").unwrap_err().contains("XX"));
        assert!(TaxTable::parse("DE:nineteen").is_err());
        assert!(TaxTable::parse("DE:101").is_err());
        assert!(TaxTable::parse("DE:19.555").is_err());
        assert_eq!(TaxTable::parse("DE:7").unwrap().rate("FR"), None);
    }

    #[test]
    fn a_shipping_table_says_what_is_wrong() {
        let mut table: ShippingTable = serde_json::from_str(DEFAULT_SHIPPING).unwrap();
        table.zones[0].countries.push("ZZ".into());
        assert!(table.check().unwrap_err().contains("ZZ"));
        let mut table: ShippingTable = serde_json::from_str(DEFAULT_SHIPPING).unwrap();
        table.methods[0].rates.insert(
            "mars".into(),
            ShippingRate {
                price: 1,
                free_from: None,
                min_days: 1,
                max_days: 2,
            },
        );
        assert!(table.check().unwrap_err().contains("mars"));
    }
}
