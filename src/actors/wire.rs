//! The wire messages built around a location's events (DESIGN §3, WebSocket protocol):
//! `snapshot`, `update`, `forecast`, `anomaly` and `air_quality`. The `update` message is also what goes to other
//! instances over Redis and to the Kafka updates topic, so it is encoded once per update
//! (kept in the event) whoever sends it first.
//!
//! A location id never needs JSON escaping (its pattern allows only `[A-Za-z0-9._:-]`),
//! so the envelopes are formatted around the documents' bytes directly.

use bytestring::ByteString;
use chrono::Utc;

use crate::core::{AirQualityUpdate, AnomalyState, AnomalyUpdate, ForecastUpdate, Update};
use crate::domain::{Current, LocationId, Units};

/// Hours of forecast in the WebSocket `forecast` message.
pub const FORECAST_HOURS: usize = 48;

/// `{"type":"update","location_id":…,"seq":…,"data":<current, metric>}`.
pub fn update_message(update: &Update) -> &ByteString {
    update.message.get_or_init(|| {
        ByteString::from(format!(
            r#"{{"type":"update","location_id":"{}","seq":{},"data":{}}}"#,
            update.location_id,
            update.seq,
            update.body(Units::Metric)
        ))
    })
}

/// What a subscriber is told first: `{"type":"snapshot","location_id":…,"seq":…,"data":
/// <current, metric, or null>}`. A client resuming from `since` (the last `seq` it saw)
/// gets `{"type":"resumed","location_id":…,"seq":…}` when it missed nothing; else the
/// snapshot with `"missed"`: how many updates it replaces, or `"reset":true` when `since`
/// is ahead of this location's history (its state was lost, e.g. a restart without Redis).
pub fn snapshot_message(id: &LocationId, shown: Option<&Update>, since: Option<u64>) -> ByteString {
    let seq = shown.map_or(0, |u| u.seq);
    let gap = match since {
        Some(since) if since == seq => {
            return ByteString::from(format!(r#"{{"type":"resumed","location_id":"{id}","seq":{seq}}}"#));
        }
        Some(since) if since < seq => format!(r#","missed":{}"#, seq - since),
        Some(_) => r#","reset":true"#.to_owned(),
        None => String::new(),
    };
    let data = shown.map(|u| u.body(Units::Metric).as_ref()).unwrap_or("null");
    ByteString::from(format!(r#"{{"type":"snapshot","location_id":"{id}","seq":{seq}{gap},"data":{data}}}"#))
}

/// `{"type":"air_quality","location_id":…,"data":<the air quality now>}`.
pub fn air_quality_message(update: &AirQualityUpdate) -> &ByteString {
    update.message.get_or_init(|| {
        let data = serde_json::to_string(&update.air_quality).unwrap_or_else(|_| "null".to_owned());
        ByteString::from(format!(r#"{{"type":"air_quality","location_id":"{}","data":{data}}}"#, update.location_id))
    })
}

/// `{"type":"forecast","location_id":…,"data":<the next 48 hours of the blend>}`.
pub fn forecast_message(update: &ForecastUpdate) -> &ByteString {
    update.message.get_or_init(|| {
        let window = update.forecast.window(Utc::now(), FORECAST_HOURS);
        let data = serde_json::to_string(&window).unwrap_or_else(|_| "null".to_owned());
        ByteString::from(format!(r#"{{"type":"forecast","location_id":"{}","data":{data}}}"#, update.location_id))
    })
}

/// `{"type":"anomaly","location_id":…,"state":"started"|"ended","data":<anomaly, metric>}`.
pub fn anomaly_message(update: &AnomalyUpdate) -> &ByteString {
    update.message.get_or_init(|| {
        let data = serde_json::to_string(&update.anomaly).unwrap_or_else(|_| "null".to_owned());
        let state = match update.state {
            AnomalyState::Started => "started",
            AnomalyState::Ended => "ended",
        };
        ByteString::from(format!(
            r#"{{"type":"anomaly","location_id":"{}","state":"{state}","data":{data}}}"#,
            update.location_id
        ))
    })
}

/// The `seq` and document of an `update` message another instance published; `None`
/// for anything else.
pub fn parse_update(text: &str) -> Option<(u64, Current)> {
    #[derive(serde::Deserialize)]
    struct Message {
        seq: u64,
        data: Current,
    }
    serde_json::from_str::<Message>(text).ok().map(|m| (m.seq, m.data))
}
