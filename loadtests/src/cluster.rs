//! The cluster scenario's two roles (`loadtests/cluster.sh` runs them against several
//! isobar instances behind nginx, sharing Kafka, Redis and InfluxDB):
//!
//! - `cluster-clients`: WebSocket clients that behave like real ones. Each follows one
//!   location; when its connection drops it reconnects with a capped, jittered backoff
//!   and resubscribes with the last `seq` it saw. It measures ingest→client latency on
//!   live updates, counts updates lost without notice (a `seq` that jumps with no
//!   snapshot saying so), updates announced as missed, and how long each reconnecting
//!   client went without updates.
//! - `cluster-produce`: readings produced to the readings topic at a steady rate, each
//!   stamped with its send time, keyed by location; prints how many the broker acked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{histogram, percentiles, result, small_ws_config};

#[derive(Args)]
pub struct ClientsArgs {
    /// ws://host:port/v1/ws (the load balancer), or several separated by commas: client i
    /// connects to the (first + i) % n-th. A connection from 127.0.0.1 to one address and
    /// port takes one of the kernel's ~28,000 ephemeral ports, so past that many clients
    /// the load balancer must listen on several loopback addresses.
    #[arg(long, value_delimiter = ',', required = true)]
    pub url: Vec<String>,
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Client i follows location `{prefix}{(first + i) % locations}`.
    #[arg(long, default_value_t = 1000)]
    pub locations: usize,
    #[arg(long, default_value_t = 0)]
    pub first: usize,
    #[arg(long, default_value = "CLU")]
    pub prefix: String,
    /// Seconds from the start (connecting included) until the clients stop and report.
    #[arg(long, default_value_t = 60.0)]
    pub duration_secs: f64,
    /// Connections opened at once while ramping up.
    #[arg(long, default_value_t = 200)]
    pub ramp_batch: usize,
    /// Unix time (ms) from which latencies go to a second histogram: the steady state
    /// before an instance is killed, and what follows.
    #[arg(long, default_value_t = u64::MAX)]
    pub split_at_unix_ms: u64,
}

#[derive(Args)]
pub struct ProduceArgs {
    #[arg(long)]
    pub brokers: String,
    #[arg(long, default_value = "isobar.readings")]
    pub topic: String,
    #[arg(long, default_value_t = 1000)]
    pub locations: usize,
    #[arg(long, default_value = "CLU")]
    pub prefix: String,
    /// Readings per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 60.0)]
    pub duration_secs: f64,
}

/// What every client task adds to.
#[derive(Default)]
struct Tally {
    updates: AtomicU64,
    lost: AtomicU64,
    missed: AtomicU64,
    resets: AtomicU64,
    disconnects: AtomicU64,
    reconnects: AtomicU64,
    subscribed: AtomicU64,
    /// `error` messages from the server, by code.
    errors: Counts,
    /// Why connections ended: the close frame's code and reason, or the transport's error.
    closes: Counts,
    /// Why connection attempts failed (timed out, refused, an HTTP status instead of 101).
    connect_failures: Counts,
    /// Longest a reconnecting client went from losing its connection to its next update, ms.
    worst_gap_ms: AtomicU64,
    /// The same, the sum over reconnections (for the mean).
    gap_ms_sum: AtomicU64,
    gaps: AtomicU64,
}

/// Backoff before reconnect attempt `n`: 100 ms doubling to 3.2 s, with up to 50 % jitter.
fn backoff(n: u32) -> Duration {
    let base = 100u64 << n.min(5);
    Duration::from_millis(base / 2 + fastrand::u64(..=base / 2))
}

type Shared = Arc<Mutex<Histogram<u64>>>;

/// How many times each reason was seen.
type Counts = Mutex<std::collections::BTreeMap<String, u64>>;

fn count(counts: &Counts, key: String) {
    if let Ok(mut counts) = counts.lock() {
        *counts.entry(key).or_default() += 1;
    }
}

fn counted(counts: &Counts) -> std::collections::BTreeMap<String, u64> {
    counts.lock().map(|c| c.clone()).unwrap_or_default()
}

/// A short name for a WebSocket error: why an attempt to connect failed, or why an open
/// connection broke.
fn error_kind(error: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match error {
        Error::Http(response) => format!("http {}", response.status().as_u16()),
        Error::Io(e) => format!("io {:?}", e.kind()),
        Error::ConnectionClosed | Error::AlreadyClosed => "closed".into(),
        // What a client sees when the balancer drops it because its instance died.
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => "reset without a closing handshake".into(),
        Error::Protocol(e) => format!("protocol: {e}"),
        _ => "other".into(),
    }
}

