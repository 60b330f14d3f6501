//! `POST /v1/videos/generations`: the body read by hand from JSON, against the
//! catalog's data for its model, so that every error names its exact field
//! (`model_params.multi_prompt[1].duration`, `video_urls[0]`). What comes out is a
//! `CreateTask<MediaSource>` that obeys every documented rule of its model; inline
//! images are already decoded and checked completely, URLs passed the address rule.
//! The task is generic over how it refers to media, so the gateway can store
//! `CreateTask<its own reference>` (see `try_map_media`).

mod fields;
mod images;
#[cfg(test)]
mod models;
mod rules;
#[cfg(test)]
mod tests;
mod wire;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::catalog::{AspectRatio, Catalog, ModelId, ModelSpec, Orientation, Quality, ReferenceType, Sound};
use crate::credits::Credits;
pub use crate::error::FieldError;
use crate::image::ImageInfo;

/// Longest URL accepted anywhere in a create body.
pub const MAX_URL_CHARS: usize = 2048;

#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    /// Allow `http://` and private or loopback literal hosts (development only).
    pub allow_private_urls: bool,
    /// Accept URLs shaped like the server's own signed file links (`/files/{id}?exp=..&sig=..`)
    /// without address checks: the server reads them from its storage after
    /// verifying the signature, never over the network.
    pub trust_file_links: bool,
}

/// A medium as given: image bytes at hand (decoded from a `data:` URI and
/// checked), or a URL to fetch later (videos are always URLs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaSource {
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

impl MediaSource {
    /// The string a client would send for this medium: the URL, or a `data:` URI.
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

/// Whether a medium is an image or a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Image,
    Video,
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

/// A `kling-custom-element` request: a subject made from images or from a video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElementSpec<M> {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub reference_type: ReferenceType,
    /// `image_refer`: the subject from the front.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub frontal_image: Option<M>,
    /// `image_refer`: 1 to 3 further views.
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub refer_images: Vec<M>,
    /// `video_refer`: the one reference video.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub refer_video: Option<M>,
    /// `video_refer`: the voice the element speaks with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_id: Option<String>,
}

fn none<M>() -> Option<M> {
    None
}

/// A valid create request, for any model. Media fields are canonical whatever the
/// request used (EvoLink's `image_urls` as frames land in `image_start`/`image_end`);
/// `frames_from_image_urls` remembers it, so errors later name the field the client
/// sent. Fields a model does not take are empty; `quality` and `sound` hold what the
/// model will make (its fixed value, or 720p / off for a model that makes no video).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateTask<M> {
    pub model: ModelId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub image_start: Option<M>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub image_end: Option<M>,
    /// The frames came as `image_urls[0]` and `image_urls[1]`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub frames_from_image_urls: bool,
    /// Reference images (never frames).
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub image_urls: Vec<M>,
    /// A model's `video_url` (one string).
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub video_url: Option<M>,
    /// A model's `video_urls` (an array).
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub video_urls: Vec<M>,
    /// Requested seconds; `None` when the output follows the input video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    #[serde(default)]
    pub quality: Quality,
    #[serde(default)]
    pub sound: Sound,
    /// `None` when the output's shape follows an input (an image or video).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<AspectRatio>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_shot: Option<MultiShot>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub element_ids: Vec<String>,
    #[serde(default)]
    pub watermark: bool,
    /// Keep the input video's sound (video edit, reference, motion control).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_original_sound: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub character_orientation: Option<Orientation>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub element: Option<ElementSpec<M>>,
}

/// Reads and validates a create body (see `Catalog::parse_create`).
pub(crate) fn parse(
    catalog: &Catalog,
    body: &serde_json::Value,
    opts: &ParseOptions,
) -> Result<CreateTask<MediaSource>, FieldError> {
    rules::parse(catalog, body, opts)
}

impl<M> CreateTask<M> {
    /// The price of a task billed by its request alone (see `ModelSpec::request_price`).
    pub fn price(&self, spec: &ModelSpec) -> Option<Credits> {
        spec.request_price(self)
    }

