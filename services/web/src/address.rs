//! A postal address as customers give it (the user service's address book, and checkout's
//! inline address), checked one way everywhere: every field's length, the country against ISO
//! 3166-1, the postal code against the country's format where it is well known, the phone as
//! E.164. A wrong field is a 422 problem naming it (`field`).

use poem_openapi::Object;
use serde::{Deserialize, Serialize};

use crate::ApiError;

/// A shipping address.
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct Address {
    /// Who receives the parcel; 1 to 100 characters.
    pub name: String,
    /// Street and number; 1 to 200 characters.
    pub line1: String,
    /// Apartment, floor, c/o; at most 200 characters.
    pub line2: Option<String>,
    /// 1 to 100 characters.
    pub city: String,
    /// State, province or county, where the country uses one; at most 100 characters.
    pub region: Option<String>,
    /// Checked against the country's format for US, GB, DE, FR, NL and JP; 2 to 12 letters,
    /// digits, spaces and dashes elsewhere.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `DE` (upper-cased).
    pub country: String,
    /// E.164, e.g. `+4915112345678`.
    pub phone: Option<String>,
}

/// One field that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct AddressError {
    pub field: &'static str,
    pub why: String,
}

impl From<AddressError> for ApiError {
    fn from(error: AddressError) -> Self {
        ApiError::unprocessable(error.to_string()).with("field", error.field)
    }
}

impl Address {
    /// The address with surrounding blanks trimmed, the country and a British or Dutch postal
    /// code upper-cased, and empty optional fields left out; or the first field that is wrong.
    pub fn checked(self) -> Result<Address, AddressError> {
        let text = |field: &'static str, value: String, max: usize| {
            crate::text::line(&value, max).map_err(|why| wrong(field, why.to_string()))
        };
        let optional = |field: &'static str, value: Option<String>, max: usize| {
            crate::text::optional_line(value.as_deref(), max)
                .map_err(|why| wrong(field, why.to_string()))
        };
        let country = self.country.trim().to_ascii_uppercase();
        if !shop_config::commerce::known_country(&country) {
            return Err(wrong(
                "country",
                format!("{country:?} is not an ISO 3166-1 alpha-2 country code"),
            ));
        }
        let postal_code = postal_code(&country, self.postal_code.trim())?;
        let phone = optional("phone", self.phone, 16)?;
        if let Some(phone) = &phone
            && !e164(phone)
        {
            return Err(wrong(
                "phone",
                "expected E.164: + then the country code and number, 8 to 15 digits",
            ));
        }
        Ok(Address {
            name: text("name", self.name, 100)?,
            line1: text("line1", self.line1, 200)?,
            line2: optional("line2", self.line2, 200)?,
            city: text("city", self.city, 100)?,
            region: optional("region", self.region, 100)?,
            postal_code,
            country,
            phone,
        })
    }
}

fn wrong(field: &'static str, why: impl Into<String>) -> AddressError {
    AddressError {
        field,
        why: why.into(),
    }
}

