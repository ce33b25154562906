//! Secrets stay out of sight: with provider keys and an InfluxDB password set to known
//! strings and every upstream failing, none of them appears in the logs, `/ready`,
//! `/metrics`, error bodies or anything stored in Redis.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::servers::Redis;

const OWM_KEY: &str = "owm-secret-7d41c0a9";
const WEATHERAPI_KEY: &str = "wapi-secret-93be12f4";
const INFLUX_PASSWORD: &str = "influx-secret-5a0e77d2";

#[actix_rt::test]
async fn no_key_or_password_appears_in_logs_ready_metrics_or_redis_while_everything_fails() {
    let redis = Redis::start();
    let failing = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(500).set_body_string("boom")).mount(&failing).await;
    let closed = format!("http://127.0.0.1:{}", {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    });
    let (redis_url, failing_url) = (redis.url(), failing.uri());
    let env = [
        ("ISOBAR__LOG__LEVEL", "debug"),
        ("ISOBAR__REDIS__URL", redis_url.as_str()),
        ("ISOBAR__INFLUX__URL", closed.as_str()),
        ("ISOBAR__INFLUX__USERNAME", "isobar"),
        ("ISOBAR__INFLUX__PASSWORD", INFLUX_PASSWORD),
        ("ISOBAR__SOURCES__OPENWEATHERMAP__API_KEY", OWM_KEY),
        ("ISOBAR__SOURCES__OPENWEATHERMAP__BASE_URL", failing_url.as_str()),
        ("ISOBAR__SOURCES__OPENWEATHERMAP__MAX_RETRIES", "0"),
        ("ISOBAR__SOURCES__WEATHERAPI__API_KEY", WEATHERAPI_KEY),
        ("ISOBAR__SOURCES__WEATHERAPI__BASE_URL", closed.as_str()),
        ("ISOBAR__SOURCES__WEATHERAPI__MAX_RETRIES", "0"),
        ("ISOBAR__SOURCES__OPEN_METEO__BASE_URL", closed.as_str()),
        ("ISOBAR__SOURCES__NWS__BASE_URL", closed.as_str()),
        ("ISOBAR__SOURCES__COLD_WAIT_MS", "500"),
        ("ISOBAR__PERSIST__FLUSH_INTERVAL_MS", "100"),
    ];
    let (mut child, address, logs) = crate::process::serve(&env);
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{address}{path}");
    let mut seen = Vec::new();
    // London (OpenWeatherMap and WeatherAPI cover it) and a reading that InfluxDB refuses.
    for _ in 0..3 {
        let r = client.get(url("/v1/locations/2643743/current")).send().await.unwrap();
        seen.push(r.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let reading = crate::helpers::station_reading("SECRET1", 1, 4.0);
    let r = client.post(url("/v1/readings")).json(&reading).send().await.unwrap();
    seen.push(r.text().await.unwrap());
    // Failing upstreams have been asked (the keys went out to them, and only to them).
    let asked = failing.received_requests().await.unwrap();
    assert!(asked.iter().any(|r| r.url.query().is_some_and(|q| q.contains(OWM_KEY))), "OpenWeatherMap was polled");
    for path in ["/ready", "/metrics", "/v1/locations/2643743/current"] {
        seen.push(client.get(url(path)).send().await.unwrap().text().await.unwrap());
    }
    let ready: serde_json::Value = serde_json::from_str(&seen[seen.len() - 3]).unwrap();
    let states: Vec<_> =
        ready["dependencies"].as_array().unwrap().iter().map(|d| (d["name"].clone(), d["state"].clone())).collect();
    assert!(states.contains(&(json!("influxdb"), json!("down"))), "{ready}");
    let _ = child.kill();
    let _ = child.wait();
    let log_text: Vec<String> = logs.try_iter().map(|l| l.to_string()).collect();
    for logged in ["cannot reach the weather providers", "backend write failed"] {
        assert!(log_text.iter().any(|l| l.contains(logged)), "the failures were logged: {logged}");
    }
    seen.extend(log_text);
    seen.extend(crate::auth::redis_values(&redis).await);
    for secret in [OWM_KEY, WEATHERAPI_KEY, INFLUX_PASSWORD] {
        let leaks: Vec<&String> = seen.iter().filter(|s| s.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} leaked: {leaks:?}");
    }
}
