//! The model catalog and its prices (SPEC 2, the seed's table, exactly). Prices are
//! integer units per second; 1080p without sound is 1.333 x 5.4 = 7.1982 credits/s.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::credits::Credits;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum ModelId {
    #[serde(rename = "kling-v3-image-to-video")]
    KlingV3ImageToVideo,
    #[serde(rename = "kling-v3-text-to-video")]
    KlingV3TextToVideo,
    #[serde(rename = "kling-custom-element")]
    KlingCustomElement,
}

impl ModelId {
    pub const ALL: [ModelId; 3] = [Self::KlingV3ImageToVideo, Self::KlingV3TextToVideo, Self::KlingCustomElement];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::KlingV3ImageToVideo => "kling-v3-image-to-video",
            Self::KlingV3TextToVideo => "kling-v3-text-to-video",
            Self::KlingCustomElement => "kling-custom-element",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Self::KlingV3ImageToVideo => "Kling 3.0 Image to Video",
            Self::KlingV3TextToVideo => "Kling 3.0 Text to Video",
            Self::KlingCustomElement => "Kling Custom Element",
        }
    }

    pub fn billing_rule(self) -> BillingRule {
        match self {
            Self::KlingCustomElement => BillingRule::PerCall,
            _ => BillingRule::PerSecond,
        }
    }
}

