//! The readings a location holds, as plain data with plain methods, so their rules
//! (ordering, dedup, eviction, latest per source) are tested without actors.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

use crate::domain::{LocationId, PackedValues, Reading, SourceName};
use crate::growth::grow_by_quarter;

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
    readings: VecDeque<Held>,
    /// One reading per source: the newest it sent. Kept apart from `readings` so that
    /// eviction never loses a source's current value. Its first reading's location id is
    /// the one every reading this state gives back shares.
    latest: Vec<Reading>,
    /// Incremented on every change that subscribers are told about.
    pub seq: u64,
    /// The owner epoch this state is written under (see `Snapshot::epoch`).
    pub epoch: u64,
}

/// A reading as the ring keeps it: without what the location already knows (its id,
/// the coordinates a station registers with), its source as the index of that source's
/// latest reading, and its values packed. 56 bytes where a [`Reading`] takes 200: a
/// location keeps a day of them, and 50,000 locations are held at once.
#[derive(Debug, Clone)]
struct Held {
    observed_at: DateTime<Utc>,
    /// Index of its source's reading in `latest` (which only ever grows).
    source: u16,
    weather_code: Option<u8>,
    values: PackedValues,
}

impl Held {
    fn new(reading: &Reading, source: usize) -> Self {
        Self {
            observed_at: reading.observed_at,
            source: source as u16,
            weather_code: reading.weather_code,
            values: PackedValues::pack(&reading.values),
        }
    }
}

/// Sources one location keeps apart; a reading from one more is dropped. Far more than
/// any place has (a few providers and stations), and what a `u16` index holds.
pub const MAX_SOURCES: usize = 1024;

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
    /// From a source beyond the [`MAX_SOURCES`] this location already has: dropped.
    TooManySources,
}

/// Limits on what the ring keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub window: Duration,
    pub max_readings: usize,
}

