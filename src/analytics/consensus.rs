//! Consensus: merging the latest reading of each source into one current picture.
//!
//! Per quantity, the median of the fresh sources' values (wind direction: the circular
//! median, the reported value with the least total angular distance to the others).
//! A source is fresh when its latest reading is at most `stale_after_secs` old; when none
//! is, the consensus falls back to all sources and says `stale: true`.
//! `confidence` is 0.7 for one source; for several it is 0.5 + 0.5 × agreement, where
//! agreement averages, over the quantities that two or more sources report,
//! 1 / (1 + mean absolute deviation from the median / tolerance).
//! `quality_score` is the share of the seven quantities present, times an age factor that
//! falls linearly from 1 (fresh) to 0 (twice the stale limit).

use chrono::{DateTime, Utc};

use crate::domain::units::round2;
use crate::domain::{Current, LocationRef, Reading, SourceContribution, Units};

/// What the consensus needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ConsensusSettings {
    /// A source whose latest reading is older than this is not fresh.
    pub stale_after_secs: u64,
}

/// Tolerance per quantity (same order as `Reading::quantities`): a deviation of this size
/// halves the agreement on that quantity.
const TOLERANCE: [f64; 7] = [2.0, 10.0, 3.0, 2.0, 45.0, 5.0, 1.0];
const WIND_DIRECTION: usize = 4;

