//! The message templates: files under `services/notification/templates/` (built into the binary,
//! or read from `SHOP_NOTIFICATION_TEMPLATES`), rendered with minijinja. Per kind of message:
//! `<kind>.subject.txt`, `<kind>.txt` and `<kind>.html` for email, `<kind>.sms.txt` for SMS.
//! `{{ amount | money(currency) }}` writes minor units as money in their currency.

use std::path::Path;

use minijinja::{Environment, Value};

/// The built-in templates.
const BUILT_IN: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    (
        "welcome.subject.txt",
        include_str!("../templates/welcome.subject.txt"),
    ),
    ("welcome.txt", include_str!("../templates/welcome.txt")),
    ("welcome.html", include_str!("../templates/welcome.html")),
    (
        "welcome.sms.txt",
        include_str!("../templates/welcome.sms.txt"),
    ),
    (
        "order_placed.subject.txt",
        include_str!("../templates/order_placed.subject.txt"),
    ),
    (
        "order_placed.txt",
        include_str!("../templates/order_placed.txt"),
    ),
    (
        "order_placed.html",
        include_str!("../templates/order_placed.html"),
    ),
    (
        "order_placed.sms.txt",
        include_str!("../templates/order_placed.sms.txt"),
    ),
    (
        "order_paid.subject.txt",
        include_str!("../templates/order_paid.subject.txt"),
    ),
    (
        "order_paid.txt",
        include_str!("../templates/order_paid.txt"),
    ),
    (
        "order_paid.html",
        include_str!("../templates/order_paid.html"),
    ),
    (
        "order_paid.sms.txt",
        include_str!("../templates/order_paid.sms.txt"),
    ),
    (
        "order_shipped.subject.txt",
        include_str!("../templates/order_shipped.subject.txt"),
    ),
    (
        "order_shipped.txt",
        include_str!("../templates/order_shipped.txt"),
    ),
    (
        "order_shipped.html",
        include_str!("../templates/order_shipped.html"),
    ),
    (
        "order_shipped.sms.txt",
        include_str!("../templates/order_shipped.sms.txt"),
    ),
    (
        "order_delivered.subject.txt",
        include_str!("../templates/order_delivered.subject.txt"),
    ),
    (
        "order_delivered.txt",
        include_str!("../templates/order_delivered.txt"),
    ),
    (
        "order_delivered.html",
        include_str!("../templates/order_delivered.html"),
    ),
    (
        "order_delivered.sms.txt",
        include_str!("../templates/order_delivered.sms.txt"),
    ),
    (
        "order_cancelled.subject.txt",
        include_str!("../templates/order_cancelled.subject.txt"),
    ),
    (
        "order_cancelled.txt",
        include_str!("../templates/order_cancelled.txt"),
    ),
    (
        "order_cancelled.html",
        include_str!("../templates/order_cancelled.html"),
    ),
    (
        "order_cancelled.sms.txt",
        include_str!("../templates/order_cancelled.sms.txt"),
    ),
    (
        "payment_failed.subject.txt",
        include_str!("../templates/payment_failed.subject.txt"),
    ),
    (
        "payment_failed.txt",
        include_str!("../templates/payment_failed.txt"),
    ),
    (
        "payment_failed.html",
        include_str!("../templates/payment_failed.html"),
    ),
    (
        "payment_failed.sms.txt",
        include_str!("../templates/payment_failed.sms.txt"),
    ),
    (
        "payment_refunded.subject.txt",
        include_str!("../templates/payment_refunded.subject.txt"),
    ),
    (
        "payment_refunded.txt",
        include_str!("../templates/payment_refunded.txt"),
    ),
    (
        "payment_refunded.html",
        include_str!("../templates/payment_refunded.html"),
    ),
    (
        "payment_refunded.sms.txt",
        include_str!("../templates/payment_refunded.sms.txt"),
    ),
    (
        "verify_email.subject.txt",
        include_str!("../templates/verify_email.subject.txt"),
    ),
    (
        "verify_email.txt",
        include_str!("../templates/verify_email.txt"),
    ),
    (
        "verify_email.html",
        include_str!("../templates/verify_email.html"),
    ),
    (
        "email_change.subject.txt",
        include_str!("../templates/email_change.subject.txt"),
    ),
    (
        "email_change.txt",
        include_str!("../templates/email_change.txt"),
    ),
    (
        "email_change.html",
        include_str!("../templates/email_change.html"),
    ),
    (
        "email_change_notice.subject.txt",
        include_str!("../templates/email_change_notice.subject.txt"),
    ),
    (
        "email_change_notice.txt",
        include_str!("../templates/email_change_notice.txt"),
    ),
    (
        "email_change_notice.html",
        include_str!("../templates/email_change_notice.html"),
    ),
    (
        "password_reset.subject.txt",
        include_str!("../templates/password_reset.subject.txt"),
    ),
    (
        "password_reset.txt",
        include_str!("../templates/password_reset.txt"),
    ),
    (
        "password_reset.html",
        include_str!("../templates/password_reset.html"),
    ),
    (
        "password_changed.subject.txt",
        include_str!("../templates/password_changed.subject.txt"),
    ),
    (
        "password_changed.txt",
        include_str!("../templates/password_changed.txt"),
    ),
    (
        "password_changed.html",
        include_str!("../templates/password_changed.html"),
    ),
];

