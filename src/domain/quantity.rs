//! The quantity table: one row per measured quantity, and everything else reads it.
//!
//! A row names the quantity's API field (also its key in readings JSON, snapshots and the
//! Kafka format), its InfluxDB field, its metric and imperial units with the conversion
//! between them, the bounds a reading must respect, how the consensus treats it
//! (tolerance, outlier floor, circular or linear) and whether it belongs to the v1
//! document. Parsing, validation, the consensus, unit conversion, the stored codecs and
//! the OpenAPI schema all iterate [`QUANTITIES`]: adding a quantity is one row here plus
//! the provider parser lines that fill it.
//!
//! [`Values`] holds one value per row (NaN for "not reported", 8 bytes a slot) and
//! serializes as the row names in table order: the seven `core` quantities always
//! (`null` when missing, as in v1), the later ones only when present, so v1 documents
//! stay byte for byte what they were.

use std::fmt;

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Units;
use super::units::round2;

/// How a metric value becomes its imperial form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Conversion {
    /// The same number in both systems (%, degrees, an index).
    Same,
    /// Multiply by this factor.
    Scale(f64),
    /// °C → °F.
    Fahrenheit,
}

impl Conversion {
    fn apply(self, value: f64) -> f64 {
        match self {
            Self::Same => value,
            Self::Scale(factor) => round2(value * factor),
            Self::Fahrenheit => round2(value * 9.0 / 5.0 + 32.0),
        }
    }

