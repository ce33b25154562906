//! The fifth provider (WeatherAPI.com, behind wiremock with its real recorded body) and
//! the later quantities (`uv_index`, `cloud_cover`, the pollutants) through every public
//! surface.

use chrono::DurationRound;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    TestApp, clear_of_the_hour, eventually, next_json, send_json, spawn_app, spawn_app_with, station_reading,
};
use crate::upstream::{fixture, sources};

/// The recorded body, observed ten minutes ago.
fn weatherapi_body() -> Value {
    let mut body = fixture("weatherapi-current.json");
    body["current"]["last_updated_epoch"] = json!(chrono::Utc::now().timestamp() - 600);
    body
}

async fn spawn_with_weatherapi(server: &MockServer) -> TestApp {
    let weatherapi = json!({"enabled": true, "base_url": server.uri(), "poll_interval_secs": 1, "timeout_secs": 1,
        "cache_ttl_secs": 60, "rate_limit_per_sec": 1000.0, "max_retries": 0, "backoff_base_ms": 20,
        "circuit_failure_threshold": 50, "circuit_cooldown_secs": 60, "max_retry_after_secs": 5, "api_key": "WAKEY"});
    spawn_app_with(sources(server, &[], json!({"sources": {"weatherapi": weatherapi}}))).await
}

#[actix_rt::test]
async fn weatherapi_conditions_reach_current_with_uv_index_and_cloud_cover() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/current.json"))
        .and(query_param("key", "WAKEY"))
        .and(query_param("q", "51.5085,-0.1257"))
        .respond_with(ResponseTemplate::new(200).set_body_json(weatherapi_body()))
        .mount(&server)
        .await;
    let app = spawn_with_weatherapi(&server).await;

    let (status, body) = app.get_json("/v1/locations/2643743/current").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sources"][0]["name"], "weatherapi");
    // 9.0 °C, 87 %, 997 hPa, 11.2 km/h = 3.11 m/s, 180°, 10 km, 0 mm, UV 1, 75 % cloud,
    // condition 1189 "Moderate rain" = WMO 63.
    let values: Vec<Value> = ["temperature", "humidity", "pressure", "wind_speed", "wind_direction", "visibility"]
        .iter()
        .chain(&["precipitation", "uv_index", "cloud_cover", "weather_code", "description"])
        .map(|k| body[*k].clone())
        .collect();
    assert_eq!(
        values,
        [
            json!(9.0),
            json!(87.0),
            json!(997.0),
            json!(3.11),
            json!(180.0),
            json!(10.0),
            json!(0.0),
            json!(1.0),
            json!(75.0),
            json!(63),
            json!("Moderate rain")
        ]
    );
    let (_, imperial) = app.get_json("/v1/locations/2643743/current?units=imperial").await;
    assert_eq!((imperial["temperature"].clone(), imperial["uv_index"].clone()), (json!(48.2), json!(1.0)));
    assert_eq!(imperial["cloud_cover"], 75.0);

    let (_, history) = app.get_json("/v1/locations/2643743/history").await;
    let reading = &history["readings"][0];
    assert_eq!((reading["source"].clone(), reading["uv_index"].clone()), (json!("weatherapi"), json!(1.0)));
    let (_, ready) = app.get_json("/ready").await;
    assert_eq!(ready["sources"], json!([{"name": "weatherapi", "state": "up", "locations": 1}]));
}

#[actix_rt::test]
async fn a_refused_weatherapi_key_switches_the_provider_off_saying_which_setting() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/current.json"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"code": 2006, "message": "API key provided is invalid"}})),
        )
        .mount(&server)
        .await;
    let app = spawn_with_weatherapi(&server).await;
    let (status, _) = app.get_json("/v1/locations/2643743/current").await;
    assert_eq!(status, 503);
    assert!(
        eventually(3, || async {
            let (_, ready) = app.get_json("/ready").await;
            ready["sources"][0]["state"] == "disabled"
        })
        .await
    );
    let (_, ready) = app.get_json("/ready").await;
    let detail = ready["sources"][0]["detail"].as_str().unwrap();
    assert!(detail.starts_with("WeatherAPI refused the API key: check sources.weatherapi.api_key"), "{detail}");
}

