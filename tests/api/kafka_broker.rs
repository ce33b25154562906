//! Kafka end to end: a standalone broker process (tansu, Apache Kafka compatible, its log
//! in SQLite) driven by a client nobody here wrote (kafka-python, through
//! `tests/kafka_client.py`), with isobar consuming, producing and storing history in a real
//! InfluxDB. The broker is SIGKILLed and restarted mid-stream in one test.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, python, spawn_app_with, station_reading};
use crate::servers::{Influx, Tansu};

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kafka_client.py");

/// The Python with kafka-python installed (`scripts/test` sets it up).
/// Runs the client; returns its stdout as JSON lines.
fn run_client(args: &[String], stdin: String) -> Vec<Value> {
    let mut child = Command::new(python())
        .arg(CLIENT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().expect("piped stdin").write_all(stdin.as_bytes()).expect("client reads its input");
    let out = child.wait_with_output().expect("client finishes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kafka client failed ({}); is kafka-python installed? `bash scripts/test` installs it\n{stderr}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("client prints JSON")).collect()
}

/// Produces (key, value) pairs with kafka-python, every one acknowledged; answers the
/// client's summary (`produced`, `resent`).
async fn produce(brokers: &str, topic: &str, messages: &[(String, String)], rate: Option<u32>) -> Value {
    let input: String = messages.iter().map(|(k, v)| json!({"key": k, "value": v}).to_string() + "\n").collect();
    let mut args = vec!["produce".into(), "--brokers".into(), brokers.into(), "--topic".into(), topic.into()];
    if let Some(rate) = rate {
        args.extend(["--rate".into(), rate.to_string()]);
    }
    let mut out = tokio::task::spawn_blocking(move || run_client(&args, input)).await.unwrap();
    out.pop().expect("a summary line")
}

/// The first `count` records of `topic` read by kafka-python in consumer group `group`.
async fn consume(brokers: &str, topic: &str, group: &str, count: usize) -> Vec<Value> {
    let args: Vec<String> = ["consume", "--brokers", brokers, "--topic", topic, "--group", group]
        .into_iter()
        .map(String::from)
        .chain(["--count".into(), count.to_string(), "--timeout".into(), "30".into()])
        .collect();
    tokio::task::spawn_blocking(move || run_client(&args, String::new())).await.unwrap()
}

/// The offsets consumer group `group` has committed on `topic`, summed over partitions.
async fn committed(brokers: &str, topic: &str, group: &str) -> u64 {
    let args: Vec<String> =
        ["committed", "--brokers", brokers, "--topic", topic, "--group", group].into_iter().map(String::from).collect();
    let mut out = tokio::task::spawn_blocking(move || run_client(&args, String::new())).await.unwrap();
    out.pop().and_then(|line| line["committed"].as_u64()).expect("a committed count")
}

async fn app(broker: &Tansu, influx: &Influx) -> TestApp {
    spawn_app_with(json!({"kafka": {"brokers": broker.brokers()}, "influx": {"url": influx.url()}})).await
}

fn keyed(id: &str, reading: &Value) -> (String, String) {
    (id.to_owned(), reading.to_string())
}

/// `/current` with the ages (which move with the clock) zeroed.
fn without_ages(mut current: Value) -> Value {
    if let Some(sources) = current["sources"].as_array_mut() {
        for s in sources {
            s["age_seconds"] = json!(0);
        }
    }
    current
}

#[actix_rt::test]
async fn readings_from_an_independent_client_reach_current_and_history_and_updates_come_back_out() {
    let broker = Tansu::start();
    let influx = Influx::start();
    let app = app(&broker, &influx).await;
    let readings: Vec<_> = [(30, 1.5), (20, 2.5), (10, 3.5)]
        .iter()
        .map(|(ago, t)| keyed("E2E1", &station_reading("E2E1", *ago, *t)))
        .collect();
    let summary = produce(&broker.brokers(), "isobar.readings", &readings, None).await;
    assert_eq!(summary["produced"], 3);

    assert!(
        eventually(30, || async { app.get_json("/v1/locations/E2E1/current").await.1["temperature"] == 3.5 }).await,
        "the latest reading is the current temperature"
    );
    assert!(
        eventually(15, || async {
            let history = app.get_json("/v1/locations/E2E1/history").await.1;
            let temps: Vec<f64> = history["readings"]
                .as_array()
                .map(|r| r.iter().filter_map(|x| x["temperature"].as_f64()).collect())
                .unwrap_or_default();
            temps == [1.5, 2.5, 3.5]
        })
        .await,
        "history holds the three readings, oldest first"
    );
    assert!(eventually(10, || async { influx.count_readings("WHERE location = 'E2E1'").await == 3 }).await);

    // Every consensus change went out on isobar.updates, as the WebSocket `update`.
    let sent = app.metric("isobar_kafka_produced_total{topic=\"updates\"}").await.unwrap_or(0.0) as usize;
    assert!(sent >= 1);
    let updates = consume(&broker.brokers(), "isobar.updates", "e2e-updates", sent).await;
    assert_eq!(updates.len(), sent);
    let seqs: Vec<u64> = updates
        .iter()
        .map(|u| {
            assert_eq!(u["key"], "E2E1");
            let value: Value = serde_json::from_str(u["value"].as_str().unwrap()).unwrap();
            assert_eq!((value["type"].clone(), value["location_id"].clone()), (json!("update"), json!("E2E1")));
            value["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(seqs, (1..=sent as u64).collect::<Vec<_>>(), "one key, one partition: in order");
    let last: Value = serde_json::from_str(updates[sent - 1]["value"].as_str().unwrap()).unwrap();
    let current = app.get_json("/v1/locations/E2E1/current").await.1;
    assert_eq!(without_ages(last["data"].clone()), without_ages(current));
}

#[actix_rt::test]
async fn bad_messages_from_an_independent_client_land_on_the_dlq_with_the_reason_and_where_they_came_from() {
    let broker = Tansu::start();
    let influx = Influx::start();
    let app = app(&broker, &influx).await;
    let mut unknown_field = station_reading("E2E2", 3, 1.0);
    unknown_field["colour"] = json!("red");
    let bad = vec![("E2E2".to_owned(), "not json at all".to_owned()), ("E2E2".to_owned(), unknown_field.to_string())];
    produce(&broker.brokers(), "isobar.readings", &bad, None).await;
    produce(&broker.brokers(), "isobar.readings", &[keyed("E2E2", &station_reading("E2E2", 1, 9.0))], None).await;
    assert!(
        eventually(30, || async { app.get_json("/v1/locations/E2E2/current").await.1["temperature"] == 9.0 }).await,
        "a good reading after the bad ones still gets through"
    );

    // Where each bad message sits on the readings topic, as the client sees it.
    let on_topic = consume(&broker.brokers(), "isobar.readings", "e2e-raw", 3).await;
    let place = |value: &str| {
        let r = on_topic.iter().find(|r| r["value"] == value).expect("produced message on the topic");
        (r["partition"].to_string(), r["offset"].to_string())
    };
    let dead = consume(&broker.brokers(), "isobar.readings.dlq", "e2e-dlq", 2).await;
    let got: Vec<Value> =
        dead.iter().map(|d| json!({"key": d["key"], "value": d["value"], "headers": d["headers"]})).collect();
    let reasons = ["not JSON: expected ident at line 1 column 2", "colour: unknown field"];
    let want: Vec<Value> = bad
        .iter()
        .zip(reasons)
        .map(|((key, value), reason)| {
            let (partition, offset) = place(value);
            json!({"key": key, "value": value, "headers": {
                "error": reason, "source-topic": "isobar.readings",
                "source-partition": partition, "source-offset": offset}})
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(app.metric("isobar_kafka_dlq_total{reason=\"not_json\"}").await, Some(1.0));
    assert_eq!(app.metric("isobar_kafka_dlq_total{reason=\"unknown_field\"}").await, Some(1.0));
}

#[actix_rt::test]
async fn the_broker_killed_and_restarted_mid_stream_loses_nothing_and_every_reading_applies_once() {
    const STATIONS: usize = 50;
    const PER_STATION: usize = 100;
    let mut broker = Tansu::start();
    let influx = Influx::start();
    let app = app(&broker, &influx).await;
    // 5,000 readings, one per station-minute, interleaved across stations.
    let mut readings = Vec::with_capacity(STATIONS * PER_STATION);
    for minute in 0..PER_STATION {
        for s in 0..STATIONS {
            let id = format!("KILL{s:02}");
            let reading = station_reading(&id, (PER_STATION - minute) as i64, (minute % 40) as f64);
            readings.push(keyed(&id, &reading));
        }
    }
    let brokers = broker.brokers();
    let producer = actix_rt::spawn(async move { produce(&brokers, "isobar.readings", &readings, Some(1000)).await });

    // Mid-stream (once 500 readings were applied; producing all takes 5 s): SIGKILL, down
    // for a second, back on the same port with the same storage.
    let applied = || async { app.metric("isobar_readings_ingested_total{source=\"station\"}").await.unwrap_or(0.0) };
    assert!(eventually(30, || async { applied().await >= 500.0 }).await, "the stream started");
    let applied_at_kill = applied().await;
    assert!(!producer.is_finished(), "the producer is still producing when the broker dies");
    broker.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.restart();

    let summary = producer.await.unwrap();
    assert_eq!(summary["produced"], (STATIONS * PER_STATION) as u64);
    let total = (STATIONS * PER_STATION) as f64;
    assert!(
        eventually(90, || async { applied().await == total }).await,
        "every reading applied: {} of {total}",
        applied().await
    );
    let duplicates = app.metric("isobar_readings_rejected_total{reason=\"duplicate\",source=\"station\"}").await;
    eprintln!(
        "broker SIGKILLed with {applied_at_kill} of {total} readings applied; {} re-sent by the producer, \
         {duplicates:?} redelivered duplicates dropped",
        summary["resent"]
    );
    // History, as a user sees it: each station exactly its 100 readings, none twice.
    for s in 0..STATIONS {
        let path = format!("/v1/locations/KILL{s:02}/history");
        let ok = eventually(20, || async {
            let history = app.get_json(&path).await.1;
            let times: std::collections::BTreeSet<String> = history["readings"]
                .as_array()
                .map(|r| r.iter().filter_map(|x| x["observed_at"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            history["readings"].as_array().map(Vec::len) == Some(PER_STATION) && times.len() == PER_STATION
        })
        .await;
        assert!(ok, "KILL{s:02} has each of its {PER_STATION} readings once in history");
    }
    assert!(eventually(20, || async { influx.count_readings("").await == total as u64 }).await);
}

#[actix_rt::test]
async fn a_post_after_the_broker_was_killed_gets_a_503_with_retry_after_within_the_ack_timeout() {
    let mut broker = Tansu::start();
    let app = spawn_app_with(json!({"kafka": {"brokers": broker.brokers(), "ack_timeout_ms": 1500}})).await;
    assert!(eventually(20, || async { app.post_readings(&station_reading("ACK1", 2, 4.0)).await.0 == 202 }).await);
    broker.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for minutes_ago in [1, 3, 4, 5, 6] {
        let started = std::time::Instant::now();
        let r = app
            .client
            .post(app.url("/v1/readings"))
            .json(&station_reading("ACK1", minutes_ago, 5.0))
            .send()
            .await
            .expect("answered");
        let took = started.elapsed();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "5");
        let body: Value = r.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().starts_with("Kafka did not acknowledge the readings"), "{body}");
        // The ack timeout, plus the grace the ingest path gives the Kafka actor.
        assert!(took < Duration::from_millis(2500), "answered after {took:?}");
    }
}

#[actix_rt::test]
async fn with_the_dlq_topic_missing_ready_names_kafka_dlq_and_consumption_waits_until_it_exists() {
    let broker = Tansu::start_with_topics(&[("isobar.readings", 3), ("isobar.updates", 3)]);
    let app = spawn_app_with(json!({"kafka": {"brokers": broker.brokers()}})).await;
    produce(&broker.brokers(), "isobar.readings", &[("DLQ1".to_owned(), "not json at all".to_owned())], None).await;
    let blocked = eventually(60, || async {
        let (status, body) = app.get_json("/ready").await;
        status == 503
            && body["dependencies"].as_array().unwrap().iter().any(|d| {
                d["name"] == "kafka-dlq"
                    && d["detail"].as_str().is_some_and(|s| s.starts_with("isobar.readings.dlq refuses messages: "))
            })
    })
    .await;
    assert!(blocked, "{}", app.get_json("/ready").await.1);
    assert_eq!(app.metric("isobar_kafka_dlq_blocked").await, Some(1.0));

    // A good reading behind the dead one (same key, same partition) waits with it.
    produce(&broker.brokers(), "isobar.readings", &[keyed("DLQ1", &station_reading("DLQ1", 1, 7.0))], None).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.get_json("/v1/locations/DLQ1/current").await.0, 404, "nothing passed the dead message");

    broker.create_topic("isobar.readings.dlq", 1);
    assert!(
        eventually(60, || async { app.get_json("/v1/locations/DLQ1/current").await.1["temperature"] == 7.0 }).await,
        "consumption resumed"
    );
    let (status, _) = app.get_json("/ready").await;
    assert_eq!(status, 200);
    assert_eq!(app.metric("isobar_kafka_dlq_blocked").await, Some(0.0));
    let dead = consume(&broker.brokers(), "isobar.readings.dlq", "dlq-missing", 1).await;
    assert_eq!(dead[0]["value"], "not json at all");
    assert_eq!(dead[0]["headers"]["error"], "not JSON: expected ident at line 1 column 2");
}

/// 10,000 readings produced by kafka-python; isobar, as its own process, SIGKILLed
/// mid-consume while InfluxDB is down; InfluxDB back and isobar started again: InfluxDB
/// holds every reading once. The restarted instance consumes only what the first one had
/// not committed: the offsets the first one committed were for readings already on disk
/// (the spool), which the restart replays.
#[actix_rt::test]
async fn readings_from_kafka_python_reach_influxdb_each_once_after_isobar_is_killed_mid_consume_with_influxdb_down() {
    const STATIONS: usize = 20;
    const PER_STATION: usize = 500;
    const TOTAL: usize = STATIONS * PER_STATION;
    let broker = Tansu::start();
    let mut influx = Influx::stopped();
    let spool = tempfile::tempdir().unwrap();
    let (brokers, influx_url) = (broker.brokers(), influx.url());
    let spool_dir = spool.path().to_string_lossy().into_owned();
    let env = [
        ("ISOBAR__KAFKA__BROKERS", brokers.as_str()),
        ("ISOBAR__INFLUX__URL", influx_url.as_str()),
        ("ISOBAR__PERSIST__DATA_DIR", spool_dir.as_str()),
        ("ISOBAR__PERSIST__RETRY_MAX_MS", "300"),
        // Writes wait 20 s for a batch: only confirmed durability (the spool) lets an offset move.
        ("ISOBAR__PERSIST__FLUSH_INTERVAL_MS", "20000"),
        // Static membership: the restarted instance takes the partitions back at once.
        ("ISOBAR__KAFKA__INSTANCE_ID", "isobar-0"),
    ];
    let start = chrono::Utc::now() - chrono::Duration::seconds(PER_STATION as i64 + 60);
    let mut readings = Vec::with_capacity(TOTAL);
    for second in 0..PER_STATION {
        for s in 0..STATIONS {
            let id = format!("MID{s:02}");
            let mut reading = station_reading(&id, 0, (second % 40) as f64);
            let at = start + chrono::Duration::seconds(second as i64);
            reading["observed_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            readings.push(keyed(&id, &reading));
        }
    }
    let summary = produce(&broker.brokers(), "isobar.readings", &readings, None).await;
    assert_eq!(summary["produced"], TOTAL as u64);

    let (mut child, address, _) = crate::process::serve(&env);
    let metric = |address: String, name: &'static str| async move {
        let text = match reqwest::get(format!("http://{address}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    let applied = "isobar_readings_ingested_total{source=\"station\"} ";
    // Mid-consume, InfluxDB still down, once the first instance has committed offsets (it
    // may only for readings in its spool): SIGKILL.
    let at_kill = eventually(60, || committed(&brokers, "isobar.readings", "isobar").map(|n| n > 0)).await;
    assert!(at_kill, "the first instance committed offsets");
    let committed_at_kill = committed(&brokers, "isobar.readings", "isobar").await;
    let applied_at_kill = metric(address.clone(), applied).await;
    assert!(applied_at_kill < TOTAL as f64, "killed mid-consume: {applied_at_kill} of {TOTAL} applied");
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    // The broker forgets the dead member's partitions only when it restarts (tansu 0.6);
    // its log and the group's committed offsets are in SQLite and survive.
    influx.launch();

    let (mut child, address, _) = crate::process::serve(&env);
    let all =
        eventually(120, || async { influx.count_readings("WHERE location =~ /^MID/").await == TOTAL as u64 }).await;
    let count = influx.count_readings("WHERE location =~ /^MID/").await;
    let consumed = metric(address.clone(), "isobar_kafka_consumed_total ").await;
    println!(
        "isobar SIGKILLed after applying {applied_at_kill} of {TOTAL} (committed {committed_at_kill}) with InfluxDB \
         down; after the restart InfluxDB holds {count}, the second instance consumed {consumed}"
    );
    // InfluxDB keeps one point per (series, time): a redelivered reading cannot count twice,
    // and one missing would leave the count short.
    assert!(all, "{count} of {TOTAL} in InfluxDB");
    // What the first instance committed reached InfluxDB from its spool, not from Kafka.
    assert!(
        consumed <= (TOTAL as u64 - committed_at_kill) as f64,
        "{consumed} consumed after {committed_at_kill} committed"
    );
    let _ = child.kill();
    let _ = child.wait();
}
