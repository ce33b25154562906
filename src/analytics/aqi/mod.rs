//! The US Air Quality Index as EPA computes it (Technical Assistance Document
//! EPA-454/B-24-002, with the PM2.5 breakpoints revised in 2024): each pollutant's
//! sub-index from its concentration over its averaging period, truncated as EPA says, and
//! the NowCast that turns the last 12 hours of particulate matter into a current value.
//!
//! Pure functions over the breakpoint table in `data/epa-aqi/` (US Government facts),
//! which a test checks this module's table against.
//!
//! Concentrations go in as EPA's units (ppm for O3 and CO, ppb for SO2 and NO2, µg/m³ for
//! PM); [`ppb_from_ugm3`] converts the µg/m³ the providers report, at 25 °C and 1 atm.
//!
//! Besides: what EPA advises at each category ([`advice`]), the European index as a
//! second scale ([`european`]), and the hourly AQI forecast from the providers' pollutant
//! forecasts ([`forecast`]).

pub mod advice;
pub mod european;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use self::advice::Advice;
use self::european::EuropeanIndex;
use crate::domain::{AirReport, Quantity, Reading, ReportedIndex, SourceName};

/// The pollutants of the US AQI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pollutant {
    #[serde(rename = "pm2_5")]
    Pm25,
    Pm10,
    O3,
    Co,
    So2,
    No2,
}

impl Pollutant {
    pub const ALL: [Pollutant; 6] =
        [Pollutant::Pm25, Pollutant::Pm10, Pollutant::O3, Pollutant::Co, Pollutant::So2, Pollutant::No2];

    /// As serialized: the quantity's name.
    pub fn key(self) -> &'static str {
        self.quantity().name()
    }

    /// The quantity readings carry it as (µg/m³).
    pub fn quantity(self) -> Quantity {
        match self {
            Pollutant::Pm25 => Quantity::Pm25,
            Pollutant::Pm10 => Quantity::Pm10,
            Pollutant::O3 => Quantity::O3,
            Pollutant::Co => Quantity::Co,
            Pollutant::So2 => Quantity::So2,
            Pollutant::No2 => Quantity::No2,
        }
    }

    /// EPA's unit for its breakpoints.
    pub fn epa_unit(self) -> &'static str {
        match self {
            Pollutant::Pm25 | Pollutant::Pm10 => "µg/m³",
            Pollutant::O3 | Pollutant::Co => "ppm",
            Pollutant::So2 | Pollutant::No2 => "ppb",
        }
    }

    /// Grams per mole, for converting µg/m³ of a gas to a mixing ratio.
    fn molar_mass(self) -> Option<f64> {
        match self {
            Pollutant::O3 => Some(47.998),
            Pollutant::Co => Some(28.010),
            Pollutant::So2 => Some(64.066),
            Pollutant::No2 => Some(46.0055),
            Pollutant::Pm25 | Pollutant::Pm10 => None,
        }
    }

    /// The step EPA truncates a concentration to before looking it up.
    fn truncate_to(self) -> f64 {
        match self {
            Pollutant::Pm25 | Pollutant::Co => 0.1,
            Pollutant::O3 => 0.001,
            Pollutant::Pm10 | Pollutant::So2 | Pollutant::No2 => 1.0,
        }
    }
}

/// Over how long a concentration was averaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum Averaging {
    #[serde(rename = "1h")]
    Hour1,
    #[serde(rename = "8h")]
    Hour8,
    #[serde(rename = "24h")]
    Hour24,
    /// PM's NowCast over the last 12 hours, read with the 24-hour breakpoints.
    #[serde(rename = "nowcast")]
    NowCast,
}

/// The six categories, with EPA's colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Good,
    Moderate,
    UnhealthyForSensitiveGroups,
    Unhealthy,
    VeryUnhealthy,
    Hazardous,
}

impl Category {
    pub fn of(aqi: u16) -> Self {
        match aqi {
            0..=50 => Category::Good,
            51..=100 => Category::Moderate,
            101..=150 => Category::UnhealthyForSensitiveGroups,
            151..=200 => Category::Unhealthy,
            201..=300 => Category::VeryUnhealthy,
            _ => Category::Hazardous,
        }
    }

    /// As serialized (and as the metrics label).
    pub fn key(self) -> &'static str {
        match self {
            Category::Good => "good",
            Category::Moderate => "moderate",
            Category::UnhealthyForSensitiveGroups => "unhealthy_for_sensitive_groups",
            Category::Unhealthy => "unhealthy",
            Category::VeryUnhealthy => "very_unhealthy",
            Category::Hazardous => "hazardous",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Category::Good => "Good",
            Category::Moderate => "Moderate",
            Category::UnhealthyForSensitiveGroups => "Unhealthy for Sensitive Groups",
            Category::Unhealthy => "Unhealthy",
            Category::VeryUnhealthy => "Very Unhealthy",
            Category::Hazardous => "Hazardous",
        }
    }

    /// EPA's colour, as `#RRGGBB`.
    pub fn colour(self) -> &'static str {
        match self {
            Category::Good => "#00E400",
            Category::Moderate => "#FFFF00",
            Category::UnhealthyForSensitiveGroups => "#FF7E00",
            Category::Unhealthy => "#FF0000",
            Category::VeryUnhealthy => "#8F3F97",
            Category::Hazardous => "#7E0023",
        }
    }
}

