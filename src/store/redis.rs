//! Redis: the latest state of every location (`isobar:loc:{id}:snapshot`, with a TTL)
//! and the cross-instance live feed (`isobar:updates:{id}`). A plain async client; the
//! `Persister` and the `RedisFeed` actor drive it.
//!
//! It connects lazily and keeps retrying: a Redis that is down at start only makes
//! operations fail (and /ready say why) until it answers. Single node through a
//! connection manager (reconnects by itself), or Redis Cluster when `redis.cluster` is
//! set (the `{id}` in the keys is a hash tag, so one location's keys share a slot).

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use tokio::sync::Mutex;

use super::StoreError;
use crate::config::RedisSettings;
use crate::domain::LocationId;

const TIMEOUT: Duration = Duration::from_secs(2);

/// Writes a snapshot unless the key holds a newer one by (epoch, seq): a late write of
/// an instance that no longer owns the location, or a stale spool replayed after a
/// restart, never overwrites its successor's state. Equal ones are rewritten (a replay).
/// KEYS[1] the key; ARGV[1] the snapshot JSON, ARGV[2] its TTL in seconds. Answers 1
/// when written, 0 when refused.
const FENCED_SET: &str = r#"
local new = cjson.decode(ARGV[1])
local current = redis.call('GET', KEYS[1])
if current then
  local ok, old = pcall(cjson.decode, current)
  if ok and type(old) == 'table' then
    local old_epoch, old_seq = tonumber(old.epoch) or 0, tonumber(old.seq) or 0
    local new_epoch, new_seq = tonumber(new.epoch) or 0, tonumber(new.seq) or 0
    if old_epoch > new_epoch or (old_epoch == new_epoch and old_seq > new_seq) then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"#;

fn fenced_set(key: String, json: &str, ttl_secs: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(FENCED_SET).arg(1).arg(key).arg(json).arg(ttl_secs);
    cmd
}

pub fn snapshot_key(id: &LocationId) -> String {
    format!("isobar:loc:{{{id}}}:snapshot")
}

/// Hash of every station's description (stations are known only through readings, so
/// a restarted instance learns them back from here).
pub const STATIONS_KEY: &str = "isobar:stations";

pub fn updates_channel(id: &LocationId) -> String {
    format!("isobar:updates:{id}")
}

/// One write to Redis, as queued by the persister.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisWrite {
    Snapshot { id: LocationId, json: String },
    Station { id: LocationId, json: String },
}

impl RedisWrite {
    /// The queue line: `s` or `t`, the id, the JSON, tab-separated (ids hold no tabs).
    pub fn encode(&self) -> String {
        match self {
            Self::Snapshot { id, json } => format!("s\t{id}\t{json}"),
            Self::Station { id, json } => format!("t\t{id}\t{json}"),
        }
    }

    pub fn decode(line: &str) -> Option<Self> {
        let mut parts = line.splitn(3, '\t');
        let (kind, id, json) = (parts.next()?, parts.next()?, parts.next()?);
        let (id, json) = (LocationId::parse(id).ok()?, json.to_owned());
        match kind {
            "s" => Some(Self::Snapshot { id, json }),
            "t" => Some(Self::Station { id, json }),
            _ => None,
        }
    }
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

pub struct RedisStore {
    client: Option<redis::Client>,
    cluster: Option<ClusterClient>,
    ttl_secs: u64,
    conn: Mutex<Option<Conn>>,
}

fn err(e: redis::RedisError) -> StoreError {
    StoreError::Redis(e.to_string())
}

impl RedisStore {
    /// Validates the URL(s) now; connects on first use.
    pub fn new(settings: &RedisSettings) -> Result<Self, StoreError> {
        let urls: Vec<&str> = settings.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
        let (client, cluster) = if settings.cluster {
            (
                None,
                Some(
                    ClusterClient::builder(urls)
                        .connection_timeout(TIMEOUT)
                        .response_timeout(TIMEOUT)
                        .build()
                        .map_err(err)?,
                ),
            )
        } else {
            (Some(redis::Client::open(urls.first().copied().unwrap_or_default()).map_err(err)?), None)
        };
        Ok(Self { client, cluster, ttl_secs: settings.snapshot_ttl_secs.max(1), conn: Mutex::new(None) })
    }

