//! Prices and billing rules as data: per second (a table of rows by quality and
//! sound, each a multiple of a base price or a price of its own, billed between a
//! minimum and maximum number of seconds that follow the requested duration, the
//! input video or the output video), or per call. Exact integer units throughout:
//! a multiplier that does not give whole units is refused when the catalog loads.

use serde::Deserialize;

use super::spec::{DurationSpec, ModelSpec, Setting, parse_milli};
use super::values::{BilledBy, BillingRule, Quality, Sound};
use crate::create::CreateTask;
use crate::credits::Credits;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PricingRaw {
    rule: BillingRule,
    billed_by: Option<BilledBy>,
    min_seconds: Option<u32>,
    max_seconds: Option<u32>,
    base_credits: Option<String>,
    credits: Option<String>,
    #[serde(default)]
    estimated: bool,
    #[serde(default)]
    prices: Vec<PriceRowRaw>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceRowRaw {
    quality: Option<Quality>,
    sound: Option<Sound>,
    multiplier: Option<String>,
    credits: Option<String>,
    estimated: Option<bool>,
}

/// One row of a per-second price table; `None` matches any quality or sound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceRow {
    pub quality: Option<Quality>,
    pub sound: Option<Sound>,
    pub per_second: Credits,
    /// Not published by EvoLink: the official Kling price at EvoLink's discount.
    pub estimated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerSecond {
    pub billed_by: BilledBy,
    pub min_seconds: u32,
    pub max_seconds: u32,
    pub rows: Vec<PriceRow>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pricing {
    PerSecond(PerSecond),
    PerCall { price: Credits, estimated: bool },
}

fn credits(s: &str, what: &str) -> Result<Credits, String> {
    Credits::parse_decimal(s)
        .filter(|c| c.units() > 0)
        .ok_or_else(|| format!("{what} {s:?} is not a positive decimal with at most 4 decimals"))
}

impl Pricing {
    pub(super) fn from_raw(raw: PricingRaw) -> Result<Self, String> {
        match raw.rule {
            BillingRule::PerCall => {
                if raw.billed_by.is_some()
                    || raw.min_seconds.is_some()
                    || raw.max_seconds.is_some()
                    || raw.base_credits.is_some()
                    || !raw.prices.is_empty()
                {
                    return Err("a per_call price takes `credits` only".to_owned());
                }
                let price = credits(raw.credits.as_deref().ok_or("a per_call price needs `credits`")?, "credits")?;
                Ok(Self::PerCall { price, estimated: raw.estimated })
            }
            BillingRule::PerSecond => {
                if raw.credits.is_some() {
                    return Err("a per_second price takes `base_credits` and `prices`, not `credits`".to_owned());
                }
                let billed_by = raw.billed_by.ok_or("a per_second price needs `billed_by`")?;
                let (Some(min_seconds), Some(max_seconds)) = (raw.min_seconds, raw.max_seconds) else {
                    return Err("a per_second price needs `min_seconds` and `max_seconds`".to_owned());
                };
                if min_seconds == 0 || min_seconds > max_seconds {
                    return Err("need 1 <= min_seconds <= max_seconds".to_owned());
                }
                let base = raw.base_credits.as_deref().map(|b| credits(b, "base_credits")).transpose()?;
                if raw.prices.is_empty() {
                    return Err("a per_second price needs at least one row in `prices`".to_owned());
                }
                let mut rows = Vec::with_capacity(raw.prices.len());
                for (i, row) in raw.prices.into_iter().enumerate() {
                    let per_second = match (row.multiplier, row.credits) {
                        (Some(m), None) => {
                            let base = base.ok_or_else(|| format!("prices[{i}]: a multiplier needs `base_credits`"))?;
                            let milli = parse_milli(&m).filter(|&m| m > 0).ok_or_else(|| {
                                format!("prices[{i}]: multiplier {m:?} is not a decimal with at most 3 decimals")
                            })?;
                            let product = base.units().checked_mul(i64::from(milli)).unwrap_or(i64::MAX);
                            if product % 1000 != 0 {
                                return Err(format!("prices[{i}]: {base} x {m} is not a whole number of units"));
                            }
                            Credits::from_units(product / 1000)
                        }
                        (None, Some(c)) => credits(&c, &format!("prices[{i}].credits"))?,
                        _ => return Err(format!("prices[{i}]: give either `multiplier` or `credits`")),
                    };
                    rows.push(PriceRow {
                        quality: row.quality,
                        sound: row.sound,
                        per_second,
                        estimated: row.estimated.unwrap_or(raw.estimated),
                    });
                }
                Ok(Self::PerSecond(PerSecond { billed_by, min_seconds, max_seconds, rows }))
            }
        }
    }

    /// Every quality and sound the model can produce has a price, and what the
    /// seconds follow exists on this model.
    pub(super) fn check_covers(
        &self,
        quality: Option<&Setting<Quality>>,
        sound: Option<&Setting<Sound>>,
        duration: Option<&DurationSpec>,
        has_video: bool,
    ) -> Result<(), String> {
        let Self::PerSecond(p) = self else { return Ok(()) };
        let qualities = quality.map(Setting::values).unwrap_or_else(|| vec![Quality::default()]);
        let sounds = sound.map(Setting::values).unwrap_or_else(|| vec![Sound::default()]);
        for q in &qualities {
            for s in &sounds {
                if p.row(*q, *s).is_none() {
                    return Err(format!("no price for quality {q} with sound {s}"));
                }
            }
        }
        let ok = match p.billed_by {
            BilledBy::Duration => duration.is_some(),
            BilledBy::InputVideo => has_video && duration.is_none(),
            BilledBy::OutputVideo => duration.is_some() || has_video,
        };
        if !ok {
            return Err(format!("billed_by {} does not fit this model's duration and video", p.billed_by));
        }
        Ok(())
    }

    pub fn rule(&self) -> BillingRule {
        match self {
            Self::PerSecond(_) => BillingRule::PerSecond,
            Self::PerCall { .. } => BillingRule::PerCall,
        }
    }

    /// True when any price here is an estimate rather than EvoLink's own.
    pub fn estimated(&self) -> bool {
        match self {
            Self::PerSecond(p) => p.rows.iter().any(|r| r.estimated),
            Self::PerCall { estimated, .. } => *estimated,
        }
    }
}

impl PerSecond {
    /// The first row that matches this quality and sound.
    pub fn row(&self, quality: Quality, sound: Sound) -> Option<&PriceRow> {
        self.rows.iter().find(|r| r.quality.is_none_or(|q| q == quality) && r.sound.is_none_or(|s| s == sound))
    }

    fn clamp(&self, seconds: u32) -> u32 {
        seconds.clamp(self.min_seconds, self.max_seconds)
    }
}

/// Whole seconds of a duration, rounded up.
fn ceil_seconds(ms: u64) -> u32 {
    u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
}

/// Whole seconds of a duration, rounded to the nearest (half up).
fn round_seconds(ms: u64) -> u32 {
    u32::try_from(ms.saturating_add(500) / 1000).unwrap_or(u32::MAX)
}

impl ModelSpec {
    /// The price of `seconds` at this quality and sound (the seconds are first
    /// brought into the billed range); the call price for a per-call model. `None`
    /// when the model does not make that quality and sound.
    pub fn price(&self, quality: Quality, sound: Sound, seconds: u32) -> Option<Credits> {
        match &self.pricing {
            Pricing::PerCall { price, .. } => Some(*price),
            Pricing::PerSecond(p) => {
                let row = p.row(quality, sound)?;
                row.per_second.units().checked_mul(i64::from(p.clamp(seconds))).map(Credits::from_units)
            }
        }
    }

    /// The longest input video the task's options allow (motion control's
    /// orientation), if the model limits it by option.
    fn option_cap_ms<M>(&self, task: &CreateTask<M>) -> Option<u64> {
        let o = task.character_orientation?;
        self.orientation.as_ref()?.max_video_ms(o)
    }

    /// Seconds to hold at create: 0 for a per-call model; the requested duration;
    /// or the probed input video (`input_video_ms`), rounded up. Always within the
    /// billed range (and an orientation's cap). `None` when the input video's
    /// duration is needed and not given.
    pub fn hold_seconds<M>(&self, task: &CreateTask<M>, input_video_ms: Option<u64>) -> Option<u32> {
        let Pricing::PerSecond(p) = &self.pricing else { return Some(0) };
        let from_input = |ms: u64| {
            let cap = self.option_cap_ms(task).map(ceil_seconds).unwrap_or(u32::MAX);
            p.clamp(ceil_seconds(ms).min(cap))
        };
        match (p.billed_by, task.duration) {
            (BilledBy::Duration, d) | (BilledBy::OutputVideo, d @ Some(_)) => d.map(|d| p.clamp(d)),
            (BilledBy::InputVideo | BilledBy::OutputVideo, _) => input_video_ms.map(from_input),
        }
    }

    /// Seconds to charge when the task succeeds, given what was held: the output's
    /// duration rounded to the nearest second (within the billed range, never above
    /// the hold) for a model billed by its output; the hold otherwise.
    pub fn settle_seconds(&self, held: u32, output_video_ms: Option<u64>) -> u32 {
        match (&self.pricing, output_video_ms) {
            (Pricing::PerSecond(p), Some(ms)) if p.billed_by == BilledBy::OutputVideo => {
                p.clamp(round_seconds(ms)).min(held)
            }
            _ => held,
        }
    }

    /// What to hold for a task at create (`hold_seconds` priced).
    pub fn hold_price<M>(&self, task: &CreateTask<M>, input_video_ms: Option<u64>) -> Option<Credits> {
        self.price(task.quality, task.sound, self.hold_seconds(task, input_video_ms)?)
    }

    /// The price of a task billed by its request alone (a duration or a call);
    /// `None` for a model that must probe its input video first.
    pub fn request_price<M>(&self, task: &CreateTask<M>) -> Option<Credits> {
        self.hold_price(task, None)
    }

    /// Seconds of video the task is expected to make (`task_info.video_duration`):
    /// its duration, or its input video's (rounded up, within an orientation's cap);
    /// 0 for a model that makes no video.
    pub fn video_seconds<M>(&self, task: &CreateTask<M>, input_video_ms: Option<u64>) -> u32 {
        if let Some(d) = task.duration {
            return d;
        }
        match input_video_ms {
            Some(ms) => ceil_seconds(self.option_cap_ms(task).map_or(ms, |cap| ms.min(cap))),
            None => 0,
        }
    }
}