/// One row of the table: concentrations `lo..=hi` map linearly onto `aqi_lo..=aqi_hi`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Breakpoint {
    pollutant: Pollutant,
    averaging: Averaging,
    aqi_lo: u16,
    aqi_hi: u16,
    lo: f64,
    hi: f64,
}

const fn bp(pollutant: Pollutant, averaging: Averaging, aqi: (u16, u16), lo: f64, hi: f64) -> Breakpoint {
    Breakpoint { pollutant, averaging, aqi_lo: aqi.0, aqi_hi: aqi.1, lo, hi }
}

use Averaging::{Hour1, Hour8, Hour24};
use Pollutant::{Co, No2, O3, Pm10, Pm25, So2};

/// The 2024 table (`data/epa-aqi/epa_aqi_breakpoints_2024.csv`). The top row of each
/// pollutant ends at the value EPA maps to 500; above it is "beyond the AQI".
const TABLE: [Breakpoint; 39] = [
    bp(O3, Hour8, (0, 50), 0.000, 0.054),
    bp(O3, Hour8, (51, 100), 0.055, 0.070),
    bp(O3, Hour8, (101, 150), 0.071, 0.085),
    bp(O3, Hour8, (151, 200), 0.086, 0.105),
    bp(O3, Hour8, (201, 300), 0.106, 0.200),
    bp(O3, Hour1, (101, 150), 0.125, 0.164),
    bp(O3, Hour1, (151, 200), 0.165, 0.204),
    bp(O3, Hour1, (201, 300), 0.205, 0.404),
    bp(O3, Hour1, (301, 500), 0.405, 0.604),
    bp(Pm25, Hour24, (0, 50), 0.0, 9.0),
    bp(Pm25, Hour24, (51, 100), 9.1, 35.4),
    bp(Pm25, Hour24, (101, 150), 35.5, 55.4),
    bp(Pm25, Hour24, (151, 200), 55.5, 125.4),
    bp(Pm25, Hour24, (201, 300), 125.5, 225.4),
    bp(Pm25, Hour24, (301, 500), 225.5, 325.4),
    bp(Pm10, Hour24, (0, 50), 0.0, 54.0),
    bp(Pm10, Hour24, (51, 100), 55.0, 154.0),
    bp(Pm10, Hour24, (101, 150), 155.0, 254.0),
    bp(Pm10, Hour24, (151, 200), 255.0, 354.0),
    bp(Pm10, Hour24, (201, 300), 355.0, 424.0),
    bp(Pm10, Hour24, (301, 500), 425.0, 604.0),
    bp(Co, Hour8, (0, 50), 0.0, 4.4),
    bp(Co, Hour8, (51, 100), 4.5, 9.4),
    bp(Co, Hour8, (101, 150), 9.5, 12.4),
    bp(Co, Hour8, (151, 200), 12.5, 15.4),
    bp(Co, Hour8, (201, 300), 15.5, 30.4),
    bp(Co, Hour8, (301, 500), 30.5, 50.4),
    bp(So2, Hour1, (0, 50), 0.0, 35.0),
    bp(So2, Hour1, (51, 100), 36.0, 75.0),
    bp(So2, Hour1, (101, 150), 76.0, 185.0),
    bp(So2, Hour1, (151, 200), 186.0, 304.0),
    bp(So2, Hour24, (201, 300), 305.0, 604.0),
    bp(So2, Hour24, (301, 500), 605.0, 1004.0),
    bp(No2, Hour1, (0, 50), 0.0, 53.0),
    bp(No2, Hour1, (51, 100), 54.0, 100.0),
    bp(No2, Hour1, (101, 150), 101.0, 360.0),
    bp(No2, Hour1, (151, 200), 361.0, 649.0),
    bp(No2, Hour1, (201, 300), 650.0, 1249.0),
    bp(No2, Hour1, (301, 500), 1250.0, 2049.0),
];

/// A pollutant's sub-index.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SubIndex {
    pub pollutant: Pollutant,
    pub aqi: u16,
    pub category: Category,
    /// The concentration looked up (after truncation), in EPA's unit.
    pub concentration: f64,
    pub averaging: Averaging,
    /// Above the table's top: the AQI is shown as 500.
    pub beyond_index: bool,
}

/// `value` truncated (never rounded) to a multiple of `step`, with a guard against binary
/// fractions (0.3 / 0.1 = 2.9999…).
fn truncate(value: f64, step: f64) -> f64 {
    let steps = (value / step + 1e-9).floor();
    // Back to the step's decimals, so that 35.5 stays 35.5 and not 35.500000000000004.
    let decimals = (-step.log10()).round().max(0.0) as i32;
    let scale = 10f64.powi(decimals);
    (steps * step * scale).round() / scale
}

