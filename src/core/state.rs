//! The readings a location holds, as plain data with plain methods, so their rules
//! (ordering, dedup, eviction, latest per source) are tested without actors.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

use crate::domain::{LocationId, Reading};

/// What a location actor needs to come back after a restart, a passivation or (with a
/// durable backend) a process restart: its recent readings and update sequence. The
/// consensus is derived from them.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub location_id: LocationId,
    /// Recent readings, oldest first.
    pub readings: Vec<Reading>,
    /// The readings that were each source's latest (may be older than `readings` holds).
    pub latest: Vec<Reading>,
    /// Sequence number of the last update sent to subscribers.
    pub seq: u64,
    /// The owner epoch of the actor that wrote it: the store refuses a snapshot older
    /// than the one it holds, by (epoch, seq).
    pub epoch: u64,
}

/// Recent readings of one location and the latest reading of each source.
#[derive(Debug, Default, Clone)]
pub struct LocationState {
    /// Sorted by (observed_at, source); bounded by the retention window and a count cap.
    readings: VecDeque<Reading>,
    /// One reading per source: the newest it sent. Kept apart from `readings` so that
    /// eviction never loses a source's current value.
    latest: Vec<Reading>,
    /// Incremented on every change that subscribers are told about.
    pub seq: u64,
    /// The owner epoch this state is written under (see `Snapshot::epoch`).
    pub epoch: u64,
}

/// What happened to one ingested reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Stored, and it is now its source's latest value: the consensus may change.
    Latest,
    /// Stored in history only (its source already has something newer).
    Stored,
    /// Same (source, observed_at) as a reading already held: dropped.
    Duplicate,
    /// Older than the retention window: dropped.
    TooOld,
}

/// Limits on what the ring keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub window: Duration,
    pub max_readings: usize,
}

