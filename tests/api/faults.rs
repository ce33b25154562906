//! Fault injection through the real binary built with the `failpoints` feature
//! (`FAILPOINTS` as tikv/fail-rs reads it), with a real InfluxDB.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{eventually, next_json};
use crate::process::serve;
use crate::servers::Influx;

/// POSTs readings to the process at `address`; answers the status and the body.
async fn post_readings(client: &reqwest::Client, address: &str, body: Value) -> (u16, Value) {
    let r = client.post(format!("http://{address}/v1/readings")).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json::<Value>().await.unwrap())
}

/// A reading of FAULT1 `seconds_ago`, with a temperature that names it.
fn reading(i: usize, seconds_ago: i64) -> Value {
    let at = chrono::Utc::now() - chrono::Duration::seconds(seconds_ago);
    json!({"location_id": "FAULT1", "source": "station", "observed_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
           "temperature": (i % 60) as f64, "latitude": 40.64, "longitude": -73.78})
}

#[actix_rt::test]
async fn a_panic_while_applying_loses_no_accepted_reading_and_the_feed_goes_on() {
    let influx = Influx::start();
    let influx_url = influx.url();
    // The 4th batch a location applies panics, once.
    let (mut child, address, logs) = serve(&[
        ("FAILPOINTS", "location-apply=3*off->1*panic"),
        ("ISOBAR__INFLUX__URL", influx_url.as_str()),
        ("ISOBAR__PERSIST__FLUSH_INTERVAL_MS", "200"),
    ]);
    let client = reqwest::Client::new();
    let post = |body: Value| post_readings(&client, &address, body);
    // 1,000 readings, oldest first, in 10 batches; the first one creates the station.
    let readings: Vec<Value> = (0..1000).map(|i| reading(i, 1000 - i as i64)).collect();
    assert_eq!(post(json!(readings[..100])).await, (202, json!({"accepted": 100, "rejected": []})));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws/weather/FAULT1")).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    for batch in readings[100..].chunks(100) {
        assert_eq!(post(json!(batch)).await, (202, json!({"accepted": 100, "rejected": []})));
    }

    // The subscriber keeps getting updates, through the restart, up to the newest reading.
    let newest = readings[999]["observed_at"].as_str().unwrap().to_owned();
    let mut seen_newest = false;
    for _ in 0..20 {
        let message = next_json(&mut ws).await;
        if message["type"] == "update" && message["data"]["sources"][0]["observed_at"] == newest.as_str() {
            assert_eq!(message["data"]["temperature"], 39.0);
            seen_newest = true;
            break;
        }
    }
    assert!(seen_newest, "the subscriber saw the update of the newest reading");
    let metrics = client.get(format!("http://{address}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "isobar_location_restarts_total 1"), "{metrics}");

    // Every 202'd reading is in the history and in InfluxDB, once.
    assert!(eventually(10, || async { influx.count_readings("WHERE location = 'FAULT1'").await == 1000 }).await);
    let history: Value =
        client.get(format!("http://{address}/v1/locations/FAULT1/history")).send().await.unwrap().json().await.unwrap();
    assert_eq!(history["readings"].as_array().unwrap().len(), 1000);

    // The panic is in the JSON log, with the location.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut logged = None;
    while logged.is_none() && std::time::Instant::now() < deadline {
        if let Ok(line) = logs.recv_timeout(Duration::from_millis(200))
            && line["message"] == "location actor panicked; restarting it from its last state"
        {
            logged = Some(line);
        }
    }
    let line = logged.expect("the panic was logged");
    assert_eq!((line["level"].as_str(), line["location"].as_str()), (Some("ERROR"), Some("FAULT1")));
    assert!(line["panic"].as_str().unwrap().contains("location-apply"), "{line}");
    let _ = child.kill();
}

#[actix_rt::test]
async fn a_spool_that_cannot_be_written_is_a_503_and_nothing_accepted_is_lost_once_it_can() {
    let mut influx = Influx::stopped();
    let influx_url = influx.url();
    // The first two appends to the spool fail, as on a full disk; InfluxDB is down.
    let (mut child, address, _) = serve(&[
        ("FAILPOINTS", "spool-append=2*return"),
        ("ISOBAR__INFLUX__URL", influx_url.as_str()),
        ("ISOBAR__PERSIST__RETRY_MAX_MS", "300"),
    ]);
    let client = reqwest::Client::new();
    let post = |body: Value| post_readings(&client, &address, body);
    let first: Vec<Value> = (0..50).map(|i| crate::helpers::station_reading("FULL2", 100 - i, i as f64)).collect();
    let (status, body) = post(json!(first)).await;
    assert_eq!(status, 503);
    assert_eq!(
        body["detail"],
        "readings applied but not stored durably (influxdb: the spool refuses writes: spool-append failpoint); \
         retry (a repeated reading is dropped as a duplicate)"
    );
    // Once the spool takes writes again, the client's retry is a 202.
    let second: Vec<Value> = (0..50).map(|i| crate::helpers::station_reading("FULL2", 50 - i, i as f64)).collect();
    assert!(eventually(10, || async { post(json!(second)).await.0 == 202 }).await);

    influx.launch();
    assert!(eventually(20, || async { influx.count_readings("WHERE location = 'FULL2'").await == 100 }).await);
    let _ = child.kill();
}
