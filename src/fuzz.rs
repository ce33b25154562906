//! Property-based fuzzing (proptest) of every parser that takes outside data: submitted
//! readings, each provider's bodies (arbitrary JSON, and the recorded bodies with values
//! swapped for arbitrary ones), the WebSocket client's messages, the Redis feed's
//! updates, Kafka payloads, and the spool on disk. The property is the same everywhere:
//! any input gives an answer (a value or an error), never a panic.
//!
//! Bounded for CI: `FUZZ_CASES` cases per target (default 300; raise it for a longer
//! run, e.g. `FUZZ_CASES=100000 cargo test --lib fuzz`).

use chrono::Utc;
use proptest::prelude::*;
use serde_json::Value;

use crate::domain::LocationId;
use crate::domain::reading::{CheckedAt, Reading};
use crate::sources::{met_norway, nws, open_meteo, openweathermap, weatherapi};

fn config() -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Object keys: the names parsers look for, and anything else.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "location_id",
            "source",
            "observed_at",
            "temperature",
            "humidity",
            "latitude",
            "longitude",
            "weather_code",
            "type",
            "locations",
            "current",
            "properties",
            "timeseries",
            "list",
            "main",
            "dt",
            "time",
            "data",
            "value",
            "features",
            "location",
            "hourly",
            "instant",
            "details",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{0,12}",
    ]
}

/// Arbitrary JSON: every kind of value, nested a few levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        prop::sample::select(vec![-1e308, -0.0, 1e-300, 5e-324, 1e308]).prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
        prop::sample::select(vec!["2026-11-27T10:00:00Z", "2026-13-45T99:99:99Z", "NaN", "", "KJFK", "∞"])
            .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer to a value inside `value`.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                pointers(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A recorded body with some of its values (leaves or whole subtrees) replaced.
fn mutated(body: &'static str) -> impl Strategy<Value = Value> {
    let original: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut all = Vec::new();
    pointers(&original, String::new(), &mut all);
    let count = all.len().max(1);
    prop::collection::vec((0..count, json()), 1..6).prop_map(move |swaps| {
        let mut body = original.clone();
        for (index, replacement) in swaps {
            if let Some(slot) = all.get(index).and_then(|p| body.pointer_mut(p)) {
                *slot = replacement;
            }
        }
        body
    })
}

fn id() -> LocationId {
    LocationId::parse("FUZZ1").unwrap_or_else(|_| unreachable!("a valid id"))
}

const OPEN_METEO: &str = include_str!("../tests/fixtures/upstream/open-meteo-forecast.json");
const MET_NORWAY: &str = include_str!("../tests/fixtures/upstream/met-norway-compact.json");
const NWS_POINTS: &str = include_str!("../tests/fixtures/upstream/nws-points.json");
const NWS_STATIONS: &str = include_str!("../tests/fixtures/upstream/nws-gridpoint-stations.json");
const NWS_OBSERVATION: &str = include_str!("../tests/fixtures/upstream/nws-observation-latest.json");
const NWS_FORECAST: &str = include_str!("../tests/fixtures/upstream/nws-forecast-hourly.json");
const OWM_CURRENT: &str = include_str!("../tests/fixtures/upstream/owm-current.json");
const OWM_FORECAST: &str = include_str!("../tests/fixtures/upstream/owm-forecast.json");
const WEATHERAPI: &str = include_str!("../tests/fixtures/upstream/weatherapi-current.json");

/// Runs every provider parser on `body`.
fn every_provider_parser(body: &Value) {
    let now = Utc::now();
    let _ = open_meteo::parse(body, &[id(), id()]);
    let _ = met_norway::parse(body, &id(), now);
    let _ = nws::parse_point(body);
    let _ = nws::parse_stations(body);
    let _ = nws::parse_observation(body, &id());
    let _ = nws::parse_forecast_hourly(body, now);
    for units in [openweathermap::Units::Metric, openweathermap::Units::Standard] {
        let _ = openweathermap::parse_current(body, &id(), units);
        let _ = openweathermap::parse_forecast(body, units, now);
    }
    let _ = weatherapi::parse_current(body, &id());
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn submitted_readings_never_panic(value in json()) {
        let _ = Reading::from_json(&value, CheckedAt::new(Utc::now(), 300));
    }

    #[test]
    fn a_reading_with_arbitrary_field_values_never_panics(
        fields in prop::collection::vec((key(), json()), 0..10),
    ) {
        let mut object = serde_json::json!({
            "location_id": "FUZZ1", "source": "station", "observed_at": Utc::now().to_rfc3339()
        });
        for (k, v) in fields {
            object[k] = v;
        }
        if let Ok(reading) = Reading::from_json(&object, CheckedAt::new(Utc::now(), 300)) {
            // What was accepted serializes back.
            let _ = reading.to_json();
        }
    }

    #[test]
    fn kafka_payloads_never_panic(payload in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = crate::actors::kafka::decode_payload(&payload, 256, 300);
    }

    #[test]
    fn websocket_client_messages_never_panic(value in json()) {
        let _ = crate::actors::session::parse_locations(&value);
    }

    #[test]
    fn updates_from_the_redis_feed_never_panic(text in ".{0,200}", value in json()) {
        let _ = crate::actors::wire::parse_update(&text);
        let _ = crate::actors::wire::parse_update(&value.to_string());
    }

    #[test]
    fn every_provider_parser_takes_arbitrary_json(body in json()) {
        every_provider_parser(&body);
    }

    #[test]
    fn every_provider_parser_takes_its_recorded_body_with_values_swapped(
        bodies in (
            mutated(OPEN_METEO), mutated(MET_NORWAY), mutated(NWS_POINTS), mutated(NWS_STATIONS),
            mutated(NWS_OBSERVATION), mutated(NWS_FORECAST), mutated(OWM_CURRENT), mutated(OWM_FORECAST),
            mutated(WEATHERAPI),
        ),
    ) {
        let (a, b, c, d, e, f, g, h, i) = bodies;
        for body in [a, b, c, d, e, f, g, h, i] {
            every_provider_parser(&body);
        }
    }

    #[test]
    fn a_spool_of_arbitrary_bytes_opens_and_replays_without_panicking(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        offset in prop::option::of(".{0,24}"),
    ) {
        use crate::store::queue::{DurableQueue, SpoolOptions};
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        std::fs::write(dir.path().join("fuzz.wal"), &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Some(offset) = offset {
            let _ = std::fs::write(dir.path().join("fuzz.wal.offset"), offset);
        }
        let options = SpoolOptions { max_bytes: 1 << 20, fsync: false };
        if let Ok(mut queue) = DurableQueue::open(dir.path(), "fuzz", 10, options) {
            for _ in 0..100 {
                match queue.next_batch(7) {
                    Ok(items) if !items.is_empty() => { let _ = queue.ack(); }
                    _ => break,
                }
            }
            // Appending goes on after whatever was found.
            prop_assert!(queue.push("after".into()).is_ok());
        }
    }
}
