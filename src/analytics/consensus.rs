//! Consensus: merging the latest reading of each source into one current picture.
//!
//! 1. A source is *fresh* when its latest reading is at most `stale_after_secs` old and
//!    its last refresh did not fail. Only fresh sources count; when none is fresh, all
//!    count and the result says `stale: true`.
//! 2. Outliers: with three or more sources reporting a quantity, a value whose robust
//!    z-score |x − median| / max(1.4826 × MAD, floor) exceeds `outlier_threshold` marks
//!    its source as an outlier: shown with `outlier: true`, weight 0, left out everywhere.
//! 3. The others are merged per quantity by weighted mean (wind direction: weighted
//!    circular mean), with weight = trust(source) × freshness, freshness falling from 1
//!    (just observed) to 0.5 (at the stale limit). The weather code is the weighted mode.
//! 4. `confidence`: 0.7 for one source; for n ≥ 2, 0.5 + 0.5 × agreement × (1 − 0.5^(n−1)),
//!    where agreement averages 1 / (1 + mean |deviation| / tolerance) over the quantities
//!    that two or more sources report. More sources that agree → higher confidence.
//! 5. `quality_score`: share of the seven core quantities present × an age factor falling from
//!    1 (fresh) to 0 (twice the stale limit) × a factor per active anomaly (0.95 low, 0.85
//!    medium, 0.7 high).
//! 6. Anomalies: a source's value flagged by an active anomaly of an excluded kind (spike,
//!    flatline, drift by default) counts nowhere: not in outliers, means or confidence.
//!    The active anomalies are listed in the document.
//!
//! Tolerances, outlier floors and which quantity is circular come from the quantity
//! table (`domain::quantity`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::forecast::describe_weather_code;
use crate::domain::quantity::core_count;
use crate::domain::units::round2;
use crate::domain::{
    Anomaly, AnomalyKind, Current, LocationRef, QUANTITIES, Quantity, Reading, Severity, SourceContribution,
    SourceName, Units, Values,
};

/// What the consensus needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ConsensusSettings<'a> {
    /// A source whose latest reading is older than this is not fresh.
    pub stale_after_secs: u64,
    /// Weight multiplier per source name (1.0 when unlisted).
    pub trust: &'a BTreeMap<String, f64>,
    /// Robust z-score above which a value is an outlier.
    pub outlier_threshold: f64,
    /// The location's active anomalies, shown in the document.
    pub anomalies: &'a [Anomaly],
    /// Kinds of anomaly whose flagged values are left out.
    pub exclude: &'a [AnomalyKind],
}