/// The sub-index of a concentration averaged over `averaging` (EPA's unit), from the
/// rows of that averaging; `None` for a negative or non-finite concentration, or one the
/// averaging has no row for (8-hour O3 above 0.200 ppm, 1-hour O3 below 0.125 ppm).
pub fn sub_index(pollutant: Pollutant, averaging: Averaging, concentration: f64) -> Option<SubIndex> {
    if !concentration.is_finite() || concentration < 0.0 {
        return None;
    }
    let table_averaging = if averaging == Averaging::NowCast { Hour24 } else { averaging };
    let c = truncate(concentration, pollutant.truncate_to());
    let rows = TABLE.iter().filter(|b| b.pollutant == pollutant && b.averaging == table_averaging);
    let mut top = None;
    for b in rows {
        if (b.lo..=b.hi).contains(&c) {
            // In whole truncation steps, so that EPA's halves stay exact (0.078 ppm of
            // ozone is 125.5, which rounds to 126; in binary fractions it is 125.4999…).
            let steps = |x: f64| (x / pollutant.truncate_to()).round();
            let (lo, hi, c_steps) = (steps(b.lo), steps(b.hi), steps(c));
            let aqi = f64::from(b.aqi_hi - b.aqi_lo) * (c_steps - lo) / (hi - lo) + f64::from(b.aqi_lo);
            let aqi = aqi.round() as u16;
            let category = Category::of(aqi);
            return Some(SubIndex { pollutant, aqi, category, concentration: c, averaging, beyond_index: false });
        }
        top = Some(*b);
    }
    // Above every row of a table that ends at AQI 500: beyond the index.
    let top = top?;
    (c > top.hi && top.aqi_hi == 500).then_some(SubIndex {
        pollutant,
        aqi: 500,
        category: Category::Hazardous,
        concentration: c,
        averaging,
        beyond_index: true,
    })
}

/// Ozone's sub-index: the 8-hour one, or the 1-hour one when that is higher and the
/// 1-hour concentration is at least 0.125 ppm (8-hour values above 0.200 ppm define no
/// AQI: then only the 1-hour one counts).
pub fn ozone(eight_hour: Option<f64>, one_hour: Option<f64>) -> Option<SubIndex> {
    let eight = eight_hour.and_then(|c| sub_index(O3, Hour8, c));
    let one = one_hour.filter(|&c| c >= 0.125).and_then(|c| sub_index(O3, Hour1, c));
    match (eight, one) {
        (Some(e), Some(o)) => Some(if o.aqi > e.aqi { o } else { e }),
        (e, o) => e.or(o),
    }
}

/// Sulphur dioxide's sub-index: the 1-hour one up to 304 ppb (AQI 200); above that, the
/// 24-hour average decides (an average of 304 ppb or less is AQI 200).
pub fn sulphur_dioxide(one_hour: f64, day: Option<f64>) -> Option<SubIndex> {
    let hourly = sub_index(So2, Hour1, one_hour);
    if hourly.is_some() {
        return hourly;
    }
    if !one_hour.is_finite() || one_hour < 0.0 {
        return None;
    }
    match day.and_then(|d| sub_index(So2, Hour24, d)) {
        Some(daily) => Some(daily),
        None => Some(SubIndex {
            pollutant: So2,
            aqi: 200,
            category: Category::Unhealthy,
            concentration: truncate(one_hour, 1.0),
            averaging: Hour1,
            beyond_index: false,
        }),
    }
}

/// EPA's NowCast of PM2.5 or PM10 from hourly averages, newest first (`hours[0]` is the
/// last complete hour; `None` where the hour is missing; at most 12 are used). At least
/// two of the three newest hours must be there. The weight factor is 1 − (max − min) /
/// max over the hours there, at least 0.5; each older hour weighs that factor once more.
/// Truncated as the pollutant's concentrations are.
pub fn nowcast(pollutant: Pollutant, hours: &[Option<f64>]) -> Option<f64> {
    let hours = &hours[..hours.len().min(12)];
    if hours.iter().take(3).filter(|h| h.is_some()).count() < 2 {
        return None;
    }
    let present: Vec<f64> = hours.iter().flatten().copied().filter(|c| c.is_finite()).collect();
    let max = present.iter().copied().fold(f64::MIN, f64::max);
    let min = present.iter().copied().fold(f64::MAX, f64::min);
    let factor = if max > 0.0 { (1.0 - (max - min) / max).max(0.5) } else { 1.0 };
    let (mut sum, mut weights) = (0.0, 0.0);
    for (i, c) in hours.iter().enumerate() {
        if let Some(c) = c.filter(|c| c.is_finite()) {
            let w = factor.powi(i as i32);
            sum += w * c;
            weights += w;
        }
    }
    Some(truncate(sum / weights, pollutant.truncate_to()))
}

/// A gas's µg/m³ as ppb at 25 °C and 1 atm (molar volume 24.45 L); `None` for PM.
pub fn ppb_from_ugm3(pollutant: Pollutant, ugm3: f64) -> Option<f64> {
    Some(ugm3 * 24.45 / pollutant.molar_mass()?)
}

