//! The real binary: start-up errors, check-config, JSON logs and graceful shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::close_code;

const BIN: &str = env!("CARGO_BIN_EXE_isobar");

fn isobar(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    let spool = tempfile::Builder::new().prefix("isobar-process-").tempdir().expect("temp dir").keep();
    cmd.args(args).env_remove("RUST_LOG");
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("ISOBAR__")) {
        cmd.env_remove(key);
    }
    cmd.env("ISOBAR__PERSIST__DATA_DIR", spool);
    cmd
}

/// Starts `serve` with JSON logs on port 0; returns the child, its address, and its log lines.
pub fn serve(extra_env: &[(&str, &str)]) -> (Child, String, mpsc::Receiver<Value>) {
    serve_with(&["serve"], extra_env)
}

/// As [`serve`], with these arguments (`["serve", "--profile", "demo"]`).
pub fn serve_with(args: &[&str], extra_env: &[(&str, &str)]) -> (Child, String, mpsc::Receiver<Value>) {
    let mut child = isobar(args)
        .env("ISOBAR__HTTP__PORT", "0")
        .env("ISOBAR__LOG__FORMAT", "json")
        .envs(extra_env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let value: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("log line is not JSON: {line}"));
            if tx.send(value).is_err() {
                return;
            }
        }
    });
    let address = loop {
        let line = rx.recv_timeout(Duration::from_secs(10)).expect("a 'listening' log line within 10 s");
        if line["message"] == "listening" {
            assert!(line["startup_ms"].is_u64());
            break line["address"].as_str().expect("address field").to_owned();
        }
    };
    (child, address, rx)
}

#[actix_rt::test]
async fn sigterm_closes_websockets_with_1001_flushes_and_exits_0() {
    let (mut child, address, logs) = serve(&[]);
    let client = reqwest::Client::new();
    let reading = crate::helpers::station_reading("TERM1", 1, 3.0);
    let r = client.post(format!("http://{address}/v1/readings")).json(&reading).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws/weather/TERM1")).await.unwrap();
    assert_eq!(crate::helpers::next_json(&mut ws).await["type"], "snapshot");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert_eq!(close_code(&mut ws, 5).await, Some(1001));
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(exit.code(), Some(0));
    let lines: Vec<Value> = logs.try_iter().collect();
    let stopped = lines.iter().find(|l| l["message"] == "stopped").expect("a 'stopped' log line");
    assert_eq!(stopped["locations"], 1);
    assert_eq!(stopped["snapshots_written"], 1);
    assert!(lines.iter().any(|l| l["message"] == "shutting down" && l["signal"] == "SIGTERM"));
}

#[test]
fn a_port_in_use_is_one_clear_line_and_a_non_zero_exit() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = isobar(&["serve"]).env("ISOBAR__HTTP__PORT", &port).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        format!(
            "error: cannot listen on 127.0.0.1:{port}: Address already in use (os error 98) (change http.host / http.port, or ISOBAR__HTTP__PORT)\n"
        )
    );
}

#[test]
fn check_config_prints_the_merged_settings_of_a_profile() {
    let out = isobar(&["check-config", "--profile", "demo"])
        .env("ISOBAR__HTTP__PORT", "9123")
        .env("ISOBAR__SOURCES__OPENWEATHERMAP__API_KEY", "s3cr3t-key")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cr3t-key"), "secrets are masked");
    assert_eq!(out.status.code(), Some(0));
    let settings: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(settings["http"]["port"], 9123);
    assert_eq!(settings["sources"]["replay"]["enabled"], true);
    assert_eq!(settings["sources"]["replay"]["speed"], 1800.0);
    assert_eq!(settings["locations"]["preload"], serde_json::json!(["KEWR", "KJFK", "KLGA"]));
    assert_eq!(settings["sources"]["openweathermap"]["api_key"], "***");
    assert_eq!(settings["sources"]["open_meteo"]["enabled"], false, "the demo stays offline");
}

#[test]
fn a_bad_config_value_is_one_line_naming_the_key() {
    let out = isobar(&["check-config"]).env("ISOBAR__HTTP__PORT", "eighty").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: invalid configuration: "), "{stderr}");
    assert!(stderr.to_lowercase().contains("\"http.port\""), "{stderr}");

    let out = isobar(&["serve", "--profile", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: unknown profile \"nope\": no config/nope.toml and no built-in profile of that name\n"
    );
}

#[actix_rt::test]
async fn without_internet_the_default_profile_says_so_once_and_points_to_the_demo() {
    // A closed loopback port stands in for an unreachable internet.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let (mut child, address, logs) = serve(&[
        ("ISOBAR__SOURCES__OPEN_METEO__BASE_URL", &closed),
        ("ISOBAR__SOURCES__NWS__BASE_URL", &closed),
        ("ISOBAR__SOURCES__COLD_WAIT_MS", "1000"),
    ]);
    let client = reqwest::Client::new();
    let r = client.get(format!("http://{address}/v1/locations/5128581/current")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    // Retries with backoff come first: the failure is final after a few seconds.
    let mut open_meteo = Value::Null;
    for _ in 0..100 {
        let ready: Value = client.get(format!("http://{address}/ready")).send().await.unwrap().json().await.unwrap();
        open_meteo = ready["sources"].as_array().unwrap().iter().find(|s| s["name"] == "open-meteo").unwrap().clone();
        if open_meteo["state"] == "failing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open_meteo["state"], "failing");
    assert!(open_meteo["detail"].as_str().unwrap().starts_with("upstream unavailable: cannot connect"), "{open_meteo}");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    let offline: Vec<Value> = logs
        .try_iter()
        .filter(|l| {
            l["message"]
                == "cannot reach the weather providers; no internet? `isobar serve --profile demo` runs offline"
        })
        .collect();
    assert_eq!(offline.len(), 1, "one line, not one per provider or location");
}
