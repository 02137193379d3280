//! Errors as `application/problem+json` (RFC 9457): a stable `type`, a `title`, the `status`, a
//! human `detail`, and the request id. Services map their own error enums onto [`ProblemKind`];
//! causes of server errors are logged, never sent.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object};
use serde_json::{Map, Value};

use crate::request_id;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// The kinds of failure every service answers with. The `type` URI of each is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    TooManyRequests,
    Internal,
    Unavailable,
}

impl ProblemKind {
    pub fn status(self) -> StatusCode {
        match self {
            ProblemKind::BadRequest => StatusCode::BAD_REQUEST,
            ProblemKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ProblemKind::Forbidden => StatusCode::FORBIDDEN,
            ProblemKind::NotFound => StatusCode::NOT_FOUND,
            ProblemKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProblemKind::Conflict => StatusCode::CONFLICT,
            ProblemKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ProblemKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ProblemKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn slug(self) -> &'static str {
        match self {
            ProblemKind::BadRequest => "bad-request",
            ProblemKind::Unauthorized => "unauthorized",
            ProblemKind::Forbidden => "forbidden",
            ProblemKind::NotFound => "not-found",
            ProblemKind::MethodNotAllowed => "method-not-allowed",
            ProblemKind::Conflict => "conflict",
            ProblemKind::PayloadTooLarge => "payload-too-large",
            ProblemKind::UnsupportedMediaType => "unsupported-media-type",
            ProblemKind::Unprocessable => "unprocessable",
            ProblemKind::TooManyRequests => "too-many-requests",
            ProblemKind::Internal => "internal",
            ProblemKind::Unavailable => "service-unavailable",
        }
    }

    pub fn type_uri(self) -> String {
        format!("https://shop.example/problems/{}", self.slug())
    }

    /// The kind for an HTTP error status that something other than a service raised (poem's own
    /// 404/405, a body-size limit, a payload that did not parse).
    pub fn from_status(status: StatusCode) -> Self {
        match status.as_u16() {
            401 => ProblemKind::Unauthorized,
            403 => ProblemKind::Forbidden,
            404 => ProblemKind::NotFound,
            405 => ProblemKind::MethodNotAllowed,
            409 => ProblemKind::Conflict,
            413 => ProblemKind::PayloadTooLarge,
            415 => ProblemKind::UnsupportedMediaType,
            422 => ProblemKind::Unprocessable,
            429 => ProblemKind::TooManyRequests,
            503 => ProblemKind::Unavailable,
            400..=499 => ProblemKind::BadRequest,
            _ => ProblemKind::Internal,
        }
    }
}

/// The body of every error response (documented in each service's OpenAPI).
#[derive(Debug, Clone, Object)]
pub struct Problem {
    /// Stable URI naming the kind of problem.
    #[oai(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The id of the request, as in the X-Request-ID header and the service's logs.
    pub request_id: String,
    /// The id of the request's trace (the observer's trace view shows it).
    pub trace_id: Option<String>,
}

/// The error every handler returns: a kind, a detail safe to show, and optional extra members
/// (e.g. the current state of an order on a 409).
#[derive(Debug)]
pub struct ApiError {
    pub kind: ProblemKind,
    pub detail: String,
    pub extra: Map<String, Value>,
    /// Seconds a client should wait before trying again (`Retry-After`, for 429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    /// Tells the client to wait `seconds` before trying again (`Retry-After`, and
    /// `retry_after` in the body).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self.with("retry_after", seconds)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::BadRequest, detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Unauthorized, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Forbidden, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::NotFound, detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Conflict, detail)
    }
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Unprocessable, detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Unavailable, detail)
    }

    /// A server-side failure: `cause` goes to the log with the request id, the client gets a
    /// generic detail.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(ProblemKind::Internal, "something went wrong on our side")
    }

    /// Adds a member to the problem body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    fn body(&self) -> Value {
        let status = self.kind.status();
        let mut body = Map::new();
        body.insert("type".into(), self.kind.type_uri().into());
        body.insert(
            "title".into(),
            status.canonical_reason().unwrap_or("Error").into(),
        );
        body.insert("status".into(), status.as_u16().into());
        body.insert("detail".into(), self.detail.clone().into());
        body.insert("request_id".into(), request_id::current().into());
        if let Some(trace_id) = request_id::current_trace_id() {
            body.insert("trace_id".into(), trace_id.into());
        }
        for (key, value) in &self.extra {
            body.entry(key.clone()).or_insert_with(|| value.clone());
        }
        Value::Object(body)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.status(), self.detail)
    }
}

