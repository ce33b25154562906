//! What the models see at a forecast origin (the last complete hour) for one horizon.
//!
//! Every feature is relative to the value at the origin where it is the same quantity, so
//! that a model learns changes, and the target is the change from the origin to the
//! target hour. Missing inputs are NaN here; [`Scaler`] puts them at the training mean.

use super::hourly::{Column, Hourly};

/// How many features there are.
pub const FEATURES: usize = 43;
/// The features the random forest sees: all but the last eight, the products the linear
/// model needs (a tree forms its own interactions; the network sees them all).
pub const FOREST_FEATURES: usize = FEATURES - 8;
/// Days of the same hour averaged for the climatology feature and baseline.
pub const CLIMATOLOGY_DAYS: i64 = 14;

/// Where the place is, for the sun's elevation (`None`: those features are 0).
pub type Position = Option<(f64, f64)>;

/// The mean of `column` at the hour of day of `hour` over the `CLIMATOLOGY_DAYS` days up to
/// `origin` (only hours at or before the origin are used).
pub fn climatology(series: &Hourly, column: Column, origin: i64, hour: i64) -> Option<f32> {
    let mut last = hour;
    while last > origin {
        last -= 24;
    }
    let (sum, n) = (0..CLIMATOLOGY_DAYS)
        .filter_map(|d| series.get(last - 24 * d, column))
        .fold((0.0, 0), |(s, n), v| (s + v, n + 1));
    (n >= 3).then(|| sum / n as f32)
}

/// The sine of the sun's elevation at the middle of the hour before `hour` (NOAA's
/// approximations for the declination and equation of time; good to a few tenths of a
/// degree, which is all an hourly feature needs).
pub fn sun(position: Position, hour: i64) -> f32 {
    let Some((latitude, longitude)) = position else { return 0.0 };
    let t = (hour as f64 - 0.5) * 3600.0;
    let day = t.div_euclid(86_400.0);
    let utc_hours = t.rem_euclid(86_400.0) / 3600.0;
    // Day of the year from days since 1970-01-01 (good enough over centuries for a feature).
    let day_of_year = (day + 0.5).rem_euclid(365.2425);
    let g = 2.0 * std::f64::consts::PI / 365.0 * (day_of_year + (utc_hours - 12.0) / 24.0);
    let declination = 0.006918 - 0.399912 * g.cos() + 0.070257 * g.sin() - 0.006758 * (2.0 * g).cos()
        + 0.000907 * (2.0 * g).sin()
        - 0.002697 * (3.0 * g).cos()
        + 0.00148 * (3.0 * g).sin();
    let equation_of_time = 229.18
        * (0.000075 + 0.001868 * g.cos()
            - 0.032077 * g.sin()
            - 0.014615 * (2.0 * g).cos()
            - 0.040849 * (2.0 * g).sin());
    let solar_minutes = utc_hours * 60.0 + equation_of_time + 4.0 * longitude;
    let hour_angle = (solar_minutes / 4.0 - 180.0).to_radians();
    let lat = latitude.to_radians();
    (lat.sin() * declination.sin() + lat.cos() * declination.cos() * hour_angle.cos()) as f32
}

fn cycle(hour: i64, period: f64) -> (f32, f32) {
    let angle = 2.0 * std::f64::consts::PI * (hour as f64).rem_euclid(period) / period;
    (angle.sin() as f32, angle.cos() as f32)
}

/// [`cycle`] over a day, looked up: the same 24 values, computed once (a training asks for
/// them three times per origin and horizon).
fn daily(hour: i64) -> (f32, f32) {
    static DAY: std::sync::LazyLock<[(f32, f32); 24]> =
        std::sync::LazyLock::new(|| std::array::from_fn(|h| cycle(h as i64, 24.0)));
    DAY[hour.rem_euclid(24) as usize]
}

/// The sun's elevation ([`sun`]) at every hour of a span, computed once: an origin's
/// features need it at the origin and at each of the 24 hours after, and neighbouring
/// origins share those hours. Outside the span it is computed as asked.
pub struct Sunlight {
    position: Position,
    start: i64,
    values: Vec<f32>,
}

