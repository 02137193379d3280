//! The OTLP/HTTP exporter, its sampler, and the HTTP client it sends with.

use std::time::Duration;

use bytes::Bytes;
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler,
    SdkTracerProvider,
};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("the trace exporter could not be built: {0}")]
    Exporter(String),
    #[error("tracing needs a Tokio runtime to send from")]
    NoRuntime,
}

/// A running exporter. Dropping it without [`Telemetry::shutdown`] loses the spans not sent yet.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports spans to `endpoint` (an OTLP/HTTP traces URL such as
    /// `http://127.0.0.1:4318/v1/traces`) as `service`. A trace begun here is kept with
    /// probability `sample_ratio`; one continued from a caller follows the caller's decision,
    /// so a trace is whole or absent, never in pieces.
    pub fn start(endpoint: &str, sample_ratio: f64, service: &str) -> Result<Self, TelemetryError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| TelemetryError::Exporter(error.to_string()))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(TokioClient { http, runtime })
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .build()
            .map_err(|error| TelemetryError::Exporter(error.to_string()))?;
        // A bounded queue: when the store is slow or down, spans are dropped, requests are not.
        let batches = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(8192)
                    .with_scheduled_delay(Duration::from_millis(500))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batches)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                sample_ratio,
            ))))
            .with_id_generator(RequestIds::default())
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .build(),
            )
            .build();
        // Database spans are made whole after the call (see `statements`), with this tracer.
        opentelemetry::global::set_tracer_provider(provider.clone());
        crate::ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(Self { provider })
    }

    /// The layer that records this process's `tracing` spans into the exporter.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("shop"))
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_level(false)
            .with_tracked_inactivity(false)
    }

    /// Sends what is still queued (a stopping process's last spans).
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("shop: the last spans were not all exported: {error}");
        }
    }
}

/// Random ids, except that a root span started by [`crate::root_span`] takes the trace id it
/// was given.
#[derive(Debug, Default)]
struct RequestIds(RandomIdGenerator);

impl IdGenerator for RequestIds {
    fn new_trace_id(&self) -> TraceId {
        crate::take_next_trace_id().unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
}

/// The exporter's batches are sent from its own thread, outside any Tokio runtime; each
/// request is run on the process's runtime, with the client every other call uses.
#[derive(Debug)]
struct TokioClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for TokioClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let http = self.http.clone();
        let sent = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let response = http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            let mut answer = Response::new(body);
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok::<_, reqwest::Error>(answer)
        });
        match sent.await {
            Ok(answer) => Ok(answer?),
            Err(error) => Err(Box::new(error)),
        }
    }
}
