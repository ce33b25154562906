//! `Reading`: one observation of one location by one source, always metric.
//!
//! Readings arrive as JSON (POST /v1/readings, later Kafka) or are built by a source (the
//! replay). Both paths end in [`Reading::validate`], so every reading inside the process
//! has passed the same bounds. Parsing collects every problem of an item, each naming its
//! field, so a client can fix a whole batch in one go.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::LocationId;
use super::quantity::{QUANTITIES, Quantity, Values};

/// Name of the source of a reading (`station`, `replay`, later a provider's name):
/// 1-32 characters of a-z, 0-9, '.', '_' or '-'. Shared, cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SourceName(Arc<str>);

impl SourceName {
    pub fn parse(raw: &str) -> Option<Self> {
        let b = raw.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 32
            && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'));
        ok.then(|| Self(Arc::from(raw)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SourceName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SourceName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&raw).ok_or_else(|| serde::de::Error::custom("not a source name"))
    }
}

/// One problem with one field of an input item.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldError {
    /// The offending field, or `$` for the item as a whole.
    pub field: Cow<'static, str>,
    pub message: Cow<'static, str>,
}

impl FieldError {
    pub fn new(field: impl Into<Cow<'static, str>>, message: impl Into<Cow<'static, str>>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// When a reading is checked: the server's clock, and how far ahead of it a station's
/// clock may run (`locations.max_clock_skew_secs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckedAt {
    pub now: DateTime<Utc>,
    pub max_clock_skew: Duration,
}

impl CheckedAt {
    pub fn new(now: DateTime<Utc>, max_clock_skew_secs: u64) -> Self {
        Self { now, max_clock_skew: Duration::seconds(max_clock_skew_secs.min(i64::MAX as u64 / 1000) as i64) }
    }
}

/// One observation, metric units. A quantity the source did not report is missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub location_id: LocationId,
    pub source: SourceName,
    pub observed_at: DateTime<Utc>,
    /// The measured quantities (see the quantity table for their units and bounds).
    pub values: Values,
    /// WMO weather code (0-99), from providers or stations that report one.
    pub weather_code: Option<u8>,
    /// Needed the first time a station id is seen; both or neither.
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

/// Fields of the input format besides the quantities.
const OTHER_FIELDS: [&str; 6] = ["location_id", "source", "observed_at", "latitude", "longitude", "weather_code"];

impl Reading {
    /// An empty reading of `source` at `location_id`, for sources that fill it field by field.
    pub fn new(location_id: LocationId, source: SourceName, observed_at: DateTime<Utc>) -> Self {
        Self {
            location_id,
            source,
            observed_at,
            values: Values::EMPTY,
            weather_code: None,
            latitude: None,
            longitude: None,
        }
    }

    pub fn get(&self, q: Quantity) -> Option<f64> {
        self.values.get(q)
    }

    pub fn set(&mut self, q: Quantity, value: Option<f64>) {
        self.values.set(q, value);
    }

