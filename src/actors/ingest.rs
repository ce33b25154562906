//! `Ingest`: the one way validated readings enter isobar, whoever sends them (POST
//! /v1/readings, the source pollers, the replay), and the path the Kafka consumer uses to
//! apply what it consumed.
//!
//! The policy lives here once: a reading older than the retention window is refused
//! (`is older than the N h this service keeps`); with Kafka configured every reading goes
//! through the readings topic (one durable log) and the call answers once the broker
//! acknowledged it, else it is applied at once. Applying groups the readings by location,
//! has the `Directory` resolve (and register) each location, and hands each actor its
//! share in one message.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Duration, Utc};
use futures_util::future::join_all;

use crate::actors::directory::{CheckRoutable, Directory, FirstFix, ResolveForReadings, needs_coordinates};
use crate::actors::location::{Adopt, IngestBatch, IngestFailure, LocationActor, Unapplied};
use crate::actors::producers::ReadingsProducer;
use crate::domain::reading::rejection_reason;
use crate::domain::{FieldError, LocationId, Reading};
use crate::sources::source_label;
use crate::telemetry::Metrics;

/// Readings could not be taken safely.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    /// Kafka did not acknowledge the readings.
    #[error("Kafka did not acknowledge the readings ({0})")]
    Kafka(String),
    /// Applied, but not stored durably (InfluxDB's spool refuses writes).
    #[error("readings applied but not stored durably ({0})")]
    NotStored(String),
    /// Not applied: a location is not known here and Redis, where another instance's
    /// stations are, could not be read.
    #[error("readings not applied: {0}")]
    Unchecked(String),
    /// An actor this path needs is gone: the process is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

impl From<MailboxError> for IngestError {
    fn from(_: MailboxError) -> Self {
        Self::ShuttingDown
    }
}

/// A batch's items that were not taken, each with its index in the batch.
pub type Refused = Vec<(usize, FieldError)>;

/// Readings, each with its index in the caller's batch.
pub type Indexed = Vec<(usize, Reading)>;

#[derive(Clone)]
pub struct Ingest {
    directory: Addr<Directory>,
    /// With Kafka on, where readings are produced (answering within
    /// `kafka.ack_timeout_ms`).
    kafka: Option<ReadingsProducer>,
    history_hours: u64,
    metrics: Arc<Metrics>,
}

impl Ingest {
    pub fn new(
        directory: Addr<Directory>,
        kafka: Option<ReadingsProducer>,
        history_hours: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { directory, kafka, history_hours, metrics }
    }