impl std::error::Error for ApiError {}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.kind.status()
    }

    fn as_response(&self) -> Response {
        let mut response = problem_response(self.kind.status(), self.body());
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                poem::http::header::RETRY_AFTER,
                poem::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

fn problem_response(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .content_type(PROBLEM_CONTENT_TYPE)
        .body(body.to_string())
}

/// The statuses a handler may answer with a problem; listed in every operation's OpenAPI.
const DOCUMENTED: &[(u16, &str)] = &[
    (400, "The request is malformed"),
    (401, "Missing, invalid or expired credentials"),
    (403, "The caller may not do this"),
    (404, "No such resource"),
    (409, "Conflicts with the current state"),
    (413, "The body is too large"),
    (415, "The body is not of a media type the operation takes"),
    (422, "Well-formed but not acceptable"),
    (429, "Too many requests"),
    (500, "Internal error"),
    (503, "A dependency is unavailable"),
];

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: DOCUMENTED
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: PROBLEM_CONTENT_TYPE,
                        schema: Problem::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}

/// Middleware: whatever error leaves a service — its own, poem's 404/405, a request that did not
/// parse, a body over the limit — leaves as problem+json.
pub async fn problems<E: poem::Endpoint>(
    next: E,
    request: poem::Request,
) -> poem::Result<Response> {
    let response = match next.call(request).await {
        Ok(response) => response.into_response(),
        Err(error) => error.into_response(),
    };
    if !response.status().is_client_error() && !response.status().is_server_error() {
        return Ok(response);
    }
    let is_problem = response
        .headers()
        .get(poem::http::header::CONTENT_TYPE)
        .is_some_and(|value| {
            value
                .as_bytes()
                .starts_with(PROBLEM_CONTENT_TYPE.as_bytes())
        });
    if is_problem {
        return Ok(response);
    }
    let status = response.status();
    let text = response.into_body().into_string().await.unwrap_or_default();
    let detail = if status.is_server_error() {
        tracing::error!(%status, cause = %text, "internal error");
        "something went wrong on our side".to_owned()
    } else {
        client_detail(status, &text)
    };
    let mut body = ApiError::new(ProblemKind::from_status(status), detail).body();
    // A status without a kind of its own (a 406, say) keeps its own number and title.
    body["status"] = status.as_u16().into();
    body["title"] = status.canonical_reason().unwrap_or("Error").into();
    Ok(problem_response(status, body))
}

/// A safe detail for a client error raised outside the handlers: poem's messages say what was
/// wrong with the request (a missing field, a bad header) and nothing about our internals.
fn client_detail(status: StatusCode, text: &str) -> String {
    let text = text.trim();
    match status {
        StatusCode::NOT_FOUND => "no such resource".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed here".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_owned(),
        // poem-openapi's words for a missing or non-bearer Authorization header.
        StatusCode::UNAUTHORIZED if text == "authorization error" => {
            "a bearer token is required (Authorization: Bearer <access token>)".to_owned()
        }
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_owned(),
        _ => without_router_names(text).chars().take(300).collect(),
    }
}

/// poem names path parameters by position (`param0`) in its parse errors; say what it is instead.
fn without_router_names(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("path `param") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "path `param".len()..];
        match after.find('`') {
            Some(end) if after[..end].bytes().all(|b| b.is_ascii_digit()) => {
                out.push_str("a path parameter");
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("path `param");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_parameter_names_are_not_shown() {
        assert_eq!(
            without_router_names("failed to parse path `param0`: not a uuid"),
            "failed to parse a path parameter: not a uuid"
        );
        assert_eq!(without_router_names("nothing to see"), "nothing to see");
    }

    #[test]
    fn every_kind_has_the_status_its_name_says() {
        assert_eq!(ProblemKind::Conflict.status(), StatusCode::CONFLICT);
        assert_eq!(
            ProblemKind::Unprocessable.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            ProblemKind::from_status(StatusCode::PAYLOAD_TOO_LARGE),
            ProblemKind::PayloadTooLarge
        );
        assert_eq!(
            ProblemKind::from_status(StatusCode::BAD_GATEWAY),
            ProblemKind::Internal
        );
    }

    #[test]
    fn a_problem_body_has_the_standard_members_and_its_extras() {
        let body = ApiError::conflict("order is shipped")
            .with("current_state", "shipped")
            .body();
        assert_eq!(body["type"], "https://shop.example/problems/conflict");
        assert_eq!(body["title"], "Conflict");
        assert_eq!(body["status"], 409);
        assert_eq!(body["detail"], "order is shipped");
        assert_eq!(body["current_state"], "shipped");
        assert!(body["request_id"].is_string());
    }
}
