//! The small closed vocabularies of the wire API and the catalog file (qualities,
//! sounds, aspect ratios, shapes...), each with its one spelling, `as_str` and
//! `parse`, and the open one: model ids, which come from the catalog data.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An enum whose every variant has one wire spelling: serde, the OpenAPI schema,
/// `as_str`, `parse`, `ALL` and `Display` all agree by construction.
macro_rules! wire_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        // By hand: utoipa's derive does not see serde renames made by a macro.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// Output resolution tier.
    #[derive(Default)]
    pub enum Quality {
        #[default]
        P720 = "720p",
        P1080 = "1080p",
        P4k = "4k",
    }
}

impl Quality {
    /// The shorter side of the output in pixels.
    pub fn short_side(self) -> u32 {
        match self {
            Self::P720 => 720,
            Self::P1080 => 1080,
            Self::P4k => 2160,
        }
    }
}

wire_enum! {
    /// Generated sound (`on`), or none.
    #[derive(Default)]
    pub enum Sound {
        #[default]
        Off = "off",
        On = "on",
    }
}

wire_enum! {
    #[derive(Default)]
    pub enum AspectRatio {
        #[default]
        R16x9 = "16:9",
        R9x16 = "9:16",
        R1x1 = "1:1",
    }
}

impl AspectRatio {
    pub fn ratio(self) -> (u32, u32) {
        match self {
            Self::R16x9 => (16, 9),
            Self::R9x16 => (9, 16),
            Self::R1x1 => (1, 1),
        }
    }
}

wire_enum! {
    /// The code path a model's requests take: which inputs it has and which
    /// cross-field rules apply. Adding a model of an existing shape is data only.
    pub enum Shape {
        TextToVideo = "text_to_video",
        ImageToVideo = "image_to_video",
        ReferenceToVideo = "reference_to_video",
        VideoEdit = "video_edit",
        MotionControl = "motion_control",
        CustomElement = "custom_element",
    }
}

wire_enum! {
    pub enum ShotType {
        Customize = "customize",
        Intelligence = "intelligence",
    }
}

wire_enum! {
    /// Motion control: whose orientation the character keeps.
    pub enum Orientation {
        Image = "image",
        Video = "video",
    }
}

wire_enum! {
    /// What a custom element is made from.
    #[derive(Default)]
    pub enum ReferenceType {
        #[default]
        ImageRefer = "image_refer",
        VideoRefer = "video_refer",
    }
}

wire_enum! {
    pub enum BillingRule {
        PerSecond = "per_second",
        PerCall = "per_call",
    }
}

wire_enum! {
    /// What the billed seconds of a per-second model follow.
    pub enum BilledBy {
        /// The requested `duration`.
        Duration = "duration",
        /// The probed input video, rounded up.
        InputVideo = "input_video",
        /// The output video, rounded to the nearest second; held on `duration` (or on
        /// the input video when the model has no `duration`) and settled on the output.
        OutputVideo = "output_video",
    }
}

/// A model's id, as the catalog names it (`kling-v3-image-to-video`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct ModelId(String);

impl ModelId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Ids are lowercase ASCII letters, digits, `.`, `_` and `-`, starting with a
    /// letter or digit, at most 64 characters: safe in URLs, metrics and schema names.
    pub fn is_valid(id: &str) -> bool {
        id.len() <= 64
            && id.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    }
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for ModelId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ModelId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}
