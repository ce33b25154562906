//! API keys: who may read, write and administer.
//!
//! A key is 256 random bits (`isb_` + 64 hex digits), printed once by
//! `isobar keys create` and kept only as its SHA-256 hash: in Redis when it is configured
//! (the hash `isobar:apikeys`, shared by every instance), else in
//! `<persist.data_dir>/api-keys.json`; `auth.keys` in a config file may list more hashes.
//! A running instance holds them in a [`KeyRing`] reloaded every [`RELOAD_EVERY`], so a
//! key created or revoked through any instance (or the command) counts everywhere within
//! a second.
//!
//! Each key has a scope (`read` < `write` < `admin`: a scope includes the ones below it),
//! optionally the source names it may write as (default `station`), and optionally its
//! own rate limit. [`StationQuota`] counts the stations each key created.

pub mod key;
pub mod limits;

pub use self::key::{KeyRecord, Scope};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::warn;

use crate::config::{AuthSettings, Settings};
use crate::domain::LocationId;
use crate::store::StoreError;
use crate::store::redis::RedisStore;

/// How often a running instance reloads the keys.
pub const RELOAD_EVERY: Duration = Duration::from_millis(500);
const REDIS_KEYS: &str = "isobar:apikeys";
const KEYS_FILE: &str = "api-keys.json";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("a key named {0:?} exists already")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
}

/// A new key: `isb_` and 256 bits from the operating system's random source.
pub fn generate() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Invalid(format!("no random source: {e}")))?;
    Ok(format!("isb_{}", hex::encode(bytes)))
}

/// What is stored of a key.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A key name: 1–64 of `A-Z a-z 0-9 . _ -`.
pub fn check_name(name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(AuthError::Invalid(format!("invalid key name {name:?}: 1-64 of A-Z a-z 0-9 . _ -"))) }
}

/// Where keys are kept.
#[derive(Clone)]
pub enum KeyStore {
    Redis(Arc<RedisStore>),
    File(PathBuf),
}

impl KeyStore {
    /// Redis when it is configured, else the file under `persist.data_dir`.
    pub fn from_settings(settings: &Settings, redis: Option<Arc<RedisStore>>) -> Result<Self, AuthError> {
        match redis {
            Some(redis) => Ok(Self::Redis(redis)),
            None if !settings.redis.url.trim().is_empty() => {
                Ok(Self::Redis(Arc::new(RedisStore::new(&settings.redis)?)))
            }
            None => Ok(Self::File(Path::new(&settings.persist.data_dir).join(KEYS_FILE))),
        }
    }

