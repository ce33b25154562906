use serde_json::{Value, json};

use crate::helpers::{spawn_app, station_reading};

#[actix_rt::test]
async fn a_batch_accepts_the_valid_items_and_reports_each_bad_one_by_index_and_field() {
    let app = spawn_app().await;
    let future = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = json!([
        station_reading("BATCH1", 5, 7.0),
        {"location_id": "BATCH1", "source": "station", "observed_at": "2026-11-26T08:55:00Z", "temperature": "warm"},
        {"location_id": "BATCH1", "source": "station", "observed_at": future, "temperature": 1.0},
        {"location_id": "BATCH1", "source": "station", "observed_at": station_reading("X", 3, 0.0)["observed_at"], "wind_speed": 468.66, "colour": "red"},
        {"location_id": "NEWSTN", "source": "station", "observed_at": station_reading("X", 3, 0.0)["observed_at"], "temperature": 3.0},
        station_reading("BATCH1", 4, 8.0),
    ]);
    let (status, got) = app.post_readings(&body).await;
    assert_eq!(status, 202);
    assert_eq!(got["accepted"], 2);
    let rejected: Vec<(u64, Vec<(String, String)>)> = got["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let errors = r["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["field"].as_str().unwrap().to_owned(), e["message"].as_str().unwrap().to_owned()))
                .collect();
            (r["index"].as_u64().unwrap(), errors)
        })
        .collect();
    assert_eq!(rejected[0], (1, vec![("temperature".into(), "must be a number or null".into())]));
    assert_eq!(rejected[1].0, 2);
    assert_eq!(rejected[1].1[0].0, "observed_at");
    assert!(rejected[1].1[0].1.starts_with("is more than 5 min in the future (server time "));
    assert_eq!(
        rejected[2],
        (3, vec![("colour".into(), "unknown field".into()), ("wind_speed".into(), "must be between 0 and 120".into())])
    );
    assert_eq!(
        rejected[3],
        (
            4,
            vec![(
                "latitude".into(),
                "location NEWSTN is not known yet: the first reading of a new station needs latitude and longitude"
                    .into()
            )]
        )
    );
    let (_, history) = app.get_json("/v1/locations/BATCH1/history").await;
    assert_eq!(history["readings"].as_array().unwrap().len(), 2);
    assert_eq!(app.metric("isobar_readings_ingested_total{source=\"station\"}").await, Some(2.0));
    assert_eq!(
        app.metric("isobar_readings_rejected_total{reason=\"unknown_field\",source=\"station\"}").await,
        Some(1.0)
    );
    assert_eq!(app.metric("isobar_readings_rejected_total{reason=\"future\",source=\"station\"}").await, Some(1.0));
    assert_eq!(app.metric("isobar_readings_rejected_total{reason=\"malformed\",source=\"station\"}").await, Some(1.0));
    assert_eq!(
        app.metric("isobar_readings_rejected_total{reason=\"unknown_location\",source=\"station\"}").await,
        Some(1.0)
    );
}

#[actix_rt::test]
async fn a_single_bad_reading_is_a_422_problem_naming_its_fields() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_readings(&json!({"location_id": "KJFK", "source": "station", "observed_at": "2026-11-26T08:55:00Z", "humidity": 120}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"type": "urn:isobar:problem:unprocessable", "title": "Unprocessable Entity", "status": 422,
            "detail": "the reading was rejected; see errors",
            "errors": [{"field": "humidity", "message": "must be between 0 and 100"}]})
    );
}

#[actix_rt::test]
async fn a_batch_with_no_valid_item_is_a_422_listing_every_item() {
    let app = spawn_app().await;
    let (status, body) = app.post_readings(&json!([1, {"source": "station"}])).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"], "all 2 readings were rejected; see rejected");
    assert_eq!(
        body["rejected"][0],
        json!({"index": 0, "errors": [{"field": "$", "message": "expected a JSON object"}]})
    );
    assert_eq!(
        body["rejected"][1]["errors"],
        json!([{"field": "location_id", "message": "is required"}, {"field": "observed_at", "message": "is required"}])
    );
}

async fn raw_post(app: &crate::helpers::TestApp, content_type: &str, body: Vec<u8>) -> (u16, String, Value) {
    let r =
        app.client.post(app.url("/v1/readings")).header("content-type", content_type).body(body).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    (status, ct, r.json().await.unwrap())
}

