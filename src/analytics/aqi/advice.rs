//! What people should do: EPA's words for each category of the US AQI and each pollutant.
//!
//! - The category's meaning for everyone: AirNow's "AQI Basics".
//! - The sensitive groups of each pollutant, its health effects statement and its
//!   cautionary statement: the Technical Assistance Document's tables (EPA-454/B-18-007,
//!   September 2018, Tables 3 and 4), word for word. The 2024 revision of the document
//!   changed the PM2.5 breakpoints, which `super` uses; its tables' text could not be
//!   read where isobar is built, so the 2018 wording stands until someone checks it.
//!
//! US Government works, in the public domain.

use serde::Serialize;
use utoipa::ToSchema;

use super::{Category, Pollutant};

/// The advice for one category of one pollutant (the dominant one).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Advice {
    /// What the category means, for everyone.
    pub message: String,
    /// The people at greater risk from the pollutant.
    pub sensitive_groups: Vec<String>,
    /// EPA's health effects statement for the pollutant at this category (`null` where it
    /// has none).
    pub health_effects: Option<String>,
    /// EPA's cautionary statement, whole (`null` where it has none).
    pub cautionary_statement: Option<String>,
    /// Its part for the sensitive groups (`null`: nothing to do).
    pub for_sensitive_groups: Option<String>,
    /// Its part for everyone else (`null`: nothing to do).
    pub for_everyone: Option<String>,
}

/// The advice for `category` when `pollutant` is the dominant one.
pub fn advice(pollutant: Pollutant, category: Category) -> Advice {
    let (health_effects, cautionary) = statements(pollutant)[category as usize];
    let (sensitive, everyone) = split(cautionary);
    Advice {
        message: message(category).to_owned(),
        sensitive_groups: sensitive_groups(pollutant).iter().map(|g| (*g).to_owned()).collect(),
        health_effects: health_effects.map(str::to_owned),
        cautionary_statement: cautionary.map(str::to_owned),
        for_sensitive_groups: sensitive,
        for_everyone: everyone,
    }
}

/// AirNow's meaning of each category.
fn message(category: Category) -> &'static str {
    match category {
        Category::Good => "Air quality is satisfactory, and air pollution poses little or no risk.",
        Category::Moderate => {
            "Air quality is acceptable. However, there may be a risk for some people, particularly those who are unusually sensitive to air pollution."
        }
        Category::UnhealthyForSensitiveGroups => {
            "Members of sensitive groups may experience health effects. The general public is less likely to be affected."
        }
        Category::Unhealthy => {
            "Some members of the general public may experience health effects; members of sensitive groups may experience more serious health effects."
        }
        Category::VeryUnhealthy => "Health alert: The risk of health effects is increased for everyone.",
        Category::Hazardous => "Health warning of emergency conditions: everyone is more likely to be affected.",
    }
}

/// Table 3: the groups at greater risk from each pollutant.
fn sensitive_groups(pollutant: Pollutant) -> &'static [&'static str] {
    match pollutant {
        Pollutant::O3 => &[
            "people with lung disease",
            "children",
            "older adults",
            "people who are active outdoors (including outdoor workers)",
            "people with certain genetic variants",
            "people with diets limited in certain nutrients",
        ],
        Pollutant::Pm25 | Pollutant::Pm10 => {
            &["people with heart or lung disease", "older adults", "children", "people of lower socioeconomic status"]
        }
        Pollutant::Co => &["people with heart disease"],
        Pollutant::So2 | Pollutant::No2 => &["people with asthma", "children", "older adults"],
    }
}

/// One category's (health effects statement, cautionary statement); `None` where EPA
/// writes "None".
type Statements = [(Option<&'static str>, Option<&'static str>); 6];

/// Table 4, by category from good to hazardous.
fn statements(pollutant: Pollutant) -> &'static Statements {
    match pollutant {
        Pollutant::O3 => &OZONE,
        Pollutant::Pm25 | Pollutant::Pm10 => &PARTICLES,
        Pollutant::Co => &CARBON_MONOXIDE,
        Pollutant::So2 => &SULPHUR_DIOXIDE,
        Pollutant::No2 => &NITROGEN_DIOXIDE,
    }
}

