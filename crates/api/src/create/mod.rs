//! `POST /v1/videos/generations`: the body read by hand from JSON so that every
//! error names its exact field (`model_params.multi_prompt[1].duration`). What
//! comes out is a `CreateTask` that obeys every rule of SPEC 1.1; inline images are
//! already decoded from base64 and checked by content.

mod images;
mod rules;
#[cfg(test)]
mod tests;
mod wire;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::catalog::{self, AspectRatio, ModelId, Quality, Sound};
use crate::credits::Credits;
use crate::image::{ImageInfo, ImageRules, MAX_IMAGE_BYTES, check_image};

pub const MAX_PROMPT_CHARS: usize = 2500;
pub const MAX_SHOT_PROMPT_CHARS: usize = 512;
pub const MAX_SHOTS: usize = 6;
pub const MAX_ELEMENTS: usize = 3;
pub const MAX_URL_CHARS: usize = 2048;
pub const MAX_ELEMENT_ID_CHARS: usize = 128;
pub const MAX_ELEMENT_NAME_CHARS: usize = 20;
pub const MAX_ELEMENT_DESCRIPTION_CHARS: usize = 100;
pub const MAX_REFER_IMAGES: usize = 3;
pub const DEFAULT_DURATION: u32 = 5;

#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    /// Allow `http://` and private or loopback literal hosts (development only).
    pub allow_private_urls: bool,
    /// Accept image URLs shaped like the server's own signed file links
    /// (`.../files/file-...?exp=..&sig=..`) without address checks: the server
    /// reads them from its storage after verifying the signature, never over the
    /// network.
    pub trust_file_links: bool,
}

pub use crate::error::FieldError;

fn err(param: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError { param: param.into(), message: message.into() }
}

/// An image as given: bytes at hand (checked), or a URL to fetch later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    Inline {
        #[serde(with = "b64")]
        bytes: Vec<u8>,
        info: ImageInfo,
    },
    Url(String),
}

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShotPrompt {
    pub index: u32,
    pub prompt: String,
    pub duration: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MultiShot {
    Customize(Vec<ShotPrompt>),
    Intelligence,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElementSpec {
    pub name: String,
    pub description: String,
    pub frontal_image: ImageSource,
    pub refer_images: Vec<ImageSource>,
}

/// A valid create request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateTask {
    pub model: ModelId,
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub image_start: Option<ImageSource>,
    pub image_end: Option<ImageSource>,
    pub duration: u32,
    pub quality: Quality,
    pub sound: Sound,
    pub aspect_ratio: AspectRatio,
    pub callback_url: Option<String>,
    pub multi_shot: Option<MultiShot>,
    pub element_ids: Vec<String>,
    pub watermark: bool,
    pub element: Option<ElementSpec>,
}

impl CreateTask {
    pub fn price(&self) -> Credits {
        catalog::price(self.model, self.quality, self.sound, self.duration)
    }

    pub fn billed_seconds(&self) -> u32 {
        match self.model.billing_rule() {
            catalog::BillingRule::PerCall => 0,
            catalog::BillingRule::PerSecond => self.duration.max(catalog::MIN_DURATION),
        }
    }

    pub fn video_duration(&self) -> u32 {
        match self.model {
            ModelId::KlingCustomElement => 0,
            _ => self.duration,
        }
    }
}

impl ImageSource {
    /// The string a client would send for this image: the URL, or a `data:` URI.
    pub fn to_wire_string(&self) -> String {
        match self {
            Self::Url(u) => u.clone(),
            Self::Inline { bytes, info } => {
                format!(
                    "data:{};base64,{}",
                    info.format.mime(),
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                )
            }
        }
    }
}

impl CreateTask {
    /// The request body that `parse_create` reads back into this task (the
    /// `evolink` adapter sends it upstream; clear `callback_url` first there).
    pub fn to_request(&self) -> CreateRequest {
        let per_second = self.model.billing_rule() == catalog::BillingRule::PerSecond;
        let mut params = ModelParams::default();
        match &self.multi_shot {
            None => {}
            Some(MultiShot::Intelligence) => {
                params.multi_shot = Some(true);
                params.shot_type = Some(ShotType::Intelligence);
            }
            Some(MultiShot::Customize(shots)) => {
                params.multi_shot = Some(true);
                params.shot_type = Some(ShotType::Customize);
                params.multi_prompt = Some(
                    shots
                        .iter()
                        .map(|s| MultiPromptItem {
                            index: s.index,
                            prompt: s.prompt.clone(),
                            duration: s.duration.to_string(),
                        })
                        .collect(),
                );
            }
        }
        if !self.element_ids.is_empty() {
            params.element_list =
                Some(self.element_ids.iter().map(|id| ElementRef { element_id: id.clone() }).collect());
        }
        if self.watermark {
            params.watermark_info = Some(WatermarkInfo { enabled: true });
        }
        if let Some(el) = &self.element {
            params.element_name = Some(el.name.clone());
            params.element_description = Some(el.description.clone());
            params.reference_type = Some("image_refer".to_owned());
            params.element_image_list = Some(ElementImageList {
                frontal_image: el.frontal_image.to_wire_string(),
                refer_images: el.refer_images.iter().map(|i| ReferImage { image_url: i.to_wire_string() }).collect(),
            });
        }
        let has_params = params != ModelParams::default();
        CreateRequest {
            model: self.model.as_str().to_owned(),
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            image_start: self.image_start.as_ref().map(ImageSource::to_wire_string),
            image_end: self.image_end.as_ref().map(ImageSource::to_wire_string),
            duration: per_second.then_some(self.duration),
            quality: per_second.then_some(self.quality),
            sound: per_second.then_some(self.sound),
            aspect_ratio: (self.model == ModelId::KlingV3TextToVideo).then_some(self.aspect_ratio),
            callback_url: self.callback_url.clone(),
            model_params: has_params.then_some(params),
        }
    }
}

pub use images::parse_image;
pub use rules::parse_create;
pub use wire::*;
