//! The stored forms of snapshots and readings: JSON in Redis and the spool, line
//! protocol for InfluxDB. Decoding never trusts the store: a foreign or corrupt value is
//! an error the caller logs and ignores.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::Snapshot;
use crate::domain::{Anomaly, Current, Location, LocationId, LocationKind, Reading, SourceName};
use crate::domain::{QUANTITIES, Values};

pub fn reading_to_json(r: &Reading) -> Value {
    let mut v = json!({
        "location_id": r.location_id.as_str(),
        "source": r.source.as_str(),
        "observed_at": r.observed_at.to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    for (spec, x) in r.values.present() {
        v[spec.name] = json!(x);
    }
    if let Some(code) = r.weather_code {
        v["weather_code"] = json!(code);
    }
    v
}

pub fn reading_from_json(v: &Value) -> Option<Reading> {
    let id = LocationId::parse(v.get("location_id")?.as_str()?).ok()?;
    let source = SourceName::parse(v.get("source")?.as_str()?)?;
    let at = DateTime::parse_from_rfc3339(v.get("observed_at")?.as_str()?).ok()?.with_timezone(&Utc);
    let mut r = Reading::new(id, source, at);
    for spec in &QUANTITIES {
        r.set(spec.quantity, v.get(spec.name).and_then(Value::as_f64));
    }
    r.weather_code = v.get("weather_code").and_then(Value::as_u64).and_then(|c| u8::try_from(c).ok());
    Some(r)
}

/// A snapshot as stored: what the actor needs to restore, plus its consensus for other
/// readers of the store.
pub fn snapshot_to_json(s: &Snapshot, current: Option<&Current>) -> String {
    json!({
        "version": 1,
        "location_id": s.location_id.as_str(),
        "seq": s.seq,
        "epoch": s.epoch,
        "current": current,
        "latest": s.latest.iter().map(reading_to_json).collect::<Vec<_>>(),
        "readings": s.readings.iter().map(reading_to_json).collect::<Vec<_>>(),
    })
    .to_string()
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("not an isobar snapshot: {0}")]
pub struct ForeignValue(pub String);

pub fn snapshot_from_json(text: &str, expected: &LocationId) -> Result<Snapshot, ForeignValue> {
    let v: Value = serde_json::from_str(text).map_err(|e| ForeignValue(e.to_string()))?;
    if v.get("version").and_then(Value::as_u64) != Some(1) {
        return Err(ForeignValue("missing or unknown version".into()));
    }
    if v.get("location_id").and_then(Value::as_str) != Some(expected.as_str()) {
        return Err(ForeignValue("location id does not match the key".into()));
    }
    let list = |key: &str| -> Result<Vec<Reading>, ForeignValue> {
        v.get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| ForeignValue(format!("{key} is not an array")))?
            .iter()
            .map(|r| reading_from_json(r).ok_or_else(|| ForeignValue(format!("bad reading in {key}"))))
            .collect()
    };
    Ok(Snapshot {
        location_id: expected.clone(),
        seq: v.get("seq").and_then(Value::as_u64).ok_or_else(|| ForeignValue("no seq".into()))?,
        // Snapshots written before fencing have none: the oldest epoch.
        epoch: v.get("epoch").and_then(Value::as_u64).unwrap_or(0),
        latest: list("latest")?,
        readings: list("readings")?,
    })
}

pub fn location_to_json(l: &Location) -> String {
    serde_json::to_string(l).unwrap_or_default()
}

pub fn location_from_json(text: &str) -> Option<Location> {
    let v: Value = serde_json::from_str(text).ok()?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    Some(Location {
        id: LocationId::parse(v.get("id")?.as_str()?).ok()?,
        name: s("name")?,
        country: s("country")?,
        latitude: v.get("latitude")?.as_f64()?,
        longitude: v.get("longitude")?.as_f64()?,
        timezone: s("timezone")?,
        population: v.get("population").and_then(Value::as_u64),
        elevation: v.get("elevation").and_then(Value::as_f64),
        kind: match v.get("kind")?.as_str()? {
            "city" => LocationKind::City,
            _ => LocationKind::Station,
        },
    })
}

/// Escapes a tag value for line protocol (commas, spaces, equals signs).
fn tag(value: &str) -> String {
    value.replace('\\', "\\\\").replace(',', "\\,").replace(' ', "\\ ").replace('=', "\\=")
}

/// The `field=value` pairs of the present quantities, by their InfluxDB field names.
fn influx_fields(values: &Values) -> impl Iterator<Item = String> + '_ {
    values.present().map(|(spec, v)| format!("{}={v}", spec.influx_field))
}