/// Merges `latest` (at most one reading per source, any order) into current conditions.
/// Returns `None` when there is no reading at all.
pub fn consensus(
    location: LocationRef,
    latest: &[Reading],
    now: DateTime<Utc>,
    settings: ConsensusSettings,
) -> Option<Current> {
    let freshest = latest.iter().map(|r| r.observed_at).max()?;
    let limit = settings.stale_after_secs as i64;
    let is_fresh = |r: &Reading| (now - r.observed_at).num_seconds() <= limit;
    let stale = !latest.iter().any(is_fresh);
    let used: Vec<&Reading> = latest.iter().filter(|r| stale || is_fresh(r)).collect();

    let mut merged = [None; 7];
    let mut agreements = Vec::new();
    for (q, slot) in merged.iter_mut().enumerate() {
        let values: Vec<f64> = used.iter().filter_map(|r| r.quantities()[q]).collect();
        let center = if q == WIND_DIRECTION { circular_median(&values) } else { median(&values) };
        if let (Some(c), true) = (center, values.len() >= 2) {
            let deviation = values.iter().map(|v| distance(q, *v, c)).sum::<f64>() / values.len() as f64;
            agreements.push(1.0 / (1.0 + deviation / TOLERANCE[q]));
        }
        *slot = center.map(round2);
    }
    let confidence = match used.len() {
        1 => 0.7,
        _ if agreements.is_empty() => 0.5,
        _ => round2(0.5 + 0.5 * agreements.iter().sum::<f64>() / agreements.len() as f64),
    };
    let present = merged.iter().filter(|v| v.is_some()).count() as f64 / 7.0;
    let age = (now - freshest).num_seconds().max(0) as f64;
    let age_factor = (1.0 - age / (2.0 * limit.max(1) as f64)).clamp(0.0, 1.0);

    let mut sources: Vec<SourceContribution> = latest
        .iter()
        .map(|r| SourceContribution {
            name: r.source.clone(),
            observed_at: r.observed_at,
            age_seconds: (now - r.observed_at).num_seconds().max(0),
            weight: if stale || is_fresh(r) { 1.0 } else { 0.0 },
            temperature: r.temperature,
            outlier: false,
        })
        .collect();
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    let [temperature, humidity, pressure, wind_speed, wind_direction, visibility, precipitation] = merged;
    Some(Current {
        location,
        observed_at: freshest,
        units: Units::Metric,
        temperature,
        humidity,
        pressure,
        wind_speed,
        wind_direction,
        visibility,
        precipitation,
        weather_code: None,
        description: None,
        sources_count: used.len(),
        sources,
        confidence,
        quality_score: round2(present * age_factor),
        stale,
        anomalies: Vec::new(),
    })
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn angular_distance(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}

fn distance(quantity: usize, a: f64, b: f64) -> f64 {
    if quantity == WIND_DIRECTION { angular_distance(a, b) } else { (a - b).abs() }
}

fn circular_median(values: &[f64]) -> Option<f64> {
    values
        .iter()
        .map(|c| (values.iter().map(|v| angular_distance(*v, *c)).sum::<f64>(), *c))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LocationId, SourceName};

    const SETTINGS: ConsensusSettings = ConsensusSettings { stale_after_secs: 3600 };

    fn at(t: &str) -> DateTime<Utc> {
        t.parse().unwrap()
    }

    fn location() -> LocationRef {
        LocationRef {
            id: LocationId::parse("KJFK").unwrap(),
            name: "John F Kennedy Intl".into(),
            latitude: 40.64,
            longitude: -73.78,
            timezone: "America/New_York".into(),
        }
    }

    fn reading(source: &str, t: &str, temperature: f64, wind_direction: Option<f64>) -> Reading {
        let mut r = Reading::new(LocationId::parse("KJFK").unwrap(), SourceName::parse(source).unwrap(), at(t));
        r.temperature = Some(temperature);
        r.wind_direction = wind_direction;
        r
    }

    #[test]
    fn no_readings_means_no_consensus() {
        assert_eq!(consensus(location(), &[], at("2026-11-26T09:00:00Z"), SETTINGS), None);
    }

    #[test]
    fn one_fresh_source_gives_its_values_and_confidence_0_7() {
        let c = consensus(
            location(),
            &[reading("station", "2026-11-26T08:30:00Z", 7.4, Some(240.0))],
            at("2026-11-26T09:00:00Z"),
            SETTINGS,
        )
        .unwrap();
        assert_eq!(c.temperature, Some(7.4));
        assert_eq!(c.wind_direction, Some(240.0));
        assert_eq!(c.humidity, None);
        assert_eq!(c.sources_count, 1);
        assert_eq!(c.confidence, 0.7);
        assert!(!c.stale);
        // 2 of 7 quantities, 30 min old of a 2 h horizon: 2/7 × 0.75.
        assert_eq!(c.quality_score, 0.21);
        assert_eq!(c.sources[0].age_seconds, 1800);
        assert_eq!(c.observed_at, at("2026-11-26T08:30:00Z"));
    }

    #[test]
    fn several_sources_merge_by_median_and_agreement_sets_confidence() {
        let latest = [
            reading("a", "2026-11-26T08:50:00Z", 7.0, Some(350.0)),
            reading("b", "2026-11-26T08:55:00Z", 8.0, Some(10.0)),
            reading("c", "2026-11-26T08:40:00Z", 12.0, Some(0.0)),
        ];
        let c = consensus(location(), &latest, at("2026-11-26T09:00:00Z"), SETTINGS).unwrap();
        assert_eq!(c.temperature, Some(8.0));
        // Circular median across north, not the arithmetic 10.
        assert_eq!(c.wind_direction, Some(0.0));
        assert_eq!(c.sources_count, 3);
        assert_eq!(c.observed_at, at("2026-11-26T08:55:00Z"));
        // temperature: mean |dev| = (1+0+4)/3 = 5/3 → 1/(1+5/6) = 0.5454…;
        // wind direction: (10+10+0)/3 = 6.67° → 1/(1+0.148) = 0.871; mean 0.708 → 0.85.
        assert_eq!(c.confidence, 0.85);
        let names: Vec<_> = c.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn identical_sources_give_full_confidence() {
        let latest = [reading("a", "2026-11-26T08:50:00Z", 7.0, None), reading("b", "2026-11-26T08:50:00Z", 7.0, None)];
        let c = consensus(location(), &latest, at("2026-11-26T09:00:00Z"), SETTINGS).unwrap();
        assert_eq!(c.confidence, 1.0);
        assert_eq!(c.temperature, Some(7.0));
    }

    #[test]
    fn old_sources_are_left_out_and_all_old_means_stale() {
        let latest =
            [reading("old", "2026-11-26T06:00:00Z", 20.0, None), reading("new", "2026-11-26T08:30:00Z", 6.0, None)];
        let c = consensus(location(), &latest, at("2026-11-26T09:00:00Z"), SETTINGS).unwrap();
        assert_eq!(c.temperature, Some(6.0));
        assert_eq!(c.sources_count, 1);
        assert_eq!(c.sources.iter().map(|s| s.weight).collect::<Vec<_>>(), [1.0, 0.0]);

        let c = consensus(location(), &latest, at("2026-11-26T12:00:00Z"), SETTINGS).unwrap();
        assert!(c.stale);
        assert_eq!(c.temperature, Some(13.0));
        assert_eq!(c.quality_score, 0.0);
    }
}