    /// This reading in the public input format (DESIGN §3), which `from_json` reads back.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("location_id".into(), Value::from(self.location_id.as_str()));
        object.insert("source".into(), Value::from(self.source.as_str()));
        object.insert("observed_at".into(), Value::from(self.observed_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)));
        for (spec, v) in self.values.present() {
            object.insert(spec.name.into(), Value::from(v));
        }
        for (name, value) in [("latitude", self.latitude), ("longitude", self.longitude)] {
            if let Some(v) = value {
                object.insert(name.into(), Value::from(v));
            }
        }
        if let Some(code) = self.weather_code {
            object.insert("weather_code".into(), Value::from(code));
        }
        Value::Object(object)
    }

    /// Parses one JSON item of POST /v1/readings (or a Kafka message) and validates it.
    pub fn from_json(value: &Value, at: CheckedAt) -> Result<Self, Vec<FieldError>> {
        let Some(object) = value.as_object() else {
            return Err(vec![FieldError::new("$", "expected a JSON object")]);
        };
        let mut errors = Vec::new();
        for key in object.keys() {
            if !OTHER_FIELDS.contains(&key.as_str()) && Quantity::from_name(key).is_none() {
                errors.push(FieldError::new(key.clone(), "unknown field"));
            }
        }
        let location_id = match required_str(object, "location_id", &mut errors) {
            Some(raw) => {
                LocationId::parse(raw).map_err(|e| errors.push(FieldError::new("location_id", e.to_string()))).ok()
            }
            None => None,
        };
        let source = required_str(object, "source", &mut errors).and_then(|raw| {
            let parsed = SourceName::parse(raw);
            if parsed.is_none() {
                errors.push(FieldError::new("source", "must be 1-32 characters of a-z, 0-9, '.', '_' or '-'"));
            }
            parsed
        });
        let observed_at = required_str(object, "observed_at", &mut errors).and_then(|raw| {
            DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    errors.push(FieldError::new(
                        "observed_at",
                        "must be an RFC 3339 timestamp such as 2026-11-26T08:55:00Z",
                    ))
                })
                .ok()
        });
        let mut number = |field: &'static str| match object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(_) => {
                errors.push(FieldError::new(field, "must be a number or null"));
                None
            }
        };
        let mut values = Values::EMPTY;
        for spec in &QUANTITIES {
            values.set(spec.quantity, number(spec.name));
        }
        let (latitude, longitude) = (number("latitude"), number("longitude"));
        let weather_code = match object.get("weather_code") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64().filter(|c| *c <= 99) {
                Some(code) => Some(code as u8),
                None => {
                    errors.push(FieldError::new("weather_code", "must be a WMO weather code, an integer from 0 to 99"));
                    None
                }
            },
        };
        let (Some(location_id), Some(source), Some(observed_at)) = (location_id, source, observed_at) else {
            return Err(errors);
        };
        let reading = Self { location_id, source, observed_at, values, weather_code, latitude, longitude };
        match reading.validate(at) {
            Ok(reading) if errors.is_empty() => Ok(reading),
            Ok(_) => Err(errors),
            Err(more) if errors.is_empty() => Err(more),
            Err(more) => {
                // Bounds problems of fields that already have a type error are noise, and
                // so is "no measured value" when a value was there but mistyped.
                let more: Vec<FieldError> =
                    more.into_iter().filter(|m| m.field != "$" && !errors.iter().any(|e| e.field == m.field)).collect();
                errors.extend(more);
                Err(errors)
            }
        }
    }

    /// Checks bounds and consistency; every reading inside isobar has passed this.
    pub fn validate(self, at: CheckedAt) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        for (spec, value) in self.values.present() {
            if value < spec.min || value > spec.max {
                errors.push(FieldError::new(spec.name, spec.bound_message()));
            }
        }
        if self.values.is_empty() && self.weather_code.is_none() {
            errors.push(FieldError::new("$", no_value_message()));
        }
        if self.observed_at > at.now + at.max_clock_skew {
            errors.push(FieldError::new(
                "observed_at",
                format!(
                    "is more than {} in the future (server time {})",
                    span(at.max_clock_skew),
                    at.now.to_rfc3339_opts(SecondsFormat::Secs, true)
                ),
            ));
        }
        match (self.latitude, self.longitude) {
            (Some(lat), Some(lon)) => {
                if !(-90.0..=90.0).contains(&lat) {
                    errors.push(FieldError::new("latitude", "must be between -90 and 90"));
                }
                if !(-180.0..=180.0).contains(&lon) {
                    errors.push(FieldError::new("longitude", "must be between -180 and 180"));
                }
            }
            (None, None) => {}
            (None, Some(_)) => {
                errors.push(FieldError::new("latitude", "latitude and longitude must be given together"))
            }
            (Some(_), None) => {
                errors.push(FieldError::new("longitude", "latitude and longitude must be given together"))
            }
        }
        if errors.is_empty() { Ok(self) } else { Err(errors) }
    }
}

/// A duration as a person says it: `1 h`, `5 min`, `90 s`.
fn span(d: Duration) -> String {
    let secs = d.num_seconds();
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// "a reading needs at least one measured value (temperature, …, or cloud_cover)".
fn no_value_message() -> String {
    let names: Vec<&str> = QUANTITIES.iter().map(|s| s.name).collect();
    let (last, rest) = names.split_last().unwrap_or((&"", &[]));
    format!("a reading needs at least one measured value ({} or {last})", rest.join(", "))
}

fn required_str<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    match object.get(field) {
        Some(Value::String(s)) => Some(s),
        None | Some(Value::Null) => {
            errors.push(FieldError::new(field, "is required"));
            None
        }
        Some(_) => {
            errors.push(FieldError::new(field, "must be a string"));
            None
        }
    }
}

