//! `/admin/traces`: a trace read back from the trace store (Jaeger's query API), as one flat
//! list of spans the observer page draws as a waterfall. Every service serves it (the gateway
//! sends it to one); admins only, as a trace shows who bought what.

use std::collections::HashMap;
use std::time::Duration;

use poem::web::{Json, Path, Query};
use poem::{Request, handler};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::problem::{ApiError, ProblemKind};

/// Where the trace store's query API is (`SHOP_TRACE_QUERY_URL`), and the client reading it.
#[derive(Clone)]
pub struct TraceStore {
    base: Option<url::Url>,
    http: reqwest::Client,
}

impl TraceStore {
    pub fn new(base: Option<url::Url>) -> Self {
        Self {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn get(&self, path: &str, query: Vec<(&str, String)>) -> Result<Value, ApiError> {
        let Some(base) = &self.base else {
            return Err(ApiError::unavailable(
                "no trace store is configured (SHOP_TRACE_QUERY_URL)",
            ));
        };
        let mut url = base
            .join(path)
            .map_err(|error| ApiError::internal(&error))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let response = self.http.get(url).send().await.map_err(|error| {
            tracing::warn!(%error, "the trace store did not answer");
            ApiError::unavailable("the trace store did not answer")
        })?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(ApiError::new(ProblemKind::NotFound, "no such trace"));
        }
        if !response.status().is_success() {
            tracing::warn!(status = %response.status(), "the trace store refused a query");
            return Err(ApiError::unavailable("the trace store refused the query"));
        }
        response.json().await.map_err(|error| {
            tracing::warn!(%error, "the trace store's answer was not JSON");
            ApiError::unavailable("the trace store's answer could not be read")
        })
    }
}

/// One span, as the observer draws it.
#[derive(Debug, Serialize, PartialEq)]
pub struct SpanView {
    pub span_id: String,
    pub parent_id: Option<String>,
    pub service: String,
    pub name: String,
    pub kind: String,
    pub start_us: i64,
    pub duration_us: i64,
    pub error: bool,
    pub attributes: HashMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct TraceView {
    pub trace_id: String,
    pub spans: Vec<SpanView>,
}

#[derive(Debug, Serialize)]
pub struct TraceSummary {
    pub trace_id: String,
    pub service: String,
    pub name: String,
    pub start_us: i64,
    pub duration_us: i64,
    pub spans: usize,
}

#[derive(Deserialize)]
pub struct FindQuery {
    order_id: Option<String>,
    request_id: Option<String>,
}

#[derive(Deserialize)]
pub struct RecentQuery {
    min_duration_ms: Option<u64>,
    limit: Option<usize>,
}

async fn store(request: &Request) -> Result<&TraceStore, ApiError> {
    let caller = crate::auth::caller_from_header(request).await?;
    caller.require_admin()?;
    request
        .data::<TraceStore>()
        .ok_or_else(|| ApiError::internal(&"no trace store data"))
}

fn is_trace_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `GET /admin/traces/{trace_id}`.
#[handler]
pub async fn by_id(
    request: &Request,
    Path(trace_id): Path<String>,
) -> poem::Result<Json<TraceView>> {
    let store = store(request).await?;
    Ok(Json(trace(store, &trace_id).await?))
}

async fn trace(store: &TraceStore, trace_id: &str) -> Result<TraceView, ApiError> {
    if !is_trace_id(trace_id) {
        return Err(ApiError::new(
            ProblemKind::Unprocessable,
            "a trace id is 32 hexadecimal digits",
        ));
    }
    let answer = store
        .get(
            &format!("api/traces/{}", trace_id.to_ascii_lowercase()),
            Vec::new(),
        )
        .await?;
    answer["data"]
        .as_array()
        .and_then(|traces| traces.first())
        .map(view)
        .ok_or_else(|| ApiError::new(ProblemKind::NotFound, "no such trace"))
}

/// `GET /admin/traces?order_id=…` (the trace that placed the order) or `?request_id=…`.
#[handler]
pub async fn find(
    request: &Request,
    Query(query): Query<FindQuery>,
) -> poem::Result<Json<TraceView>> {
    let store = store(request).await?;
    if let Some(request_id) = query.request_id {
        return Ok(Json(trace(store, request_id.trim()).await?));
    }
    let Some(order_id) = query.order_id else {
        return Err(ApiError::new(
            ProblemKind::Unprocessable,
            "say which trace: order_id or request_id",
        )
        .into());
    };
    let order_id = uuid::Uuid::parse_str(order_id.trim())
        .map_err(|_| ApiError::new(ProblemKind::Unprocessable, "order_id is not a UUID"))?;
    let tags = serde_json::json!({ "order.id": order_id.to_string() }).to_string();
    let answer = store
        .get(
            "api/traces",
            vec![
                ("service", "order".to_owned()),
                ("operation", "checkout".to_owned()),
                ("tags", tags),
                ("lookback", "7d".to_owned()),
                ("limit", "1".to_owned()),
            ],
        )
        .await?;
    let Some(found) = answer["data"].as_array().and_then(|traces| traces.first()) else {
        return Err(ApiError::new(
            ProblemKind::NotFound,
            format!("no trace for order {order_id}"),
        )
        .into());
    };
    // A search answers with the matching trace's spans; read it whole.
    let trace_id = found["traceID"].as_str().unwrap_or_default().to_owned();
    Ok(Json(trace(store, &trace_id).await?))
}

/// `GET /admin/traces/recent?min_duration_ms=&limit=`: the newest traces at least that slow.
#[handler]
pub async fn recent(
    request: &Request,
    Query(query): Query<RecentQuery>,
) -> poem::Result<Json<Value>> {
    let store = store(request).await?;
    let limit = query.limit.unwrap_or(20).clamp(1, 100);
    let min_duration = query.min_duration_ms.unwrap_or(100).min(3_600_000);
    // The store's search is per service: every service it has heard from.
    let services = store.get("api/services", Vec::new()).await?;
    let services: Vec<String> = services["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|service| service.as_str().map(str::to_owned))
        .collect();
    let searches = services.into_iter().map(|service| {
        store.get(
            "api/traces",
            vec![
                ("service", service),
                ("minDuration", format!("{min_duration}ms")),
                ("lookback", "1h".to_owned()),
                ("limit", limit.to_string()),
            ],
        )
    });
    let mut summaries: HashMap<String, TraceSummary> = HashMap::new();
    for answer in futures::future::join_all(searches).await {
        let answer = answer?;
        for trace in answer["data"].as_array().into_iter().flatten() {
            let view = view(trace);
            if let Some(summary) = summarise(&view) {
                summaries.entry(summary.trace_id.clone()).or_insert(summary);
            }
        }
    }
    let mut traces: Vec<TraceSummary> = summaries.into_values().collect();
    traces.sort_by_key(|summary| std::cmp::Reverse(summary.start_us));
    traces.truncate(limit);
    Ok(Json(serde_json::json!({ "traces": traces })))
}

/// The root span stands for the trace (the earliest, when the root is not recorded).
fn summarise(trace: &TraceView) -> Option<TraceSummary> {
    let ids: std::collections::HashSet<&str> = trace
        .spans
        .iter()
        .map(|span| span.span_id.as_str())
        .collect();
    let root = trace
        .spans
        .iter()
        .filter(|span| {
            span.parent_id
                .as_deref()
                .is_none_or(|parent| !ids.contains(parent))
        })
        .min_by_key(|span| span.start_us)?;
    let end = trace
        .spans
        .iter()
        .map(|span| span.start_us + span.duration_us)
        .max()
        .unwrap_or(root.start_us);
    Some(TraceSummary {
        trace_id: trace.trace_id.clone(),
        service: root.service.clone(),
        name: root.name.clone(),
        start_us: root.start_us,
        duration_us: end - root.start_us,
        spans: trace.spans.len(),
    })
}

/// A trace in Jaeger's JSON (`/api/traces`), flattened.
fn view(trace: &Value) -> TraceView {
    let services: HashMap<&str, &str> = trace["processes"]
        .as_object()
        .map(|processes| {
            processes
                .iter()
                .map(|(id, process)| (id.as_str(), process["serviceName"].as_str().unwrap_or("?")))
                .collect()
        })
        .unwrap_or_default();
    let spans = trace["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|span| {
            let attributes: HashMap<String, String> = span["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|tag| {
                    let value = match &tag["value"] {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    Some((tag["key"].as_str()?.to_owned(), value))
                })
                .collect();
            let parent_id = span["references"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|reference| reference["refType"] == "CHILD_OF")
                .and_then(|reference| reference["spanID"].as_str())
                .map(str::to_owned);
            SpanView {
                span_id: span["spanID"].as_str().unwrap_or_default().to_owned(),
                parent_id,
                service: services
                    .get(span["processID"].as_str().unwrap_or_default())
                    .copied()
                    .unwrap_or("?")
                    .to_owned(),
                name: span["operationName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                kind: attributes
                    .get("span.kind")
                    .cloned()
                    .unwrap_or_else(|| "internal".to_owned()),
                start_us: span["startTime"].as_i64().unwrap_or_default(),
                duration_us: span["duration"].as_i64().unwrap_or_default(),
                error: attributes.get("error").is_some_and(|error| error == "true")
                    || attributes
                        .get("otel.status_code")
                        .is_some_and(|code| code == "ERROR"),
                attributes,
            }
        })
        .collect();
    TraceView {
        trace_id: trace["traceID"].as_str().unwrap_or_default().to_owned(),
        spans,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jaeger_trace_becomes_spans_with_services_parents_and_errors() {
        let jaeger = serde_json::json!({
            "traceID": "4bf92f3577b34da6a3ce929d0e0e4736",
            "spans": [
                { "spanID": "a1", "operationName": "POST /orders", "references": [],
                  "startTime": 100, "duration": 50, "processID": "p1",
                  "tags": [{ "key": "span.kind", "type": "string", "value": "server" }] },
                { "spanID": "b2", "operationName": "publish shop.orders", "processID": "p1",
                  "references": [{ "refType": "CHILD_OF", "traceID": "4bf9", "spanID": "a1" }],
                  "startTime": 120, "duration": 200,
                  "tags": [{ "key": "otel.status_code", "type": "string", "value": "ERROR" },
                           { "key": "messaging.kafka.offset", "type": "int64", "value": 7 }] }
            ],
            "processes": { "p1": { "serviceName": "order", "tags": [] } }
        });
        let trace = view(&jaeger);
        assert_eq!(trace.spans.len(), 2);
        assert_eq!(trace.spans[0].service, "order");
        assert_eq!(trace.spans[0].kind, "server");
        assert_eq!(trace.spans[1].parent_id.as_deref(), Some("a1"));
        assert!(trace.spans[1].error && !trace.spans[0].error);
        assert_eq!(trace.spans[1].attributes["messaging.kafka.offset"], "7");
        let summary = summarise(&trace).expect("a root");
        assert_eq!(
            (summary.name.as_str(), summary.duration_us),
            ("POST /orders", 220)
        );
    }
}
