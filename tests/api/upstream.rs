//! Upstream providers behind wiremock, serving the real recorded bodies (timestamps
//! shifted to now, OpenWeatherMap converted to the metric units isobar asks for).

use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{TestApp, eventually, spawn_app_with};

pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/upstream/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture exists")).expect("fixture is JSON")
}

/// Moves every timestamp in `body` by the whole hours between `anchor` and now, so the
/// recording reads as current. An observation's anchor is the hour after it, so it lands
/// in the past hour, never ahead of the server's clock (which readings may not be by
/// more than `locations.max_clock_skew_secs`). RFC 3339 strings, Open-Meteo's `YYYY-MM-DDTHH:MM`, and
/// Unix seconds under `dt` are shifted.
pub fn shift_to_now(body: &mut Value, anchor: DateTime<Utc>) {
    let now = Utc::now();
    let hours = (now.with_minute(0).unwrap().with_second(0).unwrap()
        - anchor.with_minute(0).unwrap().with_second(0).unwrap())
    .num_hours();
    shift(body, chrono::Duration::hours(hours), None);
}

fn shift(value: &mut Value, by: chrono::Duration, key: Option<&str>) {
    match value {
        Value::Object(map) => map.iter_mut().for_each(|(k, v)| shift(v, by, Some(k))),
        Value::Array(items) => items.iter_mut().for_each(|v| shift(v, by, key)),
        Value::String(s) => {
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                *s = (t + by).to_rfc3339();
            } else if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M") {
                *s = (t + by).format("%Y-%m-%dT%H:%M").to_string();
            }
        }
        Value::Number(n) if matches!(key, Some("dt")) => {
            if let Some(secs) = n.as_i64() {
                *value = json!(secs + by.num_seconds());
            }
        }
        _ => {}
    }
}

