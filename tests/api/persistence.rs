//! Redis and InfluxDB behind the persister, against real servers.

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, next_json, spawn_app_with, station_reading};
use crate::servers::{Influx, Redis};

fn backends(redis: Option<&Redis>, influx: Option<&Influx>) -> Value {
    json!({
        "redis": {"url": redis.map(Redis::url).unwrap_or_default()},
        "influx": {"url": influx.map(Influx::url).unwrap_or_default()},
        "persist": {"flush_interval_ms": 100, "snapshot_interval_ms": 100, "retry_base_ms": 50, "retry_max_ms": 500}
    })
}

/// `n` station readings, the i-th of location `id(i)`, i seconds before now.
fn readings_a_second_apart(n: i64, id: impl Fn(i64) -> String) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut r = station_reading(&id(i), 0, i as f64 / 20.0);
            let at = chrono::Utc::now() - chrono::Duration::seconds(i);
            r["observed_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            r
        })
        .collect()
}

async fn written(app: &TestApp, backend: &str) -> f64 {
    app.metric(&format!("isobar_persist_written_total{{backend=\"{backend}\"}}")).await.unwrap_or(0.0)
}

#[actix_rt::test]
async fn a_restarted_instance_answers_current_from_redis_with_the_last_state() {
    let redis = Redis::start();
    let (etag, body) = {
        let app = spawn_app_with(backends(Some(&redis), None)).await;
        app.post_readings(&json!([station_reading("RST1", 20, 4.0), station_reading("RST1", 10, 5.5)])).await;
        let r = app.get("/v1/locations/RST1/current").await;
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        let body: Value = r.json().await.unwrap();
        assert!(eventually(5, || async { written(&app, "redis").await >= 2.0 }).await);
        (etag, body)
    };
    // The stored value is the documented snapshot: consensus, latest per source, ring.
    let mut conn = redis.client().get_multiplexed_async_connection().await.unwrap();
    let stored: String = conn.get("isobar:loc:{RST1}:snapshot").await.unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["current"]["temperature"], 5.5);
    assert_eq!(stored["readings"].as_array().unwrap().len(), 2);
    assert_eq!(stored["latest"][0]["temperature"], 5.5);
    let ttl: i64 = conn.ttl("isobar:loc:{RST1}:snapshot").await.unwrap();
    assert!(ttl > 600_000, "{ttl}");

    let app = spawn_app_with(backends(Some(&redis), None)).await;
    let r = app.get("/v1/locations/RST1/current").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    let mut after: Value = r.json().await.unwrap();
    let mut before = body;
    for b in [&mut before, &mut after] {
        b["sources"][0]["age_seconds"] = json!(0);
        b["sources"][0]["weight"] = json!(0);
        b["quality_score"] = json!(0);
    }
    assert_eq!(after, before);
    assert_eq!(app.get_json("/v1/locations/RST1/history").await.1["readings"].as_array().unwrap().len(), 2);
}

#[actix_rt::test]
async fn a_corrupt_or_foreign_value_under_an_isobar_key_is_ignored() {
    let redis = Redis::start();
    let mut conn = redis.client().get_multiplexed_async_connection().await.unwrap();
    let _: () = conn.set("isobar:loc:{5128581}:snapshot", "\u{0}garbage{").await.unwrap();
    let _: () = conn
        .set(
            "isobar:loc:{2988507}:snapshot",
            r#"{"version":1,"location_id":"NOTPARIS","seq":3,"latest":[],"readings":[]}"#,
        )
        .await
        .unwrap();
    let _: () = conn.hset("isobar:stations", "BROKEN1", "{not json").await.unwrap();
    let app = spawn_app_with(backends(Some(&redis), None)).await;
    for id in ["5128581", "2988507"] {
        let (status, body) = app.get_json(&format!("/v1/locations/{id}/current")).await;
        assert_eq!(status, 404, "{body}");
    }
    assert_eq!(app.get("/v1/locations/BROKEN1").await.status(), 404);
    // The location still works normally afterwards.
    let mut r = station_reading("5128581", 1, 2.0);
    r.as_object_mut().unwrap().retain(|k, _| k != "latitude" && k != "longitude");
    assert_eq!(app.post_readings(&r).await.0, 202);
    assert_eq!(app.get_json("/v1/locations/5128581/current").await.1["temperature"], 2.0);
}

