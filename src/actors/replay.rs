//! `ReplayFeeder`: streams the bundled replay dataset as readings of source `replay`.
//!
//! Dataset time runs `speed` times faster than wall-clock time from a start instant
//! (config, or the same day and hour of the year as now). Each observation is stamped with
//! the wall-clock moment it is replayed at, so the replay runs "now"; at the end of the
//! dataset it starts over. Every reading passes the same validation as client readings:
//! the 1048 mph fault is rejected and counted, never applied.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use tracing::{info, warn};

use crate::actors::directory::{Directory, RegisterStation, Resolve};
use crate::actors::ingest::Ingest;
use crate::actors::messages::ProviderReport;
use crate::config::ReplaySettings;
use crate::domain::reading::{CheckedAt, rejection_reason};
use crate::domain::{ForecastHour, ForecastRun, Quantity, Reading, SourceName};
use crate::sources::replay::{self, Observation};
use crate::telemetry::Metrics;

const TICK: Duration = Duration::from_millis(200);

pub struct ReplayFeeder {
    directory: Addr<Directory>,
    /// Where the readings go (through Kafka when it is configured, like any other).
    ingest: Ingest,
    metrics: Arc<Metrics>,
    speed: f64,
    rows: Vec<Observation>,
    source: SourceName,
    /// Index of the next row to send.
    next: usize,
    /// Dataset instant that corresponds to `wall_start`.
    data_start: DateTime<Utc>,
    wall_start: DateTime<Utc>,
    /// Dataset time elapsed in earlier passes over the whole dataset (it loops).
    loop_offset: chrono::Duration,
    /// When the replay's forecast runs were last published.
    forecast_at: Option<DateTime<Utc>>,
    /// The airports, registered at start and forecast every [`FORECAST_EVERY_SECS`].
    stations: Vec<crate::domain::Location>,
}

/// Hours in the replay's forecast run, and how often (wall clock) it is published again.
const FORECAST_HOURS: usize = 48;
const FORECAST_EVERY_SECS: i64 = 30;