impl Sunlight {
    /// The sun over the hours `from..=to`.
    pub fn over(position: Position, from: i64, to: i64) -> Self {
        let values =
            if position.is_some() { (from..=to).map(|hour| sun(position, hour)).collect() } else { Vec::new() };
        Self { position, start: from, values }
    }

    pub fn at(&self, hour: i64) -> f32 {
        let cached = usize::try_from(hour - self.start).ok().and_then(|i| self.values.get(i));
        cached.copied().unwrap_or_else(|| sun(self.position, hour))
    }
}

/// What the features at one origin share across horizons, computed once; [`Origin::at`]
/// adds a horizon's own.
pub struct Origin<'a> {
    series: &'a Hourly,
    target: Column,
    sunlight: &'a Sunlight,
    origin: i64,
    now: f32,
    /// The features that do not depend on the horizon, in their places in the row.
    shared: [f32; FEATURES],
    sun_origin: f32,
    dryness: f32,
    wind: (f32, f32, f32),
    last_hour: f32,
    anomaly: f32,
}

impl<'a> Origin<'a> {
    /// The shared features at `origin`, or `None` when the target quantity was not
    /// observed there (nothing to forecast from).
    pub fn new(series: &'a Hourly, target: Column, sunlight: &'a Sunlight, origin: i64) -> Option<Self> {
        let now = series.get(origin, target)?;
        let at = |hours_ago: i64, column: Column| series.get(origin - hours_ago, column).unwrap_or(f32::NAN);
        let change = |hours_ago: i64| now - at(hours_ago, target);
        let delta = |column: Column, hours_ago: i64| at(0, column) - at(hours_ago, column);
        let (hour_sin, hour_cos) = daily(origin);
        let (day_sin, day_cos) = cycle(origin.div_euclid(24), 365.2425);
        let humidity = at(0, Column::Humidity);
        let usual_now = climatology(series, target, origin, origin);
        let (wind_speed, wind_u, wind_v) = (at(0, Column::WindSpeed), at(0, Column::WindU), at(0, Column::WindV));
        let last_hour = change(1);
        let mut shared = [0.0; FEATURES];
        shared[..22].copy_from_slice(&[
            last_hour,
            change(2),
            change(3),
            change(6),
            change(12),
            change(24),
            humidity,
            delta(Column::Humidity, 1),
            delta(Column::Humidity, 3),
            at(0, Column::Pressure),
            delta(Column::Pressure, 3),
            delta(Column::Pressure, 12),
            wind_speed,
            wind_u,
            wind_v,
            at(0, Column::Visibility),
            at(0, Column::Precipitation),
            hour_sin,
            hour_cos,
            day_sin,
            day_cos,
            usual_now.map_or(f32::NAN, |v| v - now),
        ]);
        Some(Self {
            series,
            target,
            sunlight,
            origin,
            now,
            shared,
            sun_origin: sunlight.at(origin),
            dryness: 1.0 - humidity / 100.0,
            wind: (wind_speed, wind_u, wind_v),
            last_hour,
            // How far the origin is from its hour's usual value (a clear night's cold).
            anomaly: usual_now.map_or(f32::NAN, |c| now - c),
        })
    }

    /// The target quantity's value at the origin.
    pub fn now(&self) -> f32 {
        self.now
    }

