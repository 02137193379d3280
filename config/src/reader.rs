//! Reading settings one variable at a time, collecting every problem instead of stopping at the
//! first, and remembering what was read so `shop config` can print it.

use std::fmt;
use std::str::FromStr;

/// One setting as `shop config` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: &'static str,
    /// The effective value, with secrets redacted.
    pub shown: String,
    /// The default under `dev/up`, `None` when there is none.
    pub default: Option<&'static str>,
    pub from_env: bool,
    pub secret: bool,
    pub help: &'static str,
}

/// A variable that is set but wrong, or missing where it is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub name: &'static str,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

pub(crate) struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Production's rules apply (production and staging): no development secrets.
    pub(crate) production: bool,
    pub(crate) entries: Vec<Entry>,
    pub(crate) problems: Vec<Problem>,
}

/// How a setting is parsed and shown.
pub(crate) trait Setting: Sized {
    /// What a valid value looks like, for error messages.
    const EXPECTED: &'static str;
    /// Whether `show` hides the secret part by itself, so a secret value can still be shown.
    const SHOW_REDACTS: bool = false;
    fn parse(raw: &str) -> Option<Self>;
    fn show(&self, raw: &str) -> String {
        let _ = self;
        raw.to_owned()
    }
}

macro_rules! from_str_setting {
    ($($ty:ty => $expected:literal),* $(,)?) => {$(
        impl Setting for $ty {
            const EXPECTED: &'static str = $expected;
            fn parse(raw: &str) -> Option<Self> {
                <$ty as FromStr>::from_str(raw.trim()).ok()
            }
        }
    )*};
}

from_str_setting! {
    bool => "true or false",
    usize => "a whole number",
    u8 => "a whole number from 0 to 255",
    u32 => "a whole number",
    std::net::IpAddr => "an IP address such as 127.0.0.1 or 0.0.0.0",
}

impl Setting for String {
    const EXPECTED: &'static str = "a non-empty value";
    fn parse(raw: &str) -> Option<Self> {
        let trimmed = raw.trim();
        (!trimmed.is_empty()).then(|| trimmed.to_owned())
    }
}

impl Setting for std::path::PathBuf {
    const EXPECTED: &'static str = "a file system path";
    fn parse(raw: &str) -> Option<Self> {
        let trimmed = raw.trim();
        (!trimmed.is_empty()).then(|| trimmed.into())
    }
}

impl Setting for std::time::Duration {
    const EXPECTED: &'static str = "a duration such as 900ms, 15s, 15m, 30d";
    fn parse(raw: &str) -> Option<Self> {
        humantime::parse_duration(raw.trim())
            .ok()
            .filter(|duration| !duration.is_zero())
    }
}

impl Setting for url::Url {
    const EXPECTED: &'static str = "an absolute URL such as http://127.0.0.1:8101";
    const SHOW_REDACTS: bool = true;
    fn parse(raw: &str) -> Option<Self> {
        url::Url::parse(raw.trim())
            .ok()
            .filter(|url| url.has_host())
    }
    /// A URL's password is redacted even when the URL itself is not secret.
    fn show(&self, _raw: &str) -> String {
        let mut shown = self.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("********"));
        }
        shown.to_string()
    }
}

impl Setting for crate::MongoUrl {
    const EXPECTED: &'static str = "a MongoDB connection string such as mongodb://127.0.0.1:27017 or mongodb://a:27017,b:27017/?replicaSet=rs0";
    const SHOW_REDACTS: bool = true;
    fn parse(raw: &str) -> Option<Self> {
        crate::MongoUrl::parse(raw)
    }
    fn show(&self, _raw: &str) -> String {
        self.redacted()
    }
}

impl Setting for crate::Environment {
    const EXPECTED: &'static str = "production, staging or dev";
    fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "dev" => Some(crate::Environment::Dev),
            "staging" => Some(crate::Environment::Staging),
            "production" => Some(crate::Environment::Production),
            _ => None,
        }
    }
}

impl Setting for crate::ShippingTable {
    const EXPECTED: &'static str = "a shipping table as JSON (docs/api/orders.md)";
    fn parse(raw: &str) -> Option<Self> {
        serde_json::from_str(raw).ok()
    }
    /// The whole table is long: `shop config` shows its methods and zones.
    fn show(&self, _raw: &str) -> String {
        let methods: Vec<&str> = self.methods.iter().map(|m| m.code.as_str()).collect();
        let zones: Vec<&str> = self.zones.iter().map(|z| z.name.as_str()).collect();
        format!(
            "{} ({}) over zones {}",
            methods.join(", "),
            self.currency,
            zones.join(", ")
        )
    }
}

impl Setting for crate::TaxTable {
    const EXPECTED: &'static str =
        "COUNTRY:PERCENT pairs, comma separated, such as DE:19,FR:20,*:0";
    fn parse(raw: &str) -> Option<Self> {
        crate::TaxTable::parse(raw).ok()
    }
}

