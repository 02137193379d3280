//! Request ids: taken from `X-Request-ID` when the caller (nginx) sent a sane one, generated
//! otherwise; put in the response header, in the span every log line of the request carries, and
//! in every problem body.

use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, or `-` outside of one.
pub fn current() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

fn is_sane(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Middleware: the outermost layer of every service.
pub async fn with_request_id<E: Endpoint>(next: E, request: Request) -> poem::Result<Response> {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_sane(id))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let started = std::time::Instant::now();
    let response = REQUEST_ID
        .scope(id.clone(), async move {
            let response = match next.call(request).await {
                Ok(response) => response.into_response(),
                Err(error) => error.into_response(),
            };
            // nginx keeps the access log; here a request is worth a line at info only when it
            // failed on our side.
            let status = response.status().as_u16();
            let ms = started.elapsed().as_millis() as u64;
            if response.status().is_server_error() {
                tracing::warn!(status, ms, "handled");
            } else {
                tracing::debug!(status, ms, "handled");
            }
            response
        })
        .instrument(span)
        .await;
    let mut response = response;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_taken_from_the_caller() {
        assert!(is_sane("3f2a9c0e-1b2c-4d5e-8f90-123456789abc"));
        assert!(is_sane("abc.DEF_123"));
        assert!(!is_sane(""));
        assert!(!is_sane("has space"));
        assert!(!is_sane("newline\ninjected"));
        assert!(!is_sane(&"x".repeat(129)));
    }
}
