//! One model of the catalog, as read from `models.toml` (or an operator's
//! override): its parameters with their limits and defaults, the numbers of its
//! cross-field rules, and its prices. Every section is checked when the catalog
//! loads (against the model's shape, too), so what parse and pricing read is sound;
//! an error names the model and the field.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::CatalogError;
use super::pricing::{Pricing, PricingRaw};
use super::values::{AspectRatio, Orientation, Quality, ReferenceType, Shape, ShotType, Sound};
use crate::image::{ImageFormat, ImageRules};
use crate::video::{Bounds, VideoLimits};

/// Is a model's `prompt` required?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptRequired {
    Always,
    Optional,
    /// Required unless `model_params.multi_shot` with `shot_type: customize`, whose
    /// shots carry their own prompts.
    UnlessCustomizedShots,
}

/// What `<<<kind_N>>>` may name in a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefKind {
    Element,
    Image,
    Video,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    pub max_chars: usize,
    pub required: PromptRequired,
    /// Reference kinds the docs name for this model (`<<<element_1>>>`...). An
    /// element reference is always checked against `element_list`.
    #[serde(default)]
    pub refs: Vec<RefKind>,
    /// Shots written inside the prompt (`镜头 n, m, words;`), as Kling 3.0 Turbo takes them.
    #[serde(default)]
    pub shot_syntax: Option<ShotSyntax>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShotSyntax {
    pub max_shots: usize,
    pub shot_prompt_max_chars: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    pub max_chars: usize,
}

/// `duration`: a range or a set of whole seconds, with its default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationSpec {
    pub allowed: DurationAllowed,
    pub default: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationAllowed {
    Range { min: u32, max: u32 },
    Values(Vec<u32>),
}

impl DurationSpec {
    pub fn allows(&self, d: u32) -> bool {
        match &self.allowed {
            DurationAllowed::Range { min, max } => (*min..=*max).contains(&d),
            DurationAllowed::Values(v) => v.contains(&d),
        }
    }

    pub fn max(&self) -> u32 {
        match &self.allowed {
            DurationAllowed::Range { max, .. } => *max,
            DurationAllowed::Values(v) => v.iter().copied().max().unwrap_or(0),
        }
    }

