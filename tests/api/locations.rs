use chrono::{DateTime, Utc};
use serde_json::json;

use crate::helpers::{spawn_app, station_reading};

#[actix_rt::test]
async fn search_ranks_the_exact_name_first_then_by_population() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/v1/locations?q=new%20york%20city&limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"locations": [{"id": "5128581", "name": "New York City", "country": "US", "latitude": 40.71427,
            "longitude": -74.00597, "timezone": "America/New_York", "population": 8804190, "kind": "city"}]})
    );
    let (_, body) = app.get_json("/v1/locations?q=Lond&limit=3").await;
    let names: Vec<_> = body["locations"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["London", "Londrina", "London"]);
}

#[actix_rt::test]
async fn search_finds_stations_once_they_have_reported() {
    let app = spawn_app().await;
    assert_eq!(app.get_json("/v1/locations?q=ZZSTN").await.1, json!({"locations": []}));
    assert_eq!(app.post_readings(&station_reading("ZZSTN1", 5, 7.1)).await.0, 202);
    let (_, body) = app.get_json("/v1/locations?q=zzstn").await;
    assert_eq!(
        body,
        json!({"locations": [{"id": "ZZSTN1", "name": "ZZSTN1", "country": "US", "latitude": 40.64,
            "longitude": -73.78, "timezone": "America/New_York", "kind": "station"}]})
    );
}

#[actix_rt::test]
async fn search_refuses_a_missing_query_and_a_bad_limit() {
    let app = spawn_app().await;
    for (path, field, message) in [
        ("/v1/locations", "q", "is required: a name prefix such as \"New Y\""),
        ("/v1/locations?q=", "q", "is required: a name prefix such as \"New Y\""),
        ("/v1/locations?q=Paris&limit=0", "limit", "must be an integer from 1 to 100"),
        ("/v1/locations?q=Paris&limit=101", "limit", "must be an integer from 1 to 100"),
        ("/v1/locations?q=Paris&limit=ten", "limit", "must be an integer from 1 to 100"),
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            body,
            json!({"type": "urn:isobar:problem:bad-request", "title": "Bad Request", "status": 400,
                "detail": format!("invalid {field}: {message}"), "errors": [{"field": field, "message": message}]}),
            "{path}"
        );
    }
}

#[actix_rt::test]
async fn nearest_returns_the_closest_catalog_city_and_its_distance() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/v1/locations/nearest?lat=40.7128&lon=-74.0060").await;
    assert_eq!(status, 200);
    assert_eq!(body["location"]["id"], "5128581");
    assert_eq!(body["distance_km"], 0.2);
}

#[actix_rt::test]
async fn nearest_refuses_non_numeric_and_out_of_range_coordinates() {
    let app = spawn_app().await;
    for (path, detail) in [
        ("/v1/locations/nearest?lat=abc&lon=2", "invalid lat: must be a number, got \"abc\""),
        ("/v1/locations/nearest?lat=91&lon=2", "invalid lat: must be between -90 and 90"),
        ("/v1/locations/nearest?lat=10&lon=-180.5", "invalid lon: must be between -180 and 180"),
        ("/v1/locations/nearest?lat=10", "invalid lon: is required"),
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!((status, body["detail"].as_str().unwrap()), (400, detail), "{path}");
    }
}

#[actix_rt::test]
async fn a_location_is_described_by_id_and_unknown_or_malformed_ids_are_refused() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/v1/locations/2988507").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"id": "2988507", "name": "Paris", "country": "FR", "latitude": 48.85341, "longitude": 2.3488,
            "timezone": "Europe/Paris", "population": 2138551, "kind": "city"})
    );
    let (status, body) = app.get_json("/v1/locations/NOWHERE1").await;
    assert_eq!(status, 404);
    assert_eq!(body["detail"], "unknown location NOWHERE1");
    let (status, body) = app.get_json("/v1/locations/-bad").await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["field"], "id");
}