/// Where links in mails point unless told otherwise (`SHOP_PUBLIC_URL`).
const DEFAULT_SHOP_URL: &str = "http://localhost:8080";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
#[error("template {template}: {detail}")]
pub struct TemplateError {
    pub template: String,
    pub detail: String,
}

pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The built-in templates, or those of `dir` when given.
    pub fn new(dir: Option<&Path>) -> Self {
        let mut env = Environment::new();
        match dir {
            Some(dir) => env.set_loader(minijinja::path_loader(dir)),
            None => {
                for (name, source) in BUILT_IN {
                    // Built-in templates are checked by the tests; a broken one is skipped here
                    // and reported when it is rendered.
                    if let Err(error) = env.add_template(name, source) {
                        tracing::error!(template = name, %error, "a built-in template does not parse");
                    }
                }
            }
        }
        env.add_filter("money", money);
        env.add_global("shop_url", DEFAULT_SHOP_URL);
        Self { env }
    }

    /// Links in mails point to `url` (the shop's web address, `{{ shop_url }}` in templates).
    pub fn with_shop_url(mut self, url: &str) -> Self {
        self.env
            .add_global("shop_url", url.trim_end_matches('/').to_owned());
        self
    }

    fn render(&self, name: &str, context: &serde_json::Value) -> Result<String, TemplateError> {
        let failed = |error: minijinja::Error| TemplateError {
            template: name.to_owned(),
            detail: error.to_string(),
        };
        let template = self.env.get_template(name).map_err(failed)?;
        template
            .render(Value::from_serialize(context))
            .map_err(failed)
    }

    pub fn email(&self, kind: &str, context: &serde_json::Value) -> Result<Email, TemplateError> {
        Ok(Email {
            subject: self
                .render(&format!("{kind}.subject.txt"), context)?
                .trim()
                .to_owned(),
            text: self.render(&format!("{kind}.txt"), context)?,
            html: self.render(&format!("{kind}.html"), context)?,
        })
    }

    pub fn sms(&self, kind: &str, context: &serde_json::Value) -> Result<String, TemplateError> {
        Ok(self
            .render(&format!("{kind}.sms.txt"), context)?
            .trim()
            .to_owned())
    }
}