/// `+` and 8 to 15 digits, the first not 0 (ITU-T E.164 allows 15; no real number is shorter).
fn e164(phone: &str) -> bool {
    phone.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// The postal code in its usual form for `country`, or why it is not one.
fn postal_code(country: &str, code: &str) -> Result<String, AddressError> {
    let digits = |n: usize, code: &str| code.len() == n && code.bytes().all(|b| b.is_ascii_digit());
    let upper = code.to_ascii_uppercase();
    let (valid, form, normalized) = match country {
        "US" => {
            let (zip, plus4) = code.split_once('-').unwrap_or((code, ""));
            (
                digits(5, zip) && (plus4.is_empty() || digits(4, plus4)),
                "5 digits, or ZIP+4 (12345-6789)",
                code.to_owned(),
            )
        }
        "DE" | "FR" => (digits(5, code), "5 digits", code.to_owned()),
        "NL" => {
            let compact: String = upper.chars().filter(|c| *c != ' ').collect();
            let bytes = compact.as_bytes();
            let valid = bytes.len() == 6
                && bytes[..4].iter().all(u8::is_ascii_digit)
                && bytes[0] != b'0'
                && bytes[4..].iter().all(u8::is_ascii_uppercase);
            // All ASCII when valid, so the byte offsets are character boundaries.
            let normalized = if valid {
                format!("{} {}", &compact[..4], &compact[4..])
            } else {
                upper.clone()
            };
            (valid, "4 digits and 2 letters (1234 AB)", normalized)
        }
        "JP" => {
            let compact: String = code.chars().filter(|c| *c != '-').collect();
            let valid = digits(7, &compact) && (code.len() == 7 || code.find('-') == Some(3));
            (valid, "7 digits (123-4567)", code.to_owned())
        }
        "GB" => {
            // The space is often left out: it always comes before the last three.
            let compact: String = upper.chars().filter(|c| *c != ' ').collect();
            let normalized = match compact.len() {
                5..=7 if compact.is_ascii() => {
                    let split = compact.len() - 3;
                    format!("{} {}", &compact[..split], &compact[split..])
                }
                _ => upper.clone(),
            };
            (
                uk_postcode(&normalized),
                "a UK postcode (SW1A 1AA)",
                normalized,
            )
        }
        _ => (
            (2..=12).contains(&code.len())
                && code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-'),
            "2 to 12 letters, digits, spaces and dashes",
            code.to_owned(),
        ),
    };
    if valid {
        Ok(normalized)
    } else {
        Err(wrong(
            "postal_code",
            format!("{code:?} is not a postal code of {country}: expected {form}"),
        ))
    }
}

/// An outward code (A9, A99, AA9, AA99, A9A, AA9A), a space, an inward code (9AA).
fn uk_postcode(code: &str) -> bool {
    let Some((outward, inward)) = code.split_once(' ') else {
        return false;
    };
    let inward = inward.as_bytes();
    let inward_ok = inward.len() == 3
        && inward[0].is_ascii_digit()
        && inward[1..].iter().all(u8::is_ascii_uppercase);
    let outward = outward.as_bytes();
    let letters = outward
        .iter()
        .take_while(|b| b.is_ascii_uppercase())
        .count();
    let rest = &outward[letters..];
    let outward_ok = (1..=2).contains(&letters)
        && match rest {
            [d] => d.is_ascii_digit(),
            [d, e] => d.is_ascii_digit() && (e.is_ascii_digit() || e.is_ascii_uppercase()),
            _ => false,
        };
    outward_ok && inward_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(country: &str, postal_code: &str) -> Address {
        Address {
            name: " Ada Lovelace ".into(),
            line1: "12 St James's Square".into(),
            line2: Some("  ".into()),
            city: "London".into(),
            region: None,
            postal_code: postal_code.into(),
            country: country.into(),
            phone: Some("+442079460000".into()),
        }
    }

    fn field_of(address: Address) -> &'static str {
        address.checked().unwrap_err().field
    }

    #[test]
    fn a_good_address_is_tidied() {
        let checked = address("gb", "sw1y 4lg").checked().unwrap();
        assert_eq!(checked.name, "Ada Lovelace");
        assert_eq!(checked.country, "GB");
        assert_eq!(checked.postal_code, "SW1Y 4LG");
        assert_eq!(checked.line2, None, "blank is absent");
    }

    #[test]
    fn postal_codes_follow_their_country() {
        for (country, good, bad) in [
            ("US", "94103", "9410"),
            ("US", "94103-1234", "94103-12"),
            ("DE", "10115", "1011"),
            ("FR", "75008", "75 008"),
            ("NL", "1012 AB", "0123 AB"),
            ("NL", "1012ab", "1012 A1"),
            ("JP", "100-0001", "10-00001"),
            ("JP", "1000001", "100001"),
            ("GB", "EC1A1BB", "EC1A 1B"),
            ("GB", "M1 1AE", "M1 AE1"),
            ("BR", "01310-100", "0"),
        ] {
            assert!(address(country, good).checked().is_ok(), "{country} {good}");
            assert_eq!(
                field_of(address(country, bad)),
                "postal_code",
                "{country} {bad}"
            );
        }
        assert_eq!(
            address("NL", "1012ab").checked().unwrap().postal_code,
            "1012 AB"
        );
    }

    #[test]
    fn every_wrong_field_is_named() {
        assert_eq!(field_of(address("XX", "12345")), "country");
        assert_eq!(field_of(address("DEU", "12345")), "country");
        let mut wrong = address("DE", "10115");
        wrong.name = "   ".into();
        assert_eq!(field_of(wrong), "name");
        let mut wrong = address("DE", "10115");
        wrong.line1 = "x".repeat(201);
        assert_eq!(field_of(wrong), "line1");
        let mut wrong = address("DE", "10115");
        wrong.city = String::new();
        assert_eq!(field_of(wrong), "city");
        let mut wrong = address("DE", "10115");
        wrong.region = Some("r".repeat(101));
        assert_eq!(field_of(wrong), "region");
        let mut wrong = address("DE", "10115");
        wrong.line2 = Some("Hof\u{0}2".into());
        assert_eq!(field_of(wrong), "line2");
        for phone in ["004930123456", "+0301234567", "+49 30 123456", "+1234567"] {
            let mut wrong = address("DE", "10115");
            wrong.phone = Some(phone.into());
            assert_eq!(field_of(wrong), "phone", "{phone}");
        }
    }
}
