//! A place's observations as hourly means: the input of the forecasting models.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Quantity, Values};

/// The columns kept per hour. Wind is kept as its west-east and south-north components
/// (`u`, `v`, m/s toward the east and the north) so that hours average correctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Temperature = 0,
    Humidity,
    Pressure,
    WindSpeed,
    WindU,
    WindV,
    Visibility,
    Precipitation,
}

pub const COLUMNS: usize = 8;

impl Column {
    /// The column a forecast quantity is read from; `None` for quantities not forecast.
    pub fn of(quantity: Quantity) -> Option<Self> {
        Some(match quantity {
            Quantity::Temperature => Self::Temperature,
            Quantity::Humidity => Self::Humidity,
            Quantity::Pressure => Self::Pressure,
            Quantity::WindSpeed => Self::WindSpeed,
            _ => return None,
        })
    }
}

/// Hours since the Unix epoch of the hour that holds `at` (the hour starting at or before it).
pub fn hour_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(3600)
}

/// One hour: each column's mean (NaN where nothing was observed) and how many readings
/// made it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hour {
    mean: [f32; COLUMNS],
    count: [u16; COLUMNS],
}

const EMPTY: Hour = Hour::EMPTY;

impl Hour {
    pub const EMPTY: Hour = Hour { mean: [f32::NAN; COLUMNS], count: [0; COLUMNS] };

    /// Folds one reading's values in.
    pub fn add(&mut self, values: &Values) {
        for (column, value) in columns(values) {
            if let Some(value) = value {
                self.fold(column as usize, value as f32, 1);
            }
        }
    }

    /// Folds another hour's means in, weighted by how many readings made each.
    pub fn merge(&mut self, other: &Hour) {
        for c in 0..COLUMNS {
            if other.count[c] > 0 {
                self.fold(c, other.mean[c], other.count[c]);
            }
        }
    }

    fn fold(&mut self, c: usize, value: f32, n: u16) {
        let (have, add) = (f32::from(self.count[c]), f32::from(n));
        self.mean[c] = if have == 0.0 { value } else { (self.mean[c] * have + value * add) / (have + add) };
        self.count[c] = self.count[c].saturating_add(n);
    }
}

/// Hourly means from `start` on, one row per hour.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(into = "Stored", from = "Stored")]
pub struct Hourly {
    /// Hours since the Unix epoch of the first row.
    pub start: i64,
    rows: Vec<Hour>,
}

impl Hourly {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Hours since the epoch of the last row.
    pub fn end(&self) -> Option<i64> {
        (!self.rows.is_empty()).then(|| self.start + self.rows.len() as i64 - 1)
    }

    /// The value of a column at an hour (since the epoch), if observed.
    pub fn get(&self, hour: i64, column: Column) -> Option<f32> {
        let i = usize::try_from(hour - self.start).ok()?;
        let v = self.rows.get(i)?.mean[column as usize];
        (!v.is_nan()).then_some(v)
    }

    /// Folds one observation in. Readings older than the first hour are ignored; a gap
    /// becomes rows of NaN. Keeps at most `max_hours` hours (the oldest go).
    pub fn add(&mut self, at: DateTime<Utc>, values: &Values, max_hours: usize) {
        if let Some(row) = self.row(hour_of(at), max_hours) {
            row.add(values);
        }
        self.trim(max_hours);
    }

    /// Folds an hour's means in (see [`Hour::merge`]), as [`add`](Self::add) does readings.
    pub fn merge(&mut self, hour: i64, means: &Hour, max_hours: usize) {
        if let Some(row) = self.row(hour, max_hours) {
            row.merge(means);
        }
        self.trim(max_hours);
    }

    /// The row of `hour`, made (with rows of NaN before it) if needed; `None` before the
    /// first hour.
    fn row(&mut self, hour: i64, max_hours: usize) -> Option<&mut Hour> {
        if self.rows.is_empty() {
            self.start = hour;
        }
        let mut offset = usize::try_from(hour - self.start).ok()?;
        if offset >= self.rows.len() {
            if offset - self.rows.len() >= max_hours {
                // Everything kept is older than the hours to keep: start over.
                self.rows.clear();
                self.start = hour;
                offset = 0;
            }
            self.rows.resize(offset + 1, EMPTY);
        }
        self.rows.get_mut(offset)
    }