    /// A client for pub/sub (single node), with the same URL.
    pub fn pubsub_client(&self) -> Option<redis::Client> {
        self.client.clone()
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let conn = match (&self.client, &self.cluster) {
            (Some(client), _) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(2));
                Conn::Single(client.get_connection_manager_with_config(config).await.map_err(err)?)
            }
            (None, Some(cluster)) => Conn::Cluster(cluster.get_async_connection().await.map_err(err)?),
            (None, None) => return Err(StoreError::Redis("no Redis URL configured".into())),
        };
        *slot = Some(conn.clone());
        Ok(conn)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let result: Result<String, _> = match self.conn().await? {
            Conn::Single(mut c) => redis::cmd("PING").query_async(&mut c).await,
            Conn::Cluster(mut c) => redis::cmd("PING").query_async(&mut c).await,
        };
        result.map(drop).map_err(err)
    }

    /// Applies writes in order: snapshots (with the snapshot TTL, fenced: see
    /// `FENCED_SET`) and station descriptions.
    pub async fn write(&self, items: &[RedisWrite]) -> Result<(), StoreError> {
        fail::fail_point!("redis-write", |_| Err(StoreError::Redis("redis-write failpoint".into())));
        match self.conn().await? {
            Conn::Single(mut c) => {
                let mut pipe = redis::pipe();
                for item in items {
                    match item {
                        RedisWrite::Snapshot { id, json } => {
                            pipe.add_command(fenced_set(snapshot_key(id), json, self.ttl_secs)).ignore()
                        }
                        RedisWrite::Station { id, json } => pipe.hset(STATIONS_KEY, id.as_str(), json).ignore(),
                    };
                }
                pipe.query_async::<()>(&mut c).await.map_err(err)
            }
            Conn::Cluster(mut c) => {
                for item in items {
                    match item {
                        RedisWrite::Snapshot { id, json } => fenced_set(snapshot_key(id), json, self.ttl_secs)
                            .query_async::<()>(&mut c)
                            .await
                            .map_err(err)?,
                        RedisWrite::Station { id, json } => {
                            c.hset::<_, _, _, ()>(STATIONS_KEY, id.as_str(), json).await.map_err(err)?
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Every stored station description, by id.
    pub async fn load_stations(&self) -> Result<Vec<(String, String)>, StoreError> {
        let result: Result<Vec<(String, String)>, _> = match self.conn().await? {
            Conn::Single(mut c) => c.hgetall(STATIONS_KEY).await,
            Conn::Cluster(mut c) => c.hgetall(STATIONS_KEY).await,
        };
        result.map_err(err)
    }

    /// One stored station description (registered by any instance).
    pub async fn load_station(&self, id: &LocationId) -> Result<Option<String>, StoreError> {
        let result: Result<Option<String>, _> = match self.conn().await? {
            Conn::Single(mut c) => c.hget(STATIONS_KEY, id.as_str()).await,
            Conn::Cluster(mut c) => c.hget(STATIONS_KEY, id.as_str()).await,
        };
        result.map_err(err)
    }

    pub async fn load_snapshot(&self, id: &LocationId) -> Result<Option<String>, StoreError> {
        let key = snapshot_key(id);
        let value: Result<Option<Vec<u8>>, _> = match self.conn().await? {
            Conn::Single(mut c) => c.get(key).await,
            Conn::Cluster(mut c) => c.get(key).await,
        };
        Ok(value.map_err(err)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// A plain value (the shared upstream response cache).
    /// Runs one command (its keys in one hash slot on a cluster).
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        match self.conn().await? {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
        .map_err(err)
    }

    pub async fn get_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let value: Result<Option<Vec<u8>>, _> = match self.conn().await? {
            Conn::Single(mut c) => c.get(key).await,
            Conn::Cluster(mut c) => c.get(key).await,
        };
        value.map_err(err)
    }

    pub async fn set_value(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let ttl_ms = (ttl.as_millis() as u64).max(1);
        match self.conn().await? {
            Conn::Single(mut c) => {
                redis::cmd("SET").arg(key).arg(value).arg("PX").arg(ttl_ms).query_async(&mut c).await
            }
            Conn::Cluster(mut c) => {
                redis::cmd("SET").arg(key).arg(value).arg("PX").arg(ttl_ms).query_async(&mut c).await
            }
        }
        .map_err(err)
    }

    pub async fn publish(&self, channel: String, payload: String) -> Result<(), StoreError> {
        match self.conn().await? {
            Conn::Single(mut c) => c.publish::<_, _, ()>(channel, payload).await.map_err(err),
            Conn::Cluster(mut c) => c.publish::<_, _, ()>(channel, payload).await.map_err(err),
        }
    }
}
/// The upstream response cache, shared by every instance.
impl crate::sources::upstream::SharedCache for RedisStore {
    fn get<'a>(&'a self, key: &'a str) -> futures_util::future::BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move { self.get_value(key).await.ok().flatten() })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> futures_util::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.set_value(key, &value, ttl).await.map_err(|e| e.to_string()) })
    }
}