    /// `an integer from 3 to 15` or `5 or 10`.
    pub fn describe(&self) -> String {
        match &self.allowed {
            DurationAllowed::Range { min, max } => format!("an integer from {min} to {max}"),
            DurationAllowed::Values(v) => match v.as_slice() {
                [] => String::new(),
                [one] => one.to_string(),
                [init @ .., last] => {
                    let init: Vec<String> = init.iter().map(u32::to_string).collect();
                    format!("{} or {last}", init.join(", "))
                }
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DurationRaw {
    min: Option<u32>,
    max: Option<u32>,
    values: Option<Vec<u32>>,
    default: u32,
}

/// A generic setting (`quality`, `sound`): a choice with a default, or one fixed
/// value the model always uses (then it is not a parameter of its own, and a request
/// asking for another value is refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting<T> {
    Choice { values: Vec<T>, default: T },
    Fixed(T),
}

impl<T: Copy + PartialEq> Setting<T> {
    pub fn values(&self) -> Vec<T> {
        match self {
            Self::Choice { values, .. } => values.clone(),
            Self::Fixed(v) => vec![*v],
        }
    }

    pub fn is_choice(&self) -> bool {
        matches!(self, Self::Choice { .. })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingRaw<T> {
    values: Option<Vec<T>>,
    default: Option<T>,
    fixed: Option<T>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AspectSpec {
    pub values: Vec<AspectRatio>,
    #[serde(default)]
    pub default: Option<AspectRatio>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartFrameSpec {
    pub required: bool,
    /// Also take the frames from a top-level `image_urls` (first, then last), as
    /// EvoLink's MCP client sends them; only for models without an `image_urls` of their own.
    #[serde(default)]
    pub from_image_urls: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndFrameSpec {
    /// May the end frame come with `model_params.multi_shot`?
    #[serde(default = "yes")]
    pub with_multi_shot: bool,
    /// The end frame only when all images together (frames and references) are at most this many.
    #[serde(default)]
    pub max_total_images: Option<usize>,
}

fn yes() -> bool {
    true
}

/// What a model's own `image_urls` are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageListRole {
    /// Reference images (style, scene, appearance).
    Reference,
    /// The first frame, then the last (Kling O1 image to video).
    Frames,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageListSpec {
    pub role: ImageListRole,
    /// When given, at least this many.
    #[serde(default)]
    pub min: usize,
    pub max: usize,
    #[serde(default)]
    pub required: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImagesRaw {
    max_mb: usize,
    min_side: u32,
    max_aspect: String,
    formats: Vec<String>,
}

/// Which request field carries a model's video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoField {
    /// One URL string.
    VideoUrl,
    /// An array holding exactly one URL.
    VideoUrls,
}

impl VideoField {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VideoUrl => "video_url",
            Self::VideoUrls => "video_urls",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoSpec {
    pub field: VideoField,
    pub required: bool,
    pub limits: VideoLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VideoRaw {
    field: Option<VideoField>,
    required: Option<bool>,
    max_mb: u64,
    duration_ms: Option<Bounds<u64>>,
    side_px: Option<Bounds<u32>>,
    width_px: Option<Bounds<u32>>,
    fps: Option<Bounds<u32>>,
    containers: Vec<String>,
}

/// Where a model reads "keep the input video's sound".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum KeepSoundField {
    #[serde(rename = "keep_original_sound")]
    KeepOriginalSound,
    #[serde(rename = "model_params.keep_sound")]
    ModelParamsKeepSound,
}

impl KeepSoundField {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeepOriginalSound => "keep_original_sound",
            Self::ModelParamsKeepSound => "model_params.keep_sound",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepSoundSpec {
    pub field: KeepSoundField,
    #[serde(default)]
    pub default: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrientationChoice {
    pub value: Orientation,
    /// The longest input video this orientation takes.
    pub max_video_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrientationSpec {
    pub required: bool,
    pub values: Vec<OrientationChoice>,
}

impl OrientationSpec {
    pub fn max_video_ms(&self, o: Orientation) -> Option<u64> {
        self.values.iter().find(|c| c.value == o).map(|c| c.max_video_ms)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiShotSpec {
    pub shot_types: Vec<ShotType>,
    pub max_shots: usize,
    pub shot_prompt_max_chars: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElementsSpec {
    pub max: usize,
    /// At most this many elements when a first frame is given.
    #[serde(default)]
    pub max_with_first_frame: Option<usize>,
    /// Images (all of them) and elements together at most this many.
    #[serde(default)]
    pub max_with_images: Option<usize>,
    /// Elements only with this character orientation (motion control).
    #[serde(default)]
    pub orientation: Option<Orientation>,
    #[serde(default = "default_element_id_chars")]
    pub id_max_chars: usize,
}

fn default_element_id_chars() -> usize {
    128
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountSpec {
    pub min: usize,
    pub max: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomElementSpec {
    pub name_max_chars: usize,
    pub description_max_chars: usize,
    pub reference_types: Vec<ReferenceType>,
    pub refer_images: CountSpec,
    pub video: VideoLimits,
    pub voice_id: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomElementRaw {
    name_max_chars: usize,
    description_max_chars: usize,
    reference_types: Vec<ReferenceType>,
    refer_images: CountSpec,
    video: Option<VideoRaw>,
    #[serde(default)]
    voice_id: bool,
}

/// One model of the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    pub id: super::ModelId,
    pub name: String,
    pub shape: Shape,
    /// Where its rules come from.
    pub docs: String,
    pub enabled: bool,
    pub prompt: Option<PromptSpec>,
    pub negative_prompt: Option<TextSpec>,
    pub duration: Option<DurationSpec>,
    pub quality: Option<Setting<Quality>>,
    pub sound: Option<Setting<Sound>>,
    pub aspect_ratio: Option<AspectSpec>,
    pub image_start: Option<StartFrameSpec>,
    pub image_end: Option<EndFrameSpec>,
    pub image_urls: Option<ImageListSpec>,
    pub images: Option<ImageRules>,
    pub video: Option<VideoSpec>,
    pub keep_sound: Option<KeepSoundSpec>,
    pub orientation: Option<OrientationSpec>,
    pub multi_shot: Option<MultiShotSpec>,
    pub elements: Option<ElementsSpec>,
    pub watermark: bool,
    pub element: Option<CustomElementSpec>,
    pub pricing: Pricing,
}

const KNOWN: [&str; 23] = [
    "id",
    "name",
    "shape",
    "docs",
    "enabled",
    "prompt",
    "negative_prompt",
    "duration",
    "quality",
    "sound",
    "aspect_ratio",
    "image_start",
    "image_end",
    "image_urls",
    "images",
    "video",
    "keep_sound",
    "character_orientation",
    "multi_shot",
    "elements",
    "watermark",
    "element",
    "pricing",
];

/// Reads one field of a model's table, naming the model and field on error.
struct Reader<'a> {
    table: &'a toml::Table,
    model: String,
}

impl Reader<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> CatalogError {
        CatalogError::new(Some(&self.model), field, message)
    }

    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CatalogError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(v) => v.clone().try_into().map(Some).map_err(|e| self.err(key, e.message().trim().to_owned())),
        }
    }

    fn need<T: DeserializeOwned>(&self, key: &str) -> Result<T, CatalogError> {
        self.get(key)?.ok_or_else(|| self.err(key, "is required"))
    }
}

/// Parses a decimal such as `2.5` into thousandths (`2500`), exactly.
pub(crate) fn parse_milli(s: &str) -> Option<u32> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || frac.len() > 3 || !whole.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let frac: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<3}").parse().ok()? };
    whole.checked_mul(1000)?.checked_add(frac)
}

fn setting<T: Copy + PartialEq + std::fmt::Debug>(
    r: &Reader<'_>,
    key: &str,
    raw: SettingRaw<T>,
) -> Result<Setting<T>, CatalogError> {
    match (raw.values, raw.default, raw.fixed) {
        (None, None, Some(v)) => Ok(Setting::Fixed(v)),
        (Some(values), Some(default), None) if !values.is_empty() => {
            if !values.contains(&default) {
                return Err(r.err(key, format!("the default {default:?} is not among the values")));
            }
            Ok(Setting::Choice { values, default })
        }
        _ => Err(r.err(key, "give either `values` (non-empty) with a `default`, or `fixed`")),
    }
}

fn video_limits(r: &Reader<'_>, key: &str, raw: &VideoRaw) -> Result<VideoLimits, CatalogError> {
    if raw.containers.is_empty()
        || !raw
            .containers
            .iter()
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    {
        return Err(r.err(key, "containers must be lowercase brands such as \"mp4\""));
    }
    let ordered = |lo: Option<u64>, hi: Option<u64>| lo.zip(hi).is_none_or(|(lo, hi)| lo <= hi);
    let bounds32 = |b: &Option<Bounds<u32>>| b.is_none_or(|b| ordered(b.min.map(u64::from), b.max.map(u64::from)));
    if raw.max_mb == 0
        || !raw.duration_ms.is_none_or(|b| ordered(b.min, b.max))
        || !bounds32(&raw.side_px)
        || !bounds32(&raw.width_px)
        || !bounds32(&raw.fps)
    {
        return Err(r.err(key, "max_mb must be positive and every range must have min <= max"));
    }
    Ok(VideoLimits {
        max_bytes: raw.max_mb * 1024 * 1024,
        duration_ms: raw.duration_ms.unwrap_or_default(),
        side_px: raw.side_px.unwrap_or_default(),
        width_px: raw.width_px.unwrap_or_default(),
        fps: raw.fps.unwrap_or_default(),
        containers: raw.containers.clone(),
    })
}

impl ModelSpec {
    /// Reads and checks one model's table.
    pub(super) fn from_table(table: &toml::Table) -> Result<Self, CatalogError> {
        let id = match table.get("id") {
            Some(toml::Value::String(s)) if super::ModelId::is_valid(s) => s.clone(),
            Some(toml::Value::String(s)) => {
                return Err(CatalogError::new(
                    Some(s),
                    "id",
                    "use 1 to 64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit",
                ));
            }
            _ => return Err(CatalogError::new(None, "id", "every model needs a string id")),
        };
        let r = Reader { table, model: id.clone() };
        if let Some(key) = table.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(r.err(key, "unknown field"));
        }
        let name: String = r.need("name")?;
        let shape: Shape = r.need("shape")?;
        let duration = match r.get::<DurationRaw>("duration")? {
            None => None,
            Some(d) => {
                let allowed = match (d.min, d.max, d.values) {
                    (Some(min), Some(max), None) if 1 <= min && min <= max => DurationAllowed::Range { min, max },
                    (None, None, Some(v)) if !v.is_empty() && !v.contains(&0) => DurationAllowed::Values(v),
                    _ => return Err(r.err("duration", "give `min` <= `max` (from 1), or a non-empty `values` list")),
                };
                let spec = DurationSpec { allowed, default: d.default };
                if !spec.allows(spec.default) {
                    return Err(r.err("duration", "the default is not an allowed duration"));
                }
                Some(spec)
            }
        };
        let quality = r.get::<SettingRaw<Quality>>("quality")?.map(|s| setting(&r, "quality", s)).transpose()?;
        let sound = r.get::<SettingRaw<Sound>>("sound")?.map(|s| setting(&r, "sound", s)).transpose()?;
        let images = match r.get::<ImagesRaw>("images")? {
            None => None,
            Some(i) => {
                let max_aspect_milli = parse_milli(&i.max_aspect)
                    .filter(|&m| m >= 1000)
                    .ok_or_else(|| r.err("images", "max_aspect must be a decimal of at least 1, such as \"2.5\""))?;
                let mut formats = Vec::new();
                for f in &i.formats {
                    let format = ImageFormat::parse(f).ok_or_else(|| {
                        r.err("images", format!("vidgate does not take {f} images; use jpeg and png"))
                    })?;
                    formats.push(format);
                }
                if formats.is_empty() || i.max_mb == 0 {
                    return Err(r.err("images", "give at least one format and a positive max_mb"));
                }
                Some(ImageRules { max_bytes: i.max_mb * 1024 * 1024, min_side: i.min_side, max_aspect_milli, formats })
            }
        };
        let video = match r.get::<VideoRaw>("video")? {
            None => None,
            Some(v) => {
                let field = v.field.ok_or_else(|| r.err("video", "field (video_url or video_urls) is required"))?;
                let limits = video_limits(&r, "video", &v)?;
                Some(VideoSpec { field, required: v.required.unwrap_or(false), limits })
            }
        };
        let element = match r.get::<CustomElementRaw>("element")? {
            None => None,
            Some(e) => {
                let video = match &e.video {
                    Some(v) if v.field.is_some() || v.required.is_some() => {
                        return Err(r.err("element", "an element's video takes limits only, no field or required"));
                    }
                    Some(v) => video_limits(&r, "element", v)?,
                    None => VideoLimits::default(),
                };
                if e.reference_types.contains(&ReferenceType::VideoRefer) && e.video.is_none() {
                    return Err(r.err("element", "video_refer needs the video limits"));
                }
                if e.reference_types.is_empty() || e.refer_images.min > e.refer_images.max {
                    return Err(r.err("element", "give reference_types and refer_images with min <= max"));
                }
                Some(CustomElementSpec {
                    name_max_chars: e.name_max_chars,
                    description_max_chars: e.description_max_chars,
                    reference_types: e.reference_types,
                    refer_images: e.refer_images,
                    video,
                    voice_id: e.voice_id,
                })
            }
        };
        let pricing_raw: PricingRaw = r.need("pricing")?;
        let spec = ModelSpec {
            id: super::ModelId::new(id.clone()),
            name,
            shape,
            docs: r.get("docs")?.unwrap_or_default(),
            enabled: r.get("enabled")?.unwrap_or(true),
            prompt: r.get("prompt")?,
            negative_prompt: r.get("negative_prompt")?,
            duration,
            quality,
            sound,
            aspect_ratio: r.get("aspect_ratio")?,
            image_start: r.get("image_start")?,
            image_end: r.get("image_end")?,
            image_urls: r.get("image_urls")?,
            images,
            video,
            keep_sound: r.get("keep_sound")?,
            orientation: r.get("character_orientation")?,
            multi_shot: r.get("multi_shot")?,
            elements: r.get("elements")?,
            watermark: r.get("watermark")?.unwrap_or(false),
            element,
            pricing: Pricing::from_raw(pricing_raw).map_err(|m| r.err("pricing", m))?,
        };
        spec.check_shape(&r)?;
        spec.check_values(&r)?;
        spec.pricing
            .check_covers(spec.quality.as_ref(), spec.sound.as_ref(), spec.duration.as_ref(), spec.video.is_some())
            .map_err(|m| r.err("pricing", m))?;
        Ok(spec)
    }

    /// Which sections each shape needs and which it cannot have.
    fn check_shape(&self, r: &Reader<'_>) -> Result<(), CatalogError> {
        use Shape::*;
        let present = [
            ("prompt", self.prompt.is_some()),
            ("negative_prompt", self.negative_prompt.is_some()),
            ("duration", self.duration.is_some()),
            ("quality", self.quality.is_some()),
            ("sound", self.sound.is_some()),
            ("aspect_ratio", self.aspect_ratio.is_some()),
            ("image_start", self.image_start.is_some()),
            ("image_end", self.image_end.is_some()),
            ("image_urls", self.image_urls.is_some()),
            ("images", self.images.is_some()),
            ("video", self.video.is_some()),
            ("keep_sound", self.keep_sound.is_some()),
            ("character_orientation", self.orientation.is_some()),
            ("multi_shot", self.multi_shot.is_some()),
            ("elements", self.elements.is_some()),
            ("element", self.element.is_some()),
        ];
        // (needed, forbidden) for each shape.
        let (needed, forbidden): (&[&str], &[&str]) = match self.shape {
            TextToVideo => (
                &["prompt", "duration", "quality", "sound"],
                &[
                    "image_start",
                    "image_end",
                    "image_urls",
                    "images",
                    "video",
                    "keep_sound",
                    "character_orientation",
                    "element",
                ],
            ),
            ImageToVideo => (
                &["prompt", "duration", "quality", "sound", "images"],
                &["video", "keep_sound", "character_orientation", "element"],
            ),
            ReferenceToVideo => (
                &["prompt", "duration", "quality", "sound", "video"],
                &["image_start", "image_end", "character_orientation", "element"],
            ),
            VideoEdit => (
                &["prompt", "quality", "sound", "video"],
                &[
                    "duration",
                    "aspect_ratio",
                    "image_start",
                    "image_end",
                    "character_orientation",
                    "multi_shot",
                    "element",
                ],
            ),
            MotionControl => (
                &["prompt", "quality", "sound", "video", "image_urls", "images", "character_orientation"],
                &["duration", "aspect_ratio", "image_start", "image_end", "multi_shot", "element"],
            ),
            CustomElement => (
                &["element", "images"],
                &[
                    "prompt",
                    "negative_prompt",
                    "duration",
                    "quality",
                    "sound",
                    "aspect_ratio",
                    "image_start",
                    "image_end",
                    "image_urls",
                    "video",
                    "keep_sound",
                    "character_orientation",
                    "multi_shot",
                    "elements",
                ],
            ),
        };
        for (name, is_there) in present {
            if needed.contains(&name) && !is_there {
                return Err(r.err(name, format!("is required for a {} model", self.shape)));
            }
            if forbidden.contains(&name) && is_there {
                return Err(r.err(name, format!("a {} model cannot have it", self.shape)));
            }
        }
        if self.shape == ImageToVideo && self.image_start.is_none() && self.image_urls.is_none() {
            return Err(r.err("image_start", "an image_to_video model needs image_start or image_urls"));
        }
        if self.image_urls.as_ref().is_some_and(|l| l.role == ImageListRole::Frames)
            && (self.image_start.is_some() || self.shape != ImageToVideo)
        {
            return Err(r.err("image_urls", "frames in image_urls are for image_to_video models without image_start"));
        }
        if self.image_start.as_ref().is_some_and(|s| s.from_image_urls) && self.image_urls.is_some() {
            return Err(r.err("image_start", "from_image_urls needs a model without an image_urls of its own"));
        }
        if self.image_end.is_some() && self.image_start.is_none() {
            return Err(r.err("image_end", "an end frame needs image_start"));
        }
        if self.image_urls.is_some() && self.images.is_none() {
            return Err(r.err("images", "a model with image_urls needs its image rules"));
        }
        if self.watermark && self.shape == CustomElement {
            return Err(r.err("watermark", "a custom_element model makes no video"));
        }
        Ok(())
    }

    /// Limits that must make sense on their own.
    fn check_values(&self, r: &Reader<'_>) -> Result<(), CatalogError> {
        if let Some(a) = &self.aspect_ratio
            && (a.values.is_empty() || a.default.is_some_and(|d| !a.values.contains(&d)))
        {
            return Err(r.err("aspect_ratio", "give values, and a default among them"));
        }
        if let Some(l) = &self.image_urls {
            let frames_max = if l.role == ImageListRole::Frames { 2 } else { usize::MAX };
            if l.max == 0 || l.min > l.max || l.max > frames_max || (l.required && l.min == 0) {
                return Err(
                    r.err("image_urls", "need 0 < max, min <= max (at most 2 frames), and min >= 1 when required")
                );
            }
        }
        if let Some(m) = &self.multi_shot
            && (m.shot_types.is_empty() || m.max_shots == 0 || m.shot_prompt_max_chars == 0 || self.duration.is_none())
        {
            return Err(r.err(
                "multi_shot",
                "give shot types, max_shots and shot_prompt_max_chars, on a model with a duration",
            ));
        }
        if let Some(o) = &self.orientation
            && o.values.is_empty()
        {
            return Err(r.err("character_orientation", "give at least one value"));
        }
        if let Some(e) = &self.elements {
            if e.max == 0 {
                return Err(r.err("elements", "max must be at least 1"));
            }
            if e.orientation.is_some() && self.orientation.is_none() {
                return Err(r.err("elements", "orientation needs a character_orientation section"));
            }
        }
        if self.prompt.as_ref().is_some_and(|p| p.max_chars == 0) {
            return Err(r.err("prompt", "max_chars must be positive"));
        }
        Ok(())
    }

    /// The rules every image of this model must meet (SPEC 1.1's when it has none).
    pub fn image_rules(&self) -> ImageRules {
        self.images.clone().unwrap_or_default()
    }
}

impl ModelSpec {
    /// The limits the video in `param` of `task` must meet: the element's video for a
    /// custom element, otherwise the model's input video, its longest duration cut to
    /// what the task's `character_orientation` allows. `None` when the model takes no
    /// video there.
    pub fn video_limits<M>(&self, task: &crate::create::CreateTask<M>, param: &str) -> Option<VideoLimits> {
        if param.starts_with("model_params.element_video_list") {
            return self.element.as_ref().map(|e| e.video.clone());
        }
        let mut limits = self.video.as_ref()?.limits.clone();
        if let Some(cap) = task.character_orientation.and_then(|o| self.orientation.as_ref()?.max_video_ms(o)) {
            limits.duration_ms.max = Some(limits.duration_ms.max.map_or(cap, |m| m.min(cap)));
        }
        Some(limits)
    }

    /// Checks a probed input video against this model's documented limits for the
    /// field it came in (see `video_limits`); the error names the field and the rule.
    pub fn check_video<M>(
        &self,
        task: &crate::create::CreateTask<M>,
        param: &str,
        facts: &crate::video::VideoFacts,
    ) -> Result<(), crate::error::FieldError> {
        match self.video_limits(task, param) {
            Some(limits) => limits.check(self.id.as_str(), param, facts),
            None => Err(crate::error::FieldError::new(param, format!("{} takes no video here.", self.id))),
        }
    }
}