    /// For a difference (a spread): scaled, never offset.
    pub fn apply_to_difference(self, value: f64) -> f64 {
        match self {
            Self::Same => value,
            Self::Scale(factor) => round2(value * factor),
            Self::Fahrenheit => round2(value * 9.0 / 5.0),
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub quantity: Quantity,
    /// Field name in the API, readings JSON, snapshots and Kafka messages.
    pub name: &'static str,
    /// Field name in the InfluxDB measurements `readings` and `consensus`.
    pub influx_field: &'static str,
    pub metric_unit: &'static str,
    pub imperial_unit: &'static str,
    pub imperial: Conversion,
    /// Valid bounds (inclusive) of a reading, metric.
    pub min: f64,
    pub max: f64,
    /// Consensus: a mean deviation of this size between sources halves their agreement.
    pub tolerance: f64,
    /// Consensus: the smallest robust scale, so near-identical sources (MAD ≈ 0) do not
    /// turn every small difference into an outlier.
    pub min_scale: f64,
    /// Angles (wind direction): circular mean, median and distance.
    pub circular: bool,
    /// Part of the v1 document: always present (null when missing) and counted in
    /// `quality_score`. Later quantities appear only when a source reports them.
    pub core: bool,
    /// For the OpenAPI schema.
    pub description: &'static str,
}

impl Spec {
    /// The value in `units` (metric values are shown as reported).
    pub fn to_units(&self, value: f64, units: Units) -> f64 {
        match units {
            Units::Metric => value,
            Units::Imperial => self.imperial.apply(value),
        }
    }

    /// Distance between two values of this quantity (angular for circular ones).
    pub fn distance(&self, a: f64, b: f64) -> f64 {
        if self.circular {
            let d = (a - b).rem_euclid(360.0);
            d.min(360.0 - d)
        } else {
            (a - b).abs()
        }
    }

    /// The message of a value outside the bounds.
    pub fn bound_message(&self) -> String {
        if self.max.is_infinite() {
            format!("must be at least {}", self.min)
        } else {
            format!("must be between {} and {}", self.min, self.max)
        }
    }
}

/// Declares the quantities: the `Quantity` enum and [`QUANTITIES`] from one list of rows.
macro_rules! quantity_table {
    ($($variant:ident { $($field:ident: $value:expr),* $(,)? })*) => {
        /// A measured quantity; its [`Spec`] row says everything about it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Quantity { $($variant),* }

        /// Every quantity, in table order (the order of documents and of [`Values`]).
        pub const QUANTITIES: [Spec; COUNT] = [$(Spec { quantity: Quantity::$variant, $($field: $value),* }),*];

        /// How many quantities there are.
        pub const COUNT: usize = [$(Quantity::$variant),*].len();
    };
}

quantity_table! {
    Temperature { name: "temperature", influx_field: "temperature", metric_unit: "°C", imperial_unit: "°F",
        imperial: Conversion::Fahrenheit, min: -100.0, max: 60.0, tolerance: 2.0, min_scale: 0.5, circular: false,
        core: true, description: "Air temperature" }
    Humidity { name: "humidity", influx_field: "humidity", metric_unit: "%", imperial_unit: "%",
        imperial: Conversion::Same, min: 0.0, max: 100.0, tolerance: 10.0, min_scale: 3.0, circular: false,
        core: true, description: "Relative humidity" }
    Pressure { name: "pressure", influx_field: "pressure", metric_unit: "hPa", imperial_unit: "inHg",
        imperial: Conversion::Scale(0.029_529_983_071_445), min: 800.0, max: 1200.0, tolerance: 3.0, min_scale: 1.0,
        circular: false, core: true, description: "Pressure at sea level" }
    WindSpeed { name: "wind_speed", influx_field: "wind_speed", metric_unit: "m/s", imperial_unit: "mph",
        imperial: Conversion::Scale(2.236_936_292_054_402), min: 0.0, max: 120.0, tolerance: 2.0, min_scale: 0.5,
        circular: false, core: true, description: "Wind speed" }
    WindDirection { name: "wind_direction", influx_field: "wind_direction", metric_unit: "°", imperial_unit: "°",
        imperial: Conversion::Same, min: 0.0, max: 360.0, tolerance: 45.0, min_scale: 15.0, circular: true,
        core: true, description: "Direction the wind comes from, degrees clockwise from north" }
    Visibility { name: "visibility", influx_field: "visibility", metric_unit: "km", imperial_unit: "mi",
        imperial: Conversion::Scale(1.0 / 1.609_344), min: 0.0, max: f64::INFINITY, tolerance: 5.0, min_scale: 2.0,
        circular: false, core: true, description: "Horizontal visibility" }
    Precipitation { name: "precipitation", influx_field: "precipitation", metric_unit: "mm", imperial_unit: "in",
        imperial: Conversion::Scale(1.0 / 25.4), min: 0.0, max: f64::INFINITY, tolerance: 1.0, min_scale: 0.5,
        circular: false, core: true, description: "Precipitation in the last hour" }
    UvIndex { name: "uv_index", influx_field: "uv_index", metric_unit: "", imperial_unit: "",
        imperial: Conversion::Same, min: 0.0, max: 20.0, tolerance: 1.0, min_scale: 0.5, circular: false,
        core: false, description: "UV index (WHO scale, 0 at night)" }
    CloudCover { name: "cloud_cover", influx_field: "cloud_cover", metric_unit: "%", imperial_unit: "%",
        imperial: Conversion::Same, min: 0.0, max: 100.0, tolerance: 20.0, min_scale: 10.0, circular: false,
        core: false, description: "Total cloud cover" }
    Pm25 { name: "pm2_5", influx_field: "pm2_5", metric_unit: "µg/m³", imperial_unit: "µg/m³",
        imperial: Conversion::Same, min: 0.0, max: 5000.0, tolerance: 5.0, min_scale: 1.0, circular: false,
        core: false, description: "Fine particulate matter (PM2.5), hourly mean" }
    Pm10 { name: "pm10", influx_field: "pm10", metric_unit: "µg/m³", imperial_unit: "µg/m³",
        imperial: Conversion::Same, min: 0.0, max: 10000.0, tolerance: 10.0, min_scale: 2.0, circular: false,
        core: false, description: "Coarse particulate matter (PM10), hourly mean" }
    O3 { name: "o3", influx_field: "o3", metric_unit: "µg/m³", imperial_unit: "µg/m³",
        imperial: Conversion::Same, min: 0.0, max: 2000.0, tolerance: 20.0, min_scale: 5.0, circular: false,
        core: false, description: "Ozone" }
    No2 { name: "no2", influx_field: "no2", metric_unit: "µg/m³", imperial_unit: "µg/m³",
        imperial: Conversion::Same, min: 0.0, max: 5000.0, tolerance: 10.0, min_scale: 2.0, circular: false,
        core: false, description: "Nitrogen dioxide" }
    So2 { name: "so2", influx_field: "so2", metric_unit: "µg/m³", imperial_unit: "µg/m³",
        imperial: Conversion::Same, min: 0.0, max: 5000.0, tolerance: 10.0, min_scale: 2.0, circular: false,
        core: false, description: "Sulphur dioxide" }
    Co { name: "co", influx_field: "co", metric_unit: "µg/m³", imperial_unit: "µg/m³",
        imperial: Conversion::Same, min: 0.0, max: 100000.0, tolerance: 200.0, min_scale: 50.0, circular: false,
        core: false, description: "Carbon monoxide" }
}

impl Quantity {
    pub fn spec(self) -> &'static Spec {
        &QUANTITIES[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The quantity whose API field is `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        QUANTITIES.iter().find(|s| s.name == name).map(|s| s.quantity)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Quantity::from_name(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown quantity {name:?}")))
    }
}

/// How many quantities count in `quality_score` (the v1 ones).
pub fn core_count() -> usize {
    QUANTITIES.iter().filter(|s| s.core).count()
}

/// One value per quantity, metric; missing ones are NaN inside (never shown as such).
#[derive(Clone, Copy)]
pub struct Values([f64; COUNT]);

impl Default for Values {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl Values {
    pub const EMPTY: Self = Self([f64::NAN; COUNT]);

    pub fn get(&self, q: Quantity) -> Option<f64> {
        let v = self.0[q as usize];
        (!v.is_nan()).then_some(v)
    }

    /// Sets `q`; `None` (or a NaN) makes it missing.
    pub fn set(&mut self, q: Quantity, value: Option<f64>) {
        self.0[q as usize] = value.unwrap_or(f64::NAN);
    }

    /// Every row with its value, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static Spec, Option<f64>)> + '_ {
        QUANTITIES.iter().zip(self.0.iter()).map(|(spec, v)| (spec, (!v.is_nan()).then_some(*v)))
    }

    /// The present values with their rows.
    pub fn present(&self) -> impl Iterator<Item = (&'static Spec, f64)> + '_ {
        self.iter().filter_map(|(spec, v)| Some((spec, v?)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|v| v.is_nan())
    }

    /// Every slot as an option, in table order.
    pub fn to_array(&self) -> [Option<f64>; COUNT] {
        self.0.map(|v| (!v.is_nan()).then_some(v))
    }

    /// These values converted to `units`.
    pub fn in_units(&self, units: Units) -> Self {
        let mut out = *self;
        for (slot, spec) in out.0.iter_mut().zip(&QUANTITIES) {
            if !slot.is_nan() {
                *slot = spec.to_units(*slot, units);
            }
        }
        out
    }
}

/// [`Values`] as a location's ring keeps them. Most readings carry a handful of the
/// quantities, with a few decimals: up to [`PackedValues::INLINE`] present values are
/// kept inline as thousandths, when that gives back the very same `f64`; anything else
/// is kept as it is, boxed. 40 bytes where [`Values`] takes 120, and 50,000 locations
/// keep a day of readings each.
#[derive(Clone, Debug, PartialEq)]
pub enum PackedValues {
    /// Bit `i` of `present` marks `QUANTITIES[i]`; their values in table order.
    Milli {
        present: u16,
        milli: [i32; PackedValues::INLINE],
    },
    Exact(Box<Values>),
}

impl PackedValues {
    pub const INLINE: usize = 8;

    pub fn pack(values: &Values) -> Self {
        const { assert!(COUNT <= 16) };
        let mut present = 0u16;
        let mut milli = [0; Self::INLINE];
        let mut n = 0;
        for (i, &v) in values.0.iter().enumerate() {
            if v.is_nan() {
                continue;
            }
            let m = (v * 1000.0).round();
            let fits = m >= f64::from(i32::MIN) && m <= f64::from(i32::MAX);
            // Bit for bit, as `unpack` makes it (so -0.0 stays as it is).
            if n == Self::INLINE || !fits || (f64::from(m as i32) / 1000.0).to_bits() != v.to_bits() {
                return Self::Exact(Box::new(*values));
            }
            present |= 1 << i;
            milli[n] = m as i32;
            n += 1;
        }
        Self::Milli { present, milli }
    }

    pub fn unpack(&self) -> Values {
        match self {
            Self::Milli { present, milli } => {
                let mut values = Values::EMPTY;
                let mut next = milli.iter();
                for (i, slot) in values.0.iter_mut().enumerate() {
                    if present & (1 << i) != 0
                        && let Some(&m) = next.next()
                    {
                        *slot = f64::from(m) / 1000.0;
                    }
                }
                values
            }
            Self::Exact(values) => **values,
        }
    }
}

/// Equal when every slot holds the same value or both are missing.
impl PartialEq for Values {
    fn eq(&self, other: &Self) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| a == b || (a.is_nan() && b.is_nan()))
    }
}

impl fmt::Debug for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.present().map(|(spec, v)| (spec.name, v))).finish()
    }
}

/// The fields of a document (use with `#[serde(flatten)]`): core quantities always,
/// later ones when present.
impl Serialize for Values {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (spec, value) in self.iter() {
            if spec.core || value.is_some() {
                map.serialize_entry(spec.name, &value)?;
            }
        }
        map.end()
    }
}

/// Reads the quantity fields of a document; other keys are left to the caller.
impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ValuesVisitor;
        impl<'de> Visitor<'de> for ValuesVisitor {
            type Value = Values;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("quantity fields")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Values, A::Error> {
                let mut values = Values::EMPTY;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match Quantity::from_name(&key) {
                        Some(q) => values.set(q, map.next_value::<Option<f64>>()?),
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(values)
            }
        }
        d.deserialize_map(ValuesVisitor)
    }
}

/// The schema of the quantity fields, from the table.
impl utoipa::PartialSchema for Values {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        let mut object = ObjectBuilder::new();
        for spec in &QUANTITIES {
            let units = if spec.metric_unit.is_empty() {
                String::new()
            } else {
                format!(" ({} metric, {} imperial)", spec.metric_unit, spec.imperial_unit)
            };
            let later = if spec.core { "" } else { "; present only when a source reports it" };
            let field = ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::Number, Type::Null]))
                .description(Some(format!("{}{units}; null when no source reports it{later}", spec.description)));
            object = object.property(spec.name, field);
            if spec.core {
                object = object.required(spec.name);
            }
        }
        object.into()
    }
}