fn kelvin_to_celsius(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if matches!(k.as_str(), "temp" | "feels_like" | "temp_min" | "temp_max") {
                    if let Some(kelvin) = v.as_f64() {
                        *v = json!(((kelvin - 273.15) * 100.0).round() / 100.0);
                    }
                } else {
                    kelvin_to_celsius(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(kelvin_to_celsius),
        _ => {}
    }
}

pub fn open_meteo_body() -> Value {
    let mut body = fixture("open-meteo-forecast.json");
    // Its current time is 10:45.
    shift_to_now(&mut body, "2023-11-13T11:00:00Z".parse().unwrap());
    body
}

pub fn met_body() -> Value {
    let mut body = fixture("met-norway-compact.json");
    shift_to_now(&mut body, "2020-07-20T11:00:00Z".parse().unwrap());
    body
}

pub fn owm_bodies() -> (Value, Value) {
    let mut current = fixture("owm-current.json");
    // Observed at 04:37:45.
    shift_to_now(&mut current, DateTime::from_timestamp(1588048665 + 3600, 0).unwrap());
    kelvin_to_celsius(&mut current);
    let mut forecast = fixture("owm-forecast.json");
    shift_to_now(&mut forecast, DateTime::from_timestamp(1742504400, 0).unwrap());
    kelvin_to_celsius(&mut forecast);
    (current, forecast)
}

/// Open-Meteo answers one result per requested coordinate: an array for several.
pub async fn mount_open_meteo(server: &MockServer) {
    let body = open_meteo_body();
    Mock::given(method("GET"))
        .and(path("/v1/forecast"))
        .respond_with(move |req: &Request| {
            let n = req.url.query_pairs().find(|(k, _)| k == "latitude").map_or(1, |(_, v)| v.split(',').count());
            let payload = if n == 1 { body.clone() } else { Value::Array(vec![body.clone(); n]) };
            ResponseTemplate::new(200).set_body_json(payload).insert_header("cache-control", "max-age=900")
        })
        .mount(server)
        .await;
}

pub async fn mount_met(server: &MockServer, status: u16) {
    let expires = (Utc::now() + chrono::Duration::hours(1)).to_rfc2822().replace("+0000", "GMT");
    Mock::given(method("GET"))
        .and(path("/weatherapi/locationforecast/2.0/compact"))
        .respond_with(
            ResponseTemplate::new(status)
                .set_body_json(met_body())
                .insert_header("expires", expires.as_str())
                .insert_header("last-modified", "Mon, 20 Jul 2020 11:44:31 GMT"),
        )
        .mount(server)
        .await;
}

pub async fn mount_nws(server: &MockServer) {
    let mut observation = fixture("nws-observation-latest.json");
    // Observed at 23:53.
    shift_to_now(&mut observation, "2022-03-03T00:00:00Z".parse().unwrap());
    let mut hourly = fixture("nws-forecast-hourly.json");
    shift_to_now(&mut hourly, "2019-10-15T00:00:00Z".parse().unwrap());
    for (p, body) in [
        ("^/points/.*$", fixture("nws-points.json")),
        ("^/gridpoints/TAE/58,65/stations$", fixture("nws-gridpoint-stations.json")),
        ("^/stations/KCMH/observations/latest$", observation),
        ("^/gridpoints/TAE/58,65/forecast/hourly$", hourly),
    ] {
        Mock::given(method("GET"))
            .and(path_regex(p))
            .respond_with(ResponseTemplate::new(200).set_body_json(body).insert_header("cache-control", "max-age=600"))
            .mount(server)
            .await;
    }
}

pub async fn mount_owm(server: &MockServer) {
    let (current, forecast) = owm_bodies();
    Mock::given(method("GET"))
        .and(path("/data/2.5/weather"))
        .respond_with(ResponseTemplate::new(200).set_body_json(current))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/data/2.5/forecast"))
        .respond_with(ResponseTemplate::new(200).set_body_json(forecast))
        .mount(server)
        .await;
}

/// Provider settings pointing at `server`, fast for tests; `enabled` names the providers on.
pub fn sources(server: &MockServer, enabled: &[&str], extra: Value) -> Value {
    let provider = |name: &str| {
        json!({"enabled": enabled.contains(&name), "base_url": server.uri(), "poll_interval_secs": 1, "timeout_secs": 1,
               "cache_ttl_secs": 60, "rate_limit_per_sec": 1000.0, "max_retries": 1, "backoff_base_ms": 20,
               "circuit_failure_threshold": 50, "circuit_cooldown_secs": 60, "max_retry_after_secs": 5,
               "api_key": if name.starts_with("openweathermap") { "TESTKEY" } else { "" }})
    };
    let mut s = json!({"sources": {"contact": "tests@isobar.invalid", "cold_wait_ms": 3000,
        "open_meteo": provider("open_meteo"), "open_meteo_air_quality": provider("open_meteo_air_quality"),
        "met_norway": provider("met_norway"), "nws": provider("nws"), "openweathermap": provider("openweathermap"),
        "openweathermap_air_pollution": provider("openweathermap_air_pollution")}});
    crate::helpers::merge(&mut s, extra);
    s
}

async fn requests_to(server: &MockServer, prefix: &str) -> usize {
    server.received_requests().await.unwrap_or_default().iter().filter(|r| r.url.path().starts_with(prefix)).count()
}

async fn ready_source(app: &TestApp, name: &str) -> Value {
    let (_, body) = app.get_json("/ready").await;
    body["sources"].as_array().unwrap().iter().find(|s| s["name"] == name).cloned().unwrap_or(Value::Null)
}

#[actix_rt::test]
async fn a_cold_city_gets_multi_source_conditions_on_its_first_request() {
    let server = MockServer::start().await;
    mount_open_meteo(&server).await;
    mount_met(&server, 200).await;
    mount_nws(&server).await;
    mount_owm(&server).await;
    let app = spawn_app_with(sources(&server, &["open_meteo", "met_norway", "nws", "openweathermap"], json!({}))).await;

    let started = Instant::now();
    let (status, body) = app.get_json("/v1/locations/5128581/current").await;
    let cold = started.elapsed();
    println!("cold-location latency against wiremock: {} ms", cold.as_millis());
    assert_eq!(status, 200, "{body}");
    assert!(cold < Duration::from_secs(3));
    // The first provider to answer already gives data; wait for all four.
    assert!(
        eventually(5, || async { app.get_json("/v1/locations/5128581/current").await.1["sources_count"] == 4 }).await
    );
    let (_, body) = app.get_json("/v1/locations/5128581/current").await;
    let names: Vec<_> = body["sources"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["met-norway", "nws", "open-meteo", "openweathermap"]);
    let temps: Vec<_> = body["sources"].as_array().unwrap().iter().map(|s| s["temperature"].clone()).collect();
    // MET 26.5 °C, NWS 22.8 °C, Open-Meteo reports no temperature, OWM 282.08 K = 8.93 °C.
    assert_eq!(temps, [json!(26.5), json!(22.8), json!(null), json!(8.93)]);
    assert_eq!(body["stale"], false);
    assert!(body["weather_code"].is_u64());
    assert_eq!(app.get("/v1/locations/5128581/current").await.status(), 200);
}

#[actix_rt::test]
async fn the_forecast_blends_providers_with_their_spread() {
    let server = MockServer::start().await;
    mount_met(&server, 200).await;
    mount_owm(&server).await;
    let app = spawn_app_with(sources(&server, &["met_norway", "openweathermap"], json!({}))).await;
    let (status, _) = app.get_json("/v1/locations/2643743/forecast?hours=240").await;
    assert_eq!(status, 200);
    assert!(
        eventually(5, || async {
            app.get_json("/v1/locations/2643743/forecast?hours=240").await.1["sources"].as_array().map(Vec::len)
                == Some(2)
        })
        .await
    );
    let (_, f) = app.get_json("/v1/locations/2643743/forecast?hours=240").await;
    assert_eq!(f["units"], "metric");
    assert_eq!(f["location"]["name"], "London");
    let hourly = f["hourly"].as_array().unwrap();
    assert!(!hourly.is_empty() && hourly.len() <= 240);
    // Where both providers cover an hour, the blend is their mean and spread their std.
    let both = hourly.iter().find(|h| h["spread"]["temperature"].is_number()).expect("an hour both cover");
    let time = both["time"].as_str().unwrap();
    let of = |name: &str| {
        f["sources"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["hourly"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["time"] == time)
            .unwrap()["temperature"]
            .as_f64()
            .unwrap()
    };
    let (a, b) = (of("met-norway"), of("openweathermap"));
    assert_eq!(both["temperature"].as_f64().unwrap(), ((a + b) / 2.0 * 100.0).round() / 100.0);
    assert_eq!(both["spread"]["temperature"].as_f64().unwrap(), ((a - b).abs() / 2.0 * 100.0).round() / 100.0);

    let (_, f24) = app.get_json("/v1/locations/2643743/forecast?hours=24&units=imperial").await;
    assert!(f24["hourly"].as_array().unwrap().len() <= 24);
    assert_eq!(f24["units"], "imperial");
    for bad in ["0", "241", "two"] {
        let (status, body) = app.get_json(&format!("/v1/locations/2643743/forecast?hours={bad}")).await;
        assert_eq!(
            (status, body["detail"].as_str().unwrap()),
            (400, "invalid hours: must be an integer from 1 to 240")
        );
    }
}

#[actix_rt::test]
async fn websocket_subscribers_get_a_forecast_message_when_the_blend_changes() {
    let server = MockServer::start().await;
    mount_met(&server, 200).await;
    let app = spawn_app_with(sources(&server, &["met_norway"], json!({}))).await;
    let mut ws = app.ws("/ws/weather/2643743").await;
    assert_eq!(crate::helpers::next_json(&mut ws).await["type"], "snapshot");
    let mut got_forecast = false;
    for _ in 0..4 {
        let m = crate::helpers::next_json(&mut ws).await;
        if m["type"] == "forecast" {
            assert_eq!(m["location_id"], "2643743");
            assert_eq!(m["data"]["sources"][0]["name"], "met-norway");
            assert!(m["data"]["hourly"].as_array().unwrap().len() <= 48);
            got_forecast = true;
            break;
        }
    }
    assert!(got_forecast);
}

#[actix_rt::test]
async fn upstream_calls_do_not_grow_with_client_traffic() {
    let server = MockServer::start().await;
    mount_open_meteo(&server).await;
    mount_met(&server, 200).await;
    let app =
        spawn_app_with(sources(&server, &["open_meteo", "met_norway"], json!({"sources": {"cold_wait_ms": 5000}})))
            .await;
    let (_, found) = app.get_json("/v1/locations?q=a&limit=50").await;
    let ids: Vec<String> =
        found["locations"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 50);

    // 2,000 requests: the 50 first ones at once (cold), then 1,950 more.
    let urls: Vec<String> = ids.iter().map(|id| format!("/v1/locations/{id}/current")).collect();
    let first = futures_util::future::join_all(urls.iter().map(|u| app.get(u))).await;
    assert!(first.iter().all(|r| r.status() == 200));
    for i in 0..1950 {
        let r = app.get(&format!("/v1/locations/{}/current", ids[i % 50])).await;
        assert_eq!(r.status(), 200);
    }
    let open_meteo = requests_to(&server, "/v1/forecast").await;
    let met = requests_to(&server, "/weatherapi/").await;
    let total = open_meteo + met;
    println!(
        "upstream calls for 2000 client requests over 50 locations: open-meteo {open_meteo} (batched), met-norway {met}, total {total}: {:.2}% of client requests, {:.1}% fewer",
        total as f64 / 20.0,
        100.0 - total as f64 / 20.0
    );
    // Open-Meteo batches up to 50 locations per request; MET Norway takes one per location.
    assert!(open_meteo <= 2, "open-meteo {open_meteo}");
    assert_eq!(met, 50);
    assert!(total * 20 <= 2000, "more than 5 % upstream calls");
}

#[actix_rt::test]
async fn a_failing_provider_leaves_the_last_good_data_marked_stale_and_recovery_clears_it() {
    let server = MockServer::start().await;
    mount_met(&server, 200).await;
    // No Expires: responses expire at once, so every poll (1 s) asks again.
    let app =
        spawn_app_with(sources(&server, &["met_norway"], json!({"sources": {"met_norway": {"cache_ttl_secs": 0}}})))
            .await;
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/weatherapi/locationforecast/2.0/compact"))
        .respond_with(ResponseTemplate::new(200).set_body_json(met_body()))
        .mount(&server)
        .await;
    let (status, good) = app.get_json("/v1/locations/2643743/current").await;
    assert_eq!((status, &good["stale"]), (200, &json!(false)));
    for failure in [500, 502, 503] {
        server.reset().await;
        Mock::given(method("GET")).respond_with(ResponseTemplate::new(failure)).mount(&server).await;
        assert!(
            eventually(5, || async { app.get_json("/v1/locations/2643743/current").await.1["stale"] == true }).await,
            "not marked stale after HTTP {failure}"
        );
        let (status, body) = app.get_json("/v1/locations/2643743/current").await;
        assert_eq!(status, 200);
        assert_eq!(body["temperature"], good["temperature"], "the last good value is kept");
        assert_eq!(ready_source(&app, "met-norway").await["state"], "failing");
        server.reset().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(met_body()))
            .mount(&server)
            .await;
        assert!(
            eventually(5, || async { app.get_json("/v1/locations/2643743/current").await.1["stale"] == false }).await,
            "did not recover after HTTP {failure}"
        );
    }
    assert!(
        app.metric("isobar_upstream_requests_total{outcome=\"unavailable\",provider=\"met-norway\"}").await.unwrap()
            >= 3.0
    );
}

#[actix_rt::test]
async fn a_location_that_never_had_data_is_a_503_with_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    let app = spawn_app_with(sources(&server, &["met_norway"], json!({"sources": {"cold_wait_ms": 500}}))).await;
    let r = app.get("/v1/locations/2643743/current").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["detail"],
        "no current conditions for location 2643743 yet: the providers have not answered within 500 ms; retry shortly"
    );
    let r = app.get("/v1/locations/2643743/forecast").await;
    assert_eq!(r.status(), 503);
}