impl ReplayFeeder {
    pub fn new(settings: &ReplaySettings, directory: Addr<Directory>, ingest: Ingest, metrics: Arc<Metrics>) -> Self {
        let rows = replay::observations();
        let now = Utc::now();
        let data_start = DateTime::parse_from_rfc3339(&settings.start_at)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| same_moment_in_2013(now));
        let next = rows.partition_point(|r| r.at < data_start);
        Self {
            directory,
            ingest,
            metrics,
            speed: settings.speed,
            rows,
            source: SourceName::parse("replay").unwrap_or_else(|| unreachable!("static source name")),
            next,
            data_start,
            wall_start: now,
            loop_offset: chrono::Duration::zero(),
            forecast_at: None,
            stations: replay::stations(),
        }
    }

    /// The demo's forecast: each airport's next [`FORECAST_HOURS`] recorded hours after the
    /// replay's position, one per wall-clock hour from the next one, as the `replay`
    /// source's run (the demo has no forecast provider; the learned models need complete
    /// wall-clock hours). Sent to the airports' actors every [`FORECAST_EVERY_SECS`].
    fn publish_forecasts(&mut self, now: DateTime<Utc>) {
        if self.forecast_at.is_some_and(|at| (now - at).num_seconds() < FORECAST_EVERY_SECS) {
            return;
        }
        self.forecast_at = Some(now);
        let hour = DateTime::from_timestamp(now.timestamp().div_euclid(3600) * 3600, 0).unwrap_or(now);
        let first_hour = hour + chrono::Duration::hours(1);
        for location in &self.stations {
            let hourly: Vec<ForecastHour> = self.rows[self.next.min(self.rows.len())..]
                .iter()
                .filter(|r| r.station == location.id)
                .take(FORECAST_HOURS)
                .enumerate()
                .map(|(k, r)| ForecastHour {
                    temperature: r.values.get(Quantity::Temperature),
                    humidity: r.values.get(Quantity::Humidity),
                    precipitation: r.values.get(Quantity::Precipitation),
                    wind_speed: r.values.get(Quantity::WindSpeed),
                    wind_direction: r.values.get(Quantity::WindDirection),
                    ..ForecastHour::empty(first_hour + chrono::Duration::hours(k as i64))
                })
                .collect();
            if hourly.is_empty() {
                continue;
            }
            let run = ForecastRun { name: self.source.clone(), issued_at: now, hourly };
            let (directory, source, id) = (self.directory.clone(), self.source.clone(), location.id.clone());
            actix::spawn(async move {
                if let Ok(Ok(actor)) = directory.send(Resolve { id }).await {
                    actor.do_send(ProviderReport { source, forecast: Some(run), air: None, error: None });
                }
            });
        }
    }

    /// The wall-clock time at which dataset instant `at` (in the current pass) replays.
    fn wall_time_of(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let data_elapsed = (at - self.data_start + self.loop_offset).num_milliseconds() as f64;
        // Millisecond resolution keeps dataset hours distinct (for dedup) up to 3.6M× speed.
        self.wall_start + chrono::Duration::milliseconds((data_elapsed / self.speed) as i64)
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Utc::now();
        let mut readings = Vec::new();
        loop {
            if self.next >= self.rows.len() {
                // Loop: continue from the first row, one dataset span later.
                let (Some(first), Some(last)) = (self.rows.first(), self.rows.last()) else { return };
                self.loop_offset += last.at - first.at + chrono::Duration::hours(1);
                self.next = 0;
                self.data_start = first.at;
                info!("replay reached the end of the dataset; starting over");
            }
            let row = &self.rows[self.next];
            let observed_at = self.wall_time_of(row.at);
            if observed_at > now {
                break;
            }
            let mut reading = Reading::new(row.station.clone(), self.source.clone(), observed_at);
            reading.values = row.values;
            let (station, at) = (row.station.clone(), row.at);
            self.next += 1;
            // Each row is stamped with a wall-clock time already past: no clock skew.
            match reading.validate(CheckedAt::new(now, 0)) {
                Ok(reading) => readings.push((readings.len(), reading)),
                Err(errors) => {
                    let reason = rejection_reason(&errors);
                    self.metrics.readings_rejected.with_label_values(&["replay", reason]).inc();
                    let detail: Vec<String> = errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect();
                    warn!(%station, dataset_time = %at, errors = ?detail, "replay reading rejected");
                }
            }
        }
        self.publish_forecasts(now);
        if !readings.is_empty() {
            let ingest = self.ingest.clone();
            let submit = async move {
                if let Err(error) = ingest.submit(readings, now).await {
                    warn!(%error, "replay readings not taken");
                }
            };
            ctx.spawn(submit.into_actor(self));
        }
    }
}

/// The 2013 instant with the same month, day and hour as `now` (Feb 29 maps to Feb 28).
fn same_moment_in_2013(now: DateTime<Utc>) -> DateTime<Utc> {
    let day = if now.month() == 2 && now.day() == 29 { 28 } else { now.day() };
    Utc.with_ymd_and_hms(2013, now.month(), day, now.hour(), 0, 0)
        .single()
        .unwrap_or_else(|| Utc.with_ymd_and_hms(2013, 1, 1, 6, 0, 0).unwrap())
}

impl Actor for ReplayFeeder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for location in &self.stations {
            self.directory.do_send(RegisterStation { location: location.clone() });
        }
        info!(start = %self.data_start, speed = self.speed, "replay started");
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_same_day_and_hour_of_2013() {
        let now: DateTime<Utc> = "2026-11-26T10:53:12Z".parse().unwrap();
        assert_eq!(same_moment_in_2013(now), "2013-11-26T10:00:00Z".parse::<DateTime<Utc>>().unwrap());
        let leap: DateTime<Utc> = "2028-02-29T01:00:00Z".parse().unwrap();
        assert_eq!(same_moment_in_2013(leap), "2013-02-28T01:00:00Z".parse::<DateTime<Utc>>().unwrap());
    }
}