impl utoipa::ToSchema for Values {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Quantities")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_sits_at_its_own_index() {
        for (i, spec) in QUANTITIES.iter().enumerate() {
            assert_eq!(spec.quantity as usize, i, "{}", spec.name);
            assert_eq!(Quantity::from_name(spec.name), Some(spec.quantity));
        }
        assert_eq!(core_count(), 7);
    }

    #[test]
    fn missing_values_serialize_as_null_for_core_and_not_at_all_for_later_quantities() {
        let mut v = Values::EMPTY;
        v.set(Quantity::Temperature, Some(7.1));
        assert_eq!(
            serde_json::to_value(v).unwrap(),
            serde_json::json!({"temperature": 7.1, "humidity": null, "pressure": null, "wind_speed": null,
                "wind_direction": null, "visibility": null, "precipitation": null})
        );
        v.set(Quantity::UvIndex, Some(3.0));
        assert_eq!(serde_json::to_value(v).unwrap()["uv_index"], 3.0);
        assert!(serde_json::to_value(v).unwrap().get("cloud_cover").is_none());
    }

    #[test]
    fn documents_read_back_ignoring_other_keys() {
        let v: Values = serde_json::from_value(
            serde_json::json!({"temperature": 7.1, "humidity": null, "cloud_cover": 40, "x": [1]}),
        )
        .unwrap();
        assert_eq!(v.get(Quantity::Temperature), Some(7.1));
        assert_eq!(v.get(Quantity::Humidity), None);
        assert_eq!(v.get(Quantity::CloudCover), Some(40.0));
    }

    #[test]
    fn converts_to_imperial_with_two_decimals() {
        let mut v = Values::EMPTY;
        for (q, x) in [
            (Quantity::Temperature, 7.4),
            (Quantity::Pressure, 1016.2),
            (Quantity::WindSpeed, 3.1),
            (Quantity::Visibility, 16.09),
            (Quantity::Precipitation, 25.4),
            (Quantity::Humidity, 63.0),
        ] {
            v.set(q, Some(x));
        }
        let i = v.in_units(Units::Imperial);
        let got: Vec<_> = i.present().map(|(s, x)| (s.name, x)).collect();
        assert_eq!(
            got,
            [
                ("temperature", 45.32),
                ("humidity", 63.0),
                ("pressure", 30.01),
                ("wind_speed", 6.93),
                ("visibility", 10.0),
                ("precipitation", 1.0)
            ]
        );
        assert_eq!(Quantity::Temperature.spec().imperial.apply_to_difference(1.0), 1.8);
    }

    #[test]
    fn equality_treats_two_missing_values_as_equal() {
        let mut a = Values::EMPTY;
        a.set(Quantity::Humidity, Some(50.0));
        let b = a;
        assert_eq!(a, b);
        let mut c = a;
        c.set(Quantity::CloudCover, Some(0.0));
        assert_ne!(a, c);
    }
}