const OZONE: Statements = [
    (None, None),
    (
        Some("Unusually sensitive individuals may experience respiratory symptoms."),
        Some("Unusually sensitive people should consider reducing prolonged or heavy outdoor exertion."),
    ),
    (
        Some(
            "Increasing likelihood of respiratory symptoms and breathing discomfort in people with lung disease (such as asthma), children, older adults, people who are active outdoors (including outdoor workers), people with certain genetic variants, and people with diets limited in certain nutrients.",
        ),
        Some(
            "People with lung disease (such as asthma), children, older adults, people who are active outdoors (including outdoor workers), people with certain genetic variants, and people with diets limited in certain nutrients should reduce prolonged or heavy outdoor exertion.",
        ),
    ),
    (
        Some(
            "Greater likelihood of respiratory symptoms and breathing in people with lung disease (such as asthma), children, older adults, people who are active outdoors (including outdoor workers), people with certain genetic variants, and people with diets limited in certain nutrients; possible respiratory effects in general population.",
        ),
        Some(
            "People with lung disease (such as asthma), children, older adults, people who are active outdoors (including outdoor workers), people with certain genetic variants, and people with diets limited in certain nutrients should avoid prolonged or heavy outdoor exertion; everyone else should reduce prolonged or heavy outdoor exertion.",
        ),
    ),
    (
        Some(
            "Increasingly severe symptoms and impaired breathing likely in people with lung disease (such as asthma), children, older adults, people who are active outdoors (including outdoor workers), people with certain genetic variants, and people with diets limited in certain nutrients; increasing likelihood of respiratory effects in general population.",
        ),
        Some(
            "People with lung disease (such as asthma), children, older adults, people who are active outdoors (including outdoor workers), people with certain genetic variants, and people with diets limited in certain nutrients should avoid all outdoor exertion; everyone else should reduce outdoor exertion.",
        ),
    ),
    (
        Some(
            "Severe respiratory effects and impaired breathing likely in people with lung disease (such as asthma), children, older adults, people who are active outdoors (including outdoor workers), people with certain genetic variants, and people with diets limited in certain nutrients; increasingly severe respiratory effects likely in general population.",
        ),
        Some("Everyone should avoid all outdoor exertion."),
    ),
];

const PARTICLES: Statements = [
    (None, None),
    (
        Some(
            "Respiratory symptoms possible in unusually sensitive individuals; possible aggravation of heart or lung disease in people with cardiopulmonary disease and older adults.",
        ),
        Some("Unusually sensitive people should consider reducing prolonged or heavy exertion."),
    ),
    (
        Some(
            "Increasing likelihood of respiratory symptoms in sensitive groups including older adults, children, and people of lower socioeconomic status; aggravation of heart or lung disease and premature mortality in people with heart or lung disease.",
        ),
        Some(
            "People with heart or lung disease, older adults, children, and people of lower socioeconomic status should reduce prolonged or heavy exertion.",
        ),
    ),
    (
        Some(
            "Increased aggravation of respiratory symptoms in sensitive groups including older adults, children, and people of lower socioeconomic status; increased aggravation of heart or lung disease and premature mortality in people with heart or lung disease; increased respiratory effects in general population.",
        ),
        Some(
            "People with heart or lung disease, older adults, children, and people of lower socioeconomic status should avoid prolonged or heavy exertion; everyone else should reduce prolonged or heavy exertion.",
        ),
    ),
    (
        Some(
            "Significant aggravation of respiratory symptoms in sensitive groups including older adults, children, and people of lower socioeconomic status; significant aggravation of heart or lung disease and premature mortality in people with heart or lung disease; significant increase in respiratory effects in general population.",
        ),
        Some(
            "People with heart or lung disease, older adults, children, and people of lower socioeconomic status should avoid all physical activity outdoors. Everyone else should avoid prolonged or heavy exertion.",
        ),
    ),
    (
        Some(
            "Serious aggravation of respiratory symptoms in sensitive groups including older adults, children, and people of lower socioeconomic status; serious aggravation of heart or lung disease and premature mortality in people with heart or lung disease; serious risk of respiratory effects in general population.",
        ),
        Some(
            "Everyone should avoid all physical activity outdoors; people with heart or lung disease, older adults, children, and people of lower socioeconomic status should remain indoors and keep activity levels low.",
        ),
    ),
];

