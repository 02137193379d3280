//! A service's whole HTTP surface: its OpenAPI operations, its OpenAPI document and Swagger UI, the
//! operator endpoints (`/health`, `/ready`, `/metrics`, `/admin/tree`), and the middleware every
//! service shares.

use std::sync::Arc;

use futures::future::BoxFuture;
use poem::endpoint::BoxEndpoint;
use poem::http::StatusCode;
use poem::middleware::{CatchPanic, SetHeader};
use poem::web::{Json, Query};
use poem::{EndpointExt, IntoResponse, Request, Response, Route, handler};
use poem_openapi::{OpenApi, OpenApiService};
use serde_json::json;
use shop_actors::tree::{SnapshotLimits, snapshot};

use crate::auth::TokenVerifier;
use crate::metrics::{self, HttpMetrics};
use crate::problem::{self, ApiError};
use crate::{request_id, traces};

/// The header naming the replica that answered.
pub const INSTANCE_HEADER: &str = "X-Shop-Instance";

/// Checks that a service's stores are reachable: `Err` names what is not.
pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// What the shared part of a service's HTTP surface needs to know about the service.
#[derive(Clone)]
pub struct ServiceWeb {
    /// `user`, `product`, …: the label on metrics and the path prefix of the OpenAPI document.
    pub service: &'static str,
    pub title: &'static str,
    /// The name of the service's root supervisor, where `/admin/tree` starts.
    pub root_actor: String,
    pub verifier: Arc<TokenVerifier>,
    pub readiness: ReadinessCheck,
    pub body_limit: usize,
    /// This replica's name, sent back on every answer as `X-Shop-Instance`.
    pub instance: String,
    /// The trace store's query API, read by `/admin/traces`.
    pub trace_store: Option<url::Url>,
}

impl ServiceWeb {
    /// The endpoint of a service whose operations are `api`. Its OpenAPI document is at
    /// `/<prefix>/openapi.json` and Swagger UI at `/<prefix>/docs`, under the same path prefix as
    /// its operations, so both are reachable through the gateway.
    pub fn endpoint<T: OpenApi + 'static>(
        &self,
        api: T,
        prefix: &str,
    ) -> BoxEndpoint<'static, Response> {
        let openapi = OpenApiService::new(api, self.title, env!("CARGO_PKG_VERSION")).server("/");
        let spec = openapi.spec_endpoint();
        let docs = openapi.swagger_ui();
        let ops = Ops {
            root_actor: self.root_actor.clone(),
            readiness: self.readiness.clone(),
        };
        Route::new()
            .at("/health", poem::get(health))
            .at("/ready", poem::get(ready))
            .at("/metrics", poem::get(metrics_text))
            .at("/admin/tree", poem::get(admin_tree))
            .at("/admin/actors/:name/stop", poem::post(stop_actor))
            .at("/admin/traces", poem::get(traces::find))
            .at("/admin/traces/recent", poem::get(traces::recent))
            .at("/admin/traces/:trace_id", poem::get(traces::by_id))
            .at(format!("{prefix}/openapi.json"), spec)
            .nest(format!("{prefix}/docs"), docs)
            .nest("/", openapi)
            .data(ops)
            .data(traces::TraceStore::new(self.trace_store.clone()))
            .data(self.verifier.clone())
            .around(body_limit(self.body_limit))
            .with(CatchPanic::new())
            .around(problem::problems)
            .with(HttpMetrics {
                service: self.service,
            })
            .around(request_id::with_request_id)
            .with(SetHeader::new().overriding(INSTANCE_HEADER, self.instance.clone()))
            .boxed()
    }
}