#[actix_rt::test]
async fn current_shows_the_reading_of_a_single_station_with_confidence_0_7() {
    let app = spawn_app().await;
    let reading = station_reading("CUR1", 10, 7.1);
    app.post_readings(&reading).await;
    let (status, mut body) = app.get_json("/v1/locations/CUR1/current").await;
    assert_eq!(status, 200);
    // The reading was stamped 10 min ago to the second; the request may cross a second.
    let age = body["sources"][0]["age_seconds"].as_i64().unwrap();
    assert!((600..=601).contains(&age), "{age}");
    body["sources"][0]["age_seconds"] = json!(600);
    let observed_at = reading["observed_at"].clone();
    assert_eq!(
        body,
        json!({
            "location": {"id": "CUR1", "name": "CUR1", "latitude": 40.64, "longitude": -73.78, "timezone": "America/New_York"},
            "observed_at": observed_at, "units": "metric",
            "temperature": 7.1, "humidity": 64.0, "pressure": 1016.0, "wind_speed": 3.0, "wind_direction": 230.0,
            "visibility": 10.0, "precipitation": 0.0, "weather_code": null, "description": null,
            // Weight: trust 1 × freshness 1 − 0.5 × 600 s / 7200 s.
            "sources": [{"name": "station", "observed_at": observed_at, "age_seconds": 600, "weight": 0.96,
                         "temperature": 7.1, "outlier": false}],
            "sources_count": 1, "confidence": 0.7,
            // All 7 quantities, 10 min old against a 4 h horizon (2 × stale_after_secs).
            "quality_score": 0.96, "stale": false, "anomalies": []
        })
    );
}