/// The concentration EPA's table wants (ppm for O3 and CO, ppb for SO2 and NO2, µg/m³
/// for PM) from the µg/m³ the providers report.
pub fn in_epa_unit(pollutant: Pollutant, ugm3: f64) -> f64 {
    match pollutant {
        Pm25 | Pm10 => ugm3,
        O3 | Co => ppb_from_ugm3(pollutant, ugm3).unwrap_or(f64::NAN) / 1000.0,
        So2 | No2 => ppb_from_ugm3(pollutant, ugm3).unwrap_or(f64::NAN),
    }
}

/// The overall AQI: the highest sub-index (its pollutant is the dominant one; the first
/// listed wins a tie).
pub fn overall(sub_indices: &[SubIndex]) -> Option<SubIndex> {
    sub_indices.iter().copied().reduce(|best, s| if s.aqi > best.aqi { s } else { best })
}

/// A location's air quality now (`/air-quality`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AirQuality {
    /// The US AQI (EPA, 2024): the highest of the pollutants' sub-indices.
    pub aqi: u16,
    pub category: Category,
    /// The category as EPA words it.
    pub category_name: String,
    /// EPA's colour of the category, `#RRGGBB`.
    pub colour: String,
    /// The pollutant whose sub-index is the AQI.
    pub dominant: Pollutant,
    /// The start of the newest hour of readings used.
    pub hour: DateTime<Utc>,
    pub pollutants: Vec<PollutantIndex>,
    /// PM2.5's and PM10's 24-hour means (the last 24 hours, 18 of them needed) with their
    /// sub-indices: the day's index as EPA reports it, beside the NowCast of the current
    /// one.
    pub day: Vec<PollutantIndex>,
    /// What EPA advises at this category for the dominant pollutant.
    pub advice: Advice,
    /// The European index (EEA) of the newest hour's means; `null` when it has none of its
    /// five pollutants.
    pub european: Option<EuropeanIndex>,
    /// Each source's latest pollutants.
    pub sources: Vec<AirSource>,
    /// The providers' own indices, beside isobar's (absent when none reports one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ReportedIndex>,
    /// The hourly AQI forecast, asked for with `?hours=` (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<Vec<AqiHour>>,
}

/// A source's latest reading of pollutants (µg/m³; a pollutant it did not report is
/// absent).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AirSource {
    #[schema(value_type = String)]
    pub source: SourceName,
    pub observed_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pm2_5: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pm10: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub o3: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub co: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub so2: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no2: Option<f64>,
}

/// One hour of the AQI forecast.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AqiHour {
    /// The hour's start.
    pub time: DateTime<Utc>,
    pub aqi: u16,
    pub category: Category,
    pub dominant: Pollutant,
    /// The European index's level that hour (`null` without any of its pollutants).
    pub european: Option<european::EuropeanLevel>,
}

impl AirQuality {
    /// What `/current` shows of it.
    pub fn summary(&self) -> crate::domain::AirQualitySummary {
        crate::domain::AirQualitySummary {
            aqi: self.aqi,
            category: self.category.key().to_owned(),
            dominant: self.dominant.key().to_owned(),
            hour: self.hour,
        }
    }
}

/// One pollutant's part of the AQI.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PollutantIndex {
    pub pollutant: Pollutant,
    /// Its mean over the newest hour, µg/m³ (`null` when that hour has none).
    pub concentration: Option<f64>,
    /// What the sub-index was read from: the concentration over `averaging`, truncated,
    /// in `unit` (ppm for O3 and CO, ppb for SO2 and NO2, µg/m³ for PM).
    pub averaged: f64,
    pub unit: String,
    pub averaging: Averaging,
    pub aqi: u16,
    pub category: Category,
    /// Above the top of the index: shown as 500.
    pub beyond_index: bool,
}

/// Why a location has no air quality now.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoIndex {
    #[error("no source reported pollutants there in the last 24 hours")]
    NoPollutants,
    #[error("its newest pollutant readings are from the hour of {0}, more than two hours ago")]
    Stale(String),
    #[error(
        "not enough hours yet: PM needs 2 of the last 3 hours, ozone and CO 6 of the last 8, SO2 and NO2 the newest hour"
    )]
    TooFewHours,
}

/// The hour (hours since the epoch) `at` is in.
fn hour_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(3600)
}

/// The start of an hour since the epoch.
fn start_of(hour: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default()
}

fn reports_pollutants(r: &Reading) -> bool {
    Pollutant::ALL.iter().any(|p| r.values.get(p.quantity()).is_some())
}

/// Each pollutant's hourly means over `len` hours back from `newest` (index 0), from the
/// readings of those hours.
fn hourly_means(readings: &[Reading], newest: i64, len: usize) -> Vec<(Pollutant, Vec<Option<f64>>)> {
    Pollutant::ALL
        .iter()
        .map(|&p| {
            let mut sums = vec![(0.0, 0u32); len];
            for r in readings {
                let back = usize::try_from(newest - hour_of(r.observed_at));
                if let (Ok(k), Some(v)) = (back, r.values.get(p.quantity()))
                    && k < len
                {
                    sums[k].0 += v;
                    sums[k].1 += 1;
                }
            }
            (p, sums.iter().map(|&(sum, n)| (n > 0).then(|| sum / f64::from(n))).collect())
        })
        .collect()
}