/// Refuses bodies over `limit` bytes (413) before they are read. A body of unknown length must
/// say it (411), since its size could not be checked up front.
fn body_limit<E: poem::Endpoint + 'static>(
    limit: usize,
) -> impl Fn(E, Request) -> BoxFuture<'static, poem::Result<Response>> + Send + Sync + 'static {
    move |next: E, request: Request| {
        Box::pin(async move {
            let length = request
                .headers()
                .get(poem::http::header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<usize>().ok());
            let chunked = request
                .headers()
                .contains_key(poem::http::header::TRANSFER_ENCODING);
            match length {
                Some(length) if length > limit => Err(ApiError::new(
                    crate::ProblemKind::PayloadTooLarge,
                    format!("the request body is larger than {limit} bytes"),
                )
                .into()),
                None if chunked => Err(ApiError::bad_request(
                    "a request body needs a Content-Length header",
                )
                .into()),
                _ => next.call(request).await.map(IntoResponse::into_response),
            }
        })
    }
}

#[derive(Clone)]
struct Ops {
    root_actor: String,
    readiness: ReadinessCheck,
}

#[handler]
fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "alive" }))
}

#[handler]
async fn ready(request: &Request) -> poem::Result<Json<serde_json::Value>> {
    let ops = request
        .data::<Ops>()
        .ok_or_else(|| ApiError::internal(&"no ops data"))?;
    match (ops.readiness)().await {
        Ok(()) => Ok(Json(json!({ "status": "ready" }))),
        Err(what) => {
            tracing::warn!(%what, "not ready");
            Err(ApiError::unavailable(format!("not ready: {what}")).into())
        }
    }
}

#[handler]
fn metrics_text() -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .content_type("text/plain; version=0.0.4")
        .body(metrics::render())
}

#[derive(serde::Deserialize)]
struct TreeQuery {
    /// How many children of a big group to list.
    sample: Option<usize>,
}

/// The service's supervision tree (admin token). `?sample=N` lists N children of a big group.
#[handler]
async fn admin_tree(request: &Request, Query(query): Query<TreeQuery>) -> poem::Result<Response> {
    let caller = crate::auth::caller_from_header(request).await?;
    caller.require_admin()?;
    let ops = request
        .data::<Ops>()
        .ok_or_else(|| ApiError::internal(&"no ops data"))?;
    let root = ractor::registry::where_is(ops.root_actor.clone())
        .ok_or_else(|| ApiError::unavailable("the service's supervision tree is not running"))?;
    let defaults = SnapshotLimits::default();
    let limits = SnapshotLimits {
        group_sample: query.sample.unwrap_or(defaults.group_sample).min(1000),
        ..defaults
    };
    Ok(Json(snapshot(&root, limits)).into_response())
}

/// Stops one actor of this service, as an operator would kill an Erlang process to watch its
/// supervisor bring it back (admin token; audited in the log). The root supervisor is refused:
/// stopping it stops the service.
#[handler]
async fn stop_actor(
    request: &Request,
    poem::web::Path(name): poem::web::Path<String>,
) -> poem::Result<Response> {
    let caller = crate::auth::caller_from_header(request).await?;
    caller.require_admin()?;
    let ops = request
        .data::<Ops>()
        .ok_or_else(|| ApiError::internal(&"no ops data"))?;
    if name == ops.root_actor {
        return Err(ApiError::new(
            crate::ProblemKind::Conflict,
            "the root supervisor cannot be stopped; stop the service instead",
        )
        .into());
    }
    let not_found = || {
        ApiError::new(
            crate::ProblemKind::NotFound,
            format!("no actor {name:?} in this service"),
        )
    };
    let cell = ractor::registry::where_is(name.clone()).ok_or_else(not_found)?;
    // Only actors of this service's tree: walk up to its root.
    let mut above = cell.try_get_supervisor();
    let mut in_tree = false;
    while let Some(parent) = above {
        if parent.get_name().as_deref() == Some(ops.root_actor.as_str()) {
            in_tree = true;
            break;
        }
        above = parent.try_get_supervisor();
    }
    if !in_tree {
        return Err(not_found().into());
    }
    tracing::warn!(actor = %name, by = %caller.0.sub, "audit: an operator stopped an actor");
    cell.stop(Some(shop_actors::STOPPED_BY_OPERATOR.to_owned()));
    Ok(
        Json(json!({ "stopped": name, "reason": shop_actors::STOPPED_BY_OPERATOR }))
            .with_status(StatusCode::ACCEPTED)
            .into_response(),
    )
}