/// The server reads a request into a 1 KiB buffer first and grows it to 8 KiB only when a
/// read fills it (vendor/actix-http): a header block of 6 KiB, then a small request on the
/// same connection, are served like any other.
#[actix_rt::test]
async fn a_request_with_6_kib_of_headers_is_served_and_the_connection_stays_usable() {
    use std::io::{Read, Write};
    let app = spawn_app().await;
    app.post_readings(&station_reading("BIGH1", 1, 4.2)).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let exchange = move || {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let padding: String = (0..20).map(|i| format!("x-padding-{i:02}: {}\r\n", "p".repeat(300))).collect();
        let request = |headers: &str, close: bool| {
            let connection = if close { "close" } else { "keep-alive" };
            format!(
                "GET /v1/locations/BIGH1/current HTTP/1.1\r\nhost: test\r\n{headers}connection: {connection}\r\n\r\n"
            )
        };
        let big = request(&padding, false);
        assert!(big.len() > 6 * 1024, "{}", big.len());
        stream.write_all(big.as_bytes()).unwrap();
        stream.write_all(request("", true).as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let answer = actix_rt::task::spawn_blocking(exchange).await.unwrap();
    // Two responses, each with the reading's temperature twice (the consensus, the source).
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{answer}");
    assert_eq!(answer.matches(r#""temperature":4.2"#).count(), 4, "{answer}");
}

#[actix_rt::test]
async fn current_merges_two_sources_by_weighted_mean() {
    let app = spawn_app().await;
    let mut a = station_reading("MED1", 5, 6.0);
    let mut b = station_reading("MED1", 5, 8.0);
    b["source"] = json!("lab");
    a["humidity"] = json!(60);
    b["humidity"] = json!(70);
    let (status, body) = app.post_readings(&json!([a, b])).await;
    assert_eq!((status, body), (202, json!({"accepted": 2, "rejected": []})));
    let (_, body) = app.get_json("/v1/locations/MED1/current").await;
    assert_eq!(body["temperature"], 7.0);
    assert_eq!(body["humidity"], 65.0);
    assert_eq!(body["sources_count"], 2);
    // temperature: mean |dev| 1 °C over tolerance 2 → 0.667; humidity: 5 over 10 → 0.667;
    // the other five quantities agree → 1. Agreement 0.905; two sources:
    // 0.5 + 0.5 × 0.905 × (1 − 0.5) = 0.73.
    assert_eq!(body["confidence"], 0.73);
}

#[actix_rt::test]
async fn current_converts_to_imperial_units() {
    let app = spawn_app().await;
    app.post_readings(&station_reading("IMP1", 1, 7.4)).await;
    let (status, body) = app.get_json("/v1/locations/IMP1/current?units=imperial").await;
    assert_eq!(status, 200);
    assert_eq!(body["units"], "imperial");
    assert_eq!(body["temperature"], 45.32);
    assert_eq!(body["pressure"], 30.0);
    assert_eq!(body["wind_speed"], 6.71);
    assert_eq!(body["visibility"], 6.21);
    assert_eq!(body["humidity"], 64.0);
    assert_eq!(body["sources"][0]["temperature"], 45.32);
}

#[actix_rt::test]
async fn current_sends_caching_headers_and_answers_304_to_a_matching_etag() {
    let app = spawn_app().await;
    app.post_readings(&station_reading("ETAG1", 1, 5.0)).await;
    let r = app.get("/v1/locations/ETAG1/current").await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let (seq, version, units) = crate::helpers::etag_parts(&etag);
    assert_eq!((seq, units.as_str()), (1, "metric"));
    assert_eq!(r.headers()["cache-control"], "max-age=5");
    let last_modified = r.headers()["last-modified"].to_str().unwrap().to_owned();
    let lm = DateTime::parse_from_rfc2822(&last_modified).unwrap().with_timezone(&Utc);
    assert!((Utc::now() - lm).num_seconds().abs() <= 2, "{last_modified}");

    let r = app.client.get(app.url("/v1/locations/ETAG1/current")).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert_eq!(r.text().await.unwrap(), "");

    // 202 means accepted for processing: /current shows the change within milliseconds.
    app.post_readings(&station_reading("ETAG1", 0, 6.0)).await;
    let changed = crate::helpers::eventually(2, || async {
        let r =
            app.client.get(app.url("/v1/locations/ETAG1/current")).header("If-None-Match", &etag).send().await.unwrap();
        r.status() == 200 && crate::helpers::etag_parts(r.headers()["etag"].to_str().unwrap()).0 == 2
    })
    .await;
    assert!(changed);
    let metric = app.get("/v1/locations/ETAG1/current").await.headers()["etag"].to_str().unwrap().to_owned();
    let (_, new_version, _) = crate::helpers::etag_parts(&metric);
    assert_ne!(new_version, version, "other conditions, another version");
    let imperial = app.get("/v1/locations/ETAG1/current?units=imperial").await;
    assert_eq!(imperial.headers()["etag"].to_str().unwrap(), metric.replace("-metric", "-imperial"));
}

#[actix_rt::test]
async fn a_restarted_instance_without_a_store_never_answers_304_for_other_conditions() {
    let first = spawn_app().await;
    first.post_readings(&station_reading("ETAG2", 1, 5.0)).await;
    let etag = first.get("/v1/locations/ETAG2/current").await.headers()["etag"].to_str().unwrap().to_owned();
    drop(first);
    // A new process: seq counts from 1 again, for other conditions.
    let second = spawn_app().await;
    second.post_readings(&station_reading("ETAG2", 1, 6.0)).await;
    let r = second
        .client
        .get(second.url("/v1/locations/ETAG2/current"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let again = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(crate::helpers::etag_parts(&again).0, 1);
    assert_ne!(again, etag);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["temperature"], 6.0);
}

#[actix_rt::test]
async fn current_refuses_bad_units_unknown_locations_and_locations_without_data() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/v1/locations/5128581/current?units=kelvin").await;
    assert_eq!(status, 400);
    assert_eq!(body["detail"], "invalid units: units must be 'metric' or 'imperial', got \"kelvin\"");
    let (status, body) = app.get_json("/v1/locations/NOPE99/current").await;
    assert_eq!(status, 404);
    assert_eq!(
        body["detail"],
        "unknown location NOPE99: not a GeoNames city id in the catalog nor a station that has sent readings"
    );
    let (status, body) = app.get_json("/v1/locations/5128581/current").await;
    assert_eq!(status, 404);
    assert_eq!(
        body["detail"],
        "no current conditions for location 5128581 yet: no source has reported it (POST /v1/readings, or enable a source that covers it)"
    );
    let (status, _) = app.get_json("/v1/locations/bad%20id/current").await;
    assert_eq!(status, 400);
}

#[actix_rt::test]
async fn history_lists_readings_oldest_first_within_the_range() {
    let app = spawn_app().await;
    let readings: Vec<_> =
        [(30, 5.0), (50, 3.0), (10, 7.0)].iter().map(|(m, t)| station_reading("HIST1", *m, *t)).collect();
    app.post_readings(&json!(readings)).await;
    let (status, body) = app.get_json("/v1/locations/HIST1/history").await;
    assert_eq!(status, 200);
    assert_eq!(body["location_id"], "HIST1");
    let temps: Vec<_> =
        body["readings"].as_array().unwrap().iter().map(|r| r["temperature"].as_f64().unwrap()).collect();
    assert_eq!(temps, [3.0, 5.0, 7.0]);
    assert_eq!(
        body["readings"][0],
        json!({"location_id": "HIST1", "source": "station", "observed_at": readings[1]["observed_at"],
            "temperature": 3.0, "humidity": 64.0, "pressure": 1016.0, "wind_speed": 3.0, "wind_direction": 230.0,
            "visibility": 10.0, "precipitation": 0.0})
    );
    let from = (Utc::now() - chrono::Duration::minutes(40)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (Utc::now() - chrono::Duration::minutes(20)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, body) = app.get_json(&format!("/v1/locations/HIST1/history?from={from}&to={to}&units=imperial")).await;
    let temps: Vec<_> =
        body["readings"].as_array().unwrap().iter().map(|r| r["temperature"].as_f64().unwrap()).collect();
    assert_eq!(temps, [41.0]);
}

#[actix_rt::test]
async fn history_refuses_from_after_to_beyond_retention_and_bad_timestamps() {
    let app = spawn_app().await;
    app.post_readings(&station_reading("HIST2", 1, 1.0)).await;
    let (status, body) =
        app.get_json("/v1/locations/HIST2/history?from=2026-11-26T10:00:00Z&to=2026-11-26T09:00:00Z").await;
    assert_eq!((status, body["detail"].as_str().unwrap()), (400, "invalid from: must not be after to"));
    let (status, body) = app.get_json("/v1/locations/HIST2/history?from=2000-01-01T00:00:00Z").await;
    assert_eq!(status, 400);
    assert!(
        body["detail"].as_str().unwrap().starts_with("invalid from: is beyond retention: history is kept for 24 h")
    );
    let (status, body) = app.get_json("/v1/locations/HIST2/history?to=yesterday").await;
    assert_eq!(
        (status, body["detail"].as_str().unwrap()),
        (400, "invalid to: must be an RFC 3339 timestamp, got \"yesterday\"")
    );
}

#[actix_rt::test]
async fn forecast_answers_a_clear_404_when_no_provider_is_enabled() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/v1/locations/5128581/forecast").await;
    assert_eq!(status, 404);
    assert_eq!(
        body["detail"],
        "no forecast for location 5128581 yet: no upstream provider is enabled, and the models learned from its readings issue a forecast once an hour of them is complete"
    );
}

#[actix_rt::test]
async fn a_history_step_is_bounded_from_one_second_to_31_days() {
    let app = spawn_app().await;
    app.post_readings(&station_reading("STEP1", 5, 5.0)).await;
    for bad in ["2305843009213693952s", "32d", "0s"] {
        let (status, body) = app.get_json(&format!("/v1/locations/STEP1/history?step={bad}")).await;
        let expected = if bad == "0s" {
            "invalid step: must be a duration such as 30s, 15m, 1h or 1d, got \"0s\""
        } else {
            "invalid step: must be from 1s to 31d"
        };
        assert_eq!((status, body["detail"].as_str().unwrap()), (400, expected), "{bad}");
    }
    let (status, body) = app.get_json("/v1/locations/STEP1/history?step=31d").await;
    assert_eq!((status, body["readings"][0]["temperature"].clone()), (200, json!(5.0)));
}
