//! Real servers for the tests: Debian's `redis-server` and `influxd`, and `tansu` (an
//! Apache Kafka compatible broker), each on free loopback ports with a throwaway data
//! directory, started and killed by the test itself (so a test can SIGKILL one
//! mid-stream and bring it back on the same port and data). The README's test command
//! installs all three when they are missing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn require(binary: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join(binary);
        if p.exists() {
            return p;
        }
    }
    panic!("{binary} not found: install Debian's {package} (`bash scripts/test` does it)");
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start within 20 s");
}

/// A server process that is SIGKILLed when killed, replaced or dropped.
#[derive(Default)]
struct Running(Option<Child>);

impl Running {
    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    child: Running,
}

impl Redis {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Extra `redis-server` arguments, e.g. `["--requirepass", "secret"]`.
    pub fn start_with(extra: &[&str]) -> Self {
        let mut r = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: Running::default(),
        };
        r.launch();
        r
    }

    fn launch(&mut self) {
        let child = Command::new(require("redis-server", "redis-server"))
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            // Every acknowledged write survives a SIGKILL, as in a durable deployment.
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Running(Some(child));
        let port = self.port;
        wait_until("redis-server", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
                let _ = s.write_all(b"PING\r\n");
                let mut buf = [0u8; 64];
                s.set_read_timeout(Some(Duration::from_millis(500))).ok();
                s.read(&mut buf).is_ok_and(|n| n > 0)
            })
        });
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        self.child.kill();
    }

    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }
}

pub struct Influx {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Running,
}

impl Influx {
    pub fn start() -> Self {
        let mut i = Self { port: free_port(), dir: tempfile::tempdir().unwrap(), child: Running::default() };
        i.launch();
        i
    }

    /// A port and data directory, without a running server (for "down at start").
    pub fn stopped() -> Self {
        Self { port: free_port(), dir: tempfile::tempdir().unwrap(), child: Running::default() }
    }

    pub fn launch(&mut self) {
        let d = self.dir.path();
        let rpc = free_port();
        let config = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{m}\"\n  logging-enabled = false\n\
             [data]\n  dir = \"{data}\"\n  wal-dir = \"{wal}\"\n  query-log-enabled = false\n  trace-logging-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [continuous_queries]\n  enabled = false\n",
            m = d.join("meta").display(),
            data = d.join("data").display(),
            wal = d.join("wal").display(),
            port = self.port,
        );
        let path = d.join("influxdb.conf");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(require("influxd", "influxdb"))
            .arg("-config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("influxd starts");
        self.child = Running(Some(child));
        let port = self.port;
        wait_until("influxd", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
                let _ = s.write_all(b"GET /ping HTTP/1.0\r\n\r\n");
                let mut buf = [0u8; 32];
                s.set_read_timeout(Some(Duration::from_millis(500))).ok();
                s.read(&mut buf).is_ok_and(|n| n >= 12 && &buf[9..12] == b"204")
            })
        });
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        self.child.kill();
    }

    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Runs an InfluxQL query against database `isobar`; returns the JSON answer.
    pub async fn query(&self, q: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}/query", self.url()))
            .query(&[("db", "isobar"), ("q", q), ("epoch", "ms")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `count(temperature)` of `readings`, 0 when there are none.
    pub async fn count_readings(&self, filter: &str) -> u64 {
        let body = self.query(&format!("SELECT count(temperature) FROM readings {filter}")).await;
        body.pointer("/results/0/series/0/values/0/1").and_then(|v| v.as_u64()).unwrap_or(0)
    }
}

/// Kafka topics the broker tests use, with their partition counts.
const TOPICS: [(&str, u32); 3] = [("isobar.readings", 3), ("isobar.readings.dlq", 1), ("isobar.updates", 3)];

/// A standalone Kafka broker: tansu with its log and group offsets in SQLite, so both
/// survive a SIGKILL and restart.
pub struct Tansu {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Running,
}

/// `tansu` from PATH, else cargo's bin directory (where `cargo install` puts it).
fn tansu_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("tansu"))
        .find(|p| p.exists());
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|d| d.join("bin/tansu"))
        .filter(|p| p.exists());
    on_path.or(cargo_bin).unwrap_or_else(|| {
        panic!("tansu not found: `cargo install tansu --version 0.6.0 --locked --features dynostore,libsql` (`bash scripts/test` does it)")
    })
}

impl Tansu {
    /// A broker with the isobar topics created.
    pub fn start() -> Self {
        Self::start_with_topics(&TOPICS)
    }

    /// A broker with only `topics` created (tansu creates none by itself).
    pub fn start_with_topics(topics: &[(&str, u32)]) -> Self {
        let mut t = Self { port: free_port(), dir: tempfile::tempdir().unwrap(), child: Running::default() };
        t.launch();
        for (topic, partitions) in topics {
            t.create_topic(topic, *partitions);
        }
        t
    }

    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let status = Command::new(tansu_binary())
            .args(["topic", "create", topic, "--partitions", &partitions.to_string(), "--broker", &self.url()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("tansu topic create runs");
        assert!(status.success(), "tansu could not create {topic}");
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let url = self.url();
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("broker.log")).unwrap();
        let child = Command::new(tansu_binary())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        self.child = Running(Some(child));
        let port = self.port;
        wait_until("tansu", || TcpStream::connect(("127.0.0.1", port)).is_ok());
    }

    /// For `kafka.brokers` and clients.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Back on the same port with the same storage.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}