#[actix_rt::test]
async fn stations_are_remembered_across_restarts() {
    let redis = Redis::start();
    {
        let app = spawn_app_with(backends(Some(&redis), None)).await;
        app.post_readings(&station_reading("KNOWN1", 5, 1.0)).await;
        assert!(eventually(5, || async { written(&app, "redis").await >= 2.0 }).await);
    }
    let app = spawn_app_with(backends(Some(&redis), None)).await;
    let (status, body) = app.get_json("/v1/locations/KNOWN1").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"id": "KNOWN1", "name": "KNOWN1", "country": "US", "latitude": 40.64, "longitude": -73.78,
               "timezone": "America/New_York", "kind": "station"})
    );
}

#[actix_rt::test]
async fn an_update_posted_to_one_process_reaches_a_websocket_client_of_another() {
    let redis = Redis::start();
    let env = [("ISOBAR__REDIS__URL", redis.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (mut a, address_a, _) = crate::process::serve(&env);
    let (mut b, address_b, _) = crate::process::serve(&env);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{address_b}/ws/weather/2988507")).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut r = station_reading("2988507", 1, 11.5);
    r.as_object_mut().unwrap().retain(|k, _| k != "latitude" && k != "longitude");
    let posted = reqwest::Client::new().post(format!("http://{address_a}/v1/readings")).json(&r).send().await.unwrap();
    assert_eq!(posted.status(), 202);
    let update = next_json(&mut ws).await;
    assert_eq!(update["type"], "update");
    assert_eq!(update["location_id"], "2988507");
    assert_eq!(update["data"]["temperature"], 11.5);
    for child in [&mut a, &mut b] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[actix_rt::test]
async fn history_comes_from_influxdb_with_an_optional_step() {
    let influx = Influx::start();
    let app = spawn_app_with(backends(None, Some(&influx))).await;
    let readings: Vec<Value> =
        [(50, 2.0), (40, 4.0), (10, 9.0)].iter().map(|(m, t)| station_reading("HINF", *m, *t)).collect();
    assert_eq!(app.post_readings(&json!(readings)).await.0, 202);
    assert!(eventually(5, || async { influx.count_readings("WHERE location = 'HINF'").await == 3 }).await);
    let (status, body) = app.get_json("/v1/locations/HINF/history").await;
    assert_eq!(status, 200);
    let got: Vec<(Value, Value, Value)> = body["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["observed_at"].clone(), r["source"].clone(), r["temperature"].clone()))
        .collect();
    let expected: Vec<(Value, Value, Value)> =
        readings.iter().map(|r| (r["observed_at"].clone(), json!("station"), r["temperature"].clone())).collect();
    assert_eq!(got, expected);
    assert_eq!(body["readings"][0]["humidity"], 64.0);

    // A range older than the in-memory retention is fine: InfluxDB keeps it.
    let (status, _) = app.get_json("/v1/locations/HINF/history?from=2020-01-01T00:00:00Z").await;
    assert_eq!(status, 200);
    let (_, stepped) = app.get_json("/v1/locations/HINF/history?step=1d").await;
    let means: Vec<f64> =
        stepped["readings"].as_array().unwrap().iter().map(|r| r["temperature"].as_f64().unwrap()).collect();
    assert!(!means.is_empty());
    assert_eq!(stepped["readings"][0]["source"], "mean");
    let consensus = influx.query("SELECT count(temperature) FROM consensus WHERE location = 'HINF'").await;
    assert!(consensus.pointer("/results/0/series/0/values/0/1").and_then(Value::as_u64).unwrap_or(0) >= 1);
    let (status, body) = app.get_json("/v1/locations/HINF/history?step=fortnight").await;
    assert_eq!(
        (status, body["detail"].as_str().unwrap()),
        (400, "invalid step: must be a duration such as 30s, 15m, 1h or 1d, got \"fortnight\"")
    );
}

#[actix_rt::test]
async fn a_point_influxdb_refuses_does_not_block_the_rest_of_the_batch() {
    let influx = Influx::start();
    // A string `precipitation` first: isobar's float precipitation then conflicts (field
    // types are per measurement), so only points carrying precipitation are refused.
    reqwest::Client::new()
        .post(format!("{}/query", influx.url()))
        .query(&[("q", "CREATE DATABASE isobar")])
        .send()
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/write?db=isobar&precision=ms", influx.url()))
        .body(format!(
            "readings,location=CONFLICT,source=other precipitation=\"lots\" {}",
            chrono::Utc::now().timestamp_millis() - 1000
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let app = spawn_app_with(backends(None, Some(&influx))).await;
    let batch: Vec<Value> = (1..=5)
        .flat_map(|m| {
            let mut fine = station_reading("FINE1", m, 2.0);
            fine.as_object_mut().unwrap().remove("precipitation");
            [station_reading("CONFLICT", m, 1.0), fine]
        })
        .collect();
    assert_eq!(app.post_readings(&json!(batch)).await.0, 202);
    assert!(eventually(5, || async { influx.count_readings("WHERE location = 'FINE1'").await == 5 }).await);
    assert!(
        eventually(3, || async {
            app.metric("isobar_persist_errors_total{backend=\"influxdb\"}").await.unwrap_or(0.0) >= 1.0
        })
        .await
    );
    assert_eq!(app.get("/health").await.status(), 200);
}

#[actix_rt::test]
async fn an_unreachable_backend_at_start_is_a_503_on_ready_naming_it_and_retried() {
    let mut influx = Influx::stopped();
    let redis = Redis::start_with(&["--requirepass", "right-password"]);
    let wrong = format!("redis://:wrong-password@127.0.0.1:{}", redis.port);
    let app = spawn_app_with(json!({"redis": {"url": wrong}, "influx": {"url": influx.url()},
        "persist": {"flush_interval_ms": 100, "retry_base_ms": 50, "retry_max_ms": 300}}))
    .await;
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, 503);
    let deps = body["dependencies"].as_array().unwrap();
    let find = |name: &str| deps.iter().find(|d| d["name"] == name).unwrap().clone();
    assert_eq!(find("redis")["state"], "down");
    assert!(find("redis")["detail"].as_str().unwrap().to_lowercase().contains("pass"), "{body}");
    assert_eq!(find("influxdb")["state"], "down");
    assert!(find("influxdb")["detail"].as_str().unwrap().starts_with("influxdb: cannot reach InfluxDB"), "{body}");

    // Serving goes on, and the readings wait for InfluxDB.
    assert_eq!(app.post_readings(&station_reading("WAIT1", 1, 3.0)).await.0, 202);
    assert_eq!(app.get_json("/v1/locations/WAIT1/current").await.1["temperature"], 3.0);
    influx.launch();
    assert!(eventually(10, || async { influx.count_readings("WHERE location = 'WAIT1'").await == 1 }).await);
    let (_, body) = app.get_json("/ready").await;
    assert_eq!(
        body["dependencies"].as_array().unwrap().iter().find(|d| d["name"] == "influxdb").unwrap()["state"],
        "up"
    );
}

#[actix_rt::test]
async fn nothing_is_lost_when_redis_and_influxdb_are_killed_mid_stream() {
    let mut redis = Redis::start();
    let mut influx = Influx::start();
    let app = spawn_app_with(backends(Some(&redis), Some(&influx))).await;
    let stations: Vec<String> = (0..100).map(|i| format!("LOSS{i:03}")).collect();
    let start = chrono::Utc::now() - chrono::Duration::hours(3);
    let per_station = 100;
    let mut last_temperature = vec![0.0; 100];
    for round in 0..per_station {
        let batch: Vec<Value> = stations
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let t = ((round * 7 + i) % 400) as f64 / 10.0;
                last_temperature[i] = t;
                let at = start + chrono::Duration::seconds(round as i64 * 60);
                json!({"location_id": id, "source": "station", "observed_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                       "temperature": t, "latitude": 40.0 + i as f64 / 100.0, "longitude": -74.0})
            })
            .collect();
        let (status, body) = app.post_readings(&json!(batch)).await;
        assert_eq!((status, &body["accepted"]), (202, &json!(100)));
        match round {
            20 => redis.kill(),
            35 => influx.kill(),
            55 => redis.restart(),
            70 => influx.restart(),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let n = (stations.len() * per_station) as u64;
    assert!(
        eventually(60, || async { influx.count_readings("").await == n }).await,
        "influx holds {}",
        influx.count_readings("").await
    );
    let distinct = influx.count_readings("").await;
    let mut conn = redis.client().get_multiplexed_async_connection().await.unwrap();
    let mut latest_ok = 0;
    for _ in 0..100 {
        latest_ok = 0;
        for (i, id) in stations.iter().enumerate() {
            let stored: Option<String> = conn.get(format!("isobar:loc:{{{id}}}:snapshot")).await.unwrap();
            let stored: Value = stored.map(|s| serde_json::from_str(&s).unwrap()).unwrap_or(Value::Null);
            if stored["latest"][0]["temperature"].as_f64() == Some(last_temperature[i])
                && stored["readings"].as_array().map(Vec::len) == Some(per_station)
            {
                latest_ok += 1;
            }
        }
        if latest_ok == stations.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let spilled_influx = app.metric("isobar_persist_spilled_total{backend=\"influxdb\"}").await.unwrap_or(0.0);
    let spilled_redis = app.metric("isobar_persist_spilled_total{backend=\"redis\"}").await.unwrap_or(0.0);
    println!(
        "loss test: {n} readings posted over 100 stations; InfluxDB holds {distinct} distinct readings; Redis holds the latest state of {latest_ok}/100 stations; spilled to disk: influxdb {spilled_influx}, redis {spilled_redis}"
    );
    assert_eq!(distinct, n);
    assert_eq!(latest_ok, 100);
    assert!(spilled_influx > 0.0 && spilled_redis > 0.0, "the outage was real");
}

#[actix_rt::test]
async fn spilled_readings_arrive_after_isobar_itself_is_killed_while_influxdb_is_down() {
    let mut influx = Influx::stopped();
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().to_string_lossy().into_owned();
    let influx_url = influx.url();
    let env = [
        ("ISOBAR__INFLUX__URL", influx_url.as_str()),
        ("ISOBAR__PERSIST__DATA_DIR", spool_dir.as_str()),
        ("ISOBAR__PERSIST__FLUSH_INTERVAL_MS", "100"),
        ("ISOBAR__PERSIST__RETRY_MAX_MS", "300"),
    ];
    let (mut child, address, _) = crate::process::serve(&env);
    let client = reqwest::Client::new();
    let batch = readings_a_second_apart(500, |i| format!("KILL{}", i % 10));
    let r = client.post(format!("http://{address}/v1/readings")).json(&batch).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let spilled = eventually(10, || async {
        let text = client.get(format!("http://{address}/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines().any(|l| l.starts_with("isobar_persist_queue_depth{backend=\"influxdb\"}") && l.ends_with(" 510"))
            && std::fs::metadata(spool.path().join("influxdb.wal")).is_ok_and(|m| m.len() > 0)
    })
    .await;
    let metrics = client.get(format!("http://{address}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        spilled,
        "readings were not spooled: {}",
        metrics.lines().filter(|l| l.contains("persist")).collect::<Vec<_>>().join("\n")
    );
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();

    influx.launch();
    let (mut child, _, _) = crate::process::serve(&env);
    let arrived = eventually(20, || async { influx.count_readings("").await == 500 }).await;
    let count = influx.count_readings("").await;
    println!("isobar SIGKILLed with InfluxDB down: 500 readings spooled, {count} arrived after restart");
    assert!(arrived);
    let _ = child.kill();
    let _ = child.wait();
}

#[actix_rt::test]
async fn instances_sharing_redis_share_the_upstream_cache() {
    let redis = Redis::start();
    let server = wiremock::MockServer::start().await;
    crate::upstream::mount_met(&server, 200).await;
    let mut config = crate::upstream::sources(&server, &["met_norway"], json!({}));
    crate::helpers::merge(&mut config, backends(Some(&redis), None));
    let a = spawn_app_with(config.clone()).await;
    assert_eq!(a.get("/v1/locations/2643743/current").await.status(), 200);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    let b = spawn_app_with(config).await;
    let (status, body) = b.get_json("/v1/locations/2643743/current").await;
    assert_eq!((status, &body["temperature"]), (200, &json!(26.5)));
    // The second instance answers from the shared state at once; its poller's first
    // fetch is then served by the shared response cache.
    let hit = eventually(5, || async {
        b.metric("isobar_upstream_cache_hits_total{provider=\"met-norway\"}").await == Some(1.0)
    })
    .await;
    assert!(hit);
    assert_eq!(server.received_requests().await.unwrap().len(), 1, "the second instance used the shared response");
}

#[actix_rt::test]
async fn a_spool_torn_by_a_kill_replays_every_whole_record_and_keeps_working() {
    let mut influx = Influx::stopped();
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().to_string_lossy().into_owned();
    let influx_url = influx.url();
    let env = [
        ("ISOBAR__INFLUX__URL", influx_url.as_str()),
        ("ISOBAR__PERSIST__DATA_DIR", spool_dir.as_str()),
        ("ISOBAR__PERSIST__FLUSH_INTERVAL_MS", "100"),
        ("ISOBAR__PERSIST__RETRY_MAX_MS", "300"),
        ("ISOBAR__PERSIST__QUEUE_MAX_ITEMS", "10"),
    ];
    let (mut child, address, _) = crate::process::serve(&env);
    let client = reqwest::Client::new();
    // São Paulo's readings: multi-byte characters in the spooled lines.
    let batch = readings_a_second_apart(200, |_| "SAO-PAULO".to_owned());
    let r = client.post(format!("http://{address}/v1/readings")).json(&batch).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let wal = spool.path().join("influxdb.wal");
    assert!(eventually(10, || async { std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) }).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();

    // Tear the last record: 7 bytes cut, then half of a two-byte character appended.
    let length = std::fs::metadata(&wal).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&wal).unwrap().set_len(length - 7).unwrap();
    std::io::Write::write_all(&mut std::fs::OpenOptions::new().append(true).open(&wal).unwrap(), &"ã".as_bytes()[..1])
        .unwrap();

    influx.launch();
    let (mut child, address, _) = crate::process::serve(&env);
    // The torn record held the last spooled point (a reading or a consensus change).
    assert!(
        eventually(20, || async { influx.count_readings("WHERE location = 'SAO-PAULO'").await >= 199 }).await,
        "only {} readings replayed",
        influx.count_readings("WHERE location = 'SAO-PAULO'").await
    );
    // And the spool keeps working: a new reading arrives too.
    let mut late = station_reading("SAO-PAULO", 0, 30.0);
    late["observed_at"] =
        json!((chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let r = client.post(format!("http://{address}/v1/readings")).json(&late).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert!(eventually(10, || async { influx.count_readings("WHERE temperature = 30").await == 1 }).await);
    let _ = child.kill();
    let _ = child.wait();
}

#[actix_rt::test]
async fn a_full_spool_is_a_503_to_the_post_and_on_ready_and_its_writes_wait_in_memory_until_the_backend_returns() {
    let mut influx = Influx::stopped();
    let mut config = backends(None, Some(&influx));
    crate::helpers::merge(&mut config, json!({"persist": {"queue_max_items": 5, "spool_max_bytes": 2000}}));
    let app = spawn_app_with(config).await;
    let readings: Vec<Value> = (0..40).map(|i| station_reading("FULL1", 40 - i, i as f64)).collect();
    let r = app.client.post(app.url("/v1/readings")).json(&json!(readings)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["detail"],
        "readings applied but not stored durably (influxdb: the spool refuses writes: the spool would pass \
         persist.spool_max_bytes (2000 bytes)); retry (a repeated reading is dropped as a duplicate)"
    );
    let full = eventually(10, || async {
        let (status, body) = app.get_json("/ready").await;
        status == 503
            && body["dependencies"].as_array().unwrap().iter().any(|d| {
                d["name"] == "influxdb"
                    && d["detail"].as_str().is_some_and(|d| {
                        d.ends_with("; spool: the spool would pass persist.spool_max_bytes (2000 bytes)")
                    })
            })
    })
    .await;
    assert!(full, "{}", app.get_json("/ready").await.1);
    let spool_bytes = app.metric("isobar_persist_spool_bytes{backend=\"influxdb\"}").await.unwrap();
    assert!(spool_bytes > 0.0 && spool_bytes <= 2000.0, "{spool_bytes}");

    influx.launch();
    assert!(eventually(20, || async { influx.count_readings("WHERE location = 'FULL1'").await == 40 }).await);
    assert!(eventually(10, || async { app.get_json("/ready").await.0 == 200 }).await);
    // The client's retry is safe now: the repeats are duplicates to the location, written
    // to the history again (what a dead instance never wrote is there then) as the same
    // points, and the answer a 202. (Five: all this queue of five takes at once.)
    let (status, body) = app.post_readings(&json!(readings[35..])).await;
    assert_eq!((status, body["accepted"].clone()), (202, json!(5)));
    assert_eq!(influx.count_readings("WHERE location = 'FULL1'").await, 40);
}

#[actix_rt::test]
async fn a_202_with_influxdb_down_is_on_disk_so_a_kill_right_after_it_loses_nothing() {
    let mut influx = Influx::stopped();
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().to_string_lossy().into_owned();
    let influx_url = influx.url();
    let env = [
        ("ISOBAR__INFLUX__URL", influx_url.as_str()),
        ("ISOBAR__PERSIST__DATA_DIR", spool_dir.as_str()),
        ("ISOBAR__PERSIST__RETRY_MAX_MS", "300"),
    ];
    let (mut child, address, _) = crate::process::serve(&env);
    let client = reqwest::Client::new();
    let batch: Vec<Value> =
        (0..300).map(|i| station_reading(&format!("NOW{}", i % 3), i / 3 + 1, i as f64 / 10.0)).collect();
    let r = client.post(format!("http://{address}/v1/readings")).json(&batch).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let _ = child.kill(); // SIGKILL, the moment the 202 arrived
    let _ = child.wait();

    influx.launch();
    let (mut child, _, _) = crate::process::serve(&env);
    assert!(
        eventually(20, || async { influx.count_readings("WHERE location =~ /^NOW/").await == 300 }).await,
        "{} of 300 arrived",
        influx.count_readings("WHERE location =~ /^NOW/").await
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[actix_rt::test]
async fn a_snapshot_older_by_epoch_or_seq_is_refused_by_redis() {
    use isobar::config::RedisSettings;
    use isobar::store::Snapshot;
    use isobar::store::codec::snapshot_to_json;
    use isobar::store::redis::{RedisStore, RedisWrite};

    let redis = Redis::start();
    let store =
        RedisStore::new(&RedisSettings { url: redis.url(), cluster: false, snapshot_ttl_secs: 60 }).expect("a store");
    let id = isobar::domain::LocationId::parse("FENCE1").unwrap();
    let write = |epoch: u64, seq: u64| {
        let snapshot = Snapshot { location_id: id.clone(), readings: Vec::new(), latest: Vec::new(), seq, epoch };
        RedisWrite::Snapshot { id: id.clone(), json: snapshot_to_json(&snapshot, None) }
    };
    let stored = || async {
        let json = store.load_snapshot(&id).await.unwrap().expect("a snapshot");
        let v: Value = serde_json::from_str(&json).unwrap();
        (v["epoch"].as_u64().unwrap(), v["seq"].as_u64().unwrap())
    };
    store.write(&[write(5, 3)]).await.unwrap();
    store.write(&[write(5, 2)]).await.unwrap();
    assert_eq!(stored().await, (5, 3), "a lower seq of the same epoch is refused");
    store.write(&[write(4, 9)]).await.unwrap();
    assert_eq!(stored().await, (5, 3), "a lower epoch is refused whatever its seq");
    store.write(&[write(5, 3), write(6, 1)]).await.unwrap();
    assert_eq!(stored().await, (6, 1), "a later epoch wins");
}

#[actix_rt::test]
async fn with_redis_down_at_start_the_stored_state_is_not_overwritten_and_is_restored_when_it_returns() {
    let mut redis = Redis::start();
    {
        let first = spawn_app_with(backends(Some(&redis), None)).await;
        first.post_readings(&json!([station_reading("DOWN1", 30, 1.0), station_reading("DOWN1", 20, 2.0)])).await;
        assert!(eventually(5, || async { written(&first, "redis").await >= 2.0 }).await);
    }
    redis.kill();
    let app = spawn_app_with(backends(Some(&redis), None)).await;
    // The station is known from the second reading's coordinates; the actor cannot read
    // its stored state yet: the reading is applied but not safe, so no 202.
    let (status, body) = app.post_readings(&station_reading("DOWN1", 10, 3.0)).await;
    assert_eq!(
        (status, body["detail"].as_str().unwrap()),
        (
            503,
            "readings applied but not stored durably (the location's stored state could not be read yet \
             (Redis unreachable)); retry (a repeated reading is dropped as a duplicate)"
        )
    );
    let (_, history) = app.get_json("/v1/locations/DOWN1/history").await;
    assert_eq!(history["readings"].as_array().unwrap().len(), 1);
    // Snapshots would go to the spool now, and overwrite the stored state on replay.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    redis.restart();
    let restored = eventually(15, || async {
        app.get_json("/v1/locations/DOWN1/history").await.1["readings"].as_array().map(Vec::len) == Some(3)
    })
    .await;
    assert!(restored, "{}", app.get_json("/v1/locations/DOWN1/history").await.1);
    assert_eq!(app.get_json("/v1/locations/DOWN1/current").await.1["temperature"], 3.0);
    // The store holds the merge (all three readings), not the one applied while it was down.
    let conn = redis.client().get_multiplexed_async_connection().await.unwrap();
    let merged = eventually(10, || async {
        let stored: Option<String> = conn.clone().get("isobar:loc:{DOWN1}:snapshot").await.unwrap();
        stored.and_then(|s| serde_json::from_str::<Value>(&s).ok()).and_then(|v| v["readings"].as_array().map(Vec::len))
            == Some(3)
    })
    .await;
    assert!(merged);
}
