//! `spawn_app`: a real isobar instance on 127.0.0.1:0 with test settings, plus clients.

use std::time::Duration;

use actix::Addr;
use futures_util::{SinkExt, StreamExt};
use isobar::actors::Directory;
use isobar::config::Settings;
use isobar::startup::{Application, ShutdownHandle};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct TestApp {
    /// Spool directory of this instance, removed with it (unless the test keeps it).
    pub _data_dir: Option<tempfile::TempDir>,
    pub address: String,
    pub client: reqwest::Client,
    pub shutdown: ShutdownHandle,
    pub directory: Addr<Directory>,
}

/// Starts an instance with the compiled-in defaults, port 0, and `overrides` on top.
pub async fn spawn_app_with(overrides: Value) -> TestApp {
    // No upstream provider unless a test turns one on: there is no internet here.
    let off = json!({"enabled": false});
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut layered = json!({"http": {"port": 0}, "persist": {"data_dir": data_dir.path()}, "sources": {
        "open_meteo": off, "open_meteo_air_quality": off, "met_norway": off, "nws": off, "openweathermap": off,
        "openweathermap_air_pollution": off}});
    merge(&mut layered, overrides);
    start(Settings::defaults_with(layered).expect("test settings are valid"), Some(data_dir)).await
}

/// Like [`spawn_app_with`], with its data in `dir`, which outlives it (a restart test).
pub async fn spawn_app_in(dir: &std::path::Path, overrides: Value) -> TestApp {
    let off = json!({"enabled": false});
    let mut layered = json!({"http": {"port": 0}, "persist": {"data_dir": dir}, "sources": {
        "open_meteo": off, "open_meteo_air_quality": off, "met_norway": off, "nws": off, "openweathermap": off,
        "openweathermap_air_pollution": off}});
    merge(&mut layered, overrides);
    start(Settings::defaults_with(layered).expect("test settings are valid"), None).await
}

async fn start(settings: Settings, data_dir: Option<tempfile::TempDir>) -> TestApp {
    let app = Application::build(settings).await.expect("app starts");
    let address = format!("127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_handle();
    let directory = app.directory();
    actix_rt::spawn(app.run_until_stopped());
    TestApp { _data_dir: data_dir, address, client: reqwest::Client::new(), shutdown, directory }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(json!({})).await
}

pub fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request sent")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    pub async fn post_readings(&self, body: &Value) -> (u16, Value) {
        let r = self.client.post(self.url("/v1/readings")).json(body).send().await.expect("request sent");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    /// The value of one sample line of /metrics, e.g. `isobar_ws_connections`.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.get("/metrics").await.text().await.expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }

    pub async fn ws(&self, path: &str) -> Ws {
        let (ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{}{}", self.address, path)).await.expect("ws connects");
        ws
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

/// A station reading at `minutes_ago`, with coordinates (so a new station is created).
pub fn station_reading(id: &str, minutes_ago: i64, temperature: f64) -> Value {
    let at = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    json!({
        "location_id": id, "source": "station",
        "observed_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "temperature": temperature, "humidity": 64, "pressure": 1016.0, "wind_speed": 3.0,
        "wind_direction": 230, "visibility": 10.0, "precipitation": 0.0,
        "latitude": 40.64, "longitude": -73.78,
    })
}

/// The parts of a /current ETag, `W/"{seq}-{version: 16 hex digits}-{units}"`.
pub fn etag_parts(etag: &str) -> (u64, String, String) {
    let inner = etag.strip_prefix("W/\"").and_then(|e| e.strip_suffix('"')).expect("a weak ETag");
    let mut parts = inner.splitn(3, '-');
    let (seq, version, units) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    assert!(version.len() == 16 && version.chars().all(|c| c.is_ascii_hexdigit()), "{etag}");
    (seq.parse().expect("a seq"), version.to_owned(), units.to_owned())
}

/// The next text message as JSON (skipping pings), within 2 s, but not a forecast the
/// learned models issued: those come whenever an hour of a location's readings is
/// complete, which depends on the clock (tests of them use [`next_json_any`]).
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = next_json_any(ws).await;
        if message["type"] != "forecast" || message["data"].get("models").is_none() {
            return message;
        }
    }
}

/// The next text message as JSON (skipping pings), within 2 s.
pub async fn next_json_any(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(2), ws.next())
            .await
            .expect("a message within 2 s")
            .expect("stream open")
            .expect("valid frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("server sends JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

pub async fn send_json(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into())).await.expect("sent");
}

/// The close frame's code, reading past anything else, within `secs`.
pub async fn close_code(ws: &mut Ws, secs: u64) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
        }
    }
}

/// Starts an instance from fully loaded settings (e.g. a profile), on port 0.
pub async fn spawn_settings(mut settings: Settings) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    settings.persist.data_dir = data_dir.path().to_string_lossy().into_owned();
    settings.http.port = 0;
    settings.http.host = "127.0.0.1".into();
    start(settings, Some(data_dir)).await
}

/// Waits out the last 20 s of a clock hour, for tests whose expected values are hours
/// computed from the clock at their start.
pub async fn clear_of_the_hour() {
    use chrono::Timelike;
    let now = chrono::Utc::now();
    let into_hour = now.minute() * 60 + now.second();
    if into_hour >= 3580 {
        tokio::time::sleep(Duration::from_secs(u64::from(3601 - into_hour))).await;
    }
}

/// Polls `check` every 50 ms until it returns true or `secs` pass.
/// The Python with the test tools (`scripts/test` sets ISOBAR_TEST_PYTHON to its
/// virtualenv's).
pub fn python() -> String {
    std::env::var("ISOBAR_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

pub async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
