//! How messages leave: email by SMTP (lettre; Mailpit under dev/up) or SendGrid's HTTP API, SMS
//! by Twilio's HTTP API or only into the log (development). Every sender says whether a failure
//! is worth another try.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use reqwest::StatusCode;
use serde_json::json;

use crate::templates::Email;

/// How long one send may take before it counts as a (transient) failure.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The server is down, busy or rate limiting: try again later.
    #[error("{0}")]
    Transient(String),
    /// The message or the address was refused: another try will not help.
    #[error("{0}")]
    Permanent(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the SMTP URL: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("the sender address {0:?} does not parse")]
    From(String),
    #[error("the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

#[derive(Clone)]
pub enum EmailSender {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    SendGrid(SendGrid),
}

impl EmailSender {
    pub fn smtp(url: &str, from: &str) -> Result<Self, SetupError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        let from = from
            .parse()
            .map_err(|_| SetupError::From(from.to_owned()))?;
        Ok(EmailSender::Smtp { transport, from })
    }

    /// Sends `email` to `name <address>`; the provider's message id.
    pub async fn send(
        &self,
        name: &str,
        address: &str,
        email: &Email,
    ) -> Result<String, SendError> {
        match self {
            EmailSender::Smtp { transport, from } => {
                let to = Mailbox::new(
                    Some(name.to_owned()).filter(|name| !name.is_empty()),
                    address
                        .parse()
                        .map_err(|_| SendError::Permanent(format!("bad address {address:?}")))?,
                );
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(&email.subject)
                    .multipart(MultiPart::alternative_plain_html(
                        email.text.clone(),
                        email.html.clone(),
                    ))
                    .map_err(|error| SendError::Permanent(format!("building the mail: {error}")))?;
                match transport.send(message).await {
                    Ok(response) => Ok(response.message().collect::<Vec<_>>().join(" ")),
                    Err(error) if error.is_permanent() => {
                        Err(SendError::Permanent(format!("smtp: {error}")))
                    }
                    Err(error) => Err(SendError::Transient(format!("smtp: {error}"))),
                }
            }
            EmailSender::SendGrid(sendgrid) => sendgrid.send(name, address, email).await,
        }
    }
}

/// A client of SendGrid's v3 mail API.
#[derive(Clone)]
pub struct SendGrid {
    http: reqwest::Client,
    base: String,
    api_key: String,
    from: Mailbox,
}

impl SendGrid {
    pub fn new(base: &str, api_key: &str, from: &str) -> Result<Self, SetupError> {
        Ok(Self {
            http: reqwest::Client::builder().timeout(SEND_TIMEOUT).build()?,
            base: base.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            from: from
                .parse()
                .map_err(|_| SetupError::From(from.to_owned()))?,
        })
    }

    pub async fn send(
        &self,
        name: &str,
        address: &str,
        email: &Email,
    ) -> Result<String, SendError> {
        let body = json!({
            "personalizations": [{ "to": [{ "email": address, "name": name }] }],
            "from": { "email": self.from.email.to_string(), "name": self.from.name },
            "subject": email.subject,
            "content": [
                { "type": "text/plain", "value": email.text },
                { "type": "text/html", "value": email.html },
            ],
        });
        let response = self
            .http
            .post(format!("{}/v3/mail/send", self.base))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|error| SendError::Transient(format!("sendgrid: {error}")))?;
        let status = response.status();
        let message_id = response
            .headers()
            .get("x-message-id")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if status.is_success() {
            return Ok(message_id);
        }
        let detail = response.text().await.unwrap_or_default();
        let reason = serde_json::from_str::<serde_json::Value>(&detail)
            .ok()
            .and_then(|body| {
                body["errors"].as_array().map(|errors| {
                    errors
                        .iter()
                        .filter_map(|error| error["message"].as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            })
            .filter(|reason| !reason.is_empty())
            .unwrap_or(detail);
        Err(classify("sendgrid", status, reason))
    }
}

#[derive(Clone)]
pub enum SmsSender {
    /// Nothing is sent: the message goes to the service log only, whole in development,
    /// masked (number hidden but for its last two digits, text left out) elsewhere.
    Log {
        masked: bool,
    },
    Twilio(Twilio),
}

impl SmsSender {
    pub async fn send(&self, to: &str, text: &str) -> Result<String, SendError> {
        match self {
            SmsSender::Log { masked: false } => {
                tracing::info!(%to, %text, "sms (SHOP_SMS_PROVIDER=log: not sent)");
                Ok("logged".to_owned())
            }
            SmsSender::Log { masked: true } => {
                let to = mask_number(to);
                let characters = text.chars().count();
                tracing::info!(%to, characters, "sms (SHOP_SMS_PROVIDER=log: not sent)");
                Ok("logged".to_owned())
            }
            SmsSender::Twilio(twilio) => twilio.send(to, text).await,
        }
    }
}

/// `+4915112345678` as `+***********78`: enough to tell two numbers apart in a log, not to
/// call one.
pub fn mask_number(number: &str) -> String {
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let mut seen = 0;
    number
        .chars()
        .map(|c| {
            if !c.is_ascii_digit() {
                return c;
            }
            seen += 1;
            if seen + 2 > digits { c } else { '*' }
        })
        .collect()
}

/// A client of Twilio's Messages API.
#[derive(Clone)]
pub struct Twilio {
    http: reqwest::Client,
    base: String,
    account_sid: String,
    auth_token: String,
    from: String,
}

impl Twilio {
    pub fn new(
        base: &str,
        account_sid: &str,
        auth_token: &str,
        from: &str,
    ) -> Result<Self, SetupError> {
        Ok(Self {
            http: reqwest::Client::builder().timeout(SEND_TIMEOUT).build()?,
            base: base.trim_end_matches('/').to_owned(),
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            from: from.to_owned(),
        })
    }

    pub async fn send(&self, to: &str, text: &str) -> Result<String, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base, self.account_sid
        );
        let form = [("To", to), ("From", self.from.as_str()), ("Body", text)];
        let body = serde_urlencoded::to_string(form)
            .map_err(|error| SendError::Permanent(format!("encoding the SMS: {error}")))?;
        let response = self
            .http
            .post(url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|error| SendError::Transient(format!("twilio: {error}")))?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if status.is_success() {
            return Ok(answer["sid"].as_str().unwrap_or_default().to_owned());
        }
        let reason = answer["message"]
            .as_str()
            .unwrap_or("no reason given")
            .to_owned();
        Err(classify("twilio", status, reason))
    }
}

/// Rate limits, server errors and authentication (fixable by an operator) are worth another
/// try; other refusals are final.
fn classify(provider: &str, status: StatusCode, reason: String) -> SendError {
    let message = format!("{provider} answered {status}: {reason}");
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || status.is_server_error()
    {
        SendError::Transient(message)
    } else {
        SendError::Permanent(message)
    }
}

#[cfg(test)]
mod tests {
    use super::mask_number;

    #[test]
    fn a_masked_number_keeps_its_shape_and_last_two_digits() {
        assert_eq!(mask_number("+4915112345678"), "+***********78");
        assert_eq!(mask_number("+1 (555) 010-0199"), "+* (***) ***-**99");
        assert_eq!(mask_number("7"), "7");
    }
}
