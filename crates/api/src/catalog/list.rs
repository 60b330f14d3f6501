//! The body of `GET /v1/models`: each served model with its billing rule, its
//! prices (exact units, and credits and dollars for display), its billed range,
//! whether a price is estimated, and exactly the parameter schema the create body's
//! `oneOf` holds for it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Catalog;
use super::pricing::Pricing;
use super::spec::ModelSpec;
use super::values::{BilledBy, BillingRule, Quality, Shape, Sound};
use crate::credits::Credits;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PriceEntry {
    pub quality: Quality,
    pub sound: Sound,
    /// Exact: units of 1/10000 credit per second.
    pub units_per_second: i64,
    /// Display: credits per second.
    pub credits_per_second: f64,
    /// Display: USD per second at 72 credits = $1, to the thousandth.
    pub usd_per_second: f64,
    /// Not published by EvoLink: the official Kling price at EvoLink's discount.
    pub estimated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelEntry {
    pub id: String,
    /// Always `model`.
    pub object: String,
    pub name: String,
    /// Always `video` (a custom element's task is a video task too, as EvoLink has it).
    #[serde(rename = "type")]
    pub kind: String,
    pub shape: Shape,
    pub billing_rule: BillingRule,
    /// Per-second models: what the billed seconds follow.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub billed_by: Option<BilledBy>,
    /// Per-second models: fewer seconds are billed as this many.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub min_billed_seconds: Option<u32>,
    /// Per-second models: more seconds are billed as this many.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max_billed_seconds: Option<u32>,
    /// True when any price of the model is estimated.
    pub estimated: bool,
    /// Per-second models: one row per quality and sound the model makes.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub pricing: Vec<PriceEntry>,
    /// Per-call models, exact: units of 1/10000 credit per call.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub units_per_call: Option<i64>,
    /// Per-call models, display: credits per call.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub price_per_call: Option<f64>,
    /// Per-call models, display: USD per call.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub usd_per_call: Option<f64>,
    /// The JSON Schema of this model's create body (the same object the OpenAPI
    /// create body's `oneOf` holds for it).
    #[schema(value_type = Object)]
    pub parameters: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<ModelEntry>,
}

/// Dollars to the thousandth, rounded half up in integers (72 credits = $1), so the
/// catalog shows EvoLink's $0.075, $0.113, $0.100 and $0.150 exactly.
fn usd(units: Credits) -> f64 {
    let per_dollar = 72 * Credits::UNITS_PER_CREDIT;
    (units.units() * 1000 + per_dollar / 2).div_euclid(per_dollar) as f64 / 1000.0
}

impl ModelSpec {
    /// This model's entry in `GET /v1/models`.
    pub fn model_entry(&self) -> ModelEntry {
        let mut entry = ModelEntry {
            id: self.id.as_str().to_owned(),
            object: "model".to_owned(),
            name: self.name.clone(),
            kind: "video".to_owned(),
            shape: self.shape,
            billing_rule: self.pricing.rule(),
            billed_by: None,
            min_billed_seconds: None,
            max_billed_seconds: None,
            estimated: self.pricing.estimated(),
            pricing: Vec::new(),
            units_per_call: None,
            price_per_call: None,
            usd_per_call: None,
            parameters: self.create_schema(),
        };
        match &self.pricing {
            Pricing::PerCall { price, .. } => {
                entry.units_per_call = Some(price.units());
                entry.price_per_call = Some(price.to_credits_f64());
                entry.usd_per_call = Some(usd(*price));
            }
            Pricing::PerSecond(p) => {
                entry.billed_by = Some(p.billed_by);
                entry.min_billed_seconds = Some(p.min_seconds);
                entry.max_billed_seconds = Some(p.max_seconds);
                let qualities = self.quality.as_ref().map(|q| q.values()).unwrap_or_else(|| vec![Quality::default()]);
                let sounds = self.sound.as_ref().map(|s| s.values()).unwrap_or_else(|| vec![Sound::default()]);
                for q in &qualities {
                    for s in &sounds {
                        if let Some(row) = p.row(*q, *s) {
                            entry.pricing.push(PriceEntry {
                                quality: *q,
                                sound: *s,
                                units_per_second: row.per_second.units(),
                                credits_per_second: row.per_second.to_credits_f64(),
                                usd_per_second: usd(row.per_second),
                                estimated: row.estimated,
                            });
                        }
                    }
                }
            }
        }
        entry
    }
}

impl Catalog {
    /// The body of `GET /v1/models`.
    pub fn model_list(&self) -> ModelList {
        ModelList { object: "list".to_owned(), data: self.models().map(ModelSpec::model_entry).collect() }
    }
}
