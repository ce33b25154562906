//! The Kafka producers, apart from the consumer so that the paths that produce never wait
//! for it:
//!
//! - [`UpdatesProducer`], a sink of every location actor, produces each consensus update
//!   to `kafka.updates_topic` (key = location id, value = the WebSocket `update` bytes),
//!   with `acks=all` and idempotence.
//! - [`ReadingsProducer`]: with Kafka on, the ingest path (POST, pollers, replay)
//!   produces readings to `kafka.readings_topic` and answers once the broker
//!   acknowledged them, from the caller's own task (a rebalance holding up the consumer
//!   never holds up a POST).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, FutureProducer, FutureRecord, ProducerContext, ThreadedProducer};
use tracing::warn;

use crate::actors::sinks::EventSink;
use crate::actors::wire;
use crate::config::KafkaSettings;
use crate::core::LocationEvent;
use crate::domain::{LocationId, Reading};
use crate::telemetry::Metrics;

/// Client settings shared by consumer and producers: brokers plus the pass-through
/// properties (security, tuning).
pub fn base_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.brokers);
    // The Java client's partitioner (kafka-python's too): a location's readings land on
    // the same partition whoever produced them.
    config.set("partitioner", "murmur2_random");
    for (key, value) in &settings.properties {
        config.set(key, value);
    }
    config
}

/// `topic`'s produced and failed counters at 0 from the start, so the first failure is
/// an increase alerts see rather than a series appearing.
pub fn count_from_zero(metrics: &Metrics, topic: &str) {
    metrics.kafka_produced.with_label_values(&[topic]);
    metrics.kafka_produce_errors.with_label_values(&[topic]);
}

/// Counts delivery reports of the updates producer.
pub struct DeliveryCounter {
    metrics: Arc<Metrics>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.metrics.kafka_produced.with_label_values(&["updates"]).inc(),
            Err((e, _)) => {
                self.metrics.kafka_produce_errors.with_label_values(&["updates"]).inc();
                warn!(error = %e, "an update could not be produced to Kafka");
            }
        }
    }
}

/// Produces consensus updates; called from location actors (enqueueing never blocks).
pub struct UpdatesProducer {
    producer: ThreadedProducer<DeliveryCounter>,
    topic: String,
    metrics: Arc<Metrics>,
}

impl UpdatesProducer {
    pub fn new(settings: &KafkaSettings, metrics: Arc<Metrics>) -> Result<Self, KafkaError> {
        let producer = base_config(settings)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create_with_context(DeliveryCounter { metrics: metrics.clone() })?;
        count_from_zero(&metrics, "updates");
        Ok(Self { producer, topic: settings.updates_topic.clone(), metrics })
    }

    fn publish(&self, location_id: &str, payload: &[u8]) {
        let record = BaseRecord::to(&self.topic).key(location_id).payload(payload);
        if let Err((e, _)) = self.producer.send(record) {
            self.metrics.kafka_produce_errors.with_label_values(&["updates"]).inc();
            warn!(error = %e, "Kafka producer queue refused an update");
        }
    }
}

impl EventSink for UpdatesProducer {
    fn deliver(&self, id: &LocationId, event: &LocationEvent) {
        match event {
            LocationEvent::Update(update) => self.publish(id.as_str(), wire::update_message(update).as_bytes()),
            LocationEvent::Anomaly(anomaly) => self.publish(id.as_str(), wire::anomaly_message(anomaly).as_bytes()),
            _ => {}
        }
    }
}

/// Produces readings to the readings topic (key = location id) for the ingest path,
/// straight from the caller's task: a rebalance that holds up `KafkaIngest` while it
/// hands locations over never holds up a POST.
#[derive(Clone)]
pub struct ReadingsProducer {
    producer: FutureProducer,
    topic: Arc<str>,
    ack_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl ReadingsProducer {
    /// `acks=all` with idempotence; a reading the broker has not acknowledged within
    /// `kafka.ack_timeout_ms` fails (librdkafka gives it up too), so the POST answers 503.
    pub fn new(settings: &KafkaSettings, metrics: Arc<Metrics>) -> Result<Self, KafkaError> {
        let producer: FutureProducer = base_config(settings)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", settings.ack_timeout_ms.max(1).to_string())
            .create()?;
        count_from_zero(&metrics, "readings");
        Ok(Self {
            producer,
            topic: Arc::from(settings.readings_topic.as_str()),
            ack_timeout: Duration::from_millis(settings.ack_timeout_ms.max(1)),
            metrics,
        })
    }

    /// Answers once the broker acknowledged every reading (`acks=all`), or why not
    /// within `kafka.ack_timeout_ms`.
    pub async fn produce(&self, readings: &[Reading]) -> Result<(), String> {
        let ack_timeout = self.ack_timeout;
        let sends = readings.iter().map(|r| {
            let payload = r.to_json().to_string();
            let key = r.location_id.to_string();
            async move {
                let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
                // A full local queue waits no longer than the acknowledgement may.
                let send = self.producer.send(record, ack_timeout);
                match tokio::time::timeout(ack_timeout, send).await {
                    Ok(result) => result.map(drop).map_err(|(e, _)| e.to_string()),
                    Err(_) => Err(format!("no acknowledgement within {} ms", ack_timeout.as_millis())),
                }
            }
        });
        let results = futures_util::future::join_all(sends).await;
        let produced = results.iter().filter(|r| r.is_ok()).count() as u64;
        self.metrics.kafka_produced.with_label_values(&["readings"]).inc_by(produced);
        match results.into_iter().find_map(Result::err) {
            None => Ok(()),
            Some(e) => {
                self.metrics.kafka_produce_errors.with_label_values(&["readings"]).inc();
                warn!(error = %e, "readings not acknowledged by Kafka");
                Err(e)
            }
        }
    }
}