impl LocationState {
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        let mut state = Self {
            readings: VecDeque::with_capacity(snapshot.readings.len()),
            latest: Vec::with_capacity(snapshot.latest.len()),
            seq: snapshot.seq,
            epoch: snapshot.epoch,
        };
        for reading in snapshot.latest.iter().take(MAX_SOURCES) {
            let mut reading = reading.clone();
            let index = state.source_index(&reading.source);
            state.share_ids(&mut reading, index);
            state.latest.push(reading);
        }
        let given = state.latest.len();
        for reading in &snapshot.readings {
            let mut reading = reading.clone();
            let index = state.source_index(&reading.source);
            state.share_ids(&mut reading, index);
            let source = match index {
                // A snapshot that lacks a source's latest (written by hand, or damaged):
                // its newest reading in the ring stands in.
                Some(i) if i >= given && state.latest[i].observed_at < reading.observed_at => {
                    state.latest[i] = reading.clone();
                    i
                }
                Some(i) => i,
                None if state.latest.len() < MAX_SOURCES => {
                    state.latest.push(reading.clone());
                    state.latest.len() - 1
                }
                None => continue,
            };
            state.readings.push_back(Held::new(&reading, source));
        }
        state
    }

    /// Where `source`'s latest reading is in `latest`.
    fn source_index(&self, source: &SourceName) -> Option<usize> {
        self.latest.iter().position(|r| r.source == *source)
    }

    /// The location id every reading this state gives back shares; `None` while it holds
    /// none.
    fn id(&self) -> Option<&LocationId> {
        self.latest.first().map(|r| &r.location_id)
    }

    /// Makes `reading` name its location and source (its latest reading at `index`) with
    /// the Arcs this state already holds, so a day of readings shares one of each instead
    /// of one per reading.
    fn share_ids(&self, reading: &mut Reading, index: Option<usize>) {
        if let Some(id) = self.id().filter(|id| **id == reading.location_id) {
            reading.location_id = id.clone();
        }
        if let Some(latest) = index.and_then(|i| self.latest.get(i)) {
            reading.source = latest.source.clone();
        }
    }

    /// The name of a held reading's source.
    fn source_of(&self, held: &Held) -> &SourceName {
        &self.latest[usize::from(held.source)].source
    }

    /// A held reading as the [`Reading`] it was.
    fn unpack(&self, held: &Held, id: &LocationId) -> Reading {
        let mut reading = Reading::new(id.clone(), self.source_of(held).clone(), held.observed_at);
        reading.values = held.values.unpack();
        reading.weather_code = held.weather_code;
        reading
    }

    pub fn snapshot(&self, location_id: LocationId) -> Snapshot {
        Snapshot {
            readings: self.readings.iter().map(|held| self.unpack(held, &location_id)).collect(),
            location_id,
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
        let held: Vec<Reading> = match self.id() {
            Some(id) => self.readings.iter().map(|held| self.unpack(held, id)).collect(),
            None => Vec::new(),
        };
        for reading in self.latest.into_iter().chain(held) {
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

    pub fn ingest(&mut self, mut reading: Reading, now: DateTime<Utc>, retention: Retention) -> Ingested {
        if reading.observed_at < now - retention.window {
            return Ingested::TooOld;
        }
        let key = (reading.observed_at, &reading.source);
        let position = match self.readings.binary_search_by(|h| (h.observed_at, self.source_of(h)).cmp(&key)) {
            Ok(_) => return Ingested::Duplicate,
            Err(position) => position,
        };
        let index = self.source_index(&reading.source);
        if index.is_none() && self.latest.len() >= MAX_SOURCES {
            return Ingested::TooManySources;
        }
        self.share_ids(&mut reading, index);
        let index = index.unwrap_or(self.latest.len());
        let held = Held::new(&reading, index);
        let outcome = match self.latest.get_mut(index) {
            Some(current) if current.observed_at == reading.observed_at => return Ingested::Duplicate,
            // A latest from the future (a clock running fast, within the allowed skew) is
            // replaced by whatever the source sends next: it never freezes its source.
            Some(current) if current.observed_at > reading.observed_at && current.observed_at <= now => {
                Ingested::Stored
            }
            Some(current) => {
                *current = reading;
                Ingested::Latest
            }
            None => {
                // One more, not twice as many: a location has a source or two.
                self.latest.reserve_exact(1);
                self.latest.push(reading);
                Ingested::Latest
            }
        };
        // A day of hourly readings takes 25 slots, not 32.
        grow_by_quarter(&mut self.readings, 1, 4, usize::MAX);
        self.readings.insert(position, held);
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
        let Some(id) = self.id() else { return Vec::new() };
        let start = self.readings.partition_point(|r| r.observed_at < from);
        self.readings.iter().skip(start).take_while(|r| r.observed_at <= to).map(|held| self.unpack(held, id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Quantity, SourceName};

    const RETENTION: Retention = Retention { window: Duration::hours(24), max_readings: 3 };
    const RETENTION_DAY: Retention = Retention { window: Duration::hours(24), max_readings: 10_000 };

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
    fn gives_back_every_value_as_it_came_packed_or_not() {
        let mut s = LocationState::default();
        let values = [7.1, -0.0, 1013.257, 0.1 + 0.2, 12.345_678_9, 99_999.999];
        for (i, v) in values.iter().enumerate() {
            let mut r = reading("station", &format!("2026-11-26T0{i}:00:00Z"), *v);
            r.set(Quantity::Pressure, Some(1012.3));
            r.weather_code = Some(61);
            s.ingest(r, now(), RETENTION_DAY);
        }
        let back = s.history(now() - Duration::hours(24), now());
        let got: Vec<u64> = back.iter().map(|r| r.get(Quantity::Temperature).unwrap().to_bits()).collect();
        assert_eq!(got, values.map(f64::to_bits));
        assert!(back.iter().all(|r| r.get(Quantity::Pressure) == Some(1012.3) && r.weather_code == Some(61)));
        assert!(back.iter().all(|r| r.get(Quantity::Humidity).is_none() && r.location_id.as_str() == "KJFK"));
    }

    #[test]
    fn a_reading_with_every_quantity_comes_back_whole() {
        let mut s = LocationState::default();
        let mut full = reading("station", "2026-11-26T08:00:00Z", 5.0);
        for (i, spec) in crate::domain::QUANTITIES.iter().enumerate() {
            full.set(spec.quantity, Some(spec.min.max(0.0) + i as f64 / 10.0));
        }
        s.ingest(full.clone(), now(), RETENTION_DAY);
        s.ingest(reading("station", "2026-11-26T08:30:00Z", 6.0), now(), RETENTION_DAY);
        let back = s.history(now() - Duration::hours(1), now());
        assert_eq!(back[0].values, full.values);
        assert_eq!(back[1].values.present().count(), 1);
    }

    #[test]
    fn drops_a_source_beyond_the_cap_and_keeps_the_others() {
        let mut s = LocationState::default();
        for i in 0..MAX_SOURCES {
            assert_eq!(
                s.ingest(reading(&format!("s{i}"), "2026-11-26T08:00:00Z", 1.0), now(), RETENTION_DAY),
                Ingested::Latest
            );
        }
        assert_eq!(
            s.ingest(reading("one-more", "2026-11-26T08:00:00Z", 1.0), now(), RETENTION_DAY),
            Ingested::TooManySources
        );
        assert_eq!(s.ingest(reading("s7", "2026-11-26T08:10:00Z", 2.0), now(), RETENTION_DAY), Ingested::Latest);
        let sources: Vec<_> =
            s.history(now() - Duration::hours(1), now()).iter().map(|r| r.source.to_string()).collect();
        assert_eq!(sources.len(), MAX_SOURCES + 1);
        assert_eq!(sources.last().map(String::as_str), Some("s7"));
        assert!(!sources.iter().any(|name| name == "one-more"));
    }

    #[test]
    fn a_snapshot_without_a_sources_latest_still_restores_its_readings() {
        let id = LocationId::parse("KJFK").unwrap();
        let snapshot = Snapshot {
            location_id: id.clone(),
            readings: vec![
                reading("replay", "2026-11-26T07:00:00Z", 3.0),
                reading("replay", "2026-11-26T08:00:00Z", 4.0),
            ],
            latest: vec![],
            seq: 2,
            epoch: 0,
        };
        let s = LocationState::from_snapshot(&snapshot);
        assert_eq!(s.len(), 2);
        assert_eq!(s.latest()[0].get(Quantity::Temperature), Some(4.0));
        assert_eq!(s.snapshot(id).readings, snapshot.readings);
    }

    #[test]
    fn a_day_of_hourly_readings_takes_little_room() {
        assert_eq!(std::mem::size_of::<PackedValues>(), 40);
        assert_eq!(std::mem::size_of::<Held>(), 56);
        let mut s = LocationState::default();
        for hour in 0..24 {
            let t = (now() - Duration::hours(24) + Duration::minutes(5) + Duration::hours(hour)).to_rfc3339();
            s.ingest(reading("station", &t, 5.0), now(), RETENTION_DAY);
        }
        assert_eq!(s.len(), 24);
        assert_eq!(s.readings.capacity(), 25);
        assert_eq!(s.latest.capacity(), 1);
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
