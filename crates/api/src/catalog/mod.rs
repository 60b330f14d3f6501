//! The model catalog as data: `models.toml`, embedded in the binary, describes every
//! model (parameters, limits, defaults, cross-field rule numbers, prices); an
//! operator's overrides merge into it by model id and may add models of an existing
//! shape. Validation (`parse_create`), pricing, the JSON Schema of each model and
//! `GET /v1/models` all read this one source.

mod list;
mod pricing;
mod schema;
mod spec;
#[cfg(test)]
pub(crate) mod tests;
mod values;

pub use list::{ModelEntry, ModelList, PriceEntry};
pub use pricing::{PerSecond, PriceRow, Pricing};
pub use spec::{
    AspectSpec, CountSpec, CustomElementSpec, DurationAllowed, DurationSpec, ElementsSpec, EndFrameSpec, ImageListRole,
    ImageListSpec, KeepSoundField, KeepSoundSpec, ModelSpec, MultiShotSpec, OrientationChoice, OrientationSpec,
    PromptRequired, PromptSpec, RefKind, Setting, ShotSyntax, StartFrameSpec, TextSpec, VideoField, VideoSpec,
};
pub use values::{
    AspectRatio, BilledBy, BillingRule, ModelId, Orientation, Quality, ReferenceType, Shape, ShotType, Sound,
};

use crate::create::{CreateTask, MediaSource, ParseOptions};
use crate::error::FieldError;

/// The catalog file built into vidgate.
const BUILTIN_TOML: &str = include_str!("models.toml");

/// A catalog (or override) that cannot be used: which model, which field, why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("catalog{}: field `{field}`: {message}", model.as_ref().map(|m| format!(": model `{m}`")).unwrap_or_default())]
pub struct CatalogError {
    pub model: Option<String>,
    pub field: String,
    pub message: String,
}

impl CatalogError {
    fn new(model: Option<&str>, field: &str, message: impl Into<String>) -> Self {
        Self { model: model.map(str::to_owned), field: field.to_owned(), message: message.into() }
    }
}

/// Every model vidgate serves, in catalog order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    models: Vec<ModelSpec>,
}

impl Catalog {
    /// The built-in catalog: the 13 Kling models EvoLink sells.
    pub fn builtin() -> Result<Self, CatalogError> {
        Self::from_value(builtin_value()?)
    }

    /// The built-in catalog with an operator's overrides merged in: a table with a
    /// `models` array, each entry naming an `id`. An entry for a known model changes
    /// the fields it gives (tables merge key by key, anything else is replaced); an
    /// entry with a new id adds a model, which must then be complete.
    pub fn with_overrides(overrides: &toml::Value) -> Result<Self, CatalogError> {
        let mut merged = builtin_value()?;
        merge_overrides(&mut merged, overrides)?;
        Self::from_value(merged)
    }

    /// `with_overrides` from TOML text (the `[catalog]` section's contents).
    pub fn with_overrides_str(text: &str) -> Result<Self, CatalogError> {
        let value: toml::Value =
            toml::from_str(text).map_err(|e| CatalogError::new(None, "catalog", e.message().trim().to_owned()))?;
        Self::with_overrides(&value)
    }

    fn from_value(value: toml::Value) -> Result<Self, CatalogError> {
        let mut models: Vec<ModelSpec> = Vec::new();
        for entry in model_tables(&value)? {
            let spec = ModelSpec::from_table(entry)?;
            if models.iter().any(|m| m.id == spec.id) {
                return Err(CatalogError::new(Some(spec.id.as_str()), "id", "is listed twice"));
            }
            models.push(spec);
        }
        Ok(Self { models })
    }

    /// The models served (enabled), in catalog order.
    pub fn models(&self) -> impl Iterator<Item = &ModelSpec> {
        self.models.iter().filter(|m| m.enabled)
    }

    /// A served model by id.
    pub fn get(&self, id: &str) -> Option<&ModelSpec> {
        self.models().find(|m| m.id == id)
    }

    /// The largest image any served model takes (the cap for `POST /v1/files` images).
    pub fn max_image_bytes(&self) -> usize {
        self.models()
            .filter_map(|m| m.images.as_ref().map(|i| i.max_bytes))
            .max()
            .unwrap_or(crate::image::MAX_IMAGE_BYTES)
    }

    /// The largest input video any served model takes (the cap for `POST /v1/files` videos).
    pub fn max_video_bytes(&self) -> u64 {
        let element_videos = self.models().filter_map(|m| m.element.as_ref().map(|e| e.video.max_bytes));
        self.models()
            .filter_map(|m| m.video.as_ref().map(|v| v.limits.max_bytes))
            .chain(element_videos)
            .max()
            .unwrap_or(0)
    }

    /// Reads and validates a create body against this catalog: every 400 names its
    /// field in `param`.
    pub fn parse_create(
        &self,
        body: &serde_json::Value,
        opts: &ParseOptions,
    ) -> Result<CreateTask<MediaSource>, FieldError> {
        crate::create::parse(self, body, opts)
    }
}

fn builtin_value() -> Result<toml::Value, CatalogError> {
    toml::from_str(BUILTIN_TOML).map_err(|e| CatalogError::new(None, "models.toml", e.message().trim().to_owned()))
}

/// The `models` array of a catalog or override table.
fn model_tables(value: &toml::Value) -> Result<Vec<&toml::Table>, CatalogError> {
    let table = value.as_table().ok_or_else(|| CatalogError::new(None, "catalog", "must be a table"))?;
    if let Some(key) = table.keys().find(|k| k.as_str() != "models") {
        return Err(CatalogError::new(None, key, "unknown field; the catalog has `models` only"));
    }
    let Some(models) = table.get("models") else { return Ok(Vec::new()) };
    let models = models.as_array().ok_or_else(|| CatalogError::new(None, "models", "must be an array of tables"))?;
    models
        .iter()
        .map(|m| m.as_table().ok_or_else(|| CatalogError::new(None, "models", "every entry must be a table")))
        .collect()
}

fn merge_overrides(base: &mut toml::Value, overrides: &toml::Value) -> Result<(), CatalogError> {
    let entries: Vec<toml::Table> = model_tables(overrides)?.into_iter().cloned().collect();
    let models = base
        .as_table_mut()
        .and_then(|t| t.get_mut("models"))
        .and_then(toml::Value::as_array_mut)
        .ok_or_else(|| CatalogError::new(None, "models", "the built-in catalog has no models"))?;
    for entry in entries {
        let Some(id) = entry.get("id").and_then(toml::Value::as_str).map(str::to_owned) else {
            return Err(CatalogError::new(None, "id", "every override names the model's id"));
        };
        match models.iter_mut().find(|m| m.get("id").and_then(toml::Value::as_str) == Some(id.as_str())) {
            Some(existing) => {
                if let Some(t) = existing.as_table_mut() {
                    merge_table(t, entry);
                }
            }
            None => models.push(toml::Value::Table(entry)),
        }
    }
    Ok(())
}

/// Tables merge key by key; any other value replaces the old one.
fn merge_table(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_table(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}
