//! The dashboard and the API docs page, served from the binary: headers here; the pages
//! themselves in Debian's chromium, driven by playwright-core (`web/e2e/dashboard.mjs`)
//! against `isobar serve --profile demo`.

use std::process::Command;

use crate::helpers::spawn_app;

#[actix_rt::test]
async fn the_dashboard_and_the_api_docs_are_served_with_their_caching_and_policies() {
    let app = spawn_app().await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-cache");
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'self'; connect-src 'self' ws: wss:")
    );
    let html = page.text().await.unwrap();
    let script = html.split("src=\"").nth(1).and_then(|s| s.split('"').next()).expect("index.html loads a script");
    assert!(script.starts_with("/assets/index-") && script.ends_with(".js"), "{script}");
    let asset = app.get(script).await;
    assert_eq!(asset.status(), 200);
    assert_eq!(asset.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(asset.headers()["content-type"], "text/javascript; charset=utf-8");
    let head = app.client.head(app.url(script)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let (status, problem) = app.get_json("/assets/nothing-here.js").await;
    assert_eq!((status, problem["detail"].as_str()), (404, Some("no asset nothing-here.js")));
    let docs = app.get("/api/docs/").await;
    assert_eq!(docs.status(), 200);
    assert!(docs.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    assert!(docs.text().await.unwrap().contains("swagger"));
    let init = app.get("/api/docs/swagger-initializer.js").await.text().await.unwrap();
    assert!(init.contains("\"url\": \"/api/openapi.json\""), "{init}");
}

#[test]
fn the_dashboard_end_to_end_in_chromium_against_the_demo() {
    // The demo, four times as fast (a dataset hour every 0.5 s): a temperature can stay the
    // same for two or three recorded hours, and the run waits at most 5 s for a change.
    let (mut child, address, _logs) =
        crate::process::serve_with(&["serve", "--profile", "demo"], &[("ISOBAR__SOURCES__REPLAY__SPEED", "7200")]);
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/web/e2e/screenshots");
    let out = Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/web/e2e/dashboard.mjs"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/web"))
        .env("ISOBAR_URL", format!("http://{address}"))
        .env("ISOBAR_SHOTS", shots)
        .output()
        .expect("node runs; `bash scripts/test` installs Node, chromium and web/node_modules");
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