    /// Takes validated readings, each with its index in the caller's batch: refuses the
    /// ones too old to keep and those of an unknown location without coordinates (each
    /// counted in `isobar_readings_rejected_total`), and passes the rest on, through
    /// Kafka when it is configured. `Err` when nothing could be taken.
    pub async fn submit(&self, readings: Indexed, now: DateTime<Utc>) -> Result<Refused, IngestError> {
        let earliest = now - Duration::hours(self.history_hours as i64);
        let mut refused = Vec::new();
        let mut fresh = Vec::with_capacity(readings.len());
        for (index, reading) in readings {
            if reading.observed_at < earliest {
                let error = FieldError::new(
                    "observed_at",
                    format!("is older than the {} h this service keeps", self.history_hours),
                );
                self.count(reading.source.as_str(), std::slice::from_ref(&error));
                refused.push((index, error));
            } else {
                fresh.push((index, reading));
            }
        }
        let sources: Vec<(usize, &'static str)> =
            fresh.iter().map(|(i, r)| (*i, source_label(r.source.as_str()))).collect();
        let unroutable = match &self.kafka {
            _ if fresh.is_empty() => Vec::new(),
            Some(kafka) => {
                let check =
                    fresh.iter().map(|(i, r)| (*i, r.location_id.clone(), r.latitude.zip(r.longitude))).collect();
                let unroutable =
                    self.directory.send(CheckRoutable { readings: check }).await?.map_err(IngestError::Unchecked)?;
                let routable: Vec<Reading> = fresh
                    .into_iter()
                    .filter(|(i, _)| unroutable.binary_search_by_key(i, |(u, _)| *u).is_err())
                    .map(|(_, r)| r)
                    .collect();
                if !routable.is_empty() {
                    kafka.produce(&routable).await.map_err(IngestError::Kafka)?;
                }
                unroutable
            }
            None => apply(&self.directory, fresh, Vec::new()).await?,
        };
        for (index, _) in &unroutable {
            let source = sources.binary_search_by_key(index, |(i, _)| *i).map_or("other", |at| sources[at].1);
            self.metrics.readings_rejected.with_label_values(&[source, "unknown_location"]).inc();
        }
        refused.extend(unroutable);
        refused.sort_by_key(|(index, _)| *index);
        Ok(refused)
    }

    fn count(&self, source: &str, errors: &[FieldError]) {
        self.metrics.readings_rejected.with_label_values(&[source_label(source), rejection_reason(errors)]).inc();
    }
}

/// Applies readings to their location actors now, without the policy of
/// [`Ingest::submit`] (the Kafka consumer uses it after the topic), and answers once every
/// actor has applied its share: a reading it answers for is in its location's state. An
/// actor that panicked while applying is restarted by its supervisor and gets what it had
/// not applied once more; what it still does not apply is refused (send it again).
/// `adopt` names locations this instance just took over.
pub async fn apply(
    directory: &Addr<Directory>,
    readings: Indexed,
    adopt: Vec<LocationId>,
) -> Result<Refused, IngestError> {
    // Per location: its first reading with coordinates, and its readings.
    let mut groups: HashMap<LocationId, (Option<FirstFix>, Indexed)> = HashMap::new();
    for (index, reading) in readings {
        let group = groups.entry(reading.location_id.clone()).or_default();
        if group.0.is_none()
            && let (Some(latitude), Some(longitude)) = (reading.latitude, reading.longitude)
        {
            group.0 = Some(FirstFix { position: group.1.len(), latitude, longitude });
        }
        group.1.push((index, reading));
    }
    let (ids, batches): (Vec<_>, Vec<_>) =
        groups.into_iter().map(|(id, (coordinates, batch))| ((id, coordinates), batch)).unzip();
    let adopted: Vec<bool> = ids.iter().map(|(id, _)| adopt.contains(id)).collect();
    let resolved = directory.send(ResolveForReadings { ids }).await?.map_err(IngestError::Unchecked)?;
    let mut refused = Vec::new();
    let mut sends = Vec::new();
    for ((actor, batch), adopted) in resolved.into_iter().zip(batches).zip(adopted) {
        match actor {
            Ok((addr, first)) => {
                if adopted {
                    addr.do_send(Adopt);
                }
                // A new station exists from its first reading with coordinates on:
                // the ones before were for a location unknown then.
                let mut indexes = Vec::with_capacity(batch.len() - first);
                let mut readings = Vec::with_capacity(batch.len() - first);
                for (position, (index, reading)) in batch.into_iter().enumerate() {
                    if position < first {
                        refused.push((index, needs_coordinates(&reading.location_id)));
                    } else {
                        indexes.push(index);
                        readings.push(reading);
                    }
                }
                sends.push(apply_to(addr, readings, indexes));
            }
            Err(error) => refused.extend(batch.into_iter().map(|(index, _)| (index, error.clone()))),
        }
    }
    for result in join_all(sends).await {
        refused.extend(result?);
    }
    refused.sort_by_key(|(index, _)| *index);
    Ok(refused)
}

/// Sends one location its readings (their batch indexes beside them); once more what a
/// restarting actor gave back. Answers the indexes it did not apply.
async fn apply_to(
    addr: Addr<LocationActor>,
    readings: Vec<Reading>,
    indexes: Vec<usize>,
) -> Result<Refused, IngestError> {
    let readings = match addr.send(IngestBatch { readings }).await? {
        Ok(()) => return Ok(Vec::new()),
        Err(IngestFailure::NotStored(why)) => return Err(IngestError::NotStored(why)),
        Err(IngestFailure::Unapplied(Unapplied { readings })) => readings,
    };
    // The actor restarted (its supervisor kept the address and the mailbox).
    let back = match addr.send(IngestBatch { readings }).await? {
        Ok(()) => return Ok(Vec::new()),
        Err(IngestFailure::NotStored(why)) => return Err(IngestError::NotStored(why)),
        Err(IngestFailure::Unapplied(Unapplied { readings })) => readings,
    };
    // The unapplied ones are the last of the batch.
    let error = FieldError::new("$", "not applied: its location restarted twice while applying it; send it again");
    Ok(indexes[indexes.len() - back.len()..].iter().map(|i| (*i, error.clone())).collect())
}