const CARBON_MONOXIDE: Statements = [
    (None, None),
    (None, None),
    (
        Some(
            "Increasing likelihood of reduced exercise tolerance due to increased cardiovascular symptoms, such as chest pain, in people with heart disease.",
        ),
        Some(
            "People with heart disease, such as angina, should limit heavy exertion and avoid sources of CO, such as heavy traffic.",
        ),
    ),
    (
        Some(
            "Reduced exercise tolerance due to increased cardiovascular symptoms, such as chest pain, in people with heart disease.",
        ),
        Some(
            "People with heart disease, such as angina, should limit moderate exertion and avoid sources of CO, such as heavy traffic.",
        ),
    ),
    (
        Some("Significant aggravation of cardiovascular symptoms, such as chest pain, in people with heart disease."),
        Some(
            "People with heart disease, such as angina, should avoid exertion and sources of CO, such as heavy traffic.",
        ),
    ),
    (
        Some(
            "Serious aggravation of cardiovascular symptoms, such as chest pain, in people with heart disease; impairment of strenuous activities in general population.",
        ),
        Some(
            "People with heart disease, such as angina, should avoid exertion and sources of CO, such as heavy traffic; everyone else should limit heavy exertion.",
        ),
    ),
];

const SULPHUR_DIOXIDE: Statements = [
    (None, None),
    (None, None),
    (
        Some(
            "Increasing likelihood of respiratory symptoms, such as chest tightness and breathing discomfort, in people with asthma.",
        ),
        Some("People with asthma should consider limiting outdoor exertion."),
    ),
    (
        Some(
            "Increased respiratory symptoms, such as chest tightness and wheezing in people with asthma; possible aggravation of other lung diseases.",
        ),
        Some("Children, people with asthma, or other lung diseases, should limit outdoor exertion."),
    ),
    (
        Some(
            "Significant increase in respiratory symptoms, such as wheezing and shortness of breath, in people with asthma; aggravation of other lung diseases.",
        ),
        Some(
            "Children, people with asthma, or other lung diseases should avoid outdoor exertion; everyone else should reduce outdoor exertion.",
        ),
    ),
    (
        Some(
            "Severe respiratory symptoms, such as wheezing and shortness of breath, in people with asthma; increased aggravation of other lung diseases; possible respiratory effects in general population.",
        ),
        Some(
            "Children, people with asthma, or other lung diseases, should remain indoors; everyone else should avoid outdoor exertion.",
        ),
    ),
];

const NITROGEN_DIOXIDE: Statements = [
    (None, None),
    (
        None,
        Some("Unusually sensitive individuals should consider limiting prolonged exertion especially near busy roads."),
    ),
    (
        Some(
            "Increasing likelihood of respiratory symptoms, such as chest tightness and breathing discomfort, in people with asthma.",
        ),
        Some(
            "People with asthma, children and older adults should limit prolonged exertion especially near busy roads.",
        ),
    ),
    (
        Some(
            "Increased respiratory symptoms, such as chest tightness and wheezing in people with asthma; possible aggravation of other lung diseases.",
        ),
        Some(
            "People with asthma, children and older adults should avoid prolonged exertion near roadways; everyone else should limit prolonged exertion especially near busy roads.",
        ),
    ),
    (
        Some(
            "Significant increase in respiratory symptoms, such as wheezing and shortness of breath, in people with asthma; aggravation of other lung diseases.",
        ),
        Some(
            "People with asthma, children and older adults should avoid all outdoor exertion; everyone else should avoid prolonged exertion especially near busy roads.",
        ),
    ),
    (
        Some(
            "Severe respiratory symptoms, such as wheezing and shortness of breath, in people with asthma; increased aggravation of other lung diseases; possible respiratory effects in general population.",
        ),
        Some(
            "People with asthma, children and older adults should remain indoors; everyone else should avoid all outdoor exertion.",
        ),
    ),
];

