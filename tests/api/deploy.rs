//! deploy/: the metric names the Grafana dashboard and the alert rules query exist in a
//! live isobar's /metrics (with Redis, InfluxDB, Kafka and a provider, after real work),
//! and `promtool check metrics` accepts that scrape; the image's HEALTHCHECK command.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;
use wiremock::MockServer;

use crate::anomalies::{post_ten_quiet_hours, reading};
use crate::helpers::{eventually, python, spawn_app_with};
use crate::kafka::Kafka;
use crate::servers::{Influx, Redis};
use crate::upstream::{mount_open_meteo, sources};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
const BIN: &str = env!("CARGO_BIN_EXE_isobar");

/// The metric names the dashboard's and the rules' PromQL select, from deploy/check.py
/// (which parses each expression with promql-parser).
fn queried_names() -> Vec<String> {
    let out = Command::new(python())
        .args([&format!("{DEPLOY}/check.py"), "names"])
        .output()
        .expect("python runs; `bash scripts/test` installs promql-parser");
    assert!(out.status.success(), "check.py names: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8").lines().map(str::to_owned).collect()
}

/// `promtool check metrics` on `scrape`: its exit code and what it printed.
fn promtool_check_metrics(scrape: &str) -> (Option<i32>, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian's prometheus package; `bash scripts/test` installs it)");
    child.stdin.take().expect("stdin").write_all(scrape.as_bytes()).expect("scrape written");
    let out = child.wait_with_output().expect("promtool finishes");
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The series names in a Prometheus text exposition.
fn series_names(scrape: &str) -> std::collections::BTreeSet<&str> {
    scrape.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).filter_map(|l| l.split(['{', ' ']).next()).collect()
}

#[actix_rt::test]
async fn every_metric_the_dashboard_and_the_alerts_query_is_in_a_live_scrape_that_promtool_accepts() {
    let (redis, influx, kafka) = (Redis::start(), Influx::start(), Kafka::start());
    let upstream = MockServer::start().await;
    mount_open_meteo(&upstream).await;
    let mut settings = sources(&upstream, &["open_meteo"], json!({}));
    crate::helpers::merge(
        &mut settings,
        json!({"redis": {"url": redis.url()}, "influx": {"url": influx.url()}, "kafka": {"brokers": kafka.brokers()},
               "persist": {"flush_interval_ms": 100}}),
    );
    let app = spawn_app_with(settings).await;

    // Real work: a station's quiet day and then a spike (an anomaly), a reading refused,
    // a provider polled for a catalog city, a WebSocket client.
    let (next, _) = post_ten_quiet_hours(&app, "DEPLOY1").await;
    let spike = [next[0] + 15.0, next[1], next[2]];
    assert_eq!(app.post_readings(&reading("DEPLOY1", "station", 5, spike)).await.0, 202);
    assert_eq!(app.post_readings(&json!({"location_id": "DEPLOY1", "temperature": 20})).await.0, 422);
    // (The first answer may be a 503 "not yet" while the consumer group forms.)
    let polled = eventually(20, || async { app.get_json("/v1/locations/2988507/current").await.0 == 200 }).await;
    assert!(polled, "Paris's current conditions from the provider");
    let _ws = app.ws("/ws/weather/2988507").await;

    let wanted: Vec<String> = queried_names().into_iter().filter(|n| n != "up").collect();
    assert!(wanted.len() >= 20, "the dashboard and the rules query {wanted:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (scrape, missing) = loop {
        let scrape = app.get("/metrics").await.text().await.expect("metrics text");
        let present = series_names(&scrape);
        let missing: Vec<&String> = wanted.iter().filter(|n| !present.contains(n.as_str())).collect();
        if missing.is_empty() || std::time::Instant::now() > deadline {
            break (scrape, missing);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let complete = missing.is_empty();
    assert!(
        complete,
        "queried by deploy/grafana/isobar.json or deploy/prometheus/rules.yml but not in /metrics: {missing:?}"
    );

    // The values behind the panels are the work above.
    assert_eq!(app.metric("isobar_anomalies_total{kind=\"spike\",quantity=\"temperature\"}").await, Some(1.0));
    assert_eq!(app.metric("isobar_ready").await, Some(1.0));
    for dependency in ["directory", "persister", "memory", "redis", "influxdb", "kafka", "kafka-dlq"] {
        let sample = format!("isobar_dependency_up{{dependency=\"{dependency}\"}}");
        assert_eq!(app.metric(&sample).await, Some(1.0), "{sample}");
    }
    assert_eq!(app.metric("isobar_kafka_dlq_total{reason=\"not_json\"}").await, Some(0.0), "every reason starts at 0");
    assert_eq!(app.metric("isobar_upstream_circuit_open{provider=\"open-meteo\"}").await, Some(0.0));

    let (code, printed) = promtool_check_metrics(&scrape);
    assert_eq!((code, printed.as_str()), (Some(0), ""), "promtool check metrics");
    drop((redis, influx, kafka));
}

#[actix_rt::test]
async fn the_readiness_gauges_follow_a_backend_that_goes_down() {
    let mut redis = Redis::start();
    let app = spawn_app_with(json!({"redis": {"url": redis.url()}})).await;
    assert_eq!(app.metric("isobar_dependency_up{dependency=\"redis\"}").await, Some(1.0));
    assert_eq!(app.metric("isobar_ready").await, Some(1.0));
    redis.kill();
    assert_eq!(app.metric("isobar_dependency_up{dependency=\"redis\"}").await, Some(0.0));
    assert_eq!(app.metric("isobar_ready").await, Some(0.0));
    redis.restart();
    let back = eventually(10, || async { app.metric("isobar_ready").await == Some(1.0) }).await;
    assert!(back, "isobar_ready is 1 again once Redis answers");
}

#[test]
fn probe_exits_0_on_a_2xx_and_1_naming_the_status_otherwise() {
    let (mut child, address, _logs) = crate::process::serve(&[]);
    let probe = |url: String| Command::new(BIN).args(["probe", &url]).output().expect("probe runs");
    let ok = probe(format!("http://{address}/health"));
    assert_eq!((ok.status.code(), ok.stderr.as_slice()), (Some(0), &b""[..]));
    let missing = probe(format!("http://{address}/nowhere"));
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        format!("unhealthy: http://{address}/nowhere answered 404 Not Found\n")
    );
    let _ = child.kill();
    let _ = child.wait();
    let down = probe(format!("http://{address}/health"));
    assert_eq!(down.status.code(), Some(1), "nothing listens any more");
}