    /// Where, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Redis(_) => format!("Redis ({REDIS_KEYS})"),
            Self::File(path) => path.display().to_string(),
        }
    }

    pub async fn all(&self) -> Result<Vec<KeyRecord>, AuthError> {
        match self {
            Self::Redis(redis) => {
                let raw: Vec<(String, String)> = redis.query(redis::cmd("HGETALL").arg(REDIS_KEYS)).await?;
                Ok(raw
                    .into_iter()
                    .filter_map(|(name, json)| {
                        let record = serde_json::from_str::<KeyRecord>(&json).ok().filter(|r| r.name == name);
                        if record.is_none() {
                            warn!(key = name, "ignoring a foreign value in the API key hash");
                        }
                        record
                    })
                    .collect())
            }
            Self::File(path) => read_file(path),
        }
    }

    /// Stores a new key; refuses a name in use.
    pub async fn create(&self, record: &KeyRecord) -> Result<(), AuthError> {
        check_name(&record.name)?;
        let json = serde_json::to_string(record).map_err(|e| AuthError::Invalid(e.to_string()))?;
        match self {
            Self::Redis(redis) => {
                let added: i64 = redis.query(redis::cmd("HSETNX").arg(REDIS_KEYS).arg(&record.name).arg(json)).await?;
                if added == 0 {
                    return Err(AuthError::Exists(record.name.clone()));
                }
                Ok(())
            }
            Self::File(path) => {
                let mut records = read_file(path)?;
                if records.iter().any(|r| r.name == record.name) {
                    return Err(AuthError::Exists(record.name.clone()));
                }
                records.push(record.clone());
                write_file(path, &records)
            }
        }
    }

    /// Removes a key; `false` when there was none of that name.
    pub async fn revoke(&self, name: &str) -> Result<bool, AuthError> {
        match self {
            Self::Redis(redis) => {
                let removed: i64 = redis.query(redis::cmd("HDEL").arg(REDIS_KEYS).arg(name)).await?;
                Ok(removed > 0)
            }
            Self::File(path) => {
                let mut records = read_file(path)?;
                let before = records.len();
                records.retain(|r| r.name != name);
                if records.len() == before {
                    return Ok(false);
                }
                write_file(path, &records)?;
                Ok(true)
            }
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<KeyRecord>, AuthError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| AuthError::Invalid(format!("{}: not a list of keys: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Through a temporary file renamed over the old one, readable by the owner only.
fn write_file(path: &Path, records: &[KeyRecord]) -> Result<(), AuthError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(records).map_err(|e| AuthError::Invalid(e.to_string()))?;
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    Ok(())
}

/// The keys a running instance honours, by hash: the configured ones and the store's.
pub struct KeyRing {
    store: KeyStore,
    configured: Vec<KeyRecord>,
    by_hash: RwLock<HashMap<String, Arc<KeyRecord>>>,
}

impl KeyRing {
    pub fn new(store: KeyStore, auth: &AuthSettings) -> Self {
        let configured: Vec<KeyRecord> =
            auth.keys.iter().map(|k| KeyRecord { sha256: k.sha256.to_ascii_lowercase(), ..k.clone() }).collect();
        let ring = Self { store, configured, by_hash: RwLock::default() };
        ring.replace(Vec::new());
        ring
    }

    /// The key presented, if it is one of ours.
    pub fn find(&self, presented: &str) -> Option<Arc<KeyRecord>> {
        let hashed = hash(presented);
        self.by_hash.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&hashed).cloned()
    }

    fn replace(&self, stored: Vec<KeyRecord>) {
        let map = self.configured.iter().cloned().chain(stored).map(|r| (r.sha256.clone(), Arc::new(r))).collect();
        *self.by_hash.write().unwrap_or_else(std::sync::PoisonError::into_inner) = map;
    }

    /// Reads the store again; on failure the keys known so far stay (logged once per
    /// outage).
    pub async fn reload(&self, failing: &mut bool) {
        match self.store.all().await {
            Ok(stored) => {
                if std::mem::take(failing) {
                    warn!("API keys readable again");
                }
                self.replace(stored);
            }
            Err(e) => {
                if !*failing {
                    warn!(error = %e, store = self.store.describe(), "cannot reload the API keys; the last ones known stay in force");
                }
                *failing = true;
            }
        }
    }

    /// Reloads every [`RELOAD_EVERY`] on the current arbiter, for as long as it runs.
    pub fn keep_reloading(self: &Arc<Self>) {
        let ring = Arc::downgrade(self);
        actix_rt::spawn(async move {
            let mut failing = false;
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(ring) = ring.upgrade() else { return };
                ring.reload(&mut failing).await;
            }
        });
    }
}

/// How many new stations each key created: in Redis (one set per key, shared) when it is
/// configured, else in this process.
pub enum StationQuota {
    Redis(Arc<RedisStore>),
    Memory(std::sync::Mutex<HashMap<String, std::collections::HashSet<LocationId>>>),
}

/// Adds the ids to the key's set unless that would pass the limit; answers the set's size
/// before, or -1 when refused.
const TAKE_STATIONS: &str = r"
local have = redis.call('SCARD', KEYS[1])
local limit = tonumber(ARGV[1])
local new = 0
for i = 2, #ARGV do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 0 then new = new + 1 end
end
if have + new > limit then return -have - 1 end
for i = 2, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
return have
";

impl StationQuota {
    pub fn new(redis: Option<Arc<RedisStore>>) -> Self {
        match redis {
            Some(redis) => Self::Redis(redis),
            None => Self::Memory(Default::default()),
        }
    }

    /// Counts `ids` (new stations) against `key`'s limit: `Err(created so far)` when they
    /// would pass it.
    pub async fn take(&self, key: &str, ids: &[LocationId], limit: usize) -> Result<Result<(), usize>, StoreError> {
        if ids.is_empty() {
            return Ok(Ok(()));
        }
        match self {
            Self::Redis(redis) => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(TAKE_STATIONS).arg(1).arg(format!("isobar:apikey:{{{key}}}:stations")).arg(limit);
                for id in ids {
                    cmd.arg(id.as_str());
                }
                let have: i64 = redis.query(&cmd).await?;
                Ok(if have < 0 { Err((-have - 1) as usize) } else { Ok(()) })
            }
            Self::Memory(sets) => {
                let mut sets = sets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let set = sets.entry(key.to_owned()).or_default();
                let new = ids.iter().filter(|id| !set.contains(*id)).count();
                if set.len() + new > limit {
                    return Ok(Err(set.len()));
                }
                set.extend(ids.iter().cloned());
                Ok(Ok(()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_256_random_bits_and_only_its_hash_is_kept() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert!(a.starts_with("isb_"));
        assert_eq!(hash("isb_test"), hex::encode(Sha256::digest(b"isb_test")));
        assert_eq!(hash(&a).len(), 64);
    }

    #[test]
    fn scopes_include_the_ones_below_them() {
        assert!(Scope::Admin > Scope::Write && Scope::Write > Scope::Read);
        assert_eq!("write".parse::<Scope>(), Ok(Scope::Write));
        assert_eq!("root".parse::<Scope>(), Err("unknown scope \"root\": read, write or admin".to_owned()));
    }

    #[actix_rt::test]
    async fn a_file_store_creates_lists_and_revokes_and_the_ring_follows() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::File(dir.path().join(KEYS_FILE));
        let record = KeyRecord {
            name: "ci".into(),
            sha256: hash("isb_secret"),
            scope: Scope::Write,
            sources: vec![],
            rate_per_sec: None,
            created_at: None,
        };
        store.create(&record).await.unwrap();
        assert!(matches!(store.create(&record).await, Err(AuthError::Exists(n)) if n == "ci"));
        let ring = KeyRing::new(store.clone(), &crate::config::Settings::defaults().unwrap().auth);
        assert!(ring.find("isb_secret").is_none());
        ring.reload(&mut false).await;
        assert_eq!(ring.find("isb_secret").map(|k| k.name.clone()), Some("ci".into()));
        assert!(!std::fs::read_to_string(dir.path().join(KEYS_FILE)).unwrap().contains("isb_secret"));
        assert!(store.revoke("ci").await.unwrap());
        assert!(!store.revoke("ci").await.unwrap());
        ring.reload(&mut false).await;
        assert!(ring.find("isb_secret").is_none());
    }

    #[actix_rt::test]
    async fn a_key_may_create_stations_up_to_its_limit() {
        let quota = StationQuota::new(None);
        let ids: Vec<LocationId> = ["S1", "S2", "S3"].iter().map(|i| LocationId::parse(i).unwrap()).collect();
        assert_eq!(quota.take("k", &ids[..2], 2).await.unwrap(), Ok(()));
        // Known ones again: no new station.
        assert_eq!(quota.take("k", &ids[..2], 2).await.unwrap(), Ok(()));
        assert_eq!(quota.take("k", &ids[2..], 2).await.unwrap(), Err(2));
        assert_eq!(quota.take("other", &ids[2..], 2).await.unwrap(), Ok(()));
    }
}
