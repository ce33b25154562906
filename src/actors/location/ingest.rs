//! How a `LocationActor` applies a batch of readings and answers only once the batch is
//! safe: the core applies it under the panic guard (what it did not apply goes back to
//! the sender), the events go to the sinks, and the answer waits for every store that
//! keeps readings (the InfluxDB history's barrier, the Redis snapshot holding them).

use actix::prelude::*;
use chrono::Utc;

use super::{IngestBatch, IngestFailure, LocationActor, Unapplied};
use crate::actors::persister::Durable;
use crate::core::Ingested;
use crate::sources::source_label;

impl Handler<IngestBatch> for LocationActor {
    type Result = ResponseFuture<Result<(), IngestFailure>>;

    fn handle(&mut self, msg: IngestBatch, ctx: &mut Context<Self>) -> Self::Result {
        self.touch();
        let mut pending = msg.readings;
        let applied = self.guarded("ingest", ctx, |act| {
            let metrics = &act.deps.metrics;
            act.core.ingest(&mut pending, Utc::now(), |source, outcome| {
                let label = source_label(source.as_str());
                match outcome {
                    Ingested::Latest | Ingested::Stored => metrics.readings_ingested.with_label_values(&[label]).inc(),
                    Ingested::Duplicate => metrics.readings_rejected.with_label_values(&[label, "duplicate"]).inc(),
                    Ingested::TooOld => metrics.readings_rejected.with_label_values(&[label, "too_old"]).inc(),
                    Ingested::TooManySources => {
                        metrics.readings_rejected.with_label_values(&[label, "too_many_sources"]).inc()
                    }
                }
            })
        });
        let Ok(events) = applied else {
            // What the core had not taken yet is left in `pending`, last first.
            pending.reverse();
            return Box::pin(std::future::ready(Err(IngestFailure::Unapplied(Unapplied { readings: pending }))));
        };
        self.emit(events, ctx);
        // The batch is safe once every sink that keeps readings says so, and, with Redis
        // keeping the state, once the snapshot holding it is written or spooled. Before
        // the stored state could be read no snapshot is written: then only a history
        // store (InfluxDB) can make the batch safe.
        let mut barriers: Vec<_> = self.deps.sinks.iter().filter_map(|sink| sink.barrier()).collect();
        if self.deps.snapshots_kept() {
            if self.restored {
                self.save_snapshot_if_dirty();
                let durable = self.deps.persister.send(Durable { backend: "redis" });
                let durable = async move { durable.await.unwrap_or_else(|_| Err("the persister stopped".into())) };
                barriers.push(Box::pin(durable));
            } else if barriers.is_empty() {
                let why = "the location's stored state could not be read yet (Redis unreachable)".to_owned();
                return Box::pin(std::future::ready(Err(IngestFailure::NotStored(why))));
            }
        }
        if barriers.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        Box::pin(async move {
            match futures_util::future::join_all(barriers).await.into_iter().find_map(Result::err) {
                None => Ok(()),
                Some(why) => Err(IngestFailure::NotStored(why)),
            }
        })
    }
}