#[actix_rt::test]
async fn rate_limiting_with_retry_after_is_honoured() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_met(&server, 200).await;
    let app = spawn_app_with(sources(&server, &["met_norway"], json!({}))).await;
    let (status, _) = app.get_json("/v1/locations/2643743/current").await;
    assert_eq!(status, 200);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        app.metric("isobar_upstream_requests_total{outcome=\"rate_limited\",provider=\"met-norway\"}").await,
        Some(1.0)
    );
}

#[actix_rt::test]
async fn rate_limiting_without_retry_after_backs_off_and_retries() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(429)).up_to_n_times(1).mount(&server).await;
    mount_met(&server, 200).await;
    let app = spawn_app_with(sources(&server, &["met_norway"], json!({}))).await;
    assert_eq!(app.get("/v1/locations/2643743/current").await.status(), 200);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[actix_rt::test]
async fn a_response_that_never_completes_times_out_and_others_go_on() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/weatherapi/locationforecast/2.0/compact"))
        .respond_with(ResponseTemplate::new(200).set_body_json(met_body()).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    mount_open_meteo(&server).await;
    let app = spawn_app_with(sources(&server, &["met_norway", "open_meteo"], json!({}))).await;
    let started = Instant::now();
    let (status, body) = app.get_json("/v1/locations/2643743/current").await;
    assert_eq!(status, 200);
    assert_eq!(body["sources"][0]["name"], "open-meteo", "the slow provider did not hold back the fast one");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        eventually(6, || async {
            ready_source(&app, "met-norway").await["detail"].as_str().is_some_and(|d| d.contains("timed out"))
        })
        .await
    );
}

