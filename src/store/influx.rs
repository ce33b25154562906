//! InfluxDB 1.x over its HTTP API: points in line protocol to `/write` (millisecond
//! precision), history from `/query`. A plain async client driven by the `Persister`.
//!
//! A 400 is a partial write: InfluxDB keeps the good points of a batch and names the bad
//! ones (a field type conflict, say), so the batch is done and the rejects are reported,
//! never retried forever. The database is created on first contact.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::StoreError;
use crate::config::InfluxSettings;
use crate::domain::{Anomaly, AnomalyKind, Band, LocationId, QUANTITIES, Quantity, Reading, Severity, SourceName};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A reqwest error with its causes ("connection closed before message completed", …).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    format!("cannot reach InfluxDB: {message}")
}

pub struct InfluxStore {
    client: reqwest::Client,
    url: String,
    database: String,
    username: String,
    password: String,
}

/// A write InfluxDB answered: how many points it refused and why.
#[derive(Debug, Default, PartialEq)]
pub struct WriteOutcome {
    pub rejected: Option<String>,
}

impl InfluxStore {
    pub fn new(settings: &InfluxSettings) -> Self {
        Self {
            client: reqwest::Client::builder().timeout(TIMEOUT).build().unwrap_or_else(|_| reqwest::Client::new()),
            url: settings.url.trim_end_matches('/').to_owned(),
            database: settings.database.clone(),
            username: settings.username.clone(),
            password: settings.password.clone(),
        }
    }

