//! JSON Schema (2020-12, as OpenAPI 3.1 uses it) of each model's create body, from
//! the same data `parse_create` reads: the model as `const`, enums, ranges, lengths,
//! counts, URL and id patterns, and the aliases accepted (EvoLink's MCP client's
//! `image_urls` frames and `generate_audio`). What JSON Schema cannot say (shot
//! durations adding up, images + elements limits...) is in the description. The
//! schema is a little stricter than parse where that keeps generated bodies valid:
//! images and videos are described as `https://` URLs (a `data:` image is accepted
//! too, see the description).

use serde_json::{Map, Value, json};

use super::spec::{ImageListRole, KeepSoundField, ModelSpec, PromptRequired, Setting, VideoField};
use super::values::{ReferenceType, Shape, ShotType};
use super::{Catalog, DurationAllowed};

/// An `https://` URL with a DNS name (not an IP literal), as generators should make them.
const HTTPS_URL_PATTERN: &str =
    r"^https://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,63}(/[A-Za-z0-9._~!$&'()*+,;=:@/%-]*)?$";
/// Something other than blanks.
const NOT_BLANK: &str = r"\S";

fn url_schema(what: &str) -> Value {
    json!({
        "type": "string",
        "format": "uri",
        "maxLength": 2048,
        "pattern": HTTPS_URL_PATTERN,
        "description": what,
    })
}

fn image_schema(what: &str, spec: &ModelSpec) -> Value {
    let rules = spec.image_rules();
    let formats: Vec<String> = rules.formats.iter().map(|f| f.as_str().to_uppercase()).collect();
    url_schema(&format!(
        "{what}: an https:// URL (or a data:image/png|jpeg;base64 URI, or a /v1/files link). {} up to {} MB, sides at least {} px, aspect between 1:{aspect} and {aspect}:1.",
        formats.join(" or "),
        rules.max_bytes / (1024 * 1024),
        rules.min_side,
        aspect = f64::from(rules.max_aspect_milli) / 1000.0,
    ))
}

fn video_schema(spec: &ModelSpec) -> Value {
    let mut what = "The input video: an https:// URL or a /v1/files link.".to_owned();
    if let Some(v) = &spec.video {
        let l = &v.limits;
        what.push_str(&format!(" {} up to {} MB", l.containers.join("/").to_uppercase(), l.max_bytes / (1024 * 1024)));
        if let (Some(lo), Some(hi)) = (l.duration_ms.min, l.duration_ms.max) {
            what.push_str(&format!(", {} to {} s", lo as f64 / 1000.0, hi as f64 / 1000.0));
        }
        if let (Some(lo), Some(hi)) = (l.side_px.min, l.side_px.max) {
            what.push_str(&format!(", sides {lo} to {hi} px"));
        }
        if let (Some(lo), Some(hi)) = (l.fps.min, l.fps.max) {
            what.push_str(&format!(", {lo} to {hi} fps"));
        }
        what.push('.');
    }
    url_schema(&what)
}

fn setting_schema<T: Copy + PartialEq>(s: &Setting<T>, show: fn(T) -> &'static str, what: &str) -> Value {
    match s {
        Setting::Choice { values, default } => {
            let names: Vec<&str> = values.iter().map(|v| show(*v)).collect();
            json!({"type": "string", "enum": names, "default": show(*default), "description": what})
        }
        Setting::Fixed(v) => json!({
            "type": "string",
            "enum": [show(*v)],
            "default": show(*v),
            "description": format!("{what} Always {} for this model.", show(*v)),
        }),
    }
}

/// `^(1|2|...|max)$`: a shot's whole seconds, written as a string.
fn seconds_pattern(max: u32) -> String {
    let all: Vec<String> = (1..=max).map(|n| n.to_string()).collect();
    format!("^({})$", all.join("|"))
}

fn element_id_schema(max_chars: usize) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": NOT_BLANK})
}

impl ModelSpec {
    /// The name of this model's create-body schema among OpenAPI components.
    pub fn schema_name(&self) -> String {
        format!("CreateRequest.{}", self.id)
    }