#[actix_rt::test]
async fn truncated_malformed_and_all_null_bodies_give_no_data_and_no_crash() {
    for body in [
        r#"{"type":"Feature","properties":{"timeseries":[{"time":"#.to_owned(),
        "<html>Bad gateway</html>".to_owned(),
        json!({"type": "Feature", "properties": {"meta": null, "timeseries": [
            {"time": Utc::now().to_rfc3339(), "data": {"instant": {"details": {"air_temperature": null, "relative_humidity": null}}}}]}})
        .to_string(),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_string(body.clone())).mount(&server).await;
        let app = spawn_app_with(sources(&server, &["met_norway"], json!({"sources": {"cold_wait_ms": 1500}}))).await;
        let (status, problem) = app.get_json("/v1/locations/2643743/current").await;
        assert_eq!(status, 503, "{body}: {problem}");
        assert_eq!(app.get("/health").await.status(), 200);
    }
}

#[actix_rt::test]
async fn nws_404_for_a_point_outside_coverage_stops_asking_and_others_serve() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex("^/points/.*$"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"type": "https://api.weather.gov/problems/InvalidPoint", "title": "Invalid Point", "status": 404}),
        ))
        .mount(&server)
        .await;
    mount_open_meteo(&server).await;
    let app = spawn_app_with(sources(&server, &["nws", "open_meteo"], json!({}))).await;
    assert_eq!(app.get("/v1/locations/5128581/current").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(requests_to(&server, "/points/").await, 1);
    // A non-US city is never sent to NWS at all.
    assert_eq!(app.get("/v1/locations/2643743/current").await.status(), 200);
    assert_eq!(requests_to(&server, "/points/").await, 1);
}

