//! An anomaly found in a location's readings: in `/current` (`anomalies`, the active
//! ones), in `/v1/locations/{id}/anomalies` and in the WebSocket `anomaly` message.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Quantity, SourceName, Units};

/// What kind of anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// Outside the quantity's physical range: rejected, never applied.
    Range,
    /// A jump away and straight back, or a jump the other sources did not make.
    Spike,
    /// The same value for hours while the quantity moved elsewhere: a stuck sensor.
    Flatline,
    /// A slowly growing bias against the other sources.
    Drift,
    /// A source that keeps disagreeing with the others beyond the quantity's tolerance.
    CrossSource,
    /// Outside the band the location's own readings keep at this hour of the day.
    Unusual,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 6] = [
        AnomalyKind::Range,
        AnomalyKind::Spike,
        AnomalyKind::Flatline,
        AnomalyKind::Drift,
        AnomalyKind::CrossSource,
        AnomalyKind::Unusual,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::Range => "range",
            AnomalyKind::Spike => "spike",
            AnomalyKind::Flatline => "flatline",
            AnomalyKind::Drift => "drift",
            AnomalyKind::CrossSource => "cross_source",
            AnomalyKind::Unusual => "unusual",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Severity::Low, Severity::Medium, Severity::High].into_iter().find(|s| s.name() == name)
    }
}

/// The range a value was expected in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Band {
    pub low: f64,
    pub high: f64,
}

/// One anomaly of one source's quantity at one location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Anomaly {
    /// Stable across restarts and instances: `{kind}:{source}:{quantity}:{started_at}`
    /// (Unix seconds).
    #[schema(example = "spike:station:temperature:1764237600")]
    pub id: String,
    #[schema(value_type = String, example = "temperature")]
    pub quantity: Quantity,
    pub kind: AnomalyKind,
    #[schema(value_type = String, example = "station")]
    pub source: SourceName,
    pub started_at: DateTime<Utc>,
    /// The reading that showed it (for a flatline: the one that made the run long enough).
    pub observed_at: DateTime<Utc>,
    /// When it stopped: the source's next reading, or the one that broke the run;
    /// absent while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// The flagged value, in the document's units.
    pub value: f64,
    /// Where the value was expected, in the document's units.
    pub expected: Band,
    pub severity: Severity,
    /// How far out: a robust z-score (spike, unusual), hours (flatline), or the bias in
    /// tolerances (drift, cross-source).
    pub score: f64,
}

impl Anomaly {
    pub fn make_id(kind: AnomalyKind, source: &SourceName, quantity: Quantity, started_at: DateTime<Utc>) -> String {
        format!("{}:{source}:{}:{}", kind.name(), quantity.name(), started_at.timestamp())
    }

    /// This anomaly with its value and band in `units`.
    pub fn in_units(&self, units: Units) -> Self {
        let spec = self.quantity.spec();
        let convert = |v: f64| spec.to_units(v, units);
        Self {
            value: convert(self.value),
            expected: Band { low: convert(self.expected.low), high: convert(self.expected.high) },
            ..self.clone()
        }
    }
}