#[actix_rt::test]
async fn stations_may_send_the_later_quantities_and_v1_documents_stay_without_them() {
    let app = spawn_app().await;
    let mut reading = station_reading("UVC1", 5, 21.0);
    reading["uv_index"] = json!(6.5);
    reading["cloud_cover"] = json!(20);
    let (status, body) = app.post_readings(&reading).await;
    assert_eq!((status, body), (202, json!({"accepted": 1, "rejected": []})));
    let (_, current) = app.get_json("/v1/locations/UVC1/current").await;
    assert_eq!((current["uv_index"].clone(), current["cloud_cover"].clone()), (json!(6.5), json!(20.0)));

    // A station that reports neither gets a document with neither field (as in v1).
    app.post_readings(&station_reading("PLAIN1", 5, 21.0)).await;
    let (_, plain) = app.get_json("/v1/locations/PLAIN1/current").await;
    assert!(plain.get("uv_index").is_none() && plain.get("cloud_cover").is_none(), "{plain}");
    assert_eq!(plain["precipitation"], 0.0);

    let mut bad = station_reading("UVC1", 4, 21.0);
    bad["uv_index"] = json!(25);
    bad["cloud_cover"] = json!(-1);
    let (status, body) = app.post_readings(&bad).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["errors"],
        json!([{"field": "uv_index", "message": "must be between 0 and 20"},
               {"field": "cloud_cover", "message": "must be between 0 and 100"}])
    );
}

#[actix_rt::test]
async fn the_openapi_schema_of_the_quantities_comes_from_the_table() {
    let app = spawn_app().await;
    let (_, doc) = app.get_json("/api/openapi.json").await;
    let quantities = &doc["components"]["schemas"]["Quantities"];
    let names: Vec<&str> = quantities["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "cloud_cover",
            "co",
            "humidity",
            "no2",
            "o3",
            "pm10",
            "pm2_5",
            "precipitation",
            "pressure",
            "so2",
            "temperature",
            "uv_index",
            "visibility",
            "wind_direction",
            "wind_speed"
        ]
    );
    assert_eq!(
        quantities["required"],
        json!(["temperature", "humidity", "pressure", "wind_speed", "wind_direction", "visibility", "precipitation"])
    );
    assert_eq!(
        quantities["properties"]["uv_index"]["description"],
        "UV index (WHO scale, 0 at night); null when no source reports it; present only when a source reports it"
    );
}

#[actix_rt::test]
async fn a_station_posts_pollutants_in_micrograms_and_reads_them_back_in_current_and_history() {
    let app = spawn_app().await;
    let mut reading = station_reading("AIR1", 5, 21.0);
    for (name, value) in [("pm2_5", 35.9), ("pm10", 80.0), ("o3", 137.4), ("no2", 40.0), ("so2", 5.0), ("co", 300.0)] {
        reading[name] = json!(value);
    }
    let (status, body) = app.post_readings(&reading).await;
    assert_eq!((status, body), (202, json!({"accepted": 1, "rejected": []})));
    let (_, current) = app.get_json("/v1/locations/AIR1/current").await;
    let shown: Vec<Value> = ["pm2_5", "pm10", "o3", "no2", "so2", "co"].iter().map(|n| current[n].clone()).collect();
    assert_eq!(shown, [json!(35.9), json!(80.0), json!(137.4), json!(40.0), json!(5.0), json!(300.0)]);
    // Imperial leaves concentrations as they are.
    let (_, imperial) = app.get_json("/v1/locations/AIR1/current?units=imperial").await;
    assert_eq!(imperial["pm2_5"], 35.9);
    let (_, history) = app.get_json("/v1/locations/AIR1/history").await;
    assert_eq!(history["readings"][0]["pm2_5"], 35.9, "{history}");
    // A station that sends none has none in its documents.
    app.post_readings(&station_reading("AIR2", 5, 21.0)).await;
    let (_, plain) = app.get_json("/v1/locations/AIR2/current").await;
    assert!(plain.get("pm2_5").is_none() && plain.get("co").is_none(), "{plain}");

    let mut bad = station_reading("AIR1", 4, 21.0);
    bad["pm2_5"] = json!(-1);
    bad["co"] = json!(200_000);
    let (status, body) = app.post_readings(&bad).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["errors"],
        json!([{"field": "pm2_5", "message": "must be between 0 and 5000"},
               {"field": "co", "message": "must be between 0 and 100000"}])
    );
}