async fn client(url: String, location: String, end: Instant, tally: Arc<Tally>, h: [Shared; 2], split: u64) {
    let mut last_seq: Option<u64> = None;
    // Set when the connection is lost; cleared by the first update after it.
    let mut lost_at: Option<Instant> = None;
    let mut attempt = 0u32;
    let mut first = true;
    while Instant::now() < end {
        let connected = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(small_ws_config()), true),
        )
        .await;
        let mut ws = match connected {
            Ok(Ok((ws, _))) => ws,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => error_kind(&e),
                    _ => "timeout (10 s)".into(),
                };
                count(&tally.connect_failures, why);
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
        };
        let mut subscribe = json!({"type": "subscribe", "locations": [location]});
        if let Some(seq) = last_seq {
            subscribe["since"] = json!({ location.as_str(): seq });
        }
        if ws.send(Message::Text(subscribe.to_string().into())).await.is_err() {
            continue;
        }
        if !first {
            tally.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        attempt = 0;
        loop {
            let next = tokio::time::timeout(end.saturating_duration_since(Instant::now()), ws.next()).await;
            let Ok(message) = next else { return };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    let why =
                        frame.map_or("close, no code".into(), |f| format!("close {} {}", u16::from(f.code), f.reason));
                    count(&tally.closes, why);
                    break;
                }
                Some(Err(e)) => {
                    count(&tally.closes, format!("error: {}", error_kind(&e)));
                    break;
                }
                None => {
                    count(&tally.closes, "end of stream".into());
                    break;
                }
                Some(Ok(_)) => continue,
            };
            let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
            let seq = v["seq"].as_u64();
            match v["type"].as_str() {
                Some("snapshot") => {
                    if first {
                        tally.subscribed.fetch_add(1, Ordering::Relaxed);
                        first = false;
                    }
                    tally.missed.fetch_add(v["missed"].as_u64().unwrap_or(0), Ordering::Relaxed);
                    if v["reset"] == true {
                        tally.resets.fetch_add(1, Ordering::Relaxed);
                    }
                    last_seq = seq;
                }
                Some("resumed") => last_seq = seq,
                // A real client subscribes again when the server could not do it now
                // (`unavailable`) and gives up on anything else; either way it is counted.
                Some("error") => {
                    let code = v["code"].as_str().unwrap_or("").to_owned();
                    let retry = code == "unavailable";
                    count(&tally.errors, code);
                    if retry {
                        tokio::time::sleep(backoff(0)).await;
                        if ws.send(Message::Text(subscribe.to_string().into())).await.is_err() {
                            break;
                        }
                    }
                }
                Some("update") => {
                    let Some(seq) = seq else { continue };
                    if let Some(last) = last_seq
                        && seq > last + 1
                    {
                        tally.lost.fetch_add(seq - last - 1, Ordering::Relaxed);
                    }
                    last_seq = Some(seq);
                    tally.updates.fetch_add(1, Ordering::Relaxed);
                    if let Some(at) = lost_at.take() {
                        let ms = at.elapsed().as_millis() as u64;
                        tally.worst_gap_ms.fetch_max(ms, Ordering::Relaxed);
                        tally.gap_ms_sum.fetch_add(ms, Ordering::Relaxed);
                        tally.gaps.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let sent = v
                        .pointer("/data/observed_at")
                        .and_then(Value::as_str)
                        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
                    if let Some(sent) = sent {
                        let now = chrono::Utc::now();
                        let us = (now - sent.with_timezone(&chrono::Utc)).num_microseconds().unwrap_or(0);
                        let after = u64::try_from(now.timestamp_millis()).unwrap_or(0) >= split;
                        if let Ok(mut h) = h[usize::from(after)].lock() {
                            h.record(us.max(1) as u64).ok();
                        }
                    }
                }
                _ => {}
            }
        }
        if Instant::now() >= end {
            return;
        }
        tally.disconnects.fetch_add(1, Ordering::Relaxed);
        lost_at.get_or_insert_with(Instant::now);
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
    }
}