/// Merges `latest` (at most one reading per source, any order) into current conditions.
/// `failing` names sources whose last refresh failed. `None` when there is no reading.
pub fn consensus(
    location: LocationRef,
    latest: &[Reading],
    failing: &[SourceName],
    now: DateTime<Utc>,
    settings: ConsensusSettings<'_>,
) -> Option<Current> {
    let freshest = latest.iter().map(|r| r.observed_at).max()?;
    let limit = settings.stale_after_secs.max(1) as f64;
    let age = |r: &Reading| (now - r.observed_at).num_seconds().max(0) as f64;
    let is_fresh = |r: &Reading| age(r) <= limit && !failing.contains(&r.source);
    let stale = !latest.iter().any(is_fresh);
    let used: Vec<usize> = (0..latest.len()).filter(|i| stale || is_fresh(&latest[*i])).collect();
    // A source's value flagged by an active anomaly of an excluded kind does not count.
    let flagged = |r: &Reading, q: Quantity| {
        settings.anomalies.iter().any(|a| a.source == r.source && a.quantity == q && settings.exclude.contains(&a.kind))
    };
    let value = |i: usize, q: Quantity| latest[i].get(q).filter(|_| !flagged(&latest[i], q));

    let mut outlier = vec![false; latest.len()];
    for spec in &QUANTITIES {
        let values: Vec<(usize, f64)> = used.iter().filter_map(|i| Some((*i, value(*i, spec.quantity)?))).collect();
        if values.len() < 3 {
            continue;
        }
        let raw: Vec<f64> = values.iter().map(|(_, v)| *v).collect();
        let center = if spec.circular { circular_median(&raw) } else { median(&raw) };
        let Some(center) = center else { continue };
        let deviations: Vec<f64> = raw.iter().map(|v| spec.distance(*v, center)).collect();
        let scale = median(&deviations).map_or(spec.min_scale, |mad| (1.4826 * mad).max(spec.min_scale));
        for ((i, _), d) in values.iter().zip(&deviations) {
            if d / scale > settings.outlier_threshold {
                outlier[*i] = true;
            }
        }
    }
    let inliers: Vec<usize> = used.iter().copied().filter(|i| !outlier[*i]).collect();
    let weight = |i: usize| {
        let r = &latest[i];
        let trust = settings.trust.get(r.source.as_str()).copied().unwrap_or(1.0).max(0.0);
        trust * (1.0 - 0.5 * (age(r) / limit).min(1.0))
    };

    let mut merged = Values::EMPTY;
    let mut agreements = Vec::new();
    for spec in &QUANTITIES {
        let values: Vec<(f64, f64)> =
            inliers.iter().filter_map(|i| Some((value(*i, spec.quantity)?, weight(*i)))).collect();
        let center = if spec.circular { circular_mean(&values) } else { weighted_mean(&values) };
        if let (Some(c), true) = (center, values.len() >= 2) {
            let deviation = values.iter().map(|(v, _)| spec.distance(*v, c)).sum::<f64>() / values.len() as f64;
            agreements.push(1.0 / (1.0 + deviation / spec.tolerance));
        }
        merged.set(spec.quantity, center.map(round2));
    }
    let weather_code = weighted_mode(inliers.iter().filter_map(|i| Some((latest[*i].weather_code?, weight(*i)))));
    let n = inliers.len();
    let confidence = match n {
        0 | 1 => 0.7,
        _ => {
            let agreement =
                if agreements.is_empty() { 0.5 } else { agreements.iter().sum::<f64>() / agreements.len() as f64 };
            round2(0.5 + 0.5 * agreement * (1.0 - 0.5f64.powi(n as i32 - 1)))
        }
    };
    let present = merged.present().filter(|(spec, _)| spec.core).count() as f64 / core_count() as f64;
    let freshest_age = (now - freshest).num_seconds().max(0) as f64;
    let age_factor = (1.0 - freshest_age / (2.0 * limit)).clamp(0.0, 1.0);

    let mut sources: Vec<SourceContribution> = latest
        .iter()
        .enumerate()
        .map(|(i, r)| SourceContribution {
            name: r.source.clone(),
            observed_at: r.observed_at,
            age_seconds: age(r) as i64,
            weight: if inliers.contains(&i) { round2(weight(i)) } else { 0.0 },
            temperature: r.get(Quantity::Temperature),
            outlier: outlier[i],
        })
        .collect();
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    Some(Current {
        location,
        observed_at: freshest,
        units: Units::Metric,
        values: merged,
        weather_code,
        description: weather_code.and_then(describe_weather_code).map(str::to_owned),
        sources_count: n,
        sources,
        confidence,
        quality_score: round2(present * age_factor * anomaly_factor(settings.anomalies)),
        stale,
        anomalies: settings.anomalies.to_vec(),
        air_quality: None,
    })
}

/// What active anomalies take off the quality score: × 0.95 per low one, × 0.85 per
/// medium one, × 0.7 per high one.
fn anomaly_factor(anomalies: &[Anomaly]) -> f64 {
    anomalies
        .iter()
        .map(|a| match a.severity {
            Severity::Low => 0.95,
            Severity::Medium => 0.85,
            Severity::High => 0.7,
        })
        .product()
}

pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn weighted_mean(values: &[(f64, f64)]) -> Option<f64> {
    let total: f64 = values.iter().map(|(_, w)| w).sum();
    if values.is_empty() {
        None
    } else if total <= 0.0 {
        Some(values.iter().map(|(v, _)| v).sum::<f64>() / values.len() as f64)
    } else {
        Some(values.iter().map(|(v, w)| v * w).sum::<f64>() / total)
    }
}

/// Weighted mean direction in degrees, 0..360.
pub(crate) fn circular_mean(values: &[(f64, f64)]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let (s, c) = values.iter().fold((0.0, 0.0), |(s, c), (deg, w)| {
        let w = if *w > 0.0 { *w } else { 1.0 };
        (s + w * deg.to_radians().sin(), c + w * deg.to_radians().cos())
    });
    if s.abs() < 1e-9 && c.abs() < 1e-9 {
        // Opposite directions cancel out: no meaningful mean, keep the first.
        return Some(values[0].0);
    }
    let deg = s.atan2(c).to_degrees().rem_euclid(360.0);
    Some(if (deg - 360.0).abs() < 1e-6 { 0.0 } else { deg })
}

