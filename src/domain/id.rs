//! `LocationId`: the key of every location, parsed once where it enters the process.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// Longest accepted id, in bytes (the pattern allows 1 + 63 characters, all ASCII).
pub const MAX_LEN: usize = 64;

/// What every location id matches (for the OpenAPI document).
pub const LOCATION_ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$";

/// A location id matching `^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`: a GeoNames id for catalog
/// cities (`5128581`) or a station's own id (`KJFK`). Cheap to clone: it is shared by every
/// reading, message and subscription that names the location.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocationId(Arc<str>);

/// Why a string is not a location id; the message is shown to API users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("location id must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-', starting with a letter or digit")]
pub struct InvalidLocationId;

impl LocationId {
    /// Parses a location id, rejecting anything outside the documented pattern.
    pub fn parse(raw: &str) -> Result<Self, InvalidLocationId> {
        if Self::is_valid(raw) { Ok(Self(Arc::from(raw))) } else { Err(InvalidLocationId) }
    }

    /// Whether `raw` matches the pattern, without allocating.
    pub fn is_valid(raw: &str) -> bool {
        let bytes = raw.as_bytes();
        let Some(first) = bytes.first() else {
            return false;
        };
        bytes.len() <= MAX_LEN
            && first.is_ascii_alphanumeric()
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by `LocationId` be searched with a `&str` (same hash: the string's).
impl Borrow<str> for LocationId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocationId({})", self.0)
    }
}

impl Serialize for LocationId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// For documents isobar wrote itself (another instance's updates); the pattern is checked.
impl<'de> serde::Deserialize<'de> for LocationId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&raw).map_err(|_| serde::de::Error::custom("not a location id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_geonames_ids_and_station_ids() {
        for ok in ["5128581", "KJFK", "a", "station:42.north_1-b", &"x".repeat(64)] {
            assert_eq!(LocationId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_empty_too_long_and_foreign_characters() {
        for bad in ["", "-KJFK", ".x", "KJ FK", "KJFK/1", "Zürich", &"x".repeat(65)] {
            assert_eq!(LocationId::parse(bad), Err(InvalidLocationId), "{bad:?}");
        }
    }
}