/// A cautionary statement's parts (sentences or clauses between "; "): those that begin
/// with "everyone" are for everyone; the others for the sensitive groups, who are also
/// told what everyone is told when the statement names no one else ("Everyone should
/// avoid all outdoor exertion.").
fn split(statement: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(statement) = statement else { return (None, None) };
    let sentence = |part: &str| {
        let part = part.trim().trim_end_matches('.');
        let mut chars = part.chars();
        chars.next().map(|first| format!("{}{}.", first.to_uppercase(), chars.as_str()))
    };
    let parts = statement.split("; ").flat_map(|p| p.split(". "));
    let (everyone, sensitive): (Vec<&str>, Vec<&str>) =
        parts.partition(|p| p.trim_start().to_lowercase().starts_with("everyone"));
    let join = |parts: Vec<&str>| {
        let sentences: Vec<String> = parts.into_iter().filter_map(sentence).collect();
        (!sentences.is_empty()).then(|| sentences.join(" "))
    };
    let everyone = join(everyone);
    let sensitive = join(sensitive).or_else(|| everyone.clone());
    (sensitive, everyone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pollutant_has_epas_words_for_every_category() {
        for p in Pollutant::ALL {
            for c in [
                Category::Good,
                Category::Moderate,
                Category::UnhealthyForSensitiveGroups,
                Category::Unhealthy,
                Category::VeryUnhealthy,
                Category::Hazardous,
            ] {
                let a = advice(p, c);
                assert!(!a.message.is_empty() && !a.sensitive_groups.is_empty(), "{p:?} {c:?}");
                // From unhealthy for sensitive groups up, EPA always says what to do.
                if c >= Category::UnhealthyForSensitiveGroups {
                    assert!(a.health_effects.is_some() && a.for_sensitive_groups.is_some(), "{p:?} {c:?}");
                }
            }
        }
    }

    #[test]
    fn good_air_needs_nothing_and_moderate_ozone_only_the_unusually_sensitive() {
        let good = advice(Pollutant::Pm25, Category::Good);
        assert_eq!(good.message, "Air quality is satisfactory, and air pollution poses little or no risk.");
        assert_eq!((good.health_effects, good.cautionary_statement), (None, None));
        assert_eq!((good.for_sensitive_groups, good.for_everyone), (None, None));
        let moderate = advice(Pollutant::O3, Category::Moderate);
        assert_eq!(
            moderate.for_sensitive_groups.as_deref(),
            Some("Unusually sensitive people should consider reducing prolonged or heavy outdoor exertion.")
        );
        assert_eq!(moderate.for_everyone, None);
    }

    #[test]
    fn the_statements_split_into_the_sensitive_groups_part_and_everyone_elses() {
        let unhealthy = advice(Pollutant::Pm25, Category::Unhealthy);
        assert_eq!(
            unhealthy.for_sensitive_groups.as_deref(),
            Some(
                "People with heart or lung disease, older adults, children, and people of lower socioeconomic status should avoid prolonged or heavy exertion."
            )
        );
        assert_eq!(unhealthy.for_everyone.as_deref(), Some("Everyone else should reduce prolonged or heavy exertion."));
        // Two sentences, the second for everyone else.
        let very = advice(Pollutant::Pm10, Category::VeryUnhealthy);
        assert_eq!(very.for_everyone.as_deref(), Some("Everyone else should avoid prolonged or heavy exertion."));
        assert!(very.for_sensitive_groups.unwrap().ends_with("should avoid all physical activity outdoors."));
        // Everyone first.
        let hazardous = advice(Pollutant::Pm25, Category::Hazardous);
        assert_eq!(hazardous.for_everyone.as_deref(), Some("Everyone should avoid all physical activity outdoors."));
        assert!(hazardous.for_sensitive_groups.unwrap().starts_with("People with heart or lung disease"));
        // Only everyone: the sensitive groups are told the same.
        let ozone = advice(Pollutant::O3, Category::Hazardous);
        assert_eq!(ozone.for_sensitive_groups.as_deref(), Some("Everyone should avoid all outdoor exertion."));
        assert_eq!(ozone.for_everyone.as_deref(), Some("Everyone should avoid all outdoor exertion."));
    }

    #[test]
    fn the_groups_at_risk_differ_by_pollutant() {
        assert_eq!(advice(Pollutant::Co, Category::Unhealthy).sensitive_groups, ["people with heart disease"]);
        assert_eq!(
            advice(Pollutant::No2, Category::Unhealthy).sensitive_groups,
            ["people with asthma", "children", "older adults"]
        );
        assert_eq!(advice(Pollutant::O3, Category::Good).sensitive_groups.len(), 6);
    }
}