    /// The features for `horizon` hours ahead.
    pub fn at(&self, horizon: u8) -> [f32; FEATURES] {
        let (series, target, origin, now) = (self.series, self.target, self.origin, self.now);
        let h = i64::from(horizon);
        let when = origin + h;
        let relative = |v: Option<f32>| v.map_or(f32::NAN, |v| v - now);
        let (target_sin, target_cos) = daily(when);
        // The daily cycle's second and third harmonics, for its asymmetric shape (a quick
        // rise after sunrise, a slow fall through the night).
        let (target_sin2, target_cos2) = daily(2 * when);
        let (target_sin3, target_cos3) = daily(3 * when);
        let (sun_origin, sun_target) = (self.sun_origin, self.sunlight.at(when));
        // The sun's climb over the forecast hours, which warms more when the air is dry.
        let climb = sun_target - sun_origin;
        // What the same hours did the day before (the sum of two features below, the same
        // hour the day before the target and the change over 24 h, given whole to the forest
        // and the network).
        let before = |hours_ago: i64| series.get(origin - hours_ago, target).unwrap_or(f32::NAN);
        let yesterday = before(24 - h) - before(24);
        // The sun over the target hour: a sea breeze sets in by day, from the sea's side.
        let daylight = sun_target.max(0.0);
        let (wind_speed, wind_u, wind_v) = self.wind;
        let (last_hour, anomaly) = (self.last_hour, self.anomaly);
        let mut row = self.shared;
        row[22..].copy_from_slice(&[
            // The same hour the day before the target (the origin itself at 24 h).
            relative(series.get(when - 24, target)),
            relative(climatology(series, target, origin, when)),
            target_sin,
            target_cos,
            sun_origin,
            sun_target,
            f32::from(horizon) / 24.0,
            target_sin2,
            target_cos2,
            target_sin3,
            target_cos3,
            climb * self.dryness,
            yesterday,
            // Products a linear model cannot form itself: what the sun's climb and daylight
            // do depends on the wind, the last hour's trend and the origin's anomaly.
            wind_u * daylight,
            wind_v * daylight,
            wind_u * climb,
            wind_v * climb,
            wind_speed * climb,
            last_hour * climb,
            anomaly * climb,
            anomaly * daylight,
        ]);
        row
    }
}

/// Standardizes features with the training set's means and deviations; a missing
/// feature becomes the mean (0 after scaling).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Scaler {
    mean: Vec<f32>,
    scale: Vec<f32>,
}

impl Scaler {
    pub fn fit<const N: usize>(rows: &[[f32; N]]) -> Self {
        let mut mean = vec![0.0; N];
        let mut scale = vec![1.0; N];
        for f in 0..N {
            let (sum, sq, n) = rows
                .iter()
                .map(|r| r[f])
                .filter(|v| !v.is_nan())
                .fold((0.0f64, 0.0f64, 0usize), |(s, q, n), v| (s + f64::from(v), q + f64::from(v).powi(2), n + 1));
            if n > 0 {
                let m = sum / n as f64;
                let sd = (sq / n as f64 - m * m).max(0.0).sqrt();
                mean[f] = m as f32;
                scale[f] = if sd > 1e-6 { sd as f32 } else { 1.0 };
            }
        }
        Self { mean, scale }
    }

    /// How many features it was fitted on.
    pub fn features(&self) -> usize {
        self.mean.len()
    }

    /// `row` scaled; a row of another length than fitted on is scaled as far as both go.
    pub fn apply<const N: usize>(&self, row: &[f32; N]) -> [f32; N] {
        let mut out = [0.0; N];
        for f in 0..N.min(self.mean.len()) {
            out[f] = if row[f].is_nan() { 0.0 } else { (row[f] - self.mean[f]) / self.scale[f] };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sun_is_high_at_noon_in_june_and_below_the_horizon_at_midnight() {
        // New York, 2013-06-21: solar noon near 16:57 UTC; elevation about 72.8°.
        let nyc = Some((40.64, -73.78));
        let hour = |h: i64| (1_371_772_800 + h * 3600) / 3600; // 2013-06-21T00:00Z + h
        let noon = sun(nyc, hour(17)).asin().to_degrees();
        assert!((noon - 72.0).abs() < 1.5, "{noon}");
        assert!(sun(nyc, hour(5)) < 0.0);
        assert_eq!(sun(None, hour(17)), 0.0);
    }

    /// The looked-up values are the computed ones, bit for bit, inside the span and out.
    #[test]
    fn sunlight_and_the_daily_cycle_are_looked_up_as_computed() {
        let nyc = Some((40.64, -73.78));
        let sunlight = Sunlight::over(nyc, 381_000, 381_100);
        for hour in 380_990..381_110 {
            assert_eq!(sunlight.at(hour).to_bits(), sun(nyc, hour).to_bits());
            assert_eq!(daily(hour), cycle(hour, 24.0));
            assert_eq!(daily(-hour), cycle(-hour, 24.0));
        }
        assert_eq!(Sunlight::over(None, 0, 10).at(5), 0.0);
    }
}