    fn trim(&mut self, max_hours: usize) {
        if self.rows.len() > max_hours {
            let drop = self.rows.len() - max_hours;
            self.rows.drain(..drop);
            self.start += drop as i64;
        }
    }

    /// From observations in any order (sorted here).
    pub fn from_observations<'a>(observations: impl IntoIterator<Item = (DateTime<Utc>, &'a Values)>) -> Self {
        let mut all: Vec<_> = observations.into_iter().collect();
        all.sort_by_key(|(at, _)| *at);
        let mut hourly = Self::default();
        for (at, values) in all {
            hourly.add(at, values, usize::MAX);
        }
        hourly
    }

    /// Puts the hours of `earlier` before this series' first hour in front of it (a gap
    /// between them becomes rows of NaN), keeping at most `max_hours` hours.
    pub fn prepend(&mut self, earlier: Hourly, max_hours: usize) {
        if self.rows.is_empty() {
            *self = earlier;
        } else if earlier.start < self.start {
            // The hours from the earlier start up to this one's: theirs, or NaN.
            let span = usize::try_from(self.start - earlier.start).unwrap_or(0);
            let mut rows = earlier.rows;
            rows.truncate(span);
            rows.resize(span, EMPTY);
            rows.append(&mut self.rows);
            self.rows = rows;
            self.start = earlier.start;
        }
        if self.rows.len() > max_hours {
            let drop = self.rows.len() - max_hours;
            self.rows.drain(..drop);
            self.start += drop as i64;
        }
    }

    /// The series as a place keeping at most `keep` hours had it after its first `hours`
    /// rows (for evaluating as of an earlier time).
    pub fn as_of(&self, hours: usize, keep: usize) -> Self {
        let end = hours.min(self.rows.len());
        let from = end.saturating_sub(keep);
        Self { start: self.start + from as i64, rows: self.rows[from..end].to_vec() }
    }
}

/// How a series is stored: missing means as `null` (JSON has no NaN).
#[derive(Serialize, Deserialize)]
struct Stored {
    start: i64,
    mean: Vec<[Option<f32>; COLUMNS]>,
    count: Vec<[u16; COLUMNS]>,
}

impl From<Hourly> for Stored {
    fn from(h: Hourly) -> Self {
        Self {
            start: h.start,
            mean: h.rows.iter().map(|r| r.mean.map(|v| (!v.is_nan()).then_some(v))).collect(),
            count: h.rows.iter().map(|r| r.count).collect(),
        }
    }
}

impl From<Stored> for Hourly {
    fn from(s: Stored) -> Self {
        let rows = s
            .mean
            .iter()
            .zip(&s.count)
            .map(|(mean, count)| Hour { mean: mean.map(|v| v.unwrap_or(f32::NAN)), count: *count })
            .collect();
        Self { start: s.start, rows }
    }
}

