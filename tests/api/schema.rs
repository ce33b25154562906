//! Hostile input from a tool no one here wrote: schemathesis (PyPI) generates requests
//! from /api/openapi.json, valid and invalid, with every check it has (`--checks all`:
//! no 5xx, only documented status codes and content types, answers matching their
//! schemas, invalid input refused, valid input accepted, auth enforced). Per-operation
//! exceptions, each with its reason, are in tests/schemathesis/schemathesis.toml.

use std::process::Command;

use serde_json::json;

use crate::helpers::spawn_app_with;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis/schemathesis.toml");

/// `schemathesis` beside the test Python (`scripts/test` installs it there).
fn schemathesis() -> String {
    let python = crate::helpers::python();
    let dir = std::path::Path::new(&python).parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    dir.join("schemathesis").to_string_lossy().into_owned()
}

#[actix_rt::test]
async fn schemathesis_finds_no_failure_in_the_documented_api() {
    let key = "isb_schemathesis";
    let entry =
        json!({"name": "schemathesis", "sha256": isobar::auth::hash(key), "scope": "admin", "rate_per_sec": 100000});
    // As in production: every write needs a key. The demo replay gives KJFK and friends data.
    let app = spawn_app_with(json!({
        "auth": {"loopback_writes": false, "keys": [entry]},
        "sources": {"replay": {"enabled": true}}
    }))
    .await;
    let schema = app.url("/api/openapi.json");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis())
            .args(["--no-color", "--config-file", CONFIG, "run", &schema])
            .args(["--checks", "all", "--max-examples", "30", "--seed", "1"])
            .args(["-H", &format!("Authorization: Bearer {key}")])
            .output()
    })
    .await
    .unwrap()
    .expect("schemathesis runs (`bash scripts/test` installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.rsplit("SUMMARY").next().unwrap_or(&stdout);
    println!("schemathesis: {}", summary.trim());
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