/// A body of POST /v1/readings (one item or an array) in which every item is well-formed
/// and valid, parsed straight into readings: no `serde_json::Value` per item, the strings
/// borrowed from the body. `None` as soon as anything is off (an unknown or repeated
/// field, a wrong type, a value out of range), and [`Reading::from_json`] reports it field
/// by field. Whatever this returns, `from_json` would have made the same of it.
pub fn parse_valid_batch(body: &[u8], at: CheckedAt) -> Option<Vec<Reading>> {
    let items = match serde_json::from_slice::<Vec<Item<'_>>>(body) {
        Ok(items) => items,
        Err(_) => vec![serde_json::from_slice::<Item<'_>>(body).ok()?],
    };
    items.into_iter().map(|item| item.into_reading(at)).collect()
}

/// One well-typed input item, as [`parse_valid_batch`] reads it.
struct Item<'a> {
    location_id: Cow<'a, str>,
    source: Cow<'a, str>,
    observed_at: Cow<'a, str>,
    values: Values,
    weather_code: Option<u64>,
    latitude: Option<f64>,
    longitude: Option<f64>,
}

impl Item<'_> {
    fn into_reading(self, at: CheckedAt) -> Option<Reading> {
        let weather_code = match self.weather_code {
            Some(code) => Some(u8::try_from(code).ok().filter(|c| *c <= 99)?),
            None => None,
        };
        let reading = Reading {
            location_id: LocationId::parse(&self.location_id).ok()?,
            source: SourceName::parse(&self.source)?,
            observed_at: DateTime::parse_from_rfc3339(&self.observed_at).ok()?.with_timezone(&Utc),
            values: self.values,
            weather_code,
            latitude: self.latitude,
            longitude: self.longitude,
        };
        reading.validate(at).ok()
    }
}

impl<'de> serde::Deserialize<'de> for Item<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Item<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a reading")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Item<'de>, A::Error> {
                use serde::de::Error;
                let (mut location_id, mut source, mut observed_at) = (None, None, None);
                let (mut latitude, mut longitude, mut weather_code) = (None, None, None);
                let mut values = Values::EMPTY;
                // Each field at most once (a repeated one goes to `from_json`'s report).
                let mut seen = 0u32;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    // The field's place in OTHER_FIELDS then the quantity table: found once.
                    let (slot, quantity) = match OTHER_FIELDS.iter().position(|f| *f == key) {
                        Some(i) => (i, None),
                        None => match Quantity::from_name(&key) {
                            Some(q) => (OTHER_FIELDS.len() + q as usize, Some(q)),
                            None => return Err(A::Error::custom("unknown field")),
                        },
                    };
                    if seen & (1 << slot) != 0 {
                        return Err(A::Error::custom("repeated field"));
                    }
                    seen |= 1 << slot;
                    if let Some(q) = quantity {
                        values.set(q, map.next_value::<Option<f64>>()?);
                        continue;
                    }
                    match key.as_ref() {
                        "location_id" => location_id = Some(map.next_value::<Cow<'de, str>>()?),
                        "source" => source = Some(map.next_value::<Cow<'de, str>>()?),
                        "observed_at" => observed_at = Some(map.next_value::<Cow<'de, str>>()?),
                        "latitude" => latitude = map.next_value::<Option<f64>>()?,
                        "longitude" => longitude = map.next_value::<Option<f64>>()?,
                        "weather_code" => weather_code = map.next_value::<Option<u64>>()?,
                        _ => return Err(A::Error::custom("unknown field")),
                    }
                }
                Ok(Item {
                    location_id: location_id.ok_or_else(|| A::Error::missing_field("location_id"))?,
                    source: source.ok_or_else(|| A::Error::missing_field("source"))?,
                    observed_at: observed_at.ok_or_else(|| A::Error::missing_field("observed_at"))?,
                    values,
                    weather_code,
                    latitude,
                    longitude,
                })
            }
        }
        d.deserialize_map(Fields)
    }
}

/// Why a reading was rejected, as a bounded metric label.
/// Every value `rejection_reason` gives (a metrics label set).
pub const REJECTION_REASONS: [&str; 6] =
    ["unknown_field", "out_of_range", "future", "too_old", "missing_field", "malformed"];

