//! Distributed tracing for every Shop process.
//!
//! Spans are ordinary `tracing` spans; when a trace store is configured, [`Telemetry::start`]
//! gives the layer that turns them into OpenTelemetry spans and exports them over OTLP/HTTP.
//! A trace crosses four kinds of boundary, each carrying a W3C `traceparent`:
//!
//! - HTTP: nginx passes a client's `traceparent` on (or lets the request id become the trace
//!   id); a service continues it in its request span and injects it into the calls it makes;
//! - an actor's mailbox: a message carries the `traceparent` of the span that sent it, and the
//!   actor's handling span ([`actor_span`]) continues it;
//! - the outbox: a row stores the `traceparent` of the transaction that wrote it;
//! - Kafka: the relay's publish span puts its own in the message headers, and the consuming
//!   bridge continues it in a consumer span.
//!
//! With tracing off (no endpoint) no exporter exists and these functions cost almost nothing:
//! every span context is invalid and nothing is injected.

mod export;
mod statements;

use std::cell::Cell;
use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use export::{Telemetry, TelemetryError};
pub use statements::{PostgresStatements, statement_span};

static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process exports spans: what costs something only for a trace (the database
/// driver's command events) is set up only then.
pub fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The target of spans made for the trace store alone (an actor's handling, a publish, a send):
/// the log leaves them out of its lines, which the request's or the consumer's span already
/// names with their trace id.
pub const SPANS_ONLY: &str = "shop::trace";

/// The header (HTTP and Kafka) that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of `span`, when it is part of a trace being recorded or propagated.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The `traceparent` of the span this code runs in.
pub fn current_traceparent() -> Option<String> {
    traceparent(&tracing::Span::current())
}

/// The trace id (32 hex digits) of the span this code runs in.
pub fn current_trace_id() -> Option<String> {
    span_trace_id(&tracing::Span::current())
}

/// The trace id of `span`, when it is part of a trace.
pub fn span_trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Makes `span` continue the trace of `traceparent` (a W3C header value). Anything else (an
/// old request id stored before tracing, a malformed header) leaves `span` as it was.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    if let Some(parent) = parse(traceparent) {
        // Fails only for a span already started, which callers never pass.
        let _ = span.set_parent(parent);
    }
}

/// Attributes of `span` for the trace store alone (not fields the log prints); none for a
/// span of a trace not kept.
pub fn set_attributes<const N: usize>(
    span: &tracing::Span,
    attributes: [(&'static str, String); N],
) {
    if span.is_none() || !span.context().span().span_context().is_sampled() {
        return;
    }
    for (key, value) in attributes {
        span.set_attribute(key, value);
    }
}

/// The trace id in a `traceparent`.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    parse(traceparent)?;
    traceparent.get(3..35)
}

/// The context of `traceparent` when its trace is being recorded. Spans that only add detail
/// (an actor's handling, a publish, a send) are made only then: in a trace not kept they would
/// be built and thrown away, and the trace's context travels on in the messages regardless.
pub fn sampled(traceparent: &str) -> Option<opentelemetry::Context> {
    parse(traceparent).filter(|context| context.span().span_context().is_sampled())
}

/// Whether this code runs in a span of a trace being recorded. Read from the OpenTelemetry
/// context the entered span activated, not from `tracing`: it is also asked inside the
/// subscriber (a filter), where `tracing` would not answer.
pub fn in_recorded_trace() -> bool {
    let context = opentelemetry::Context::current();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid() && span_context.is_sampled()
}

fn parse(traceparent: &str) -> Option<opentelemetry::Context> {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    context.span().span_context().is_valid().then_some(context)
}

thread_local! {
    /// The trace id the next root span started on this thread takes (see [`root_span`]).
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// A root span made by `make` whose trace id is `trace_id` when that is 32 hex digits (the
/// request id nginx made): then a request's id and its trace's id are one, and a log line's
/// request id finds its trace. Otherwise the trace id is random.
pub fn root_span(trace_id: &str, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    let wanted = (trace_id.len() == 32)
        .then(|| TraceId::from_hex(trace_id).ok())
        .flatten()
        .filter(|id| *id != TraceId::INVALID);
    NEXT_TRACE_ID.with(|next| next.set(wanted));
    let span = make();
    // The OpenTelemetry span starts (and takes its ids) when its context is first asked for:
    // here, while the wanted id is waiting on this thread.
    let _ = span.context();
    NEXT_TRACE_ID.with(|next| next.set(None));
    span
}

pub(crate) fn take_next_trace_id() -> Option<TraceId> {
    NEXT_TRACE_ID.with(Cell::take)
}

/// The span of an actor handling one message, continuing the trace the message came with.
/// A message without one (a timer's tick, an actor's note to itself) gets no span: it would
/// only start a trace of its own, one per tick.
pub fn actor_span(actor: &str, kind: &str, message: &str, parent: Option<&str>) -> tracing::Span {
    let Some(parent) = parent.and_then(sampled) else {
        return tracing::Span::none();
    };
    // An entity (`order:<id>`) is named by its type: one operation per type in the trace
    // store, not one per order; its id is the `actor.name` attribute.
    let named = actor.split_once(':').map_or(actor, |(entity, _)| entity);
    // Log lines written while handling carry the span's name and trace id; the rest is for
    // the trace store alone.
    let span = tracing::info_span!(
        "actor",
        otel.name = format!("{named} handled {message}"),
        trace_id = tracing::field::Empty,
    );
    let _ = span.set_parent(parent);
    if let Some(trace_id) = span_trace_id(&span) {
        span.record("trace_id", trace_id);
    }
    set_attributes(
        &span,
        [
            ("actor.name", actor.to_owned()),
            ("actor.kind", kind.to_owned()),
            ("actor.message", message.to_owned()),
        ],
    );
    span
}

/// An outgoing HTTP request that the service it calls continues in this trace.
pub trait Traced {
    /// Adds the current span's `traceparent`.
    fn traced(self) -> Self;
}

impl Traced for reqwest::RequestBuilder {
    fn traced(self) -> Self {
        match current_traceparent() {
            Some(traceparent) => self.header(TRACEPARENT, traceparent),
            None => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_gives_its_trace_id_and_nothing_else_does() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id_of(header),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id_of("4bf92f3577b34da6a3ce929d0e0e4736"), None);
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id_of("garbage"), None);
    }

    #[test]
    fn without_a_parent_an_actor_makes_no_span() {
        assert!(actor_span("cart:1", "cart", "Read", None).is_none());
        assert!(actor_span("cart:1", "cart", "Read", Some("req-1")).is_none());
    }
}
