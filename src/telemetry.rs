//! Tracing set-up and the Prometheus metrics of one isobar instance.
//!
//! Every component reports to the [`Metrics`] handed to it at start-up (no global
//! registry, so several instances — tests — never mix counts). Label values come from
//! bounded sets only: route patterns, source names mapped through `source_label`,
//! rejection reasons. Never a location id.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tracing_subscriber::EnvFilter;

use serde::{Deserialize, Serialize};

/// Logging: the `log` section of the settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter directive such as `info` or `isobar=debug,actix_web=warn`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Installs the global tracing subscriber. Safe to call more than once (later calls are
/// no-ops), which tests rely on.
pub fn init_tracing(settings: &LogSettings) {
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Routes every panic to the log: an error event with the panic's message and where it
/// happened (a location actor's guard adds its own line naming the location).
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = panic_message(info.payload());
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
        tracing::error!(panic = %message, at, thread, "panic");
    }));
}

/// The message a panic was raised with.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// The metrics of one instance.
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub ws_connections: IntGauge,
    pub ws_messages_sent: IntCounter,
    pub ws_clients_dropped: IntCounter,
    pub locations_active: IntGauge,
    pub location_restarts: IntCounter,
    pub readings_ingested: IntCounterVec,
    pub readings_rejected: IntCounterVec,
    pub anomalies: IntCounterVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_request_duration: HistogramVec,
    pub upstream_cache_hits: IntCounterVec,
    pub upstream_circuit_open: IntGaugeVec,
    pub persist_queue_depth: IntGaugeVec,
    pub persist_written: IntCounterVec,
    pub persist_errors: IntCounterVec,
    pub persist_spilled: IntCounterVec,
    pub persist_spool_bytes: IntGaugeVec,
    pub kafka_consumed: IntCounter,
    pub kafka_dlq: IntCounterVec,
    pub kafka_produced: IntCounterVec,
    pub kafka_produce_errors: IntCounterVec,
    pub kafka_consumer_lag: IntGauge,
    pub kafka_assigned_partitions: IntGauge,
    pub kafka_handed_over: IntCounter,
    pub kafka_dlq_blocked: IntGauge,
    pub air_quality_updates: IntCounterVec,
    pub forecast_mae: GaugeVec,
    pub forecast_places: IntGaugeVec,
    pub forecast_trainings: IntCounterVec,
    pub forecast_training_seconds: Histogram,
    pub ready: IntGauge,
    pub dependency_up: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("isobar_http_requests_total", "HTTP requests by method, route pattern and status."),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let http_request_duration = HistogramVec::new(
            HistogramOpts::new("isobar_http_request_duration_seconds", "HTTP request latency by route pattern.")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["route"],
        )
        .expect("static metric definition");
        let ws_connections =
            IntGauge::new("isobar_ws_connections", "Open WebSocket connections.").expect("static metric definition");
        let ws_messages_sent = IntCounter::new("isobar_ws_messages_sent_total", "WebSocket messages sent to clients.")
            .expect("static metric definition");
        let ws_clients_dropped = IntCounter::new(
            "isobar_ws_clients_dropped_total",
            "WebSocket clients closed with 1013 because they could not keep up.",
        )
        .expect("static metric definition");
        let locations_active =
            IntGauge::new("isobar_locations_active", "Location actors running.").expect("static metric definition");
        let location_restarts = IntCounter::new(
            "isobar_location_restarts_total",
            "Location actors restarted by their supervisor after stopping on an error.",
        )
        .expect("static metric definition");
        let readings_ingested = IntCounterVec::new(
            Opts::new("isobar_readings_ingested_total", "Readings applied to a location, by source."),
            &["source"],
        )
        .expect("static metric definition");
        let readings_rejected = IntCounterVec::new(
            Opts::new("isobar_readings_rejected_total", "Readings refused, by source and reason."),
            &["source", "reason"],
        )
        .expect("static metric definition");
        let anomalies = IntCounterVec::new(
            Opts::new("isobar_anomalies_total", "Anomalies that started, by kind and quantity."),
            &["kind", "quantity"],
        )
        .expect("static metric definition");
        let upstream_requests = IntCounterVec::new(
            Opts::new("isobar_upstream_requests_total", "Requests to upstream providers, by provider and outcome."),
            &["provider", "outcome"],
        )
        .expect("static metric definition");
        let upstream_request_duration = HistogramVec::new(
            HistogramOpts::new("isobar_upstream_request_duration_seconds", "Upstream request latency by provider.")
                .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["provider"],
        )
        .expect("static metric definition");
        let upstream_cache_hits = IntCounterVec::new(
            Opts::new("isobar_upstream_cache_hits_total", "Upstream responses served from the cache, by provider."),
            &["provider"],
        )
        .expect("static metric definition");
        let upstream_circuit_open = IntGaugeVec::new(
            Opts::new("isobar_upstream_circuit_open", "1 while a provider's circuit breaker is open."),
            &["provider"],
        )
        .expect("static metric definition");
        let persist_queue_depth = IntGaugeVec::new(
            Opts::new("isobar_persist_queue_depth", "Writes waiting for a backend, in memory and spooled."),
            &["backend"],
        )
        .expect("static metric definition");
        let persist_written =
            IntCounterVec::new(Opts::new("isobar_persist_written_total", "Items written to a backend."), &["backend"])
                .expect("static metric definition");
        let persist_errors = IntCounterVec::new(
            Opts::new("isobar_persist_errors_total", "Failed or partly refused backend writes."),
            &["backend"],
        )
        .expect("static metric definition");
        let persist_spool_bytes = IntGaugeVec::new(
            Opts::new("isobar_persist_spool_bytes", "Size of a backend's on-disk spool (write-ahead log)."),
            &["backend"],
        )
        .expect("static metric definition");
        let persist_spilled = IntCounterVec::new(
            Opts::new("isobar_persist_spilled_total", "Items spilled to the on-disk spool."),
            &["backend"],
        )
        .expect("static metric definition");
        let kafka_consumed =
            IntCounter::new("isobar_kafka_consumed_total", "Messages consumed from the readings topic.")
                .expect("static metric definition");
        let kafka_dlq = IntCounterVec::new(
            Opts::new("isobar_kafka_dlq_total", "Messages sent to the dead-letter topic, by reason."),
            &["reason"],
        )
        .expect("static metric definition");
        let kafka_produced = IntCounterVec::new(
            Opts::new("isobar_kafka_produced_total", "Messages produced to Kafka, by topic (updates, dlq)."),
            &["topic"],
        )
        .expect("static metric definition");
        let kafka_produce_errors = IntCounterVec::new(
            Opts::new("isobar_kafka_produce_errors_total", "Messages Kafka did not take, by topic."),
            &["topic"],
        )
        .expect("static metric definition");
        let kafka_consumer_lag = IntGauge::new(
            "isobar_kafka_consumer_lag",
            "Messages behind the high watermark, summed over the assigned partitions.",
        )
        .expect("static metric definition");
        let kafka_assigned_partitions = IntGauge::new(
            "isobar_kafka_assigned_partitions",
            "Partitions of the readings topic this instance owns (its locations are owned here).",
        )
        .expect("static metric definition");
        let kafka_dlq_blocked = IntGauge::new(
            "isobar_kafka_dlq_blocked",
            "1 while the dead-letter topic refuses messages and consumption waits on one.",
        )
        .expect("static metric definition");
        let kafka_handed_over = IntCounter::new(
            "isobar_kafka_locations_handed_over_total",
            "Locations flushed and stopped because their partition moved to another instance.",
        )
        .expect("static metric definition");
        let air_quality_updates = IntCounterVec::new(
            Opts::new(
                "isobar_air_quality_updates_total",
                "Air quality told to subscribers (a new category or a new hour of pollutants), by US AQI category.",
            ),
            &["category"],
        )
        .expect("static metric definition");
        let forecast_mae = GaugeVec::new(
            Opts::new(
                "isobar_forecast_mae",
                "Rolling 14-day mean absolute error of each forecast model, by quantity and hours ahead (metric units), averaged over the places where it is known.",
            ),
            &["model", "quantity", "horizon"],
        )
        .expect("static metric definition");
        let forecast_places = IntGaugeVec::new(
            Opts::new("isobar_forecast_places", "Places the forecaster learns, by status (trained, learning)."),
            &["status"],
        )
        .expect("static metric definition");
        let forecast_trainings = IntCounterVec::new(
            Opts::new(
                "isobar_forecast_trainings_total",
                "Trainings of a place's models, by quantity and outcome (trained, not_trained).",
            ),
            &["quantity", "outcome"],
        )
        .expect("static metric definition");
        let forecast_training_seconds = Histogram::with_opts(
            HistogramOpts::new("isobar_forecast_training_seconds", "Time to train one place's models.")
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]),
        )
        .expect("static metric definition");
        let ready = IntGauge::new(
            "isobar_ready",
            "1 while /ready would answer 200 (every component and configured backend answers), as of the last check.",
        )
        .expect("static metric definition");
        let dependency_up = IntGaugeVec::new(
            Opts::new(
                "isobar_dependency_up",
                "1 while a dependency /ready checks answers (directory, persister, memory, redis, influxdb, kafka, kafka-dlq), as of the last check.",
            ),
            &["dependency"],
        )
        .expect("static metric definition");
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(ready.clone()),
            Box::new(dependency_up.clone()),
            Box::new(air_quality_updates.clone()),
            Box::new(forecast_mae.clone()),
            Box::new(forecast_places.clone()),
            Box::new(forecast_trainings.clone()),
            Box::new(forecast_training_seconds.clone()),
            Box::new(http_request_duration.clone()),
            Box::new(ws_connections.clone()),
            Box::new(ws_messages_sent.clone()),
            Box::new(ws_clients_dropped.clone()),
            Box::new(locations_active.clone()),
            Box::new(location_restarts.clone()),
            Box::new(readings_ingested.clone()),
            Box::new(readings_rejected.clone()),
            Box::new(anomalies.clone()),
            Box::new(upstream_requests.clone()),
            Box::new(upstream_request_duration.clone()),
            Box::new(upstream_cache_hits.clone()),
            Box::new(upstream_circuit_open.clone()),
            Box::new(persist_queue_depth.clone()),
            Box::new(persist_written.clone()),
            Box::new(persist_errors.clone()),
            Box::new(persist_spilled.clone()),
            Box::new(persist_spool_bytes.clone()),
            Box::new(kafka_consumed.clone()),
            Box::new(kafka_dlq.clone()),
            Box::new(kafka_produced.clone()),
            Box::new(kafka_produce_errors.clone()),
            Box::new(kafka_consumer_lag.clone()),
            Box::new(kafka_assigned_partitions.clone()),
            Box::new(kafka_handed_over.clone()),
            Box::new(kafka_dlq_blocked.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            http_requests,
            http_request_duration,
            ws_connections,
            ws_messages_sent,
            ws_clients_dropped,
            locations_active,
            location_restarts,
            readings_ingested,
            readings_rejected,
            anomalies,
            upstream_requests,
            upstream_request_duration,
            upstream_cache_hits,
            upstream_circuit_open,
            persist_queue_depth,
            persist_written,
            persist_errors,
            persist_spilled,
            persist_spool_bytes,
            kafka_consumed,
            kafka_dlq,
            kafka_produced,
            kafka_produce_errors,
            kafka_consumer_lag,
            kafka_assigned_partitions,
            kafka_handed_over,
            kafka_dlq_blocked,
            air_quality_updates,
            forecast_mae,
            forecast_places,
            forecast_trainings,
            forecast_training_seconds,
            ready,
            dependency_up,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec only fails on invalid metric families, which static
        // definitions rule out; an empty scrape is the safe answer if it ever did.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
