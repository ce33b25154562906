//! Downsampling history: the mean of each quantity per step, buckets aligned to the Unix
//! epoch and empty buckets left out — the same as InfluxDB's
//! `GROUP BY time(step) fill(none)`, so /history answers alike with or without it.

use std::collections::BTreeMap;

use chrono::DateTime;

use crate::domain::units::round2;
use crate::domain::{QUANTITIES, Reading, SourceName};

/// Parses a step such as `30s`, `15m`, `1h`, `1d` (or plain seconds) into seconds.
pub fn parse_step(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    let (digits, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(factor).filter(|s| *s > 0)
}

pub fn downsample(readings: &[Reading], step_secs: u64) -> Vec<Reading> {
    let Some(first) = readings.first() else { return Vec::new() };
    let step_ms = (step_secs.max(1) * 1000) as i64;
    let mut buckets: BTreeMap<i64, Vec<&Reading>> = BTreeMap::new();
    for r in readings {
        buckets.entry(r.observed_at.timestamp_millis().div_euclid(step_ms) * step_ms).or_default().push(r);
    }
    let mean = SourceName::parse("mean").unwrap_or_else(|| unreachable!("static name"));
    buckets
        .into_iter()
        .filter_map(|(start, rs)| {
            let mut out =
                Reading::new(first.location_id.clone(), mean.clone(), DateTime::from_timestamp_millis(start)?);
            for spec in &QUANTITIES {
                let (sum, n) =
                    rs.iter().filter_map(|r| r.get(spec.quantity)).fold((0.0, 0u32), |(sum, n), v| (sum + v, n + 1));
                out.set(spec.quantity, (n > 0).then(|| round2(sum / n as f64)));
            }
            Some(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LocationId, Quantity};

    #[test]
    fn parses_steps() {
        assert_eq!(parse_step("30s"), Some(30));
        assert_eq!(parse_step("15m"), Some(900));
        assert_eq!(parse_step("2h"), Some(7200));
        assert_eq!(parse_step("1d"), Some(86_400));
        assert_eq!(parse_step("90"), Some(90));
        for bad in ["", "0s", "h", "1w", "-1h", "1.5h"] {
            assert_eq!(parse_step(bad), None, "{bad}");
        }
    }

    #[test]
    fn averages_per_epoch_aligned_step_and_skips_empty_ones() {
        let r = |t: &str, temp: f64| {
            let mut r = Reading::new(
                LocationId::parse("X").unwrap(),
                SourceName::parse("station").unwrap(),
                t.parse().unwrap(),
            );
            r.set(Quantity::Temperature, Some(temp));
            r
        };
        let out = downsample(
            &[r("2026-11-26T08:10:00Z", 1.0), r("2026-11-26T08:50:00Z", 2.0), r("2026-11-26T10:05:00Z", 7.0)],
            3600,
        );
        let got: Vec<_> =
            out.iter().map(|r| (r.observed_at.to_rfc3339(), r.get(Quantity::Temperature), r.source.as_str())).collect();
        assert_eq!(
            got,
            [
                ("2026-11-26T08:00:00+00:00".to_owned(), Some(1.5), "mean"),
                ("2026-11-26T10:00:00+00:00".to_owned(), Some(7.0), "mean")
            ]
        );
    }
}