    /// The JSON Schema of this model's create body.
    pub fn create_schema(&self) -> Value {
        let mut props = Map::new();
        let mut required = vec![json!("model")];
        let mut params = Map::new();
        let mut params_required: Vec<Value> = Vec::new();
        let mut params_any_of: Vec<Value> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        // Alternatives that must each hold (`allOf` of `anyOf`s).
        let mut any_of: Vec<Value> = Vec::new();
        props.insert("model".to_owned(), json!({"type": "string", "const": self.id.as_str()}));

        if let Some(p) = &self.prompt {
            let mut s = json!({"type": "string", "maxLength": p.max_chars});
            // Required as EvoLink's schemas have it; parse also takes a body without
            // one when customised shots carry the prompts (EvoLink's own multi-shot
            // examples), which the schema does not spell out to keep generated bodies valid.
            if p.required != PromptRequired::Optional {
                s["minLength"] = json!(1);
                s["pattern"] = json!(NOT_BLANK);
                required.push(json!("prompt"));
            }
            let mut what = format!("Up to {} characters.", p.max_chars);
            if p.required == PromptRequired::UnlessCustomizedShots {
                what.push_str(" Ignored, and may be left out, with customised multi-shot (each shot has its prompt).");
            }
            if !p.refs.is_empty() {
                what.push_str(
                    " May reference <<<element_N>>> (and, where the model takes them, <<<image_N>>>, <<<video_N>>>).",
                );
            }
            if let Some(syntax) = &p.shot_syntax {
                what.push_str(&format!(
                    " Shots may be written in it as \"镜头 n, m, words;\": up to {} shots numbered from 1, m seconds each adding up to duration, words up to {} characters.",
                    syntax.max_shots, syntax.shot_prompt_max_chars
                ));
            }
            s["description"] = json!(what);
            props.insert("prompt".to_owned(), s);
        }
        if let Some(t) = &self.negative_prompt {
            props.insert("negative_prompt".to_owned(), json!({"type": "string", "maxLength": t.max_chars}));
        }
        if let Some(d) = &self.duration {
            let mut s = match &d.allowed {
                DurationAllowed::Range { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
                DurationAllowed::Values(v) => json!({"type": "integer", "enum": v}),
            };
            s["default"] = json!(d.default);
            s["description"] = json!("Seconds of video.");
            props.insert("duration".to_owned(), s);
        } else if self.video.is_some() {
            notes.push("The output's length follows the input video; send no duration.".to_owned());
        }
        if let Some(q) = &self.quality {
            props.insert("quality".to_owned(), setting_schema(q, |v| v.as_str(), "Output resolution."));
        }
        if let Some(s) = &self.sound {
            props.insert("sound".to_owned(), setting_schema(s, |v| v.as_str(), "Generated sound."));
            let audio = match s {
                Setting::Choice { .. } => json!({"type": "boolean"}),
                Setting::Fixed(v) => json!({"type": "boolean", "enum": [v.as_str() == "on"]}),
            };
            let mut audio = audio;
            audio["description"] =
                json!("Alias of sound (true = on), as EvoLink's MCP client sends it; not together with sound.");
            props.insert("generate_audio".to_owned(), audio);
        }
        if let Some(a) = &self.aspect_ratio {
            let names: Vec<&str> = a.values.iter().map(|v| v.as_str()).collect();
            let mut s = json!({"type": "string", "enum": names});
            if let Some(d) = a.default {
                s["default"] = json!(d.as_str());
            }
            props.insert("aspect_ratio".to_owned(), s);
        }
        self.image_schemas(&mut props, &mut required, &mut notes);
        if let Some(v) = &self.video {
            match v.field {
                VideoField::VideoUrl => {
                    props.insert("video_url".to_owned(), video_schema(self));
                }
                VideoField::VideoUrls => {
                    props.insert(
                        "video_urls".to_owned(),
                        json!({"type": "array", "items": video_schema(self), "minItems": 1, "maxItems": 1}),
                    );
                }
            }
            if v.required {
                required.push(json!(v.field.as_str()));
            }
        }
        if let Some(k) = &self.keep_sound {
            let mut s = json!({"type": "boolean", "description": "Keep the input video's sound."});
            if let Some(d) = k.default {
                s["default"] = json!(d);
            }
            match k.field {
                KeepSoundField::KeepOriginalSound => {
                    props.insert("keep_original_sound".to_owned(), s);
                }
                KeepSoundField::ModelParamsKeepSound => {
                    params.insert("keep_sound".to_owned(), s);
                }
            }
        }
        if let Some(o) = &self.orientation {
            let names: Vec<&str> = o.values.iter().map(|c| c.value.as_str()).collect();
            params.insert("character_orientation".to_owned(), json!({"type": "string", "enum": names}));
            for c in &o.values {
                notes.push(format!(
                    "character_orientation {} takes an input video of at most {} s.",
                    c.value,
                    c.max_video_ms as f64 / 1000.0
                ));
            }
            if o.required {
                params_required.push(json!("character_orientation"));
            }
        }
        if let Some(m) = &self.multi_shot {
            let types: Vec<&str> = m.shot_types.iter().map(|t| t.as_str()).collect();
            let max_shot = self.duration.as_ref().map_or(15, |d| d.max());
            params.insert("multi_shot".to_owned(), json!({"type": "boolean", "default": false}));
            params.insert(
                "shot_type".to_owned(),
                json!({"type": "string", "enum": types, "description": "Required with multi_shot."}),
            );
            params.insert(
                "multi_prompt".to_owned(),
                json!({
                    "type": "array",
                    "minItems": 1,
                    "maxItems": m.max_shots,
                    "description": "Required with shot_type customize: shots numbered 1, 2, 3... whose durations add up to duration.",
                    "prefixItems": (1..=m.max_shots).map(|i| json!({
                        "type": "object",
                        "required": ["index", "prompt", "duration"],
                        "properties": {
                            "index": {"type": "integer", "const": i},
                            "prompt": {"type": "string", "minLength": 1, "maxLength": m.shot_prompt_max_chars, "pattern": NOT_BLANK},
                            "duration": {"type": "string", "pattern": seconds_pattern(max_shot), "description": format!("Whole seconds, 1 to {max_shot}, as a string.")},
                        },
                    })).collect::<Vec<Value>>(),
                }),
            );
            if m.shot_types.contains(&ShotType::Intelligence) {
                notes.push("shot_type intelligence splits the prompt into shots itself.".to_owned());
            }
            // multi_shot needs shot_type; customize needs multi_prompt.
            let single = json!({"properties": {"multi_shot": {"const": false}}});
            params_any_of.push(json!([single, {"required": ["shot_type"]}]));
            params_any_of.push(json!([
                single,
                {"properties": {"shot_type": {"const": ShotType::Intelligence.as_str()}}},
                {"required": ["multi_prompt"]},
            ]));
        }
        if let Some(e) = &self.elements {
            params.insert(
                "element_list".to_owned(),
                json!({
                    "type": "array",
                    "maxItems": e.max,
                    "description": "Elements made by kling-custom-element, referenced in prompts as <<<element_1>>>...",
                    "items": {"type": "object", "required": ["element_id"], "properties": {"element_id": element_id_schema(e.id_max_chars)}},
                }),
            );
            if let Some(m) = e.max_with_first_frame {
                notes.push(format!("At most {m} elements with a first frame."));
            }
            if let Some(m) = e.max_with_images {
                notes.push(format!("Images and elements together at most {m}."));
            }
            if let Some(o) = e.orientation {
                notes.push(format!("Elements only with character_orientation {o} (and only video_refer elements)."));
                params_any_of.push(json!([
                    {"properties": {"element_list": {"maxItems": 0}}},
                    {"properties": {"character_orientation": {"const": o.as_str()}}},
                ]));
            }
        }
        if self.watermark {
            params.insert(
                "watermark_info".to_owned(),
                json!({"type": "object", "properties": {"enabled": {"type": "boolean", "default": false}}}),
            );
        }
        if self.shape == Shape::CustomElement {
            self.element_schema(&mut params, &mut params_required);
        }
        props.insert(
            "callback_url".to_owned(),
            url_schema("Called with the task object when the task ends: https:// only, at most 2048 characters, never a private address."),
        );
        if !params.is_empty() {
            let mut s = json!({"type": "object", "properties": params});
            if !params_required.is_empty() {
                s["required"] = json!(params_required);
                required.push(json!("model_params"));
            }
            if !params_any_of.is_empty() {
                s["allOf"] = Value::Array(params_any_of.into_iter().map(|a| json!({"anyOf": a})).collect());
            }
            if self.shape == Shape::CustomElement {
                s = self.element_branches(s);
            }
            props.insert("model_params".to_owned(), s);
        }
        let mut schema = json!({
            "title": self.id.as_str(),
            "type": "object",
            "required": required,
            "properties": props,
        });
        let mut description = format!("{} ({}).", self.name, self.shape);
        for n in notes {
            description.push(' ');
            description.push_str(&n);
        }
        schema["description"] = json!(description);
        if self.sound.as_ref().is_some_and(Setting::is_choice) {
            schema["not"] = json!({"required": ["sound", "generate_audio"]});
        }
        // Conditional rules as plain alternatives (`not required` means "absent"),
        // which generators and client makers handle better than `dependent*`
        // keywords or `false` schemas.
        if let Some(end) = &self.image_end {
            any_of.push(json!([{"not": {"required": ["image_end"]}}, {"required": ["image_start"]}]));
            if end.max_total_images.is_some_and(|m| m <= 2) {
                any_of.push(
                    json!([{"not": {"required": ["image_end"]}}, {"properties": {"image_urls": {"maxItems": 0}}}]),
                );
            }
        }
        if let Some(m) = self.elements.as_ref().and_then(|e| e.max_with_first_frame) {
            any_of.push(json!([
                {"not": {"required": ["image_start"]}},
                {"properties": {"model_params": {"properties": {"element_list": {"maxItems": m}}}}},
            ]));
        }
        let start = self.image_start.as_ref();
        if self.shape == Shape::ImageToVideo
            && !start.is_some_and(|s| s.required || s.from_image_urls)
            && self.image_urls.as_ref().is_some_and(|l| l.role == ImageListRole::Reference)
        {
            // At least one image: a first frame or a reference image.
            any_of.push(json!([{"required": ["image_start"]}, {"required": ["image_urls"], "properties": {"image_urls": {"minItems": 1}}}]));
        }
        if self.image_start.as_ref().is_some_and(|s| s.from_image_urls) {
            // The frames come as image_start (+ image_end) or as image_urls, one way only.
            let by_list = json!({"required": ["image_urls"], "not": {"anyOf": [{"required": ["image_start"]}, {"required": ["image_end"]}]}});
            let start_required = self.image_start.as_ref().is_some_and(|s| s.required);
            let by_fields = if start_required {
                json!({"required": ["image_start"], "not": {"required": ["image_urls"]}})
            } else {
                json!({"not": {"required": ["image_urls"]}})
            };
            any_of.push(json!([by_fields, by_list]));
        }
        match any_of.len() {
            0 => {}
            1 => schema["anyOf"] = any_of.remove(0),
            _ => schema["allOf"] = Value::Array(any_of.into_iter().map(|a| json!({"anyOf": a})).collect()),
        }
        schema
    }

    fn image_schemas(&self, props: &mut Map<String, Value>, required: &mut Vec<Value>, notes: &mut Vec<String>) {
        if let Some(start) = &self.image_start {
            props.insert("image_start".to_owned(), image_schema("The first frame", self));
            if start.required && !start.from_image_urls {
                required.push(json!("image_start"));
            }
            if start.from_image_urls {
                let max = if self.image_end.is_some() { 2 } else { 1 };
                props.insert(
                    "image_urls".to_owned(),
                    json!({
                        "type": "array",
                        "items": image_schema("A frame", self),
                        "minItems": 1,
                        "maxItems": max,
                        "description": "Alias of the frames, as EvoLink's MCP client sends them: the first frame, then the last. Not with image_start or image_end.",
                    }),
                );
            }
        }
        if let Some(end) = &self.image_end {
            props.insert("image_end".to_owned(), image_schema("The last frame; needs the first", self));
            if !end.with_multi_shot {
                notes.push("image_end is not accepted with model_params.multi_shot.".to_owned());
            }
            if let Some(m) = end.max_total_images {
                notes.push(format!("image_end only when all images together are at most {m}."));
            }
        }
        if let Some(l) = &self.image_urls {
            let (what, min) = match l.role {
                ImageListRole::Reference => ("A reference image", l.min),
                ImageListRole::Frames => ("A frame (the first, then the last)", l.min.max(1)),
            };
            let mut s = json!({"type": "array", "items": image_schema(what, self), "maxItems": l.max});
            if min > 0 {
                s["minItems"] = json!(min);
            }
            props.insert("image_urls".to_owned(), s);
            if l.required {
                required.push(json!("image_urls"));
            }
        }
    }

    fn element_schema(&self, params: &mut Map<String, Value>, params_required: &mut Vec<Value>) {
        let Some(e) = &self.element else { return };
        params.insert(
            "element_name".to_owned(),
            json!({"type": "string", "minLength": 1, "maxLength": e.name_max_chars, "pattern": NOT_BLANK}),
        );
        params.insert(
            "element_description".to_owned(),
            json!({"type": "string", "minLength": 1, "maxLength": e.description_max_chars, "pattern": NOT_BLANK}),
        );
        let types: Vec<&str> = e.reference_types.iter().map(|t| t.as_str()).collect();
        params.insert("reference_type".to_owned(), json!({"type": "string", "enum": types, "default": "image_refer"}));
        params.insert(
            "element_image_list".to_owned(),
            json!({
                "type": "object",
                "required": ["frontal_image", "refer_images"],
                "properties": {
                    "frontal_image": image_schema("The subject from the front", self),
                    "refer_images": {
                        "type": "array",
                        "minItems": e.refer_images.min,
                        "maxItems": e.refer_images.max,
                        "items": {"type": "object", "required": ["image_url"], "properties": {"image_url": image_schema("Another view", self)}},
                    },
                },
            }),
        );
        if e.reference_types.contains(&ReferenceType::VideoRefer) {
            let mut video =
                url_schema("A video of the subject (a clear human face, no cut): an https:// URL or a /v1/files link.");
            let l = &e.video;
            if let Some(hi) = l.duration_ms.max {
                video["description"] = json!(format!(
                    "A video of the subject (a clear human face, no cut): {} up to {} MB, at most {} s.",
                    l.containers.join("/").to_uppercase(),
                    l.max_bytes / (1024 * 1024),
                    hi as f64 / 1000.0
                ));
            }
            params.insert(
                "element_video_list".to_owned(),
                json!({
                    "type": "object",
                    "required": ["refer_videos"],
                    "properties": {"refer_videos": {
                        "type": "array", "minItems": 1, "maxItems": 1,
                        "items": {"type": "object", "required": ["video_url"], "properties": {"video_url": video}},
                    }},
                }),
            );
            if e.voice_id {
                params.insert(
                    "element_voice_id".to_owned(),
                    json!({"type": "string", "maxLength": 128, "description": "Only with reference_type video_refer."}),
                );
            }
        }
        params_required.push(json!("element_name"));
        params_required.push(json!("element_description"));
    }

    /// `image_refer` needs `element_image_list`; `video_refer` needs `element_video_list`.
    fn element_branches(&self, mut s: Value) -> Value {
        let video = self.element.as_ref().is_some_and(|e| e.reference_types.contains(&ReferenceType::VideoRefer));
        let image_branch = json!({
            "properties": {"reference_type": {"enum": [ReferenceType::ImageRefer.as_str()]}},
            "required": ["element_image_list"],
            "not": {"required": ["element_voice_id"]},
        });
        if video {
            let video_branch = json!({
                "properties": {"reference_type": {"enum": [ReferenceType::VideoRefer.as_str()]}},
                "required": ["reference_type", "element_video_list"],
            });
            s["oneOf"] = json!([image_branch, video_branch]);
        } else {
            let mut all = s.get("allOf").and_then(Value::as_array).cloned().unwrap_or_default();
            all.push(image_branch);
            s["allOf"] = Value::Array(all);
        }
        s
    }
}

impl Catalog {
    /// Each served model's create-body schema, by its component name.
    pub fn component_schemas(&self) -> Vec<(String, Value)> {
        self.models().map(|m| (m.schema_name(), m.create_schema())).collect()
    }

    /// The create body: a `oneOf` of every model's schema (as `$ref`s to
    /// `#/components/schemas/<schema_name>`, see `component_schemas`), with a
    /// `discriminator` on `model`.
    pub fn create_body_schema(&self) -> Value {
        let refs: Vec<Value> =
            self.models().map(|m| json!({"$ref": format!("#/components/schemas/{}", m.schema_name())})).collect();
        let mapping: Map<String, Value> = self
            .models()
            .map(|m| (m.id.as_str().to_owned(), json!(format!("#/components/schemas/{}", m.schema_name()))))
            .collect();
        json!({
            "oneOf": refs,
            "discriminator": {"propertyName": "model", "mapping": mapping},
        })
    }
}