    fn auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.username.is_empty() {
            request
        } else {
            // In a header, not the URL: URLs end up in logs and error messages.
            request.basic_auth(&self.username, Some(&self.password))
        }
    }

    async fn query(&self, q: &str, post: bool) -> Result<Value, StoreError> {
        let url = format!("{}/query", self.url);
        let request = if post { self.client.post(url) } else { self.client.get(url) };
        let request = self.auth(request).query(&[("q", q), ("db", self.database.as_str()), ("epoch", "ms")]);
        let response = request.send().await.map_err(|e| StoreError::Influx(describe(e)))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| StoreError::Influx(format!("bad answer: {e}")))?;
        if !status.is_success() {
            let error = body.get("error").and_then(Value::as_str).unwrap_or("no detail");
            return Err(StoreError::Influx(format!("HTTP {}: {error}", status.as_u16())));
        }
        if let Some(error) = body.pointer("/results/0/error").and_then(Value::as_str) {
            return Err(StoreError::Influx(error.to_owned()));
        }
        Ok(body)
    }

    /// Checks that InfluxDB answers and accepts the credentials; creates the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.query(&format!("CREATE DATABASE \"{}\"", self.database), true).await.map(drop)
    }

    pub async fn write(&self, lines: &[String]) -> Result<WriteOutcome, StoreError> {
        fail::fail_point!("influx-write", |_| Err(StoreError::Influx("influx-write failpoint".into())));
        let url = format!("{}/write", self.url);
        let send = || {
            self.auth(self.client.post(&url))
                .query(&[("db", self.database.as_str()), ("precision", "ms")])
                .body(lines.join("\n"))
                .send()
        };
        // A pooled keep-alive connection the server just closed fails at once: one retry
        // on a fresh connection tells that apart from a server that is really down.
        let mut response = match send().await {
            Ok(r) => r,
            Err(_) => send().await.map_err(|e| StoreError::Influx(describe(e)))?,
        };
        if response.status().as_u16() == 404 {
            // Database missing (a fresh or wiped server): create it and try once more.
            let _ = response.bytes().await;
            self.ping().await?;
            response = send().await.map_err(|e| StoreError::Influx(describe(e)))?;
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        match status {
            200..=299 => Ok(WriteOutcome::default()),
            400 => Ok(WriteOutcome { rejected: Some(text.trim().to_owned()) }),
            _ => Err(StoreError::Influx(format!("write failed (HTTP {status}): {}", text.trim()))),
        }
    }

    /// Anomalies of `id` that started in [from, to], oldest first.
    pub async fn anomalies(
        &self,
        id: &LocationId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Anomaly>, StoreError> {
        let q = format!("SELECT * FROM anomalies WHERE {} ORDER BY time ASC", range(id, from, to));
        let body = self.query(&q, false).await?;
        let (columns, rows) = table(&body);
        let column = |name: &str| columns.iter().position(|c| *c == name);
        let time = |v: &Value| v.as_i64().and_then(DateTime::from_timestamp_millis);
        Ok(rows
            .iter()
            .filter_map(|row| {
                let cell = |name: &str| column(name).and_then(|i| row.get(i)).filter(|v| !v.is_null());
                let text = |name: &str| cell(name).and_then(Value::as_str);
                let number = |name: &str| cell(name).and_then(Value::as_f64);
                Some(Anomaly {
                    id: text("id")?.to_owned(),
                    quantity: Quantity::from_name(text("quantity")?)?,
                    kind: AnomalyKind::from_name(text("kind")?)?,
                    source: SourceName::parse(text("source")?)?,
                    started_at: time(cell("time")?)?,
                    observed_at: time(cell("observed_at")?)?,
                    ended_at: cell("ended_at").and_then(time),
                    value: number("value")?,
                    expected: Band { low: number("expected_low")?, high: number("expected_high")? },
                    severity: Severity::from_name(text("severity")?).unwrap_or(Severity::High),
                    score: number("score")?,
                })
            })
            .collect())
    }

    /// Readings of `id` in [from, to], oldest first; with `step_secs`, the mean of each
    /// quantity per step (source `mean`).
    pub async fn history(
        &self,
        id: &LocationId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_secs: Option<u64>,
    ) -> Result<Vec<Reading>, StoreError> {
        let range = range(id, from, to);
        let q = match step_secs {
            None => format!("SELECT * FROM readings WHERE {range} ORDER BY time ASC"),
            Some(step) => {
                let means: Vec<String> =
                    QUANTITIES.iter().map(|s| format!("mean({0}) AS {0}", s.influx_field)).collect();
                format!("SELECT {} FROM readings WHERE {range} GROUP BY time({step}s) fill(none)", means.join(", "))
            }
        };
        let body = self.query(&q, false).await?;
        let (columns, rows) = table(&body);
        let column = |name: &str| columns.iter().position(|c| *c == name);
        let mean = SourceName::parse("mean").unwrap_or_else(|| unreachable!("static name"));
        Ok(rows
            .iter()
            .filter_map(|row| {
                let cell = |name: &str| column(name).and_then(|i| row.get(i));
                let at = DateTime::from_timestamp_millis(cell("time")?.as_i64()?)?;
                let source = match cell("source").and_then(Value::as_str) {
                    Some(s) => SourceName::parse(s)?,
                    None => mean.clone(),
                };
                let mut r = Reading::new(id.clone(), source, at);
                for spec in &QUANTITIES {
                    let value = cell(spec.influx_field).and_then(Value::as_f64);
                    r.set(spec.quantity, value.map(|v| (v * 100.0).round() / 100.0));
                }
                r.weather_code = cell("weather_code").and_then(Value::as_u64).and_then(|c| u8::try_from(c).ok());
                Some(r)
            })
            .collect())
    }
}

/// The points of one location between two times (the `WHERE` of every query here; the id
/// is a validated location id, which cannot hold a quote).
fn range(id: &LocationId, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    format!(
        "location = '{}' AND time >= {}ms AND time <= {}ms",
        id.as_str(),
        from.timestamp_millis(),
        to.timestamp_millis()
    )
}

/// The column names and rows of a query's first series (none when it found nothing).
fn table(body: &Value) -> (Vec<&str>, &[Value]) {
    let Some(series) = body.pointer("/results/0/series/0") else { return (Vec::new(), &[]) };
    let columns = series
        .get("columns")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let rows = series.get("values").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    (columns, rows)
}