/// The most weighted code; ties go to the higher (more severe) code.
pub(crate) fn weighted_mode(codes: impl Iterator<Item = (u8, f64)>) -> Option<u8> {
    let mut totals: BTreeMap<u8, f64> = BTreeMap::new();
    for (code, w) in codes {
        *totals.entry(code).or_default() += w.max(1e-9);
    }
    totals.into_iter().max_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0))).map(|(code, _)| code)
}

fn circular_median(values: &[f64]) -> Option<f64> {
    let wind = Quantity::WindDirection.spec();
    values
        .iter()
        .map(|c| (values.iter().map(|v| wind.distance(*v, *c)).sum::<f64>(), *c))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::LocationId;

    fn trust() -> BTreeMap<String, f64> {
        BTreeMap::from([("low".to_owned(), 0.5)])
    }

    fn settings(trust: &BTreeMap<String, f64>) -> ConsensusSettings<'_> {
        ConsensusSettings { stale_after_secs: 3600, trust, outlier_threshold: 3.5, anomalies: &[], exclude: &[] }
    }

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
        r.set(Quantity::Temperature, Some(temperature));
        r.set(Quantity::WindDirection, wind_direction);
        r
    }

    const NOW: &str = "2026-11-26T09:00:00Z";

    #[test]
    fn a_value_flagged_by_an_excluded_kind_counts_nowhere_and_lowers_the_quality() {
        let t = trust();
        let latest = [
            reading("station", "2026-11-26T08:55:00Z", 25.0, Some(240.0)),
            reading("open-meteo", "2026-11-26T08:50:00Z", 7.0, Some(250.0)),
        ];
        let spike = Anomaly {
            id: "spike:station:temperature:1795683300".into(),
            quantity: Quantity::Temperature,
            kind: AnomalyKind::Spike,
            source: SourceName::parse("station").unwrap(),
            started_at: at("2026-11-26T08:55:00Z"),
            observed_at: at("2026-11-26T08:55:00Z"),
            ended_at: None,
            value: 25.0,
            expected: crate::domain::Band { low: 4.0, high: 10.0 },
            severity: Severity::High,
            score: 14.2,
        };
        let anomalies = [spike];
        let both = consensus(location(), &latest, &[], at(NOW), settings(&t)).unwrap();
        assert_eq!(both.values.get(Quantity::Temperature), Some(16.2));
        let exclude = [AnomalyKind::Spike];
        let flagged = ConsensusSettings { anomalies: &anomalies, exclude: &exclude, ..settings(&t) };
        let c = consensus(location(), &latest, &[], at(NOW), flagged).unwrap();
        // The station's temperature is out; its wind direction still counts.
        assert_eq!(c.values.get(Quantity::Temperature), Some(7.0));
        assert_eq!(c.values.get(Quantity::WindDirection), Some(244.89));
        assert_eq!(c.anomalies, anomalies);
        // 2 of 7 quantities, 5 min old: 0.27; × 0.7 for the high-severity anomaly.
        assert_eq!((both.quality_score, c.quality_score), (0.27, 0.19));
        // Shown but not excluded: the value counts again, the quality still drops.
        let shown = ConsensusSettings { anomalies: &anomalies, ..settings(&t) };
        let c = consensus(location(), &latest, &[], at(NOW), shown).unwrap();
        assert_eq!((c.values.get(Quantity::Temperature), c.quality_score), (Some(16.2), 0.19));
    }

    #[test]
    fn no_readings_means_no_consensus() {
        let t = trust();
        assert_eq!(consensus(location(), &[], &[], at(NOW), settings(&t)), None);
    }

    #[test]
    fn one_fresh_source_gives_its_values_and_confidence_0_7() {
        let t = trust();
        let c = consensus(
            location(),
            &[reading("station", "2026-11-26T08:30:00Z", 7.4, Some(240.0))],
            &[],
            at(NOW),
            settings(&t),
        )
        .unwrap();
        let v = &c.values;
        assert_eq!(
            (v.get(Quantity::Temperature), v.get(Quantity::WindDirection), v.get(Quantity::Humidity)),
            (Some(7.4), Some(240.0), None)
        );
        assert_eq!((c.sources_count, c.confidence, c.stale), (1, 0.7, false));
        // 2 of 7 quantities, 30 min old of a 2 h horizon: 2/7 × 0.75.
        assert_eq!(c.quality_score, 0.21);
        // Half-way to the stale limit: freshness 0.75.
        assert_eq!((c.sources[0].age_seconds, c.sources[0].weight), (1800, 0.75));
        assert_eq!(c.observed_at, at("2026-11-26T08:30:00Z"));
    }

    #[test]
    fn agreeing_sources_average_and_raise_confidence() {
        let t = trust();
        let latest = [
            reading("a", NOW, 7.0, Some(350.0)),
            reading("b", NOW, 8.0, Some(10.0)),
            reading("c", NOW, 9.0, Some(0.0)),
        ];
        let c = consensus(location(), &latest, &[], at(NOW), settings(&t)).unwrap();
        assert_eq!(c.values.get(Quantity::Temperature), Some(8.0));
        // The circular mean across north, not the arithmetic 120.
        assert_eq!(c.values.get(Quantity::WindDirection), Some(0.0));
        assert_eq!(c.sources_count, 3);
        // temperature: mean |dev| 2/3 over 2 → 0.75; wind: 20/3° over 45 → 0.871;
        // agreement 0.81 → 0.5 + 0.5 × 0.81 × 0.75 = 0.80.
        assert_eq!(c.confidence, 0.8);
        let two = consensus(location(), &latest[..2], &[], at(NOW), settings(&t)).unwrap();
        assert!(two.confidence < c.confidence);
    }

    #[test]
    fn a_strongly_disagreeing_source_is_an_outlier_with_weight_0() {
        let t = trust();
        let latest = [
            reading("a", NOW, 7.0, None),
            reading("b", NOW, 7.5, None),
            reading("c", NOW, 8.0, None),
            reading("broken", NOW, 20.0, None),
        ];
        let c = consensus(location(), &latest, &[], at(NOW), settings(&t)).unwrap();
        assert_eq!(c.values.get(Quantity::Temperature), Some(7.5));
        assert_eq!(c.sources_count, 3);
        let broken = c.sources.iter().find(|s| s.name.as_str() == "broken").unwrap();
        assert_eq!((broken.outlier, broken.weight), (true, 0.0));
        assert!(c.sources.iter().filter(|s| s.name.as_str() != "broken").all(|s| !s.outlier && s.weight == 1.0));
    }

    #[test]
    fn trust_weights_the_merge() {
        let t = trust();
        let latest = [reading("high", NOW, 6.0, None), reading("low", NOW, 9.0, None)];
        let c = consensus(location(), &latest, &[], at(NOW), settings(&t)).unwrap();
        // (6 × 1 + 9 × 0.5) / 1.5
        assert_eq!(c.values.get(Quantity::Temperature), Some(7.0));
        assert_eq!(c.sources.iter().map(|s| s.weight).collect::<Vec<_>>(), [1.0, 0.5]);
    }

    #[test]
    fn old_or_failing_sources_are_left_out_and_all_left_out_means_stale() {
        let t = trust();
        let latest =
            [reading("old", "2026-11-26T06:00:00Z", 20.0, None), reading("new", "2026-11-26T08:30:00Z", 6.0, None)];
        let c = consensus(location(), &latest, &[], at(NOW), settings(&t)).unwrap();
        assert_eq!((c.values.get(Quantity::Temperature), c.sources_count), (Some(6.0), 1));
        assert_eq!(c.sources.iter().map(|s| s.weight).collect::<Vec<_>>(), [0.75, 0.0]);

        let failing = [SourceName::parse("new").unwrap()];
        let c = consensus(location(), &latest[1..], &failing, at(NOW), settings(&t)).unwrap();
        assert!(c.stale);
        assert_eq!(c.values.get(Quantity::Temperature), Some(6.0));

        let c = consensus(location(), &latest, &[], at("2026-11-26T12:00:00Z"), settings(&t)).unwrap();
        assert!(c.stale);
        // Both past the limit: equal freshness 0.5, plain mean.
        assert_eq!(c.values.get(Quantity::Temperature), Some(13.0));
        assert_eq!(c.quality_score, 0.0);
    }

    #[test]
    fn the_weather_code_is_the_weighted_mode_with_its_description() {
        let t = trust();
        let mut latest = [reading("a", NOW, 1.0, None), reading("b", NOW, 1.0, None), reading("c", NOW, 1.0, None)];
        latest[0].weather_code = Some(3);
        latest[1].weather_code = Some(61);
        latest[2].weather_code = Some(61);
        let c = consensus(location(), &latest, &[], at(NOW), settings(&t)).unwrap();
        assert_eq!((c.weather_code, c.description.as_deref()), (Some(61), Some("Slight rain")));
    }
}