#[actix_rt::test]
async fn met_norway_203_deprecated_data_is_still_used() {
    let server = MockServer::start().await;
    mount_met(&server, 203).await;
    let app = spawn_app_with(sources(&server, &["met_norway"], json!({}))).await;
    let (status, body) = app.get_json("/v1/locations/2643743/current").await;
    assert_eq!(status, 200);
    assert_eq!(body["temperature"], 26.5);
}

#[actix_rt::test]
async fn met_norway_403_switches_it_off_naming_the_setting_while_others_go_on() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/weatherapi/locationforecast/2.0/compact"))
        .respond_with(ResponseTemplate::new(403).set_body_string("Forbidden"))
        .mount(&server)
        .await;
    mount_open_meteo(&server).await;
    let app = spawn_app_with(sources(&server, &["met_norway", "open_meteo"], json!({}))).await;
    assert_eq!(app.get("/v1/locations/2643743/current").await.status(), 200);
    assert!(eventually(3, || async { ready_source(&app, "met-norway").await["state"] == "disabled" }).await);
    let met = ready_source(&app, "met-norway").await;
    assert_eq!(
        met["detail"],
        "MET Norway refused the User-Agent (HTTP 403): set sources.contact (ISOBAR__SOURCES__CONTACT) to your e-mail or URL so requests identify you"
    );
    assert_eq!(ready_source(&app, "open-meteo").await["state"], "up");
    let (status, _) = app.get_json("/ready").await;
    assert_eq!(status, 200);
}