/// Minor units as money: `money(1999, "EUR")` is `€19.99`, `money(500, "JPY")` is `¥500`; a code
/// with no symbol is written after the amount (`19.99 CHF`).
pub fn money(amount: i64, currency: &str) -> String {
    let found = iso_currency::Currency::from_code(&currency.to_uppercase());
    let exponent = found.and_then(|currency| currency.exponent()).unwrap_or(2);
    let sign = if amount < 0 { "-" } else { "" };
    let scale = 10_i64.pow(u32::from(exponent));
    let (major, minor) = (amount.abs() / scale, amount.abs() % scale);
    let number = if exponent == 0 {
        major.to_string()
    } else {
        format!("{major}.{minor:0width$}", width = usize::from(exponent))
    };
    let symbol = found.map(|currency| currency.symbol().symbol);
    match symbol {
        Some(symbol) if !symbol.is_empty() && symbol != currency.to_uppercase() => {
            format!("{sign}{symbol}{number}")
        }
        _ => format!("{sign}{number} {}", currency.to_uppercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_written_in_its_currency() {
        assert_eq!(money(1999, "EUR"), "€19.99");
        assert_eq!(money(5, "usd"), "$0.05");
        assert_eq!(money(500, "JPY"), "¥500");
        assert_eq!(money(-250, "GBP"), "-£2.50");
        assert_eq!(money(1234, "XXZ"), "12.34 XXZ");
    }

    #[test]
    fn every_built_in_template_renders() {
        let templates = Templates::new(None);
        let context = serde_json::json!({
            "name": "Ada", "email": "ada@shop.test", "short_id": "1a2b3c4d",
            "lines": [{ "name": "Lamp", "quantity": 2, "line_total": 3998 }],
            "total": 3998, "amount": 3998, "currency": "EUR",
            "tracking_number": "TRACK-1", "reason": "card declined", "was_paid": true,
        });
        for kind in crate::plan::KINDS {
            let email = templates.email(kind, &context).unwrap();
            assert!(
                !email.subject.is_empty() && !email.subject.contains('\n'),
                "{kind}"
            );
            assert!(email.html.contains("<html"), "{kind}");
            assert!(!templates.sms(kind, &context).unwrap().is_empty(), "{kind}");
        }
        let account = serde_json::json!({
            "name": "Ada", "email": "ada@shop.test", "token": "T0KEN",
            "expires_at": "2026-12-03 10:00 UTC", "new_email": "ada@example.org",
        });
        let templates = templates.with_shop_url("https://shop.example/");
        for kind in crate::plan::ACCOUNT_KINDS {
            let email = templates.email(kind, &account).unwrap();
            assert!(
                !email.subject.is_empty() && !email.subject.contains('\n'),
                "{kind}"
            );
            assert!(email.html.contains("<html"), "{kind}");
            assert!(
                email.text.contains("https://shop.example/account/"),
                "{kind}"
            );
        }
        let reset = templates.email("password_reset", &account).unwrap();
        assert!(
            reset
                .text
                .contains("https://shop.example/account/reset-password?token=T0KEN"),
            "{}",
            reset.text
        );
        let welcome = templates.email("welcome", &account).unwrap();
        assert!(
            welcome.text.contains("/account/verify-email?token=T0KEN"),
            "{}",
            welcome.text
        );
        let placed = templates.email("order_placed", &context).unwrap();
        assert_eq!(placed.subject, "Your order 1a2b3c4d — €39.98");
        assert!(placed.text.contains("2 × Lamp  €39.98"), "{}", placed.text);
    }

    #[test]
    fn the_confirmation_and_shipping_mails_show_address_shipping_tax_and_estimate() {
        let templates = Templates::new(None);
        let context = serde_json::json!({
            "name": "Ada", "short_id": "1a2b3c4d",
            "lines": [{ "name": "Lamp", "quantity": 1, "line_total": 2000 }],
            "total": 2490, "subtotal": 2000, "shipping": 490, "tax": 398,
            "prices_include_tax": true, "shipping_method": "standard", "currency": "EUR",
            "address": {
                "name": "Ada Lovelace", "line1": "Unter den Linden 1", "city": "Berlin",
                "postal_code": "10117", "country": "DE"
            },
            "carrier": "DHL", "tracking_number": "T-1",
            "delivery_min_days": 1, "delivery_max_days": 3,
        });
        let placed = templates.email("order_placed", &context).unwrap().text;
        for expected in [
            "Subtotal: €20.00",
            "Shipping (standard): €4.90",
            "Total: €24.90 (including €3.98 tax)",
            "Unter den Linden 1",
            "10117 Berlin",
        ] {
            assert!(placed.contains(expected), "{expected:?} in {placed}");
        }
        let shipped = templates.email("order_shipped", &context).unwrap().text;
        for expected in [
            "Carrier: DHL",
            "Tracking number: T-1",
            "Expected in 1–3 working days.",
        ] {
            assert!(shipped.contains(expected), "{expected:?} in {shipped}");
        }
        let next_day = serde_json::json!({ "name": "Ada", "short_id": "x", "delivery_min_days": 1, "delivery_max_days": 1 });
        let shipped = templates.email("order_shipped", &next_day).unwrap().text;
        assert!(shipped.contains("Expected in 1 working day."), "{shipped}");
    }

    #[test]
    fn a_template_that_does_not_render_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("shop-templates-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("welcome.subject.txt"), "Hello {{ name ").unwrap();
        let error = Templates::new(Some(&dir))
            .email("welcome", &serde_json::json!({ "name": "Ada" }))
            .unwrap_err();
        assert_eq!(error.template, "welcome.subject.txt");
        let missing = Templates::new(Some(&dir))
            .sms("welcome", &serde_json::json!({}))
            .unwrap_err();
        assert_eq!(missing.template, "welcome.sms.txt");
    }
}
