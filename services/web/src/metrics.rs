//! Prometheus metrics, recorded with the `prometheus` crate into its default registry and served as
//! text on `/metrics`. Every series carries the service name, so `shop serve all` stays readable.

use std::sync::LazyLock;
use std::time::Instant;

use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::OperationId;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, TextEncoder,
    register_gauge_vec, register_histogram_vec, register_int_counter_vec, register_int_gauge_vec,
};

static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new("shop_http_requests_total", "HTTP requests handled"),
        &["service", "operation", "status"]
    )
    .expect("the metric is registered once")
});

static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        HistogramOpts::new(
            "shop_http_request_duration_seconds",
            "time to answer an HTTP request"
        )
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
        ]),
        &["service", "operation"]
    )
    .expect("the metric is registered once")
});

/// Middleware: counts and times every request by the OpenAPI operation it reached.
pub struct HttpMetrics {
    pub service: &'static str,
}

impl<E: Endpoint> poem::Middleware<E> for HttpMetrics {
    type Output = HttpMetricsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        HttpMetricsEndpoint {
            inner,
            service: self.service,
        }
    }
}

pub struct HttpMetricsEndpoint<E> {
    inner: E,
    service: &'static str,
}

impl<E: Endpoint> Endpoint for HttpMetricsEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let response = match self.inner.call(request).await {
            Ok(response) => response.into_response(),
            Err(error) => {
                let operation = error.data::<OperationId>().copied();
                let mut response = error.into_response();
                if let Some(operation) = operation {
                    response.set_data(operation);
                }
                response
            }
        };
        let operation = response
            .data::<OperationId>()
            .map_or("other", |operation| operation.0);
        HTTP_REQUESTS
            .with_label_values(&[self.service, operation, response.status().as_str()])
            .inc();
        HTTP_DURATION
            .with_label_values(&[self.service, operation])
            .observe(started.elapsed().as_secs_f64());
        Ok(response)
    }
}

/// The process's metrics in Prometheus' text format. The default registry includes the process's
/// own figures (resident memory, CPU, threads) through the crate's `process` feature.
static ACTORS_ALIVE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        Opts::new(
            "shop_actors_alive",
            "actors of the service's tree alive, by kind"
        ),
        &["kind"]
    )
    .expect("the metric is registered once")
});

static ACTOR_RESTARTS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        Opts::new(
            "shop_actor_restarts",
            "restarts behind the live actors, by kind (an actor's count resets when it stops for good)"
        ),
        &["kind"]
    )
    .expect("the metric is registered once")
});

static ACTOR_MESSAGES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        Opts::new(
            "shop_actor_messages_handled",
            "messages handled since the process started, by kind of actor"
        ),
        &["kind"]
    )
    .expect("the metric is registered once")
});

static ACTOR_HANDLING: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        Opts::new(
            "shop_actor_handling_seconds",
            "time spent handling messages since the process started, by kind of actor"
        ),
        &["kind"]
    )
    .expect("the metric is registered once")
});

pub fn render() -> String {
    // The actors are counted when asked: the tree changes too often to keep a gauge per change.
    ACTORS_ALIVE.reset();
    ACTOR_RESTARTS.reset();
    for (kind, alive, restarts) in shop_actors::meta::census() {
        ACTORS_ALIVE
            .with_label_values(&[&kind])
            .set(i64::try_from(alive).unwrap_or(i64::MAX));
        ACTOR_RESTARTS
            .with_label_values(&[&kind])
            .set(i64::try_from(restarts).unwrap_or(i64::MAX));
    }
    for (kind, messages, seconds) in shop_actors::meta::handled_by_kind() {
        ACTOR_MESSAGES
            .with_label_values(&[&kind])
            .set(i64::try_from(messages).unwrap_or(i64::MAX));
        ACTOR_HANDLING.with_label_values(&[&kind]).set(seconds);
    }
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(error) = encoder.encode(&prometheus::gather(), &mut buffer) {
        tracing::error!(%error, "encoding metrics");
    }
    String::from_utf8(buffer).unwrap_or_default()
}