#[actix_rt::test]
async fn air_quality_is_the_us_aqi_of_a_stations_recent_pollutant_hours() {
    clear_of_the_hour().await;
    let app = spawn_app().await;
    let hour = chrono::Utc::now().duration_trunc(chrono::Duration::hours(1)).unwrap();
    // Ozone at 137.4 µg/m³ (0.06999 ppm, truncated to 0.069) for 8 hours; PM2.5 rising
    // over the last three: 10, 20, 40.
    let readings: Vec<Value> = (0..8)
        .map(|k| {
            let at = hour - chrono::Duration::hours(k);
            let mut r = json!({"location_id": "AQ1", "source": "station", "latitude": 40.7, "longitude": -74.0,
                "observed_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "o3": 137.4});
            if k < 3 {
                r["pm2_5"] = json!([40.0, 20.0, 10.0][k as usize]);
            }
            r
        })
        .rev()
        .collect();
    let (status, body) = app.post_readings(&json!(readings)).await;
    assert_eq!(status, 202, "{body}");
    let (status, aq) = app.get_json("/v1/locations/AQ1/air-quality").await;
    assert_eq!(status, 200, "{aq}");
    // NowCast of 40, 20, 10: weight factor 1 − 30/40 → 0.5; (40 + 10 + 2.5) / 1.75 = 30.0,
    // AQI 49 × 209 / 263 + 51 = 89.9 → 90. Ozone 8-hour 0.069 ppm: 49 × 14 / 15 + 51 → 97.
    // The European index of the newest hour: PM2.5 40 µg/m³ is moderate, ozone 137.4 poor.
    let at = hour.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        aq,
        json!({"aqi": 97, "category": "moderate", "category_name": "Moderate", "colour": "#FFFF00",
            "dominant": "o3", "hour": at,
            "pollutants": [
                {"pollutant": "pm2_5", "concentration": 40.0, "averaged": 30.0, "unit": "µg/m³",
                 "averaging": "nowcast", "aqi": 90, "category": "moderate", "beyond_index": false},
                {"pollutant": "o3", "concentration": 137.4, "averaged": 0.069, "unit": "ppm",
                 "averaging": "8h", "aqi": 97, "category": "moderate", "beyond_index": false}],
            "day": [],
            "advice": {
                "message": "Air quality is acceptable. However, there may be a risk for some people, particularly those who are unusually sensitive to air pollution.",
                "sensitive_groups": ["people with lung disease", "children", "older adults",
                    "people who are active outdoors (including outdoor workers)",
                    "people with certain genetic variants", "people with diets limited in certain nutrients"],
                "health_effects": "Unusually sensitive individuals may experience respiratory symptoms.",
                "cautionary_statement": "Unusually sensitive people should consider reducing prolonged or heavy outdoor exertion.",
                "for_sensitive_groups": "Unusually sensitive people should consider reducing prolonged or heavy outdoor exertion.",
                "for_everyone": null},
            "european": {"level": "poor", "level_name": "Poor", "colour": "#FF5050", "dominant": "o3",
                "pollutants": [{"pollutant": "pm2_5", "concentration": 40.0, "level": "moderate"},
                               {"pollutant": "o3", "concentration": 137.4, "level": "poor"}]},
            "sources": [{"source": "station", "observed_at": at, "pm2_5": 40.0, "o3": 137.4}]})
    );
    // A forecast needs providers that forecast pollutants: none here.
    let (status, aq) = app.get_json("/v1/locations/AQ1/air-quality?hours=6").await;
    assert_eq!((status, &aq["forecast"]), (200, &json!([])));
    for bad in ["0", "49", "x"] {
        let (status, problem) = app.get_json(&format!("/v1/locations/AQ1/air-quality?hours={bad}")).await;
        assert_eq!(
            (status, problem["errors"].clone()),
            (400, json!([{"field": "hours", "message": "must be an integer from 1 to 48"}]))
        );
    }
    app.post_readings(&station_reading("AQ2", 5, 21.0)).await;
    let (status, problem) = app.get_json("/v1/locations/AQ2/air-quality").await;
    assert_eq!(
        (status, problem["detail"].as_str().unwrap()),
        (404, "no air quality for location AQ2: no source reported pollutants there in the last 24 hours")
    );
}

#[actix_rt::test]
async fn a_station_posting_twelve_hours_of_pm2_5_sees_the_nowcast_aqi_its_category_and_epas_advice() {
    clear_of_the_hour().await;
    let app = spawn_app().await;
    let hour = chrono::Utc::now().duration_trunc(chrono::Duration::hours(1)).unwrap();
    // Newest first: 60, 50, then ten hours of 40 µg/m³.
    let values = [60.0, 50.0, 40.0, 40.0, 40.0, 40.0, 40.0, 40.0, 40.0, 40.0, 40.0, 40.0];
    let readings: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(k, value)| {
            let at = hour - chrono::Duration::hours(k as i64);
            json!({"location_id": "AQ4", "source": "station", "latitude": 40.7, "longitude": -74.0,
                "observed_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "pm2_5": value})
        })
        .collect();
    let (status, body) = app.post_readings(&json!(readings)).await;
    assert_eq!(status, 202, "{body}");
    let (status, aq) = app.get_json("/v1/locations/AQ4/air-quality").await;
    assert_eq!(status, 200, "{aq}");
    // Weight factor 1 − (60 − 40) / 60 = 2/3; the weighted mean of the twelve hours is
    // 48.96, truncated to 48.9: AQI 49 × (489 − 355) / (554 − 355) + 101 = 134.0 → 134.
    assert_eq!(
        (&aq["aqi"], &aq["category"], &aq["category_name"], &aq["colour"], &aq["dominant"]),
        (
            &json!(134),
            &json!("unhealthy_for_sensitive_groups"),
            &json!("Unhealthy for Sensitive Groups"),
            &json!("#FF7E00"),
            &json!("pm2_5")
        )
    );
    assert_eq!(
        aq["pollutants"],
        json!([{"pollutant": "pm2_5", "concentration": 60.0, "averaged": 48.9, "unit": "µg/m³",
            "averaging": "nowcast", "aqi": 134, "category": "unhealthy_for_sensitive_groups", "beyond_index": false}])
    );
    assert_eq!(
        aq["advice"],
        json!({
            "message": "Members of sensitive groups may experience health effects. The general public is less likely to be affected.",
            "sensitive_groups": ["people with heart or lung disease", "older adults", "children",
                "people of lower socioeconomic status"],
            "health_effects": "Increasing likelihood of respiratory symptoms in sensitive groups including older adults, children, and people of lower socioeconomic status; aggravation of heart or lung disease and premature mortality in people with heart or lung disease.",
            "cautionary_statement": "People with heart or lung disease, older adults, children, and people of lower socioeconomic status should reduce prolonged or heavy exertion.",
            "for_sensitive_groups": "People with heart or lung disease, older adults, children, and people of lower socioeconomic status should reduce prolonged or heavy exertion.",
            "for_everyone": null})
    );
    // 60 µg/m³ in the newest hour is "poor" on the European scale.
    assert_eq!((&aq["european"]["level"], &aq["european"]["dominant"]), (&json!("poor"), &json!("pm2_5")));
}

#[actix_rt::test]
async fn a_websocket_subscriber_gets_the_air_quality_when_a_new_hour_or_category_comes() {
    clear_of_the_hour().await;
    let app = spawn_app().await;
    let hour = chrono::Utc::now().duration_trunc(chrono::Duration::hours(1)).unwrap();
    let pm = |k: i64, value: f64| {
        let at = hour - chrono::Duration::hours(k);
        json!({"location_id": "AQ3", "source": "station", "latitude": 40.7, "longitude": -74.0,
            "observed_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "pm2_5": value})
    };
    let (status, _) = app.post_readings(&pm(2, 5.0)).await;
    assert_eq!(status, 202);
    let mut ws = app.ws("/v1/ws").await;
    send_json(&mut ws, json!({"type": "subscribe", "locations": ["AQ3"]})).await;
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    let mut next_air_quality = async || loop {
        let message = next_json(&mut ws).await;
        if message["type"] == "air_quality" {
            return message;
        }
    };
    // Two hours of 5 µg/m³: a NowCast of 5.0, AQI 50 × 5 / 9 = 27.8 → 28, good.
    app.post_readings(&pm(1, 5.0)).await;
    let first = next_air_quality().await;
    assert_eq!(first["location_id"], "AQ3");
    let data = &first["data"];
    assert_eq!((&data["aqi"], &data["category"], &data["dominant"]), (&json!(28), &json!("good"), &json!("pm2_5")));
    // Then 40: weight factor 0.5, (40 + 2.5 + 1.25) / 1.75 = 25.0 → 49 × 159 / 263 + 51 = 80.6 → 81.
    app.post_readings(&pm(0, 40.0)).await;
    let second = next_air_quality().await;
    let data = &second["data"];
    assert_eq!((&data["aqi"], &data["category"], &data["colour"]), (&json!(81), &json!("moderate"), &json!("#FFFF00")));
    assert_eq!(app.get_json("/v1/locations/AQ3/air-quality").await.1, *data);
    assert_eq!(app.metric(r#"isobar_air_quality_updates_total{category="moderate"}"#).await, Some(1.0));
    // /current carries the summary.
    let (_, current) = app.get_json("/v1/locations/AQ3/current").await;
    assert_eq!(
        current["air_quality"],
        json!({"aqi": 81, "category": "moderate", "dominant": "pm2_5",
            "hour": hour.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)})
    );
}

#[actix_rt::test]
async fn open_meteo_air_quality_brings_a_citys_pollutants_to_current() {
    let server = MockServer::start().await;
    // The recorded body (Berlin, ozone 82 µg/m³), moved to the hour just past.
    let mut body = fixture("open-meteo-air-quality-current.json");
    let recorded: chrono::DateTime<chrono::Utc> = "2021-11-25T00:00:00Z".parse().unwrap();
    crate::upstream::shift_to_now(&mut body, recorded);
    Mock::given(method("GET"))
        .and(path("/v1/air-quality"))
        .and(query_param(
            "current",
            "pm2_5,pm10,ozone,nitrogen_dioxide,sulphur_dioxide,carbon_monoxide,us_aqi,european_aqi",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let app = spawn_app_with(sources(&server, &["open_meteo_air_quality"], json!({}))).await;
    let (status, current) = app.get_json("/v1/locations/2950159/current").await;
    assert_eq!(status, 200, "{current}");
    assert_eq!(current["o3"], 82.0);
    assert_eq!(current["sources"][0]["name"], "open-meteo-air-quality");
    assert!(current.get("pm2_5").is_none(), "the recording has ozone only");
    // One hour of ozone is not enough for its 8-hour index, and the answer says so.
    let (status, problem) = app.get_json("/v1/locations/2950159/air-quality").await;
    assert_eq!(status, 404);
    assert!(problem["detail"].as_str().unwrap().contains("ozone and CO 6 of the last 8"), "{problem}");
}

#[actix_rt::test]
async fn two_air_quality_providers_merge_into_current_and_air_quality_uses_what_an_hour_allows() {
    clear_of_the_hour().await;
    let server = MockServer::start().await;
    let mut open_meteo = fixture("open-meteo-air-quality-current.json");
    crate::upstream::shift_to_now(&mut open_meteo, "2021-11-25T00:00:00Z".parse().unwrap());
    Mock::given(method("GET"))
        .and(path("/v1/air-quality"))
        .respond_with(ResponseTemplate::new(200).set_body_json(open_meteo))
        .mount(&server)
        .await;
    let app = with_both_air_quality_providers(&server, "2950159").await;
    let (_, current) = app.get_json("/v1/locations/2950159/current").await;
    let names: Vec<&str> = current["sources"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["open-meteo-air-quality", "openweathermap-air-pollution"]);
    // Only OpenWeather reports PM and the gases other than ozone.
    assert_eq!((&current["pm2_5"], &current["pm10"], &current["co"]), (&json!(23.25), &json!(92.21), &json!(203.61)));
    // One hour of each: PM's NowCast needs two, ozone's index eight; SO2 and NO2 (1-hour)
    // count: 0.648 µg/m³ of SO2 is 0.25 ppb, 0.396 of NO2 0.21 ppb, both AQI 0.
    let (status, aq) = app.get_json("/v1/locations/2950159/air-quality").await;
    assert_eq!(status, 200, "{aq}");
    assert_eq!((&aq["aqi"], &aq["category"], &aq["dominant"]), (&json!(0), &json!("good"), &json!("so2")));
    let used: Vec<(&str, &str, f64)> = aq["pollutants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["pollutant"].as_str().unwrap(), p["averaging"].as_str().unwrap(), p["averaged"].as_f64().unwrap()))
        .collect();
    assert_eq!(used, [("so2", "1h", 0.0), ("no2", "1h", 0.0)]);
    // The European index of that hour: ozone (82 and 75.1) fair, PM2.5 (23.3) and PM10
    // (92.2) moderate; OpenWeather's own index beside isobar's.
    assert_eq!((&aq["european"]["level"], &aq["european"]["dominant"]), (&json!("moderate"), &json!("pm2_5")));
    let sources = aq["sources"].as_array().unwrap();
    let owm = sources.iter().find(|s| s["source"] == "openweathermap-air-pollution").unwrap();
    let owm_hour = owm["observed_at"].clone();
    assert_eq!(
        aq["providers"],
        json!([{"source": "openweathermap-air-pollution", "index": "openweathermap_aqi", "value": 4.0,
            "label": "Poor", "observed_at": owm_hour}])
    );
}

/// An instance with both air-quality providers on, OpenWeather answering with its
/// documented example (2020-11-23T16:00Z) moved to the hour before the current one, once
/// `id` shows both providers.
async fn with_both_air_quality_providers(server: &MockServer, id: &str) -> TestApp {
    let mut owm = fixture("owm-air-pollution.json");
    crate::upstream::shift_to_now(&mut owm, "2020-11-23T17:00:00Z".parse().unwrap());
    Mock::given(method("GET"))
        .and(path("/data/2.5/air_pollution"))
        .and(query_param("appid", "TESTKEY"))
        .respond_with(ResponseTemplate::new(200).set_body_json(owm))
        .mount(server)
        .await;
    let enabled = ["open_meteo_air_quality", "openweathermap_air_pollution"];
    let app = spawn_app_with(sources(server, &enabled, json!({}))).await;
    let both = eventually(10, || async {
        let (_, current) = app.get_json(&format!("/v1/locations/{id}/current")).await;
        current["sources_count"] == 2
    })
    .await;
    assert!(both, "both air-quality providers reach {id}");
    app
}

/// Open-Meteo answering with Beijing's recorded hourly CO (local times, UTC+8), moved so
/// that 2023-01-01T13:00Z is the current hour: 21 hours before it and 26 after it.
async fn serve_beijings_hourly_co(server: &MockServer) {
    let mut body = fixture("open-meteo-air-quality.json");
    crate::upstream::shift_to_now(&mut body, "2023-01-01T13:00:00Z".parse().unwrap());
    Mock::given(method("GET"))
        .and(path("/v1/air-quality"))
        .and(query_param("past_days", "1"))
        .and(query_param("forecast_days", "3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

#[actix_rt::test]
async fn a_city_has_an_air_quality_from_its_first_poll_thanks_to_the_providers_past_hours() {
    clear_of_the_hour().await;
    let server = MockServer::start().await;
    serve_beijings_hourly_co(&server).await;
    let app = spawn_app_with(sources(&server, &["open_meteo_air_quality"], json!({}))).await;
    let (status, _) = app.get_json("/v1/locations/1816670/current").await;
    assert_eq!(status, 200);
    let (status, aq) = app.get_json("/v1/locations/1816670/air-quality").await;
    assert_eq!(status, 200, "{aq}");
    // The 8 hours to the current one: 581, 834, 1291, 2255, 3426, 4876, 6223 and 6821
    // µg/m³, a mean of 3288.4 µg/m³ = 2.87 ppm, truncated to 2.8: AQI 50 × 28 / 44 → 32.
    assert_eq!(
        aq["pollutants"],
        json!([{"pollutant": "co", "concentration": 6821.0, "averaged": 2.8, "unit": "ppm", "averaging": "8h",
            "aqi": 32, "category": "good", "beyond_index": false}])
    );
    assert_eq!((&aq["aqi"], &aq["dominant"], &aq["colour"]), (&json!(32), &json!("co"), &json!("#00E400")));
}

#[actix_rt::test]
async fn a_citys_air_quality_shows_both_providers_isobars_aqi_openweathers_index_and_an_hourly_forecast() {
    clear_of_the_hour().await;
    let server = MockServer::start().await;
    serve_beijings_hourly_co(&server).await;
    let app = with_both_air_quality_providers(&server, "1816670").await;
    let (status, aq) = app.get_json("/v1/locations/1816670/air-quality?hours=3").await;
    assert_eq!(status, 200, "{aq}");
    let hour = chrono::Utc::now().duration_trunc(chrono::Duration::hours(1)).unwrap();
    let at = |k: i64| (hour + chrono::Duration::hours(k)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // Both providers' pollutants: Open-Meteo's CO of the current hour, OpenWeather's six
    // of the hour before.
    assert_eq!(
        aq["sources"],
        json!([{"source": "open-meteo-air-quality", "observed_at": at(0), "co": 6821.0},
               {"source": "openweathermap-air-pollution", "observed_at": at(-1), "pm2_5": 23.253, "pm10": 92.214,
                "o3": 75.102, "co": 203.609, "so2": 0.648, "no2": 0.396}])
    );
    // isobar's AQI: CO's 8-hour mean, the hour before averaging both providers (6223 and
    // 203.6): (6821 + 3213.3 + 4876 + 3426 + 2255 + 1291 + 834 + 581) / 8 = 2912.2 µg/m³
    // = 2.54 ppm → 2.5: AQI 50 × 25 / 44 → 28. PM needs two of the last three hours and
    // the gases the current one, which only Open-Meteo's CO has.
    assert_eq!(
        (&aq["aqi"], &aq["category"], &aq["dominant"], &aq["hour"]),
        (&json!(28), &json!("good"), &json!("co"), &json!(at(0)))
    );
    assert_eq!(aq["european"], Value::Null, "the current hour has none of the European index's pollutants");
    // OpenWeather's own index beside it, never instead of it.
    assert_eq!(
        aq["providers"],
        json!([{"source": "openweathermap-air-pollution", "index": "openweathermap_aqi", "value": 4.0,
            "label": "Poor", "observed_at": at(-1)}])
    );
    // The hourly forecast from Open-Meteo's CO (7648, 7900, 6718 µg/m³), each hour's
    // 8-hour mean over the hours before it: 3795.5 µg/m³ → 3.3 ppm → 38; 4678.8 → 4.0 →
    // 45; 5357.2 → 4.6 → 49 × 1 / 49 + 51 = 52, moderate.
    assert_eq!(
        aq["forecast"],
        json!([{"time": at(1), "aqi": 38, "category": "good", "dominant": "co", "european": null},
               {"time": at(2), "aqi": 45, "category": "good", "dominant": "co", "european": null},
               {"time": at(3), "aqi": 52, "category": "moderate", "dominant": "co", "european": null}])
    );
}