impl Setting for crate::SmsLog {
    const EXPECTED: &'static str = "full or masked";
    fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "full" => Some(crate::SmsLog::Full),
            "masked" => Some(crate::SmsLog::Masked),
            _ => None,
        }
    }
}

impl Setting for crate::PaymentProvider {
    const EXPECTED: &'static str = "simulated or stripe";
    fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "simulated" => Some(crate::PaymentProvider::Simulated),
            "stripe" => Some(crate::PaymentProvider::Stripe),
            _ => None,
        }
    }
}

impl Setting for crate::EmailProvider {
    const EXPECTED: &'static str = "smtp or sendgrid";
    fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "smtp" => Some(crate::EmailProvider::Smtp),
            "sendgrid" => Some(crate::EmailProvider::Sendgrid),
            _ => None,
        }
    }
}

impl Setting for crate::SmsProvider {
    const EXPECTED: &'static str = "log or twilio";
    fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "log" => Some(crate::SmsProvider::Log),
            "twilio" => Some(crate::SmsProvider::Twilio),
            _ => None,
        }
    }
}

impl Setting for crate::SampleRatio {
    const EXPECTED: &'static str = "a fraction from 0 to 1, such as 0.1";
    fn parse(raw: &str) -> Option<Self> {
        let ratio: f64 = raw.trim().parse().ok()?;
        (0.0..=1.0).contains(&ratio).then_some(Self(ratio))
    }
}

impl Setting for crate::LogFormat {
    const EXPECTED: &'static str = "text or json";
    fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "text" => Some(crate::LogFormat::Text),
            "json" => Some(crate::LogFormat::Json),
            _ => None,
        }
    }
}

/// A TCP port a service listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(pub u16);

impl Setting for Port {
    const EXPECTED: &'static str = "a port number from 1 to 65535";
    fn parse(raw: &str) -> Option<Self> {
        raw.trim()
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .map(Port)
    }
}

const REDACTED: &str = "********";

impl<'a> Reader<'a> {
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            lookup,
            production: false,
            entries: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|value| !value.is_empty())
    }

    /// A setting with a default that is fine everywhere.
    pub(crate) fn get<T: Setting>(
        &mut self,
        name: &'static str,
        default: &'static str,
        help: &'static str,
    ) -> T {
        self.read(name, Some(default), false, help)
            .unwrap_or_else(|| T::parse(default).expect("every default parses"))
    }

    /// A setting that is a secret, or carries one: its dev default is refused in production,
    /// and `shop config` never prints it.
    pub(crate) fn secret<T: Setting>(
        &mut self,
        name: &'static str,
        dev_default: &'static str,
        help: &'static str,
    ) -> Option<T> {
        if self.production && self.raw(name).is_none() {
            self.problems.push(Problem {
                name,
                message: "required outside dev (secrets have no default there)".to_owned(),
            });
            self.entries.push(Entry {
                name,
                shown: "(unset)".to_owned(),
                default: None,
                from_env: false,
                secret: true,
                help,
            });
            return None;
        }
        self.read(name, Some(dev_default), true, help)
    }

    /// Outside `dev`, `name` is refused for `why` (a development value where a real one belongs).
    pub(crate) fn refuse_outside_dev(&mut self, name: &'static str, why: &str) {
        if self.production {
            self.problems.push(Problem {
                name,
                message: format!("{why}; refused outside SHOP_ENV=dev"),
            });
        }
    }

    /// Shows the value an unset setting ends up with when its default is derived from others.
    pub(crate) fn show_derived(&mut self, name: &'static str, value: impl std::fmt::Display) {
        if let Some(entry) = self
            .entries
            .iter_mut()
            .find(|entry| entry.name == name && !entry.from_env)
        {
            entry.shown = value.to_string();
        }
    }

    /// A setting that may be left unset.
    pub(crate) fn optional<T: Setting>(
        &mut self,
        name: &'static str,
        secret: bool,
        help: &'static str,
    ) -> Option<T> {
        self.read(name, None, secret, help)
    }

    fn read<T: Setting>(
        &mut self,
        name: &'static str,
        default: Option<&'static str>,
        secret: bool,
        help: &'static str,
    ) -> Option<T> {
        let from_env = self.raw(name);
        let raw = from_env.clone().or_else(|| default.map(str::to_owned));
        let parsed = raw.as_deref().map(|raw| (raw, T::parse(raw)));
        let shown = match &parsed {
            None => "(unset)".to_owned(),
            Some((raw, Some(value))) if !secret || T::SHOW_REDACTS => value.show(raw),
            Some(_) if secret => REDACTED.to_owned(),
            Some((raw, _)) => (*raw).to_owned(),
        };
        self.entries.push(Entry {
            name,
            shown,
            default,
            from_env: from_env.is_some(),
            secret,
            help,
        });
        match parsed {
            None => None,
            Some((_, Some(value))) => Some(value),
            Some((raw, None)) => {
                let got = if secret {
                    String::new()
                } else {
                    format!(" (got {raw:?})")
                };
                self.problems.push(Problem {
                    name,
                    message: format!("expected {}{got}", T::EXPECTED),
                });
                None
            }
        }
    }
}
