//! Request ids and the request's span: the id is taken from `X-Request-ID` when the caller
//! (nginx) sent a sane one, generated otherwise; put in the response header, in the span every
//! log line of the request carries, and in every problem body. The span continues the caller's
//! W3C `traceparent`, or begins a trace whose id is the request id (nginx makes its ids 32 hex
//! digits, a trace id's shape), so either id finds the other.

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

/// What a message or an outbox row sent while handling this request carries of it: the trace
/// context (W3C `traceparent`) when tracing is on, else the request id, for the logs.
pub fn trace_context() -> String {
    shop_telemetry::current_traceparent().unwrap_or_else(current)
}

/// The id of the current request's trace: the recorded trace's, or with tracing off the
/// request id when it has a trace id's shape (what it would have been).
pub fn current_trace_id() -> Option<String> {
    shop_telemetry::current_trace_id().or_else(|| {
        REQUEST_ID
            .try_with(Clone::clone)
            .ok()
            .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    })
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
    let route = route_of(request.uri().path());
    let make_span = || {
        tracing::info_span!(
            "request",
            otel.name = format!("{} {route}", request.method()),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            request_id = %id,
            trace_id = tracing::field::Empty,
            method = %request.method(),
            path = %request.uri().path(),
            http.response.status_code = tracing::field::Empty,
        )
    };
    let traceparent = request
        .headers()
        .get(shop_telemetry::TRACEPARENT)
        .and_then(|value| value.to_str().ok());
    let span = match traceparent.filter(|header| shop_telemetry::trace_id_of(header).is_some()) {
        Some(traceparent) => {
            let span = make_span();
            shop_telemetry::continue_trace(&span, traceparent);
            span
        }
        None => shop_telemetry::root_span(&id, make_span),
    };
    if let Some(trace_id) = shop_telemetry::span_trace_id(&span) {
        span.record("trace_id", trace_id);
    }
    let request_span = span.clone();
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
            request_span.record("http.response.status_code", status);
            if response.status().is_server_error() {
                request_span.record("otel.status_code", "ERROR");
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

/// A path as a span name: ids (UUIDs, long hex, numbers) become `{id}`, so one operation is
/// one name in the trace store, not one per customer.
fn route_of(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let id_like = uuid::Uuid::parse_str(segment).is_ok()
                || (segment.len() >= 16 && segment.bytes().all(|b| b.is_ascii_hexdigit()))
                || (!segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()));
            if id_like { "{id}" } else { segment }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_names_ids_by_their_place() {
        assert_eq!(
            route_of("/orders/0193b8a4-6f1e-7c3a-9b1d-2e4f5a6b7c8d/cancel"),
            "/orders/{id}/cancel"
        );
        assert_eq!(
            route_of("/products/42"),
            "/products/42".replace("42", "{id}")
        );
        assert_eq!(route_of("/users/me"), "/users/me");
    }

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