impl LocationState {
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        Self {
            readings: snapshot.readings.iter().cloned().collect(),
            latest: snapshot.latest.clone(),
            seq: snapshot.seq,
            epoch: snapshot.epoch,
        }
    }

    pub fn snapshot(&self, location_id: LocationId) -> Snapshot {
        Snapshot {
            location_id,
            readings: self.readings.iter().cloned().collect(),
            latest: self.latest.clone(),
            seq: self.seq,
            epoch: self.epoch,
        }
    }

    pub fn latest(&self) -> &[Reading] {
        &self.latest
    }

    /// `snapshot`'s state with this one's readings applied on top (what arrived while the
    /// store could not be read); the newer of the two sequence numbers.
    pub fn merged_into(self, snapshot: &Snapshot, now: DateTime<Utc>, retention: Retention) -> Self {
        let mut merged = Self::from_snapshot(snapshot);
        merged.seq = merged.seq.max(self.seq);
        for reading in self.latest.into_iter().chain(self.readings) {
            merged.ingest(reading, now, retention);
        }
        merged
    }

    pub fn len(&self) -> usize {
        self.readings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }

    pub fn ingest(&mut self, reading: Reading, now: DateTime<Utc>, retention: Retention) -> Ingested {
        if reading.observed_at < now - retention.window {
            return Ingested::TooOld;
        }
        let key = |r: &Reading| (r.observed_at, r.source.clone());
        let position = match self
            .readings
            .binary_search_by(|r| (r.observed_at, &r.source).cmp(&(reading.observed_at, &reading.source)))
        {
            Ok(_) => return Ingested::Duplicate,
            Err(position) => position,
        };
        let outcome = match self.latest.iter_mut().find(|r| r.source == reading.source) {
            Some(current) if key(current) == key(&reading) => return Ingested::Duplicate,
            // A latest from the future (a clock running fast, within the allowed skew) is
            // replaced by whatever the source sends next: it never freezes its source.
            Some(current) if current.observed_at > reading.observed_at && current.observed_at <= now => {
                Ingested::Stored
            }
            Some(current) => {
                *current = reading.clone();
                Ingested::Latest
            }
            None => {
                self.latest.push(reading.clone());
                Ingested::Latest
            }
        };
        self.readings.insert(position, reading);
        self.evict(now, retention);
        outcome
    }

    /// Drops readings older than the window, and the oldest beyond the count cap.
    pub fn evict(&mut self, now: DateTime<Utc>, retention: Retention) {
        let horizon = now - retention.window;
        while self
            .readings
            .front()
            .is_some_and(|r| r.observed_at < horizon || self.readings.len() > retention.max_readings)
        {
            self.readings.pop_front();
        }
    }

    /// Readings with `from <= observed_at <= to`, oldest first.
    pub fn history(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Reading> {
        let start = self.readings.partition_point(|r| r.observed_at < from);
        self.readings.iter().skip(start).take_while(|r| r.observed_at <= to).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Quantity, SourceName};

    const RETENTION: Retention = Retention { window: Duration::hours(24), max_readings: 3 };

    fn now() -> DateTime<Utc> {
        "2026-11-26T09:00:00Z".parse().unwrap()
    }

    fn reading(source: &str, t: &str, temperature: f64) -> Reading {
        let mut r =
            Reading::new(LocationId::parse("KJFK").unwrap(), SourceName::parse(source).unwrap(), t.parse().unwrap());
        r.set(Quantity::Temperature, Some(temperature));
        r
    }

    #[test]
    fn keeps_readings_in_time_order_and_the_newest_per_source() {
        let mut s = LocationState::default();
        assert_eq!(s.ingest(reading("station", "2026-11-26T08:00:00Z", 5.0), now(), RETENTION), Ingested::Latest);
        assert_eq!(s.ingest(reading("station", "2026-11-26T07:00:00Z", 4.0), now(), RETENTION), Ingested::Stored);
        assert_eq!(s.ingest(reading("replay", "2026-11-26T07:30:00Z", 6.0), now(), RETENTION), Ingested::Latest);
        let times: Vec<_> =
            s.history(now() - Duration::hours(24), now()).iter().map(|r| r.get(Quantity::Temperature)).collect();
        assert_eq!(times, [Some(4.0), Some(6.0), Some(5.0)]);
        let latest: Vec<_> = s.latest().iter().map(|r| (r.source.as_str(), r.get(Quantity::Temperature))).collect();
        assert_eq!(latest, [("station", Some(5.0)), ("replay", Some(6.0))]);
    }

    #[test]
    fn a_latest_from_the_future_does_not_freeze_its_source() {
        let mut s = LocationState::default();
        let ahead = reading("station", "2026-11-26T09:04:00Z", 9.0);
        assert_eq!(s.ingest(ahead, now(), RETENTION), Ingested::Latest);
        // Older than the fast clock's reading, but the next one the station sends.
        assert_eq!(s.ingest(reading("station", "2026-11-26T08:59:00Z", 5.0), now(), RETENTION), Ingested::Latest);
        assert_eq!(s.latest()[0].get(Quantity::Temperature), Some(5.0));
        assert_eq!(s.ingest(reading("station", "2026-11-26T08:58:00Z", 4.0), now(), RETENTION), Ingested::Stored);
    }

    #[test]
    fn drops_duplicates_by_source_and_time_even_with_other_values() {
        let mut s = LocationState::default();
        s.ingest(reading("station", "2026-11-26T08:00:00Z", 5.0), now(), RETENTION);
        assert_eq!(s.ingest(reading("station", "2026-11-26T08:00:00Z", 9.0), now(), RETENTION), Ingested::Duplicate);
        assert_eq!(s.len(), 1);
        assert_eq!(s.latest()[0].get(Quantity::Temperature), Some(5.0));
    }

    #[test]
    fn evicts_beyond_the_window_and_the_cap_but_keeps_latest() {
        let mut s = LocationState::default();
        assert_eq!(s.ingest(reading("station", "2026-11-25T08:00:00Z", 1.0), now(), RETENTION), Ingested::TooOld);
        for (i, t) in ["05", "06", "07", "08"].iter().enumerate() {
            s.ingest(reading("station", &format!("2026-11-26T{t}:00:00Z"), i as f64), now(), RETENTION);
        }
        assert_eq!(s.len(), 3);
        s.evict(now() + Duration::hours(24), RETENTION);
        assert!(s.is_empty());
        assert_eq!(s.latest()[0].get(Quantity::Temperature), Some(3.0));
    }

    #[test]
    fn history_is_inclusive_of_both_ends() {
        let mut s = LocationState::default();
        for t in ["06", "07", "08"] {
            s.ingest(reading("station", &format!("2026-11-26T{t}:00:00Z"), 1.0), now(), RETENTION);
        }
        let got = s.history("2026-11-26T07:00:00Z".parse().unwrap(), "2026-11-26T08:00:00Z".parse().unwrap());
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn snapshot_round_trips() {
        let mut s = LocationState::default();
        s.ingest(reading("station", "2026-11-26T08:00:00Z", 5.0), now(), RETENTION);
        s.seq = 4;
        let back = LocationState::from_snapshot(&s.snapshot(LocationId::parse("KJFK").unwrap()));
        assert_eq!(back.seq, 4);
        assert_eq!(back.latest(), s.latest());
        assert_eq!(back.len(), 1);
    }
}
