use std::time::Duration;

use isobar::actors::directory::Resolve;
use isobar::actors::location::Restart;
use isobar::config::Settings;
use isobar::domain::LocationId;
use serde_json::json;

use crate::helpers::{eventually, spawn_app, spawn_app_with, spawn_settings, station_reading};

#[actix_rt::test]
async fn a_location_actor_stopped_from_the_inside_is_restarted_with_its_readings() {
    let app = spawn_app().await;
    let readings: Vec<_> = (1..=3).map(|m| station_reading("SUP1", m * 10, m as f64)).collect();
    app.post_readings(&json!(readings)).await;
    let (_, before) = app.get_json("/v1/locations/SUP1/history").await;
    let current_before = app.get("/v1/locations/SUP1/current").await;
    let etag_before = current_before.headers()["etag"].clone();

    let addr = app.directory.send(Resolve { id: LocationId::parse("SUP1").unwrap() }).await.unwrap().unwrap();
    addr.send(Restart).await.unwrap();
    assert!(eventually(2, || async { app.metric("isobar_location_restarts_total").await == Some(1.0) }).await);

    let (_, after) = app.get_json("/v1/locations/SUP1/history").await;
    assert_eq!(after, before);
    assert_eq!(after["readings"].as_array().unwrap().len(), 3);
    let current_after = app.get("/v1/locations/SUP1/current").await;
    assert_eq!(current_after.headers()["etag"], etag_before);
    assert_eq!(current_after.json::<serde_json::Value>().await.unwrap()["temperature"], 1.0);
    assert_eq!(app.metric("isobar_locations_active").await, Some(1.0));
}

#[actix_rt::test]
async fn an_idle_location_passivates_and_comes_back_with_its_state_on_the_next_request() {
    let app = spawn_app_with(json!({"locations": {"idle_passivate_secs": 1}})).await;
    app.post_readings(&json!([station_reading("PAS1", 20, 4.0), station_reading("PAS1", 10, 5.0)])).await;
    let (_, before) = app.get_json("/v1/locations/PAS1/history").await;
    assert_eq!(app.metric("isobar_locations_active").await, Some(1.0));

    assert!(
        eventually(5, || async { app.metric("isobar_locations_active").await == Some(0.0) }).await,
        "the idle location was not passivated"
    );
    let r = app.get("/v1/locations/PAS1/current").await;
    assert_eq!(r.status(), 200);
    assert_eq!(crate::helpers::etag_parts(r.headers()["etag"].to_str().unwrap()).0, 1);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["temperature"], 5.0);
    assert_eq!(app.get_json("/v1/locations/PAS1/history").await.1, before);
    assert_eq!(app.metric("isobar_locations_active").await, Some(1.0));
}

#[actix_rt::test]
async fn a_location_with_a_subscriber_does_not_passivate() {
    let app = spawn_app_with(json!({"locations": {"idle_passivate_secs": 1}})).await;
    app.post_readings(&station_reading("PAS2", 5, 4.0)).await;
    let mut ws = app.ws("/ws/weather/PAS2").await;
    assert_eq!(crate::helpers::next_json(&mut ws).await["type"], "snapshot");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(app.metric("isobar_locations_active").await, Some(1.0));
    app.post_readings(&station_reading("PAS2", 1, 6.0)).await;
    assert_eq!(crate::helpers::next_json(&mut ws).await["data"]["temperature"], 6.0);
}

#[actix_rt::test]
async fn the_replay_rejects_the_real_1048_mph_wind_and_counts_it() {
    // Ten dataset hours per second from 07:00 on the day of the fault.
    let app = spawn_app_with(
        json!({"sources": {"replay": {"enabled": true, "speed": 36000.0, "start_at": "2013-02-12T07:00:00Z"}}}),
    )
    .await;
    let replayed = eventually(5, || async {
        let (status, body) = app.get_json("/v1/locations/KEWR/history").await;
        status == 200 && body["readings"].as_array().is_some_and(|r| r.len() >= 4)
    })
    .await;
    assert!(replayed);
    let (_, body) = app.get_json("/v1/locations/KEWR/history").await;
    let winds: Vec<_> = body["readings"].as_array().unwrap()[..4].iter().map(|r| r["wind_speed"].clone()).collect();
    // 07:00, then 09:00: the 08:00 row (468.66 m/s) never made it in; 10:00 has no pressure.
    assert_eq!(winds, [json!(9.26), json!(5.66), json!(6.17), json!(7.2)]);
    assert_eq!(body["readings"][2]["pressure"], json!(null));
    assert_eq!(
        app.metric("isobar_readings_rejected_total{reason=\"out_of_range\",source=\"replay\"}").await,
        Some(1.0)
    );
    let (_, current) = app.get_json("/v1/locations/KEWR/current").await;
    assert!(current["wind_speed"].as_f64().unwrap() < 30.0, "{current}");
}

#[actix_rt::test]
async fn the_demo_profile_shows_kjfk_conditions_changing_every_few_seconds() {
    let settings = Settings::load(Some("demo"), None).unwrap();
    assert!(settings.sources.replay.enabled);
    let app = spawn_settings(settings).await;
    assert!(eventually(3, || async { app.get("/v1/locations/KJFK/current").await.status() == 200 }).await);
    let (_, first) = app.get_json("/v1/locations/KJFK/current").await;
    assert_eq!(first["location"]["name"], "John F Kennedy Intl");
    assert_eq!(first["sources"][0]["name"], "replay");
    let etag = app.get("/v1/locations/KJFK/current").await.headers()["etag"].clone();
    assert!(
        eventually(5, || async { app.get("/v1/locations/KJFK/current").await.headers()["etag"] != etag }).await,
        "KJFK did not change within 5 s"
    );
    let mut ws = app.ws("/ws/weather/KJFK").await;
    assert_eq!(crate::helpers::next_json(&mut ws).await["type"], "snapshot");
    let update = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            let m = crate::helpers::next_json(&mut ws).await;
            if m["type"] == "update" {
                return m;
            }
        }
    })
    .await
    .expect("an update within 4 s");
    assert_eq!(update["location_id"], "KJFK");
}