pub fn rejection_reason(errors: &[FieldError]) -> &'static str {
    let first = errors.first().map(|e| e.message.as_ref()).unwrap_or_default();
    if first == "unknown field" {
        "unknown_field"
    } else if first.starts_with("must be between") || first.starts_with("must be at least") {
        "out_of_range"
    } else if first.starts_with("is more than") && first.contains("in the future") {
        "future"
    } else if first.starts_with("is older than") {
        "too_old"
    } else if first == "is required" {
        "missing_field"
    } else {
        "malformed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InvalidLocationId;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-26T09:00:00Z".parse().unwrap()
    }

    /// Checked at 09:00 with the default 300 s of clock skew.
    fn at() -> CheckedAt {
        CheckedAt::new(now(), 300)
    }

    #[test]
    fn a_valid_batch_parses_straight_to_what_from_json_makes() {
        let items = json!([
            {"location_id": "KJFK", "source": "station", "observed_at": "2026-11-26T08:55:00Z",
             "temperature": 7.1, "humidity": 64, "pressure": null, "weather_code": 61,
             "latitude": 40.64, "longitude": -73.78},
            {"location_id": "KLGA", "source": "replay", "observed_at": "2026-11-26T09:55:00+01:00",
             "pm2_5": 12.5, "co": 230, "wind_direction": 359.9},
            {"location_id": "EGLL", "source": "station", "observed_at": "2026-11-26T08:00:00Z", "weather_code": 0}
        ]);
        let body = serde_json::to_vec(&items).unwrap();
        let fast = parse_valid_batch(&body, at()).expect("every item is valid");
        let slow: Vec<Reading> =
            items.as_array().unwrap().iter().map(|v| Reading::from_json(v, at()).unwrap()).collect();
        assert_eq!(fast, slow);
        let one = serde_json::to_vec(&items[2]).unwrap();
        assert_eq!(parse_valid_batch(&one, at()), Some(vec![slow[2].clone()]));
        // An escaped string is unescaped, not borrowed.
        let escaped = br#"{"location_id": "K\u004aFK", "source": "station", "observed_at": "2026-11-26T08:55:00Z", "temperature": 1}"#;
        let parsed = parse_valid_batch(escaped, at()).unwrap();
        assert_eq!(parsed[0].location_id.as_str(), "KJFK");
    }

    #[test]
    fn anything_off_goes_to_the_field_by_field_report() {
        let good = json!({"location_id": "KJFK", "source": "station", "observed_at": "2026-11-26T08:55:00Z", "temperature": 7.1});
        let variants = [
            json!({"temprature": 7.1}),
            json!({"temperature": "7.1"}),
            json!({"location_id": null}),
            json!({"location_id": "bad id!"}),
            json!({"source": "Station"}),
            json!({"observed_at": "yesterday"}),
            json!({"observed_at": "2026-11-27T08:55:00Z"}),
            json!({"temperature": 99.0}),
            json!({"weather_code": 100}),
            json!({"weather_code": 3.0}),
            json!({"weather_code": -1}),
            json!({"latitude": 40.6}),
            json!({"temperature": null}),
        ];
        for variant in variants {
            let mut item = good.clone();
            for (k, v) in variant.as_object().unwrap() {
                item[k] = v.clone();
            }
            let body = serde_json::to_vec(&json!([good, item])).unwrap();
            assert_eq!(parse_valid_batch(&body, at()), None, "{item}");
            assert!(Reading::from_json(&item, at()).is_err(), "{item}");
        }
        let repeated = br#"{"location_id": "KJFK", "source": "station", "observed_at": "2026-11-26T08:55:00Z", "temperature": 7.1, "temperature": 8}"#;
        assert_eq!(parse_valid_batch(repeated, at()), None);
        for body in [&b"[1]"[..], b"7", b"{", b"[{}]"] {
            assert_eq!(parse_valid_batch(body, at()), None);
        }
        assert_eq!(parse_valid_batch(b"[]", at()), Some(vec![]));
    }

    #[test]
    fn parses_a_full_reading() {
        let r = Reading::from_json(
            &json!({"location_id": "KJFK", "source": "station", "observed_at": "2026-11-26T08:55:00Z",
                    "temperature": 7.1, "humidity": 64, "pressure": 1016.0, "wind_speed": 3.0,
                    "wind_direction": 230, "visibility": 10.0, "precipitation": 0.0,
                    "latitude": 40.64, "longitude": -73.78}),
            at(),
        )
        .unwrap();
        assert_eq!(r.location_id.as_str(), "KJFK");
        assert_eq!(r.source.as_str(), "station");
        assert_eq!(r.observed_at, "2026-11-26T08:55:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(
            r.values.to_array()[..9],
            [Some(7.1), Some(64.0), Some(1016.0), Some(3.0), Some(230.0), Some(10.0), Some(0.0), None, None]
        );
        assert_eq!((r.latitude, r.longitude), (Some(40.64), Some(-73.78)));
    }

    #[test]
    fn null_and_absent_quantities_are_missing_not_zero() {
        let r = Reading::from_json(
            &json!({"location_id": "KJFK", "source": "station", "observed_at": "2026-11-26T08:55:00Z",
                    "temperature": 7.1, "pressure": null}),
            at(),
        )
        .unwrap();
        assert_eq!(r.get(Quantity::Pressure), None);
        assert_eq!(r.get(Quantity::Humidity), None);
    }

    #[test]
    fn reports_every_problem_of_an_item_by_field() {
        let errors = Reading::from_json(
            &json!({"location_id": "bad id", "observed_at": "yesterday", "temperature": "warm",
                    "colour": "blue"}),
            at(),
        )
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| (e.field.as_ref(), e.message.as_ref())).collect();
        assert_eq!(
            fields,
            vec![
                ("colour", "unknown field"),
                ("location_id", InvalidLocationId.to_string().as_str()),
                ("source", "is required"),
                ("observed_at", "must be an RFC 3339 timestamp such as 2026-11-26T08:55:00Z"),
                ("temperature", "must be a number or null"),
            ]
        );
    }

    #[test]
    fn rejects_out_of_bounds_values_and_the_far_future() {
        let errors = Reading::from_json(
            &json!({"location_id": "KEWR", "source": "replay", "observed_at": "2026-11-26T09:05:01Z",
                    "wind_speed": 468.66, "humidity": -1, "visibility": -0.5}),
            at(),
        )
        .unwrap_err();
        let got: Vec<_> = errors.iter().map(|e| (e.field.to_string(), e.message.to_string())).collect();
        assert_eq!(
            got,
            vec![
                ("humidity".into(), "must be between 0 and 100".into()),
                ("wind_speed".into(), "must be between 0 and 120".into()),
                ("visibility".into(), "must be at least 0".into()),
                ("observed_at".into(), "is more than 5 min in the future (server time 2026-11-26T09:00:00Z)".into()),
            ]
        );
        assert_eq!(rejection_reason(&errors), "out_of_range");
    }

    #[test]
    fn exactly_the_allowed_clock_skew_ahead_is_still_accepted() {
        let r = Reading::from_json(
            &json!({"location_id": "KEWR", "source": "replay", "observed_at": "2026-11-26T09:05:00Z", "temperature": 1}),
            at(),
        );
        assert!(r.is_ok());
    }

    #[test]
    fn rejects_non_objects_empty_readings_and_half_coordinates() {
        assert_eq!(
            Reading::from_json(&json!([1]), at()).unwrap_err(),
            vec![FieldError::new("$", "expected a JSON object")]
        );
        let errors = Reading::from_json(
            &json!({"location_id": "X1", "source": "station", "observed_at": "2026-11-26T08:00:00Z", "latitude": 10}),
            at(),
        )
        .unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].field, "$");
        assert_eq!(errors[1], FieldError::new("longitude", "latitude and longitude must be given together"));
    }

    #[test]
    fn the_input_format_round_trips() {
        let input = json!({"location_id": "KJFK", "source": "station", "observed_at": "2026-11-26T08:55:00.250Z",
                           "temperature": 7.1, "humidity": 64.0, "latitude": 40.64, "longitude": -73.78, "weather_code": 61});
        let r = Reading::from_json(&input, at()).unwrap();
        assert_eq!(r.to_json(), input);
        assert_eq!(Reading::from_json(&r.to_json(), at()).unwrap(), r);
    }
}