/// One InfluxDB point of measurement `readings`; `None` for a reading without fields.
pub fn reading_line(r: &Reading) -> Option<String> {
    let mut fields: Vec<String> = influx_fields(&r.values).collect();
    if let Some(code) = r.weather_code {
        fields.push(format!("weather_code={code}i"));
    }
    if fields.is_empty() {
        return None;
    }
    Some(format!(
        "readings,location={},source={} {} {}",
        tag(r.location_id.as_str()),
        tag(r.source.as_str()),
        fields.join(","),
        r.observed_at.timestamp_millis()
    ))
}

/// One point of measurement `consensus`, at the time the consensus changed.
pub fn consensus_line(c: &Current, at: DateTime<Utc>) -> String {
    let mut fields: Vec<String> = influx_fields(&c.values).collect();
    fields.push(format!("confidence={}", c.confidence));
    fields.push(format!("quality_score={}", c.quality_score));
    fields.push(format!("sources_count={}i", c.sources_count));
    format!("consensus,location={} {} {}", tag(c.location.id.as_str()), fields.join(","), at.timestamp_millis())
}

/// One point of measurement `anomalies`, at the time the anomaly started: the point of
/// its end (same tags and time) overwrites that of its start.
pub fn anomaly_line(location: &LocationId, a: &Anomaly) -> String {
    let mut fields = vec![
        format!("id={}", string_field(&a.id)),
        format!("value={}", a.value),
        format!("expected_low={}", a.expected.low),
        format!("expected_high={}", a.expected.high),
        format!("severity={}", string_field(a.severity.name())),
        format!("score={}", a.score),
        format!("observed_at={}i", a.observed_at.timestamp_millis()),
    ];
    if let Some(ended) = a.ended_at {
        fields.push(format!("ended_at={}i", ended.timestamp_millis()));
    }
    format!(
        "anomalies,location={},source={},quantity={},kind={} {} {}",
        tag(location.as_str()),
        tag(a.source.as_str()),
        a.quantity.name(),
        a.kind.name(),
        fields.join(","),
        a.started_at.timestamp_millis()
    )
}

/// A string field value for line protocol: quoted, with quotes and backslashes escaped.
fn string_field(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Quantity;

    fn reading() -> Reading {
        let mut r = Reading::new(
            LocationId::parse("KJFK").unwrap(),
            SourceName::parse("station").unwrap(),
            "2026-11-26T08:55:00.250Z".parse().unwrap(),
        );
        r.set(Quantity::Temperature, Some(7.1));
        r.set(Quantity::Humidity, Some(64.0));
        r.weather_code = Some(3);
        r
    }

    #[test]
    fn readings_become_line_protocol_with_millisecond_timestamps() {
        assert_eq!(
            reading_line(&reading()).unwrap(),
            "readings,location=KJFK,source=station temperature=7.1,humidity=64,weather_code=3i 1795683300250"
        );
        let empty = Reading::new(reading().location_id, reading().source, reading().observed_at);
        assert_eq!(reading_line(&empty), None);
    }

    #[test]
    fn a_snapshot_round_trips_and_foreign_values_are_refused() {
        let id = LocationId::parse("KJFK").unwrap();
        let s =
            Snapshot { location_id: id.clone(), readings: vec![reading()], latest: vec![reading()], seq: 9, epoch: 7 };
        let text = snapshot_to_json(&s, None);
        assert_eq!(snapshot_from_json(&text, &id).unwrap(), s);
        assert!(snapshot_from_json("not json", &id).is_err());
        assert!(
            snapshot_from_json(r#"{"version":1,"location_id":"OTHER","seq":1,"latest":[],"readings":[]}"#, &id)
                .is_err()
        );
        assert_eq!(
            snapshot_from_json(r#"{"hello":"world"}"#, &id).unwrap_err(),
            ForeignValue("missing or unknown version".into())
        );
    }
}
