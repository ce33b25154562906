//! What a key may do and how it is stored: plain data, read by the configuration
//! (`auth.keys`) and by the key store alike.

use serde::{Deserialize, Serialize};

/// What a key may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown scope {other:?}: read, write or admin")),
        }
    }
}

/// A key as stored: never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub name: String,
    /// SHA-256 of the key, lower-case hex.
    pub sha256: String,
    pub scope: Scope,
    /// Source names the key may write readings as; empty = `station`.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Its own requests per second, instead of `auth.key_rate_per_sec`.
    #[serde(default)]
    pub rate_per_sec: Option<u32>,
    #[serde(default)]
    pub created_at: Option<String>,
}

impl KeyRecord {
    /// The source names this key may write as.
    pub fn writable_sources(&self) -> Vec<String> {
        if self.sources.is_empty() { vec!["station".to_owned()] } else { self.sources.clone() }
    }
}