#[actix_rt::test]
async fn met_norway_without_a_contact_does_not_start() {
    let server = MockServer::start().await;
    mount_met(&server, 200).await;
    let app =
        spawn_app_with(sources(&server, &["met_norway"], json!({"sources": {"contact": "", "cold_wait_ms": 300}})))
            .await;
    assert_eq!(app.get("/v1/locations/2643743/current").await.status(), 503);
    assert_eq!(
        ready_source(&app, "met-norway").await,
        json!({"name": "met-norway", "state": "disabled", "locations": 0,
               "detail": "MET Norway requires a contact in the User-Agent: set sources.contact (ISOBAR__SOURCES__CONTACT) to your e-mail or URL"})
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

#[actix_rt::test]
async fn openweathermap_401_disables_it_with_a_clear_reason_and_others_go_on() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/data/2.5/weather"))
        .respond_with(ResponseTemplate::new(401).set_body_json(fixture("owm-error-401.json")))
        .mount(&server)
        .await;
    mount_met(&server, 200).await;
    let app = spawn_app_with(sources(&server, &["openweathermap", "met_norway"], json!({}))).await;
    let (status, body) = app.get_json("/v1/locations/2643743/current").await;
    assert_eq!(status, 200);
    assert!(eventually(3, || async { ready_source(&app, "openweathermap").await["state"] == "disabled" }).await);
    assert_eq!(
        ready_source(&app, "openweathermap").await["detail"],
        "OpenWeatherMap rejected the API key (HTTP 401): check sources.openweathermap.api_key (a new key can take a while to activate)"
    );
    assert_eq!(body["sources"][0]["name"], "met-norway");
    let before = requests_to(&server, "/data/").await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(requests_to(&server, "/data/").await, before, "a disabled provider is not called again");
}

#[actix_rt::test]
async fn repeated_failures_open_the_circuit() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(500)).mount(&server).await;
    let extra = json!({"sources": {"cold_wait_ms": 300, "met_norway": {"circuit_failure_threshold": 2, "max_retries": 0, "cache_ttl_secs": 0}}});
    let app = spawn_app_with(sources(&server, &["met_norway"], extra)).await;
    app.get("/v1/locations/2643743/current").await;
    assert!(
        eventually(5, || async {
            app.metric("isobar_upstream_circuit_open{provider=\"met-norway\"}").await == Some(1.0)
        })
        .await
    );
    assert_eq!(ready_source(&app, "met-norway").await["state"], "circuit_open");
    let calls = server.received_requests().await.unwrap().len();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(server.received_requests().await.unwrap().len(), calls, "an open circuit makes no calls");
    assert!(
        app.metric("isobar_upstream_requests_total{outcome=\"circuit_open\",provider=\"met-norway\"}").await.unwrap()
            >= 1.0
    );
}