/// The air quality from readings of the last 24 hours (any sources, any order): each
/// pollutant's hourly means, back from the newest hour that has one, which must be at
/// most two hours before `now`'s; with each source's latest pollutants.
pub fn from_readings(readings: &[Reading], now: DateTime<Utc>) -> Result<AirQuality, NoIndex> {
    let newest = newest_hour(readings, now)?;
    let mut air_quality = assess(start_of(newest), &hourly_means(readings, newest, 24)).ok_or(NoIndex::TooFewHours)?;
    air_quality.sources = latest_by_source(readings);
    Ok(air_quality)
}

/// The category and hour of the air quality [`from_readings`] would give, without
/// building its document (the watch asks on every pollutant reading, and builds the
/// document only when one of them changed).
pub fn category_at(readings: &[Reading], now: DateTime<Utc>) -> Result<(Category, DateTime<Utc>), NoIndex> {
    let newest = newest_hour(readings, now)?;
    let subs = sub_indices(&hourly_means(readings, newest, 24));
    let top = highest(&subs).ok_or(NoIndex::TooFewHours)?;
    Ok((top.category, start_of(newest)))
}

/// The newest hour with pollutants, unless it is more than two hours before `now`'s.
fn newest_hour(readings: &[Reading], now: DateTime<Utc>) -> Result<i64, NoIndex> {
    let newest = readings
        .iter()
        .filter(|r| reports_pollutants(r))
        .map(|r| hour_of(r.observed_at))
        .max()
        .ok_or(NoIndex::NoPollutants)?;
    if newest < hour_of(now) - 2 {
        return Err(NoIndex::Stale(start_of(newest).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
    }
    Ok(newest)
}

/// Each source's newest reading with pollutants, in the order the sources first appear.
fn latest_by_source(readings: &[Reading]) -> Vec<AirSource> {
    let mut latest: Vec<&Reading> = Vec::new();
    for r in readings.iter().filter(|r| reports_pollutants(r)) {
        match latest.iter_mut().find(|l| l.source == r.source) {
            Some(l) if l.observed_at <= r.observed_at => *l = r,
            Some(_) => {}
            None => latest.push(r),
        }
    }
    latest
        .into_iter()
        .map(|r| AirSource {
            source: r.source.clone(),
            observed_at: r.observed_at,
            pm2_5: r.get(Quantity::Pm25),
            pm10: r.get(Quantity::Pm10),
            o3: r.get(Quantity::O3),
            co: r.get(Quantity::Co),
            so2: r.get(Quantity::So2),
            no2: r.get(Quantity::No2),
        })
        .collect()
}

/// The AQI of each of the `hours` hours after `now`'s, from the pollutants' hourly means
/// up to `now`'s hour (`readings`) and, after it, the mean of the providers' forecasts
/// (`reports`): each hour assessed as the current one is, over the hours before it. An
/// hour no provider forecasts, or no pollutant gives an index, is left out.
pub fn forecast(readings: &[Reading], reports: &[&AirReport], now: DateTime<Utc>, hours: usize) -> Vec<AqiHour> {
    let current = hour_of(now);
    let last = current + hours as i64;
    // Index 0 is the last hour asked for; `hours` further on is the current one.
    let mut series = hourly_means(readings, last, hours + 24);
    for (p, means) in &mut series {
        for (k, mean) in means.iter_mut().enumerate().take(hours) {
            let at = start_of(last - k as i64);
            let forecasts: Vec<f64> = reports.iter().filter_map(|r| r.forecast(at, p.quantity())).collect();
            *mean = (!forecasts.is_empty()).then(|| forecasts.iter().sum::<f64>() / forecasts.len() as f64);
        }
    }
    (1..=hours)
        .filter_map(|ahead| {
            let from = hours - ahead;
            if series.iter().all(|(_, means)| means[from].is_none()) {
                return None;
            }
            let window: Vec<(Pollutant, Vec<Option<f64>>)> =
                series.iter().map(|(p, means)| (*p, means[from..from + 24].to_vec())).collect();
            // The index as `assess` finds it, without the document around it.
            let top = highest(&sub_indices(&window))?;
            let newest: Vec<(Pollutant, Option<f64>)> =
                window.iter().map(|(p, means)| (*p, means.first().copied().flatten())).collect();
            Some(AqiHour {
                time: start_of(current + ahead as i64),
                aqi: top.aqi,
                category: top.category,
                dominant: top.pollutant,
                european: european::index(&newest).map(|e| e.level),
            })
        })
        .collect()
}

/// The mean of the hours present among `hours`, when at least `need` are.
fn mean_of(hours: &[Option<f64>], need: usize) -> Option<f64> {
    let present: Vec<f64> = hours.iter().flatten().copied().collect();
    (present.len() >= need.max(1)).then(|| present.iter().sum::<f64>() / present.len() as f64)
}

/// The highest of the sub-indices [`sub_indices`] found.
fn highest(subs: &[(SubIndex, Option<f64>)]) -> Option<SubIndex> {
    overall(&subs.iter().map(|(s, _)| *s).collect::<Vec<_>>())
}

/// Each pollutant's sub-index from its hourly means in µg/m³ (newest first), with its
/// concentration in the newest hour: PM by NowCast, O3 by its 8-hour mean (6 of 8 hours)
/// and its last hour, CO by its 8-hour mean, SO2 by its last hour (and 24-hour mean), NO2
/// by its last hour.
fn sub_indices(hourly: &[(Pollutant, Vec<Option<f64>>)]) -> Vec<(SubIndex, Option<f64>)> {
    hourly
        .iter()
        .filter_map(|(p, hours)| {
            let p = *p;
            let epa: Vec<Option<f64>> = hours.iter().take(24).map(|h| h.map(|c| in_epa_unit(p, c))).collect();
            let at = |n: usize| &epa[..n.min(epa.len())];
            let last = epa.first().copied().flatten();
            let sub = match p {
                Pm25 | Pm10 => nowcast(p, at(12)).and_then(|c| sub_index(p, Averaging::NowCast, c)),
                O3 => ozone(mean_of(at(8), 6), last),
                Co => mean_of(at(8), 6).and_then(|c| sub_index(Co, Hour8, c)),
                So2 => last.and_then(|c| sulphur_dioxide(c, mean_of(at(24), 18))),
                No2 => last.and_then(|c| sub_index(No2, Hour1, c)),
            }?;
            Some((sub, hours.first().copied().flatten()))
        })
        .collect()
}

/// The air quality from each pollutant's hourly means in µg/m³, newest hour first
/// (`hours[0]` is `hour`; up to 24 are used): PM by NowCast (12 hours), O3 by its 8-hour
/// mean (6 of 8 hours needed) and its last hour, CO by its 8-hour mean, SO2 by its last
/// hour (and 24-hour mean, 18 of 24 needed, above 304 ppb), NO2 by its last hour.
/// `None` when no pollutant gives a sub-index.
pub fn assess(hour: DateTime<Utc>, hourly: &[(Pollutant, Vec<Option<f64>>)]) -> Option<AirQuality> {
    let subs = sub_indices(hourly);
    let top = highest(&subs)?;
    let newest: Vec<(Pollutant, Option<f64>)> =
        hourly.iter().map(|(p, hours)| (*p, hours.first().copied().flatten())).collect();
    // PM's 24-hour means, the day's index as EPA reports it (18 of the 24 hours needed).
    let day: Vec<(SubIndex, Option<f64>)> = hourly
        .iter()
        .filter(|(p, _)| matches!(p, Pm25 | Pm10))
        .filter_map(|(p, hours)| {
            let sub = mean_of(&hours[..hours.len().min(24)], 18).and_then(|c| sub_index(*p, Hour24, c))?;
            Some((sub, hours.first().copied().flatten()))
        })
        .collect();
    let view = |(s, concentration): (SubIndex, Option<f64>)| PollutantIndex {
        pollutant: s.pollutant,
        concentration,
        averaged: s.concentration,
        unit: s.pollutant.epa_unit().to_owned(),
        averaging: s.averaging,
        aqi: s.aqi,
        category: s.category,
        beyond_index: s.beyond_index,
    };
    let pollutants = subs.into_iter().map(view).collect();
    let day = day.into_iter().map(view).collect();
    Some(AirQuality {
        aqi: top.aqi,
        category: top.category,
        category_name: top.category.name().to_owned(),
        colour: top.category.colour().to_owned(),
        dominant: top.pollutant,
        hour,
        pollutants,
        day,
        advice: advice::advice(top.pollutant, top.category),
        european: european::index(&newest),
        sources: Vec::new(),
        providers: Vec::new(),
        forecast: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_days_pm_index_is_its_24_hour_mean_when_18_hours_have_it() {
        let hour: DateTime<Utc> = "2026-11-28T12:00:00Z".parse().unwrap();
        // 36 µg/m³ in 18 of the last 24 hours: 24-hour mean 36.0, AQI 49 × 5 / 199 + 101 → 102.
        let hours: Vec<Option<f64>> = (0..24).map(|k| (k % 4 != 3).then_some(36.0)).collect();
        let aq = assess(hour, &[(Pm25, hours.clone())]).unwrap();
        let day: Vec<(Pollutant, Averaging, f64, u16)> =
            aq.day.iter().map(|p| (p.pollutant, p.averaging, p.averaged, p.aqi)).collect();
        assert_eq!(day, [(Pm25, Hour24, 36.0, 102)]);
        assert_eq!((aq.pollutants[0].averaging, aq.aqi), (Averaging::NowCast, 102));
        // One hour fewer: no day's index, the NowCast still.
        let mut fewer = hours;
        fewer[0] = None;
        let aq = assess(hour, &[(Pm25, fewer)]).unwrap();
        assert!(aq.day.is_empty());
        assert_eq!(aq.pollutants[0].averaging, Averaging::NowCast);
    }

    #[test]
    fn the_aqi_forecast_joins_the_observed_hours_to_the_mean_of_the_providers_forecasts() {
        let now: DateTime<Utc> = "2026-11-28T12:20:00Z".parse().unwrap();
        let hour = |k: i64| start_of(hour_of(now) + k);
        let source = SourceName::parse("station").unwrap();
        let id = crate::domain::LocationId::parse("X").unwrap();
        // Eight observed hours of CO at 2000 µg/m³, up to the current one.
        let readings: Vec<Reading> = (-7..=0)
            .map(|k| {
                let mut r = Reading::new(id.clone(), source.clone(), hour(k) + chrono::Duration::minutes(5));
                r.set(Quantity::Co, Some(2000.0));
                r
            })
            .collect();
        // One provider forecasts 20000 for two hours, another 10000 for the first.
        let report = |name: &str, hours: Vec<f32>| AirReport {
            source: SourceName::parse(name).unwrap(),
            indices: Vec::new(),
            start: hour(1),
            hours: hours.into_iter().map(|co| [f32::NAN, f32::NAN, f32::NAN, co, f32::NAN, f32::NAN]).collect(),
        };
        let (a, b) = (report("a", vec![20000.0, 20000.0]), report("b", vec![10000.0]));
        let ahead = forecast(&readings, &[&a, &b], now, 3);
        // +1 h: 8-hour mean (7 × 2000 + 15000) / 8 = 3625 µg/m³ = 3.16 ppm → 3.1: 50 × 31 / 44 → 35.
        // +2 h: (6 × 2000 + 15000 + 20000) / 8 = 5875 → 5.13 ppm → 5.1: 49 × 6 / 49 + 51 → 57.
        // +3 h: nobody forecasts it.
        let expected = |k: i64, aqi: u16, category: Category| AqiHour {
            time: hour(k),
            aqi,
            category,
            dominant: Co,
            european: None,
        };
        assert_eq!(ahead, [expected(1, 35, Category::Good), expected(2, 57, Category::Moderate)]);
    }

    fn aqi(pollutant: Pollutant, averaging: Averaging, c: f64) -> u16 {
        sub_index(pollutant, averaging, c).unwrap_or_else(|| panic!("{pollutant:?} {c}")).aqi
    }

    #[test]
    fn the_table_is_the_bundled_2024_csv() {
        let csv = include_str!("../../../data/epa-aqi/epa_aqi_breakpoints_2024.csv");
        let rows: Vec<Breakpoint> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f[0] == "2024")
            .map(|f| {
                let pollutant = match f[1] {
                    "O3" => O3,
                    "PM2.5" => Pm25,
                    "PM10" => Pm10,
                    "CO" => Co,
                    "SO2" => So2,
                    "NO2" => No2,
                    other => panic!("{other}"),
                };
                let averaging = match f[2] {
                    "1h" => Hour1,
                    "8h" => Hour8,
                    "24h" => Hour24,
                    other => panic!("{other}"),
                };
                let n = |i: usize| f[i].parse::<f64>().unwrap();
                // Its truncation digits are this module's too.
                assert_eq!(pollutant.truncate_to(), n(4), "{f:?}");
                bp(pollutant, averaging, (n(6) as u16, n(7) as u16), n(8), n(9))
            })
            .collect();
        assert_eq!(rows, TABLE);
    }

    #[test]
    fn epas_worked_examples() {
        // EPA-454/B-24-002: a 24-hour PM2.5 of 35.9 µg/m³ is AQI 102; an 8-hour ozone
        // of 0.078 ppm is AQI 126.
        assert_eq!(aqi(Pm25, Hour24, 35.9), 102);
        assert_eq!(aqi(O3, Hour8, 0.078), 126);
        // Ozone: 8-hour 0.078 (126) and 1-hour 0.162 (49 × 37 / 39 + 101 = 147.49 → 147):
        // the higher.
        let o3 = ozone(Some(0.078), Some(0.162)).unwrap();
        assert_eq!((o3.aqi, o3.averaging, o3.category), (147, Hour1, Category::UnhealthyForSensitiveGroups));
        // The overall AQI is the highest sub-index; its pollutant is the dominant one.
        let all = [sub_index(Pm25, Hour24, 35.9).unwrap(), o3, sub_index(Co, Hour8, 8.4).unwrap()];
        let top = overall(&all).unwrap();
        assert_eq!((top.pollutant, top.aqi, top.category.name()), (O3, 147, "Unhealthy for Sensitive Groups"));
    }

    #[test]
    fn every_breakpoint_on_both_sides_with_truncation() {
        for b in TABLE {
            let step = b.pollutant.truncate_to();
            let (p, a) = (b.pollutant, b.averaging);
            assert_eq!(aqi(p, a, b.lo), b.aqi_lo, "{b:?} low end");
            assert_eq!(aqi(p, a, b.hi), b.aqi_hi, "{b:?} high end");
            // Just under the next step is truncated onto the high end, not rounded up.
            assert_eq!(aqi(p, a, b.hi + step * 0.9), if b.aqi_hi == 500 { 500 } else { b.aqi_hi }, "{b:?} truncated");
            // One step above is the next category's first value (or beyond the index).
            let above = sub_index(p, a, b.hi + step);
            match TABLE.iter().find(|n| n.pollutant == p && n.averaging == a && n.aqi_lo == b.aqi_hi + 1) {
                Some(next) => assert_eq!(above.unwrap().aqi, next.aqi_lo, "{b:?} next"),
                None if b.aqi_hi == 500 => assert!(above.unwrap().beyond_index, "{b:?} beyond"),
                // 8-hour O3 and 1-hour SO2 end below 500: the other averaging takes over.
                None => assert_eq!(above, None, "{b:?} ends"),
            }
            assert_eq!(Category::of(b.aqi_lo), Category::of(b.aqi_hi), "{b:?} one category");
        }
        // The 2024 PM2.5 change: 9.0 is still good, 9.1 moderate, and 12.0, good before
        // 2024, is 49 × 29 / 263 + 51 = 56.4 → 56.
        assert_eq!((aqi(Pm25, Hour24, 9.0), aqi(Pm25, Hour24, 9.1), aqi(Pm25, Hour24, 12.0)), (50, 51, 56));
        assert_eq!(sub_index(Pm25, Hour24, -1.0), None);
        assert_eq!(sub_index(Pm25, Hour24, f64::NAN), None);
    }

    #[test]
    fn ozone_and_sulphur_dioxide_switch_averaging_where_epa_says() {
        // 1-hour ozone counts only from 0.125 ppm.
        assert_eq!(ozone(Some(0.060), Some(0.124)).unwrap().averaging, Hour8);
        // 8-hour ozone above 0.200 ppm defines no AQI: the 1-hour one does.
        assert_eq!(ozone(Some(0.210), None), None);
        // 199 × 5 / 199 + 301
        assert_eq!(ozone(Some(0.210), Some(0.410)).unwrap().aqi, 306);
        // SO2: 1-hour up to 304 ppb; above, the 24-hour average, which at 304 or less is 200.
        assert_eq!(sulphur_dioxide(304.0, None).unwrap().aqi, 200);
        assert_eq!(sulphur_dioxide(400.0, Some(200.0)).unwrap().aqi, 200);
        let daily = sulphur_dioxide(700.0, Some(305.0)).unwrap();
        assert_eq!((daily.aqi, daily.averaging), (201, Hour24));
    }

    #[test]
    fn nowcast_weighs_recent_hours_more_when_the_air_changes() {
        // Steady air: the factor is ~1, the plain mean.
        assert_eq!(nowcast(Pm25, &[Some(10.0); 12]), Some(10.0));
        // Rising fast (max 40, min 10: factor 0.25 → 0.5): 40, 20, 10 weigh 1, 0.5, 0.25.
        // (40 + 10 + 2.5) / 1.75 = 30.0
        assert_eq!(nowcast(Pm25, &[Some(40.0), Some(20.0), Some(10.0)]), Some(30.0));
        // Factor 1 − (12 − 8) / 12 = 2/3; (12 + 8·2/3 + 9·4/9) / (1 + 2/3 + 4/9) = 10.105… → 10.1.
        assert_eq!(nowcast(Pm25, &[Some(12.0), Some(8.0), Some(9.0)]), Some(10.1));
        // A missing hour keeps its place in the weights.
        assert_eq!(nowcast(Pm25, &[Some(40.0), None, Some(10.0)]), Some(34.0));
        // Two of the three newest hours are needed.
        assert_eq!(nowcast(Pm25, &[Some(40.0), None, None, Some(10.0)]), None);
        // PM10 is truncated to whole µg/m³.
        assert_eq!(nowcast(Pm10, &[Some(55.9), Some(55.9)]), Some(55.0));
        // Only the last 12 hours count.
        let mut long = vec![Some(10.0); 12];
        long.push(Some(1000.0));
        assert_eq!(nowcast(Pm25, &long), Some(10.0));
    }

    #[test]
    fn a_categorys_key_is_its_serialized_name() {
        for aqi in [0, 51, 101, 151, 201, 301] {
            let c = Category::of(aqi);
            assert_eq!(serde_json::to_value(c).unwrap(), c.key());
        }
    }

    #[test]
    fn gases_convert_at_25_degrees_and_one_atmosphere() {
        // 1 ppb of NO2 is 1.88 µg/m³; 1 ppm of CO 1145.6 µg/m³; 1 ppb of O3 1.963 µg/m³.
        assert!((ppb_from_ugm3(No2, 188.2).unwrap() - 100.0).abs() < 0.05);
        assert!((in_epa_unit(Co, 1145.6) - 1.0).abs() < 1e-3);
        assert!((in_epa_unit(O3, 137.4) - 0.070).abs() < 1e-4);
        assert!((in_epa_unit(So2, 262.0) - 100.0).abs() < 0.05);
        assert_eq!(ppb_from_ugm3(Pm25, 10.0), None);
        assert_eq!(in_epa_unit(Pm10, 42.0), 42.0);
    }
}