impl std::str::FromStr for ModelId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::parse(s).ok_or(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
pub enum Quality {
    #[default]
    #[serde(rename = "720p")]
    P720,
    #[serde(rename = "1080p")]
    P1080,
}

impl Quality {
    pub fn short_side(self) -> u32 {
        match self {
            Self::P720 => 720,
            Self::P1080 => 1080,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::P720 => "720p",
            Self::P1080 => "1080p",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::P720, Self::P1080].into_iter().find(|q| q.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Sound {
    #[default]
    Off,
    On,
}

impl Sound {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Off, Self::On].into_iter().find(|q| q.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
pub enum AspectRatio {
    #[default]
    #[serde(rename = "16:9")]
    R16x9,
    #[serde(rename = "9:16")]
    R9x16,
    #[serde(rename = "1:1")]
    R1x1,
}

impl AspectRatio {
    pub fn ratio(self) -> (u32, u32) {
        match self {
            Self::R16x9 => (16, 9),
            Self::R9x16 => (9, 16),
            Self::R1x1 => (1, 1),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::R16x9 => "16:9",
            Self::R9x16 => "9:16",
            Self::R1x1 => "1:1",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::R16x9, Self::R9x16, Self::R1x1].into_iter().find(|q| q.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillingRule {
    PerSecond,
    PerCall,
}

/// 5.4 credits per second: the base price of the Kling 3.0 video models.
pub const BASE_UNITS_PER_SECOND: i64 = 54_000;
/// Price of one `kling-custom-element` call: 1 credit.
pub const ELEMENT_CALL_UNITS: i64 = 10_000;
pub const MIN_DURATION: u32 = 3;
pub const MAX_DURATION: u32 = 15;

/// Multiplier in thousandths, from the seed's table.
fn multiplier_milli(quality: Quality, sound: Sound) -> i64 {
    match (quality, sound) {
        (Quality::P720, Sound::Off) => 1000,
        (Quality::P720, Sound::On) => 1500,
        (Quality::P1080, Sound::Off) => 1333,
        (Quality::P1080, Sound::On) => 2000,
    }
}

pub fn units_per_second(model: ModelId, quality: Quality, sound: Sound) -> Option<Credits> {
    match model.billing_rule() {
        BillingRule::PerCall => None,
        BillingRule::PerSecond => {
            Some(Credits::from_units(BASE_UNITS_PER_SECOND * multiplier_milli(quality, sound) / 1000))
        }
    }
}

/// The price of one task: per second x max(duration, 3), or the per-call price.
pub fn price(model: ModelId, quality: Quality, sound: Sound, duration_secs: u32) -> Credits {
    match units_per_second(model, quality, sound) {
        None => Credits::from_units(ELEMENT_CALL_UNITS),
        Some(per_second) => Credits::from_units(per_second.units() * i64::from(duration_secs.max(MIN_DURATION))),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PriceEntry {
    pub quality: Quality,
    pub sound: Sound,
    /// Display: credits per second.
    pub credits_per_second: f64,
    /// Exact: units of 1/10000 credit per second.
    pub units_per_second: i64,
    /// Display: USD per second at 72 credits = $1.
    pub usd_per_second: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelEntry {
    pub id: String,
    pub object: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub billing_rule: BillingRule,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub pricing: Vec<PriceEntry>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub price_per_call: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub min_duration: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max_duration: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub qualities: Vec<Quality>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelEntry>,
}

/// Thousandths of a dollar, rounded half up in integers (72 credits = $1), so the
/// catalog shows the seed's $0.075, $0.113, $0.100 and $0.150 exactly.
fn usd_milli_rounded(units: Credits) -> i64 {
    let per_dollar = 72 * Credits::UNITS_PER_CREDIT;
    (units.units() * 1000 + per_dollar / 2).div_euclid(per_dollar)
}

/// The body of `GET /v1/models`.
pub fn model_list() -> ModelList {
    let data = ModelId::ALL
        .into_iter()
        .map(|m| {
            let mut pricing = Vec::new();
            for q in [Quality::P720, Quality::P1080] {
                for s in [Sound::Off, Sound::On] {
                    if let Some(u) = units_per_second(m, q, s) {
                        pricing.push(PriceEntry {
                            quality: q,
                            sound: s,
                            credits_per_second: u.to_credits_f64(),
                            units_per_second: u.units(),
                            usd_per_second: usd_milli_rounded(u) as f64 / 1000.0,
                        });
                    }
                }
            }
            let per_second = m.billing_rule() == BillingRule::PerSecond;
            ModelEntry {
                id: m.as_str().to_owned(),
                object: "model".to_owned(),
                name: m.display_name().to_owned(),
                kind: "video".to_owned(),
                billing_rule: m.billing_rule(),
                pricing,
                price_per_call: (!per_second).then(|| Credits::from_units(ELEMENT_CALL_UNITS).to_credits_f64()),
                min_duration: per_second.then_some(MIN_DURATION),
                max_duration: per_second.then_some(MAX_DURATION),
                qualities: if per_second { vec![Quality::P720, Quality::P1080] } else { Vec::new() },
            }
        })
        .collect();
    ModelList { object: "list".to_owned(), data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_52_prices_match_the_seed_table() {
        // Units per second from the seed: 5.4, 8.1, 7.1982, 10.8 credits.
        let table = [
            (Quality::P720, Sound::Off, 54_000),
            (Quality::P720, Sound::On, 81_000),
            (Quality::P1080, Sound::Off, 71_982),
            (Quality::P1080, Sound::On, 108_000),
        ];
        let mut n = 0;
        for (q, s, per) in table {
            for d in 3..=15u32 {
                for m in [ModelId::KlingV3ImageToVideo, ModelId::KlingV3TextToVideo] {
                    assert_eq!(price(m, q, s, d).units(), per * i64::from(d), "{q:?} {s:?} {d}");
                }
                n += 1;
            }
        }
        assert_eq!(n, 52);
        assert_eq!(price(ModelId::KlingV3ImageToVideo, Quality::P720, Sound::Off, 5).units(), 270_000);
        assert_eq!(price(ModelId::KlingV3ImageToVideo, Quality::P1080, Sound::Off, 15).units(), 1_079_730);
    }

    #[test]
    fn the_literal_price_table_holds() {
        // Units for 3..=15 s, per (quality, sound), written out as the seed prices them.
        let expected: [(Quality, Sound, [i64; 13]); 4] = [
            (
                Quality::P720,
                Sound::Off,
                [
                    162_000, 216_000, 270_000, 324_000, 378_000, 432_000, 486_000, 540_000, 594_000, 648_000, 702_000,
                    756_000, 810_000,
                ],
            ),
            (
                Quality::P720,
                Sound::On,
                [
                    243_000, 324_000, 405_000, 486_000, 567_000, 648_000, 729_000, 810_000, 891_000, 972_000,
                    1_053_000, 1_134_000, 1_215_000,
                ],
            ),
            (
                Quality::P1080,
                Sound::Off,
                [
                    215_946, 287_928, 359_910, 431_892, 503_874, 575_856, 647_838, 719_820, 791_802, 863_784, 935_766,
                    1_007_748, 1_079_730,
                ],
            ),
            (
                Quality::P1080,
                Sound::On,
                [
                    324_000, 432_000, 540_000, 648_000, 756_000, 864_000, 972_000, 1_080_000, 1_188_000, 1_296_000,
                    1_404_000, 1_512_000, 1_620_000,
                ],
            ),
        ];
        let mut cases = 0;
        for (q, s, row) in expected {
            for (d, units) in (3..=15u32).zip(row) {
                assert_eq!(
                    price(ModelId::KlingV3ImageToVideo, q, s, d),
                    Credits::from_units(units),
                    "{q:?} {s:?} {d}s"
                );
                assert_eq!(price(ModelId::KlingV3TextToVideo, q, s, d), Credits::from_units(units), "{q:?} {s:?} {d}s");
                cases += 1;
            }
        }
        assert_eq!(cases, 52);
    }

    #[test]
    fn the_catalog_lists_every_model_with_display_prices() {
        let list = model_list();
        assert_eq!(list.object, "list");
        let ids: Vec<&str> = list.data.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["kling-v3-image-to-video", "kling-v3-text-to-video", "kling-custom-element"]);
        let i2v = &list.data[0];
        assert_eq!(
            (i2v.name.as_str(), i2v.kind.as_str(), i2v.object.as_str()),
            ("Kling 3.0 Image to Video", "video", "model")
        );
        assert_eq!((i2v.min_duration, i2v.max_duration), (Some(3), Some(15)));
        let usd: Vec<f64> = i2v.pricing.iter().map(|p| p.usd_per_second).collect();
        assert_eq!(usd, [0.075, 0.113, 0.1, 0.15]);
        let credits: Vec<f64> = i2v.pricing.iter().map(|p| p.credits_per_second).collect();
        assert_eq!(credits, [5.4, 8.1, 7.1982, 10.8]);
        let el = &list.data[2];
        assert_eq!((el.billing_rule, el.price_per_call, el.pricing.len()), (BillingRule::PerCall, Some(1.0), 0));
        let json = serde_json::to_value(&list).map_err(|e| e.to_string());
        assert_eq!(json.map(|j| j["data"][0]["pricing"][2]["units_per_second"].clone()), Ok(serde_json::json!(71_982)));
    }

    #[test]
    fn names_parse_back() {
        for m in ModelId::ALL {
            assert_eq!(m.as_str().parse::<ModelId>(), Ok(m));
            assert_eq!(serde_json::to_value(m).ok(), Some(serde_json::json!(m.as_str())));
        }
        assert_eq!(ModelId::parse("kling-v3"), None);
        assert_eq!(Quality::parse("1080p").map(Quality::short_side), Some(1080));
        assert_eq!(AspectRatio::parse("9:16").map(AspectRatio::ratio), Some((9, 16)));
        assert_eq!(serde_json::to_value(AspectRatio::R1x1).ok(), Some(serde_json::json!("1:1")));
        assert_eq!(serde_json::to_value(Sound::On).ok(), Some(serde_json::json!("on")));
        assert_eq!(serde_json::to_value(BillingRule::PerCall).ok(), Some(serde_json::json!("per_call")));
        assert_eq!(
            (Quality::default(), Sound::default(), AspectRatio::default()),
            (Quality::P720, Sound::Off, AspectRatio::R16x9)
        );
    }

    #[test]
    fn elements_cost_one_credit_per_call() {
        assert_eq!(price(ModelId::KlingCustomElement, Quality::P1080, Sound::On, 15).units(), 10_000);
    }

    #[test]
    fn short_durations_bill_three_seconds() {
        assert_eq!(price(ModelId::KlingV3TextToVideo, Quality::P720, Sound::Off, 1).units(), 162_000);
    }
}