#[actix_rt::test]
async fn an_expired_met_response_is_revalidated_with_if_modified_since() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        // The stored Last-Modified, sent back unchanged (wiremock's header matcher splits on commas).
        .and(|req: &Request| {
            req.headers.get("if-modified-since").is_some_and(|v| v.as_bytes() == b"Mon, 20 Jul 2020 11:44:31 GMT")
        })
        .respond_with(ResponseTemplate::new(304).insert_header("expires", "Mon, 20 Jul 2020 12:14:53 GMT"))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(met_body())
                .insert_header("last-modified", "Mon, 20 Jul 2020 11:44:31 GMT")
                .insert_header("expires", "Mon, 20 Jul 2020 12:14:53 GMT"),
        )
        .mount(&server)
        .await;
    let app = spawn_app_with(sources(&server, &["met_norway"], json!({}))).await;
    assert_eq!(app.get("/v1/locations/2643743/current").await.status(), 200);
    assert!(
        eventually(5, || async {
            app.metric("isobar_upstream_requests_total{outcome=\"not_modified\",provider=\"met-norway\"}").await
                >= Some(1.0)
        })
        .await
    );
    let (_, body) = app.get_json("/v1/locations/2643743/current").await;
    assert_eq!((body["temperature"].clone(), body["stale"].clone()), (json!(26.5), json!(false)));
}

/// The `lat`/`lon` query of each MET Norway request received after `since`.
async fn met_queries(server: &MockServer, skip: usize) -> Vec<String> {
    let requests = server.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .filter(|r| r.url.path().starts_with("/weatherapi/"))
        .skip(skip)
        .map(|r| {
            let mut pairs: Vec<String> = r
                .url
                .query_pairs()
                .filter(|(k, _)| k == "lat" || k == "lon")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            pairs.sort();
            pairs.join("&")
        })
        .collect()
}

#[actix_rt::test]
async fn only_the_most_recently_asked_for_locations_are_polled() {
    let server = MockServer::start().await;
    // Fresh for no time: every location is due again at each poll interval (1 s).
    Mock::given(method("GET"))
        .and(path("/weatherapi/locationforecast/2.0/compact"))
        .respond_with(ResponseTemplate::new(200).set_body_json(met_body()).insert_header("cache-control", "max-age=0"))
        .mount(&server)
        .await;
    let app = spawn_app_with(sources(&server, &["met_norway"], json!({"sources": {"max_active_locations": 2}}))).await;
    // London first, then Paris and Berlin: three locations, two may be polled.
    for id in ["2643743", "2988507", "2950159"] {
        assert_eq!(app.get_json(&format!("/v1/locations/{id}/current")).await.0, 200, "{id}");
    }
    let london = met_queries(&server, 0).await.first().cloned().expect("London was fetched first");
    // Paris and Berlin go on being asked for; London is not.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = met_queries(&server, 0).await.len();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for id in ["2988507", "2950159"] {
            assert_eq!(app.get_json(&format!("/v1/locations/{id}/current")).await.0, 200);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let polled = met_queries(&server, before).await;
    let distinct: std::collections::BTreeSet<&String> = polled.iter().collect();
    println!("polled in 3 s with max_active_locations = 2: {polled:?}");
    assert_eq!(distinct.len(), 2, "two locations polled: {distinct:?}");
    assert!(!distinct.contains(&london), "London, not asked for since, rests");
    assert!(polled.len() >= 4, "each of the two at every interval: {polled:?}");
    // Asked for again, London is polled again (and another rests).
    let skip = met_queries(&server, 0).await.len();
    assert_eq!(app.get_json("/v1/locations/2643743/current").await.0, 200);
    let back = eventually(4, || async { met_queries(&server, skip).await.contains(&london) }).await;
    assert!(back, "London is polled once it is asked for");
}
