//! `isobar detect` and `isobar eval forecast`: files of hourly observations through the
//! anomaly detectors and the forecasting models, offline.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_isobar");

fn detect(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).arg("detect").args(args).output().expect("isobar detect runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn a_spike_and_an_impossible_value_in_a_csv_are_printed_one_json_line_each() {
    // 10 days of a daily cycle with a little jitter, as a station would report it.
    let mut lines = vec!["time,station,temperature,humidity".to_owned()];
    let start: chrono::DateTime<chrono::Utc> = "2026-03-01T00:00:00Z".parse().unwrap();
    for h in 0..240 {
        let at = start + chrono::Duration::hours(h);
        let jitter = [0.0, 0.3, -0.2, 0.1, -0.3, 0.2][h as usize % 6];
        let mut temperature = 10.0 + 5.0 * ((h as f64) * std::f64::consts::TAU / 24.0).sin() + jitter;
        let mut humidity = format!("{:.1}", 60.0 + 20.0 * ((h as f64) * std::f64::consts::TAU / 24.0).cos());
        if h == 150 {
            temperature += 12.0; // a spike
        }
        if h == 200 {
            humidity = "140".into(); // impossible
        }
        lines
            .push(format!("{},LAB,{temperature:.1},{humidity}", at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), lines.join("\n")).unwrap();
    let (code, stdout, stderr) = detect(&["--data", file.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let printed: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        printed,
        [
            serde_json::json!({"time": "2026-03-07T06:00:00Z", "station": "LAB", "quantity": "temperature",
                "kind": "spike", "severity": "high", "value": 27.0}),
            serde_json::json!({"time": "2026-03-09T08:00:00Z", "station": "LAB", "quantity": "humidity",
                "kind": "range", "severity": "high", "value": 140.0}),
        ]
    );
}

#[test]
fn a_file_that_is_not_readable_as_its_format_is_one_clear_line_and_exit_2() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "when,temperature\n2026-01-01,3\n").unwrap();
    let (code, stdout, stderr) = detect(&["--data", file.path().to_str().unwrap()]);
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert_eq!(stderr.trim(), format!("error: {}: line 1: no `time` (or `observed_at`) column", file.path().display()));
    let (code, _, stderr) = detect(&["--data", "/nonexistent/weather.csv", "--format", "nycflights13"]);
    assert_eq!((code, stderr.trim()), (2, "error: /nonexistent/weather.csv: No such file or directory (os error 2)"));
}

fn eval(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(["eval", "forecast"]).args(args).output().expect("isobar eval runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn eval_forecast_scores_every_model_on_the_same_points_or_says_why_it_cannot() {
    let replay = concat!(env!("CARGO_MANIFEST_DIR"), "/data/replay/nycflights13-weather.csv");
    // Sixty days of KLGA: enough for one fit (70 % of 60 days > 14) and 18 days of test.
    let text = std::fs::read_to_string(replay).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .take(1)
        .chain(text.lines().filter(|l| l.starts_with("KLGA,2013-01") || l.starts_with("KLGA,2013-02")))
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), lines.join("\n")).unwrap();
    let (code, stdout, stderr) = eval(&["--data", file.path().to_str().unwrap(), "--horizons", "6,12", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let klga = &report["stations"]["KLGA"];
    assert_eq!((klga["quantity"].as_str(), klga["refit_hours"].as_u64()), (Some("temperature"), Some(168)));
    let models: Vec<&str> = klga["models"].as_array().unwrap().iter().map(|m| m["model"].as_str().unwrap()).collect();
    assert_eq!(
        models,
        ["persistence", "yesterday", "climatology", "ridge", "random_forest", "mlp", "gradient_boosting", "ensemble"]
    );
    let points: Vec<u64> =
        klga["models"].as_array().unwrap().iter().map(|m| m["horizons"][0]["n"].as_u64().unwrap()).collect();
    assert!(points[0] > 300 && points.iter().all(|n| *n == points[0]), "{points:?}");
    assert_eq!(klga["models"][0]["horizons"][0]["ratio_to_persistence"], 1.0);
    // The boosted trees forecast six hours ahead: no score at 12 h, every other model one.
    let twelve = |model: usize| klga["models"][model]["horizons"][1].clone();
    assert_eq!((twelve(6)["n"].as_u64(), twelve(6)["mae"].is_null()), (Some(0), true), "{}", twelve(6));
    assert!([0, 3, 7].iter().all(|&m| twelve(m)["n"].as_u64() > Some(300)), "{klga}");
    assert_eq!(report["seed"], 0);

    // Another draw: the same points and the same ridge (it draws nothing), other trees.
    let (code, stdout, stderr) =
        eval(&["--data", file.path().to_str().unwrap(), "--horizons", "6,12", "--json", "--seed", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let other: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(other["seed"], 1);
    let six =
        |report: &serde_json::Value, model: usize| report["stations"]["KLGA"]["models"][model]["horizons"][0].clone();
    assert_eq!(six(&other, 0), six(&report, 0), "persistence");
    assert_eq!(six(&other, 3), six(&report, 3), "ridge");
    assert_ne!(six(&other, 6)["mae"], six(&report, 6)["mae"], "gradient boosting");

    // Ten days: the first fit, on the first 70 % (7 days), has too few hours. A horizon
    // past 24 h is refused.
    let short: Vec<&str> = lines.iter().take(241).copied().collect();
    std::fs::write(file.path(), short.join("\n")).unwrap();
    let (code, _, stderr) = eval(&["--data", file.path().to_str().unwrap()]);
    assert_eq!(
        (code, stderr.trim()),
        (1, "KLGA: too little history: 142 hours of temperature with a day before them, 336 needed")
    );
    let (code, _, stderr) = eval(&["--data", replay, "--horizons", "48"]);
    assert_eq!((code, stderr.trim()), (2, "error: horizons are hours from 1 to 24"));
}
