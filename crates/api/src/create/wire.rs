//! The documented request body types, for OpenAPI: the server reads JSON by hand (see `rules`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::catalog::{AspectRatio, Quality, Sound};

/// The body of `POST /v1/videos/generations` as documented in OpenAPI. The server
/// does not deserialize into it: `parse_create` reads the JSON by hand so each
/// error names its field. Fields a model does not take are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateRequest {
    /// A model of `GET /v1/models`.
    #[schema(example = "kling-v3-image-to-video")]
    pub model: String,
    /// Up to 2500 characters; may reference `<<<element_1>>>`..`<<<element_3>>>`.
    /// Required for text-to-video unless the shots are customised.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prompt: Option<String>,
    /// Up to 2500 characters.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub negative_prompt: Option<String>,
    /// Image-to-video only, required: an `https://` URL or a `data:image/png|jpeg;base64,` URI.
    /// JPG or PNG, at most 10 MB, sides at least 300 px, aspect between 1:2.5 and 2.5:1.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub image_start: Option<String>,
    /// Image-to-video only: the last frame; same rules; not with multi_shot.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub image_end: Option<String>,
    /// Seconds, 3 to 15; default 5.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(minimum = 3, maximum = 15, default = 5)]
    pub duration: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub quality: Option<Quality>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sound: Option<Sound>,
    /// Text-to-video only; default 16:9.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub aspect_ratio: Option<AspectRatio>,
    /// `https://` only, up to 2048 characters, never a private or reserved address.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub callback_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model_params: Option<ModelParams>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShotType {
    Customize,
    Intelligence,
}

/// Model-specific parameters; each model reads only its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelParams {
    /// Video models: several shots in one clip; default false.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub multi_shot: Option<bool>,
    /// Required with multi_shot.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub shot_type: Option<ShotType>,
    /// Required with shot_type customize: 1 to 6 shots whose durations add up to `duration`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub multi_prompt: Option<Vec<MultiPromptItem>>,
    /// Image-to-video only: up to 3 elements made by `kling-custom-element`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub element_list: Option<Vec<ElementRef>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub watermark_info: Option<WatermarkInfo>,
    /// `kling-custom-element`: required, up to 20 characters.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub element_name: Option<String>,
    /// `kling-custom-element`: required, up to 100 characters.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub element_description: Option<String>,
    /// `kling-custom-element`: `image_refer` (default); `video_refer` is not supported.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reference_type: Option<String>,
    /// `kling-custom-element`: required.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub element_image_list: Option<ElementImageList>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MultiPromptItem {
    /// 1, 2, 3... in order.
    pub index: u32,
    /// 1 to 512 characters.
    pub prompt: String,
    /// Whole seconds as a string, e.g. "3".
    pub duration: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ElementRef {
    pub element_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WatermarkInfo {
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ElementImageList {
    /// The subject seen from the front: URL or `data:` URI, same rules as `image_start`.
    pub frontal_image: String,
    /// 1 to 3 further views.
    pub refer_images: Vec<ReferImage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReferImage {
    pub image_url: String,
}
