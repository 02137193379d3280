//! Database calls as spans: PostgreSQL statements (from the events sqlx reports after each) and
//! MongoDB commands (from the driver's command events). Both arrive once the call is over, so
//! each span is made whole then, ending now and starting its duration ago, as a child of the
//! span the call was made in. Only the statement's kind and opening words are recorded, never
//! its parameters.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue, global};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context as LayerContext;

/// One database call that just finished, as a span of the current trace (none outside one).
pub fn statement_span(
    system: &'static str,
    operation: &str,
    summary: Option<&str>,
    took: Duration,
    failed: bool,
) {
    let parent = Context::current();
    let parent_span = parent.span();
    let parent_span_context = parent_span.span_context();
    if !parent_span_context.is_valid() || !parent_span_context.is_sampled() {
        return;
    }
    let end = SystemTime::now();
    let mut attributes = vec![
        KeyValue::new("db.system.name", system),
        KeyValue::new("db.operation.name", operation.to_owned()),
    ];
    if let Some(summary) = summary {
        attributes.push(KeyValue::new("db.query.summary", summary.to_owned()));
    }
    let tracer = global::tracer("shop");
    let mut span = tracer
        .span_builder(format!("{operation} {system}"))
        .with_kind(SpanKind::Client)
        .with_start_time(end.checked_sub(took).unwrap_or(end))
        .with_attributes(attributes)
        .start_with_context(&tracer, &parent);
    if failed {
        span.set_status(Status::error("the call failed"));
    }
    span.end_with_timestamp(end);
}

/// Turns sqlx's `sqlx::query` events into statement spans.
pub struct PostgresStatements;

impl<S: tracing::Subscriber> Layer<S> for PostgresStatements {
    fn on_event(&self, event: &tracing::Event<'_>, _: LayerContext<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let mut read = QueryEvent::default();
        event.record(&mut read);
        let Some(summary) = read.summary else {
            return;
        };
        let operation = summary
            .split_whitespace()
            .next()
            .unwrap_or("query")
            .to_ascii_uppercase();
        let summary = summary.trim_end_matches(" …");
        statement_span(
            "postgresql",
            &operation,
            Some(summary),
            Duration::from_secs_f64(read.elapsed_secs.max(0.0)),
            false,
        );
    }
}

#[derive(Default)]
struct QueryEvent {
    summary: Option<String>,
    elapsed_secs: f64,
}

impl Visit for QueryEvent {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "summary" {
            self.summary = Some(value.to_owned());
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = value;
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}
