//! The request as a task row keeps it, and as workers and providers read it:
//! validated, with every image turned into a stored file id or an external URL
//! still to be fetched by the worker.

use serde::{Deserialize, Serialize};
use vidgate_api::catalog::{AspectRatio, ModelId, Quality, Sound};
use vidgate_api::create::MultiShot;

/// Where a request image is: in our storage already, or at a URL to fetch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ImageRef {
    File(crate::ids::FileId),
    Url(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredElement {
    pub name: String,
    pub description: String,
    pub frontal_image: ImageRef,
    pub refer_images: Vec<ImageRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRequest {
    pub model: ModelId,
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub image_start: Option<ImageRef>,
    pub image_end: Option<ImageRef>,
    pub duration: u32,
    pub quality: Quality,
    pub sound: Sound,
    pub aspect_ratio: AspectRatio,
    pub multi_shot: Option<MultiShot>,
    pub element_ids: Vec<String>,
    pub watermark: bool,
    pub element: Option<StoredElement>,
}