fn columns(values: &Values) -> [(Column, Option<f64>); COLUMNS] {
    let speed = values.get(Quantity::WindSpeed);
    let direction = values.get(Quantity::WindDirection);
    // The wind comes from `direction`: it blows toward direction + 180°.
    let (u, v) = match (speed, direction) {
        (Some(s), Some(d)) => (Some(-s * d.to_radians().sin()), Some(-s * d.to_radians().cos())),
        (Some(0.0), None) => (Some(0.0), Some(0.0)),
        _ => (None, None),
    };
    [
        (Column::Temperature, values.get(Quantity::Temperature)),
        (Column::Humidity, values.get(Quantity::Humidity)),
        (Column::Pressure, values.get(Quantity::Pressure)),
        (Column::WindSpeed, speed),
        (Column::WindU, u),
        (Column::WindV, v),
        (Column::Visibility, values.get(Quantity::Visibility)),
        (Column::Precipitation, values.get(Quantity::Precipitation)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(temperature: f64) -> Values {
        let mut v = Values::EMPTY;
        v.set(Quantity::Temperature, Some(temperature));
        v.set(Quantity::WindSpeed, Some(2.0));
        v.set(Quantity::WindDirection, Some(270.0));
        v
    }

    #[test]
    fn readings_become_hourly_means_with_gaps_as_missing() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let mut h = Hourly::default();
        h.add(t("2013-01-01T06:10:00Z"), &values(4.0), 100);
        h.add(t("2013-01-01T06:50:00Z"), &values(5.0), 100);
        h.add(t("2013-01-01T08:00:00Z"), &values(7.0), 100);
        let six = hour_of(t("2013-01-01T06:00:00Z"));
        assert_eq!(h.len(), 3);
        assert_eq!(h.get(six, Column::Temperature), Some(4.5));
        assert_eq!(h.get(six + 1, Column::Temperature), None);
        assert_eq!(h.get(six + 2, Column::Temperature), Some(7.0));
        // A west wind blows toward the east.
        assert_eq!(h.get(six, Column::WindU), Some(2.0));
        assert!(h.get(six, Column::WindV).unwrap().abs() < 1e-6);
        // Only the last 2 hours are kept.
        h.add(t("2013-01-01T09:00:00Z"), &values(8.0), 2);
        assert_eq!((h.start, h.len()), (six + 2, 2));
    }

    /// What a kept hour costs (BENCHMARKS.md, what a year of history takes): eight f32
    /// means and eight u16 counts.
    #[test]
    fn an_hour_kept_is_48_bytes() {
        assert_eq!(std::mem::size_of::<Hour>(), 48);
    }

    #[test]
    fn as_of_an_earlier_hour_keeps_at_most_the_hours_a_place_keeps() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let mut h = Hourly::default();
        for (k, at) in ["06", "07", "08", "09", "10"].iter().enumerate() {
            h.add(t(&format!("2013-01-01T{at}:00:00Z")), &values(k as f64), 100);
        }
        let six = hour_of(t("2013-01-01T06:00:00Z"));
        // After the first four hours (06 to 09), keeping two: 08 and 09.
        let kept = h.as_of(4, 2);
        assert_eq!((kept.start, kept.len()), (six + 2, 2));
        assert_eq!(kept.get(six + 2, Column::Temperature), Some(2.0));
        assert_eq!(kept.get(six + 1, Column::Temperature), None);
        assert_eq!(kept.get(six + 4, Column::Temperature), None);
        // Keeping more than there is: all of the first four.
        let all = h.as_of(4, usize::MAX);
        assert_eq!((all.start, all.len()), (six, 4));
    }

    #[test]
    fn earlier_hours_go_in_front_and_what_overlaps_is_left_to_the_later_series() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let six = hour_of(t("2013-01-01T06:00:00Z"));
        let mut later = Hourly::default();
        later.add(t("2013-01-01T09:10:00Z"), &values(9.0), 100);
        let mut earlier = Hourly::default();
        for (at, v) in [("2013-01-01T06:00:00Z", 6.0), ("2013-01-01T07:00:00Z", 7.0), ("2013-01-01T09:00:00Z", 1.0)] {
            earlier.add(t(at), &values(v), 100);
        }
        later.prepend(earlier, 100);
        let temperatures: Vec<_> = (six..six + 4).map(|h| later.get(h, Column::Temperature)).collect();
        assert_eq!((later.start, temperatures), (six, vec![Some(6.0), Some(7.0), None, Some(9.0)]));
        let mut short = Hourly::default();
        short.add(t("2013-01-01T09:10:00Z"), &values(9.0), 100);
        let mut earlier = Hourly::default();
        earlier.add(t("2013-01-01T06:00:00Z"), &values(6.0), 100);
        short.prepend(earlier, 2);
        assert_eq!((short.start, short.len()), (six + 2, 2));
    }
}