    /// Every medium with its kind and the request field it came in, in a stable
    /// order: frames, reference images, videos, then the element's media.
    pub fn media(&self) -> Vec<(MediaKind, String, &M)> {
        let mut out = Vec::new();
        let frame = |i: usize, name: &str| {
            if self.frames_from_image_urls { format!("image_urls[{i}]") } else { name.to_owned() }
        };
        if let Some(m) = &self.image_start {
            out.push((MediaKind::Image, frame(0, "image_start"), m));
        }
        if let Some(m) = &self.image_end {
            out.push((MediaKind::Image, frame(1, "image_end"), m));
        }
        for (i, m) in self.image_urls.iter().enumerate() {
            out.push((MediaKind::Image, format!("image_urls[{i}]"), m));
        }
        if let Some(m) = &self.video_url {
            out.push((MediaKind::Video, "video_url".to_owned(), m));
        }
        for (i, m) in self.video_urls.iter().enumerate() {
            out.push((MediaKind::Video, format!("video_urls[{i}]"), m));
        }
        if let Some(e) = &self.element {
            if let Some(m) = &e.frontal_image {
                out.push((MediaKind::Image, "model_params.element_image_list.frontal_image".to_owned(), m));
            }
            for (i, m) in e.refer_images.iter().enumerate() {
                out.push((MediaKind::Image, format!("model_params.element_image_list.refer_images[{i}].image_url"), m));
            }
            if let Some(m) = &e.refer_video {
                out.push((MediaKind::Video, "model_params.element_video_list.refer_videos[0].video_url".to_owned(), m));
            }
        }
        out
    }

    /// The input videos, whichever field carried them.
    pub fn input_videos(&self) -> impl Iterator<Item = &M> {
        self.video_url.iter().chain(self.video_urls.iter())
    }

    /// The same task with every medium mapped by `f(kind, param, medium)` (in the
    /// order of `media`), stopping at the first error: how the gateway turns
    /// `MediaSource`s into its stored references, naming the field of any failure.
    pub fn try_map_media<N, E>(
        self,
        mut f: impl FnMut(MediaKind, &str, M) -> Result<N, E>,
    ) -> Result<CreateTask<N>, E> {
        let frame = |i: usize, name: &str| {
            if self.frames_from_image_urls { format!("image_urls[{i}]") } else { name.to_owned() }
        };
        let (start_param, end_param) = (frame(0, "image_start"), frame(1, "image_end"));
        let image_start = self.image_start.map(|m| f(MediaKind::Image, &start_param, m)).transpose()?;
        let image_end = self.image_end.map(|m| f(MediaKind::Image, &end_param, m)).transpose()?;
        let image_urls = map_list(self.image_urls, |i, m| f(MediaKind::Image, &format!("image_urls[{i}]"), m))?;
        let video_url = self.video_url.map(|m| f(MediaKind::Video, "video_url", m)).transpose()?;
        let video_urls = map_list(self.video_urls, |i, m| f(MediaKind::Video, &format!("video_urls[{i}]"), m))?;
        let element = match self.element {
            None => None,
            Some(e) => Some(ElementSpec {
                frontal_image: e
                    .frontal_image
                    .map(|m| f(MediaKind::Image, "model_params.element_image_list.frontal_image", m))
                    .transpose()?,
                refer_images: map_list(e.refer_images, |i, m| {
                    f(MediaKind::Image, &format!("model_params.element_image_list.refer_images[{i}].image_url"), m)
                })?,
                refer_video: e
                    .refer_video
                    .map(|m| f(MediaKind::Video, "model_params.element_video_list.refer_videos[0].video_url", m))
                    .transpose()?,
                name: e.name,
                description: e.description,
                reference_type: e.reference_type,
                voice_id: e.voice_id,
            }),
        };
        Ok(CreateTask {
            model: self.model,
            prompt: self.prompt,
            negative_prompt: self.negative_prompt,
            image_start,
            image_end,
            frames_from_image_urls: self.frames_from_image_urls,
            image_urls,
            video_url,
            video_urls,
            duration: self.duration,
            quality: self.quality,
            sound: self.sound,
            aspect_ratio: self.aspect_ratio,
            callback_url: self.callback_url,
            multi_shot: self.multi_shot,
            element_ids: self.element_ids,
            watermark: self.watermark,
            keep_original_sound: self.keep_original_sound,
            character_orientation: self.character_orientation,
            element,
        })
    }
}

fn map_list<M, N, E>(items: Vec<M>, mut f: impl FnMut(usize, M) -> Result<N, E>) -> Result<Vec<N>, E> {
    items.into_iter().enumerate().map(|(i, m)| f(i, m)).collect()
}