pub async fn clients(args: ClientsArgs) -> Result<()> {
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.duration_secs);
    let tally = Arc::new(Tally::default());
    // One histogram for the process: one per client would cost more than the clients.
    let shared: [Shared; 2] = [Arc::new(Mutex::new(histogram())), Arc::new(Mutex::new(histogram()))];
    let mut tasks = Vec::new();
    let m = args.locations.max(1);
    for batch in (0..args.clients).collect::<Vec<_>>().chunks(args.ramp_batch.max(1)) {
        for &i in batch {
            let location = format!("{}{}", args.prefix, (args.first + i) % m);
            let url = args.url[(args.first + i) % args.url.len()].clone();
            let split = args.split_at_unix_ms;
            tasks.push(tokio::spawn(client(url, location, end, tally.clone(), shared.clone(), split)));
        }
        // Let a batch connect before the next: nginx and the instances accept in bursts.
        let target = tally.subscribed.load(Ordering::Relaxed) + batch.len() as u64;
        let wait = Instant::now() + Duration::from_secs(5);
        while tally.subscribed.load(Ordering::Relaxed) < target && Instant::now() < wait {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let ramp = started.elapsed().as_secs_f64();
    println!(
        "cluster-clients: {} of {} clients subscribed in {ramp:.1} s",
        tally.subscribed.load(Ordering::Relaxed),
        args.clients
    );
    for t in tasks {
        let _ = t.await;
    }
    let [before, after] = shared.map(|h| h.lock().map(|h| h.clone()).unwrap_or_else(|_| histogram()));
    let mut h = before.clone();
    h.add(&after)?;
    let recorded =
        |h: &Histogram<u64>| h.iter_recorded().map(|v| [v.value_iterated_to(), v.count_at_value()]).collect::<Vec<_>>();
    let seconds = (args.duration_secs - ramp).max(1.0);
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let gaps = get(&tally.gaps);
    let (errors, closes, connect_failures) =
        (counted(&tally.errors), counted(&tally.closes), counted(&tally.connect_failures));
    println!(
        "cluster-clients: {} updates ({:.0}/s after the ramp), lost {}, announced missed {}, resets {}, disconnects {}, reconnects {}, worst gap {} ms, errors {errors:?}, closes {closes:?}, failed connects {connect_failures:?}",
        get(&tally.updates),
        get(&tally.updates) as f64 / seconds,
        get(&tally.lost),
        get(&tally.missed),
        get(&tally.resets),
        get(&tally.disconnects),
        get(&tally.reconnects),
        get(&tally.worst_gap_ms)
    );
    result(json!({
        "scenario": "cluster-clients", "clients": args.clients, "subscribed": get(&tally.subscribed),
        "ramp_secs": ramp, "updates": get(&tally.updates), "lost": get(&tally.lost),
        "missed_announced": get(&tally.missed), "resets": get(&tally.resets),
        "disconnects": get(&tally.disconnects), "reconnects": get(&tally.reconnects),
        "worst_gap_ms": get(&tally.worst_gap_ms), "gaps": gaps, "errors": errors,
        "closes": closes, "connect_failures": connect_failures,
        "mean_gap_ms": get(&tally.gap_ms_sum).checked_div(gaps).unwrap_or(0),
        "latency": percentiles(&h), "histogram_us": recorded(&before), "histogram_after_us": recorded(&after),
    }));
    Ok(())
}

pub async fn produce(args: ProduceArgs) -> Result<()> {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        // The Java client's partitioner, as isobar's producers use.
        .set("partitioner", "murmur2_random")
        .create()?;
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let topic: Arc<str> = Arc::from(args.topic.as_str());
    let m = args.locations.max(1);
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.duration_secs);
    let mut next = started;
    let mut k = 0usize;
    let mut pending = futures_util::stream::FuturesUnordered::new();
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        let location = format!("{}{}", args.prefix, k % m);
        // Each round over the locations changes every temperature, so each is an update.
        let round = k / m;
        let payload = format!(
            r#"{{"location_id":"{location}","source":"station","observed_at":"{}","temperature":{:.1}}}"#,
            crate::now_rfc3339_ms(),
            (round % 50) as f64 / 10.0 + 0.1
        );
        let (producer, acked, failed, topic) = (producer.clone(), acked.clone(), failed.clone(), topic.clone());
        pending.push(async move {
            let record = FutureRecord::to(&topic).key(&location).payload(&payload);
            match producer.send(record, Duration::from_secs(30)).await {
                Ok(_) => acked.fetch_add(1, Ordering::Relaxed),
                Err(_) => failed.fetch_add(1, Ordering::Relaxed),
            };
        });
        while pending.len() > 10_000 {
            pending.next().await;
        }
        // Drive deliveries between sends without waiting on them.
        while let Some(Some(())) = futures_util::FutureExt::now_or_never(pending.next()) {}
        k += 1;
        next += interval;
    }
    while pending.next().await.is_some() {}
    let seconds = started.elapsed().as_secs_f64();
    let (acked, failed) = (acked.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "cluster-produce: {k} readings sent in {seconds:.1} s ({:.0}/s), {acked} acked, {failed} failed",
        k as f64 / seconds
    );
    result(json!({"scenario": "cluster-produce", "sent": k, "acked": acked, "failed": failed, "seconds": seconds}));
    Ok(())
}