#[actix_rt::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn_app().await;
    let (status, ct, body) = raw_post(&app, "application/json", b"{\"location_id\": ".to_vec()).await;
    assert_eq!((status, ct.as_str()), (400, "application/problem+json"));
    assert_eq!(body["detail"], "malformed JSON: EOF while parsing a value at line 1 column 16");
}

#[actix_rt::test]
async fn a_wrong_content_type_is_a_415_problem() {
    let app = spawn_app().await;
    let (status, ct, body) = raw_post(&app, "text/plain", b"{}".to_vec()).await;
    assert_eq!((status, ct.as_str()), (415, "application/problem+json"));
    assert_eq!(body["detail"], "readings must be sent as application/json, got \"text/plain\"");
}

#[actix_rt::test]
async fn a_body_over_1_mib_is_a_413_problem_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let mut big = b"[".to_vec();
    big.extend(std::iter::repeat_n(b' ', 1024 * 1024));
    big.push(b']');
    let (status, ct, body) = raw_post(&app, "application/json", big).await;
    assert_eq!((status, ct.as_str()), (413, "application/problem+json"));
    assert_eq!(body["detail"], "request body is larger than 1048576 bytes (1 MiB)");
    assert_eq!(app.get("/health").await.status(), 200);
}

#[actix_rt::test]
async fn more_than_10000_items_is_a_413_problem() {
    let app = spawn_app().await;
    let items: Vec<Value> = (0..10_001).map(|_| json!({})).collect();
    let (status, body) = app.post_readings(&json!(items)).await;
    assert_eq!(status, 413);
    assert_eq!(body["detail"], "10001 readings in one request; at most 10000 are accepted");
}

#[actix_rt::test]
async fn ten_thousand_readings_in_one_batch_under_1_mib_are_all_accepted() {
    let app = spawn_app().await;
    let seed: Vec<Value> = (0..100).map(|i| station_reading(&format!("BULK{i}"), 600, 1.0)).collect();
    app.post_readings(&json!(seed)).await;
    let now = chrono::Utc::now();
    let items: Vec<Value> = (0..10_000)
        .map(|i| {
            let at = now - chrono::Duration::seconds(i as i64);
            json!({"location_id": format!("BULK{}", i % 100), "source": "station",
                   "observed_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "temperature": 5})
        })
        .collect();
    assert!(serde_json::to_vec(&items).unwrap().len() < 1024 * 1024);
    let (status, body) = app.post_readings(&json!(items)).await;
    assert_eq!((status, body), (202, json!({"accepted": 10000, "rejected": []})));
    let (_, history) = app.get_json("/v1/locations/BULK7/history").await;
    assert_eq!(history["readings"].as_array().unwrap().len(), 101);
}

#[actix_rt::test]
async fn a_duplicate_reading_is_dropped_and_counted() {
    let app = spawn_app().await;
    let r = station_reading("DUP1", 3, 4.0);
    assert_eq!(app.post_readings(&json!([r, r])).await.1["accepted"], 2);
    let (_, history) = app.get_json("/v1/locations/DUP1/history").await;
    assert_eq!(history["readings"].as_array().unwrap().len(), 1);
    assert_eq!(app.metric("isobar_readings_rejected_total{reason=\"duplicate\",source=\"station\"}").await, Some(1.0));
}

#[actix_rt::test]
async fn a_reading_may_be_ahead_of_the_server_clock_by_the_configured_skew_only() {
    let at = |minutes_ahead: i64| {
        (chrono::Utc::now() + chrono::Duration::minutes(minutes_ahead))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let app = spawn_app().await;
    let mut reading = station_reading("SKEW1", 0, 5.0);
    reading["observed_at"] = json!(at(4));
    assert_eq!(app.post_readings(&reading).await.0, 202);
    reading["observed_at"] = json!(at(6));
    let (status, body) = app.post_readings(&reading).await;
    assert_eq!(status, 422);
    assert!(body["errors"][0]["message"].as_str().unwrap().starts_with("is more than 5 min in the future"), "{body}");

    let lenient = crate::helpers::spawn_app_with(json!({"locations": {"max_clock_skew_secs": 3600}})).await;
    reading["observed_at"] = json!(at(30));
    assert_eq!(lenient.post_readings(&reading).await.0, 202);
}
