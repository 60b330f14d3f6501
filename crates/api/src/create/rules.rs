//! The create rules of SPEC 1.1, field by field, each error naming its path.

use serde_json::{Map, Value};

use super::images::check_url;
use super::*;

/// Reads and validates a create body.
pub fn parse_create(body: &Value, opts: &ParseOptions) -> Result<CreateTask, FieldError> {
    let obj = body.as_object().ok_or_else(|| err("body", "The body must be a JSON object."))?;
    let model = match obj.get("model") {
        None | Some(Value::Null) => return Err(err("model", "model is required.")),
        Some(Value::String(s)) => ModelId::parse(s).ok_or_else(|| {
            err(
                "model",
                format!(
                    "Unknown model {s:?}; use one of {}.",
                    ModelId::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
                ),
            )
        })?,
        Some(_) => return Err(err("model", "model must be a string.")),
    };
    let params = match obj.get("model_params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(err("model_params", "model_params must be an object.")),
    };
    if model == ModelId::KlingCustomElement {
        return parse_element(obj, &params, opts);
    }
    let is_i2v = model == ModelId::KlingV3ImageToVideo;

    let mut prompt = opt_string(obj, "prompt", "prompt", MAX_PROMPT_CHARS)?;
    let negative_prompt = opt_string(obj, "negative_prompt", "negative_prompt", MAX_PROMPT_CHARS)?;
    let duration = match obj.get("duration") {
        None | Some(Value::Null) => DEFAULT_DURATION,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(d) if (3..=15).contains(&d) => d as u32,
            _ => {
                return Err(err("duration", "duration must be an integer from 3 to 15 (seconds)."));
            }
        },
        Some(_) => {
            return Err(err("duration", "duration must be an integer from 3 to 15 (seconds)."));
        }
    };
    let quality = enum_field(obj, "quality", Quality::parse, "720p or 1080p")?.unwrap_or_default();
    let sound = enum_field(obj, "sound", Sound::parse, "on or off")?.unwrap_or_default();
    let aspect_ratio = if is_i2v {
        AspectRatio::default()
    } else {
        enum_field(obj, "aspect_ratio", AspectRatio::parse, "16:9, 9:16 or 1:1")?.unwrap_or_default()
    };
    let callback_url = parse_callback(obj, opts)?;

    let multi_shot = match params.get("multi_shot") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(err("model_params.multi_shot", "multi_shot must be true or false."));
        }
    };

    let element_ids = match params.get("element_list") {
        None | Some(Value::Null) => Vec::new(),
        Some(_) if !is_i2v => {
            return Err(err("model_params.element_list", "element_list is only for kling-v3-image-to-video."));
        }
        Some(Value::Array(items)) => {
            if items.len() > MAX_ELEMENTS {
                return Err(err("model_params.element_list", "element_list takes at most 3 elements."));
            }
            let mut ids = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let param = format!("model_params.element_list[{i}].element_id");
                match item.get("element_id") {
                    Some(Value::String(s)) if s.chars().count() > MAX_ELEMENT_ID_CHARS => {
                        return Err(err(param, "element_id is limited to 128 characters."));
                    }
                    Some(Value::String(s)) if !s.trim().is_empty() => ids.push(s.clone()),
                    _ => return Err(err(param, "element_id must be a non-empty string.")),
                }
            }
            ids
        }
        Some(_) => {
            return Err(err(
                "model_params.element_list",
                "element_list must be an array of {\"element_id\": ...} objects.",
            ));
        }
    };
    let multi = if multi_shot { Some(parse_multi_shot(&params, duration, element_ids.len())?) } else { None };
    let watermark = match params.get("watermark_info") {
        None | Some(Value::Null) => false,
        Some(Value::Object(w)) => match w.get("enabled") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(err("model_params.watermark_info.enabled", "enabled must be true or false."));
            }
        },
        Some(_) => {
            return Err(err("model_params.watermark_info", "watermark_info must be an object."));
        }
    };

    let (image_start, image_end) = if is_i2v {
        let start = match obj.get("image_start") {
            None | Some(Value::Null) => {
                return Err(err("image_start", "image_start is required for image-to-video."));
            }
            Some(v) => parse_image(v, "image_start", opts)?,
        };
        let end = match obj.get("image_end") {
            None | Some(Value::Null) => None,
            Some(_) if multi_shot => {
                return Err(err("image_end", "image_end cannot be combined with model_params.multi_shot."));
            }
            Some(v) => Some(parse_image(v, "image_end", opts)?),
        };
        (Some(start), end)
    } else {
        for field in ["image_start", "image_end"] {
            if obj.get(field).is_some_and(|v| !v.is_null()) {
                return Err(err(field, format!("{field} is not accepted by kling-v3-text-to-video.")));
            }
        }
        (None, None)
    };

    if matches!(multi, Some(MultiShot::Customize(_))) {
        // With customised shots, each shot carries its own prompt.
        prompt = None;
    } else {
        if !is_i2v && prompt.as_deref().is_none_or(|p| p.trim().is_empty()) {
            return Err(err("prompt", "prompt is required for text-to-video."));
        }
        if let Some(p) = &prompt {
            check_element_refs(p, element_ids.len(), "prompt")?;
        }
    }

    Ok(CreateTask {
        model,
        prompt,
        negative_prompt,
        image_start,
        image_end,
        duration,
        quality,
        sound,
        aspect_ratio,
        callback_url,
        multi_shot: multi,
        element_ids,
        watermark,
        element: None,
    })
}

/// Every `<<<element_N>>>` must name one of the given elements (N from 1).
fn check_element_refs(prompt: &str, elements: usize, param: &str) -> Result<(), FieldError> {
    let mut rest = prompt;
    while let Some(start) = rest.find("<<<element_") {
        let after = &rest[start + "<<<element_".len()..];
        let Some(end) = after.find(">>>") else { break };
        let n = after[..end].parse::<usize>().ok();
        match n {
            Some(n) if (1..=elements).contains(&n) => {}
            _ => {
                return Err(err(
                    param,
                    format!(
                        "<<<element_{}>>> does not name an element of model_params.element_list ({elements} given).",
                        &after[..end]
                    ),
                ));
            }
        }
        rest = &after[end..];
    }
    Ok(())
}

fn parse_multi_shot(params: &Map<String, Value>, duration: u32, elements: usize) -> Result<MultiShot, FieldError> {
    let shot_type = match params.get("shot_type") {
        None | Some(Value::Null) => {
            return Err(err(
                "model_params.shot_type",
                "shot_type is required with multi_shot: customize or intelligence.",
            ));
        }
        Some(Value::String(s)) if s == "customize" || s == "intelligence" => s.as_str(),
        Some(_) => {
            return Err(err("model_params.shot_type", "shot_type must be customize or intelligence."));
        }
    };
    if shot_type == "intelligence" {
        return Ok(MultiShot::Intelligence);
    }
    let items = match params.get("multi_prompt") {
        None | Some(Value::Null) => {
            return Err(err("model_params.multi_prompt", "multi_prompt is required with shot_type customize."));
        }
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(err("model_params.multi_prompt", "multi_prompt must be an array."));
        }
    };
    if items.is_empty() || items.len() > MAX_SHOTS {
        return Err(err("model_params.multi_prompt", "multi_prompt takes 1 to 6 shots."));
    }
    let mut shots = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let base = format!("model_params.multi_prompt[{i}]");
        let item = item.as_object().ok_or_else(|| err(base.clone(), "Each shot must be an object."))?;
        let index = match item.get("index") {
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v >= 1 && v <= MAX_SHOTS as u64 => v as u32,
                _ => {
                    return Err(err(format!("{base}.index"), "index must be an integer from 1 to 6."));
                }
            },
            _ => {
                return Err(err(format!("{base}.index"), "index must be an integer from 1 to 6."));
            }
        };
        if index as usize != i + 1 {
            return Err(err(
                format!("{base}.index"),
                format!("Shots must be numbered 1, 2, 3... in order; expected {}.", i + 1),
            ));
        }
        let prompt = match item.get("prompt") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => {
                return Err(err(format!("{base}.prompt"), "prompt must be a non-empty string."));
            }
        };
        if prompt.chars().count() > MAX_SHOT_PROMPT_CHARS {
            return Err(err(format!("{base}.prompt"), "A shot's prompt is limited to 512 characters."));
        }
        check_element_refs(&prompt, elements, &format!("{base}.prompt"))?;
        let d = match item.get("duration") {
            Some(Value::String(s)) => s.trim().parse::<u32>().ok().filter(|d| (1..=catalog::MAX_DURATION).contains(d)),
            _ => None,
        }
        .ok_or_else(|| {
            err(
                format!("{base}.duration"),
                "duration must be a string holding a whole number of seconds from 1 to 15, e.g. \"3\".",
            )
        })?;
        shots.push(ShotPrompt { index, prompt, duration: d });
    }
    let total: u32 = shots.iter().map(|s| s.duration).sum();
    if total != duration {
        return Err(err(
            "model_params.multi_prompt",
            format!("The shots' durations add up to {total} s but duration is {duration} s."),
        ));
    }
    Ok(MultiShot::Customize(shots))
}

fn parse_element(
    obj: &Map<String, Value>,
    params: &Map<String, Value>,
    opts: &ParseOptions,
) -> Result<CreateTask, FieldError> {
    let name = match params.get("element_name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => {
            return Err(err("model_params.element_name", "element_name is required."));
        }
    };
    if name.chars().count() > MAX_ELEMENT_NAME_CHARS {
        return Err(err("model_params.element_name", "element_name is limited to 20 characters."));
    }
    let description = match params.get("element_description") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => {
            return Err(err("model_params.element_description", "element_description is required."));
        }
    };
    if description.chars().count() > MAX_ELEMENT_DESCRIPTION_CHARS {
        return Err(err("model_params.element_description", "element_description is limited to 100 characters."));
    }
    match params.get("reference_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "image_refer" => {}
        Some(Value::String(s)) if s == "video_refer" => {
            return Err(err(
                "model_params.reference_type",
                "reference_type video_refer is not supported; use image_refer.",
            ));
        }
        Some(_) => {
            return Err(err("model_params.reference_type", "reference_type must be image_refer."));
        }
    }
    let list = match params.get("element_image_list") {
        Some(Value::Object(m)) => m,
        _ => {
            return Err(err("model_params.element_image_list", "element_image_list is required."));
        }
    };
    let frontal = match list.get("frontal_image") {
        None | Some(Value::Null) => {
            return Err(err("model_params.element_image_list.frontal_image", "frontal_image is required."));
        }
        Some(v) => parse_image(v, "model_params.element_image_list.frontal_image", opts)?,
    };
    let refs = match list.get("refer_images") {
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= MAX_REFER_IMAGES => a,
        _ => {
            return Err(err("model_params.element_image_list.refer_images", "refer_images takes 1 to 3 images."));
        }
    };
    let mut refer_images = Vec::with_capacity(refs.len());
    for (i, r) in refs.iter().enumerate() {
        let param = format!("model_params.element_image_list.refer_images[{i}].image_url");
        let v = r.get("image_url").ok_or_else(|| err(param.clone(), "image_url is required."))?;
        refer_images.push(parse_image(v, &param, opts)?);
    }
    let callback_url = parse_callback(obj, opts)?;
    Ok(CreateTask {
        model: ModelId::KlingCustomElement,
        prompt: None,
        negative_prompt: None,
        image_start: None,
        image_end: None,
        duration: DEFAULT_DURATION,
        quality: Quality::default(),
        sound: Sound::default(),
        aspect_ratio: AspectRatio::default(),
        callback_url,
        multi_shot: None,
        element_ids: Vec::new(),
        watermark: false,
        element: Some(ElementSpec { name, description, frontal_image: frontal, refer_images }),
    })
}

fn opt_string(obj: &Map<String, Value>, key: &str, param: &str, max: usize) -> Result<Option<String>, FieldError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            if s.chars().count() > max {
                Err(err(param, format!("{key} is limited to {max} characters.")))
            } else {
                Ok(Some(s.clone()))
            }
        }
        Some(_) => Err(err(param, format!("{key} must be a string."))),
    }
}

fn enum_field<T>(
    obj: &Map<String, Value>,
    key: &str,
    parse: impl Fn(&str) -> Option<T>,
    allowed: &str,
) -> Result<Option<T>, FieldError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse(s).map(Some).ok_or_else(|| err(key, format!("{key} must be {allowed}."))),
        Some(_) => Err(err(key, format!("{key} must be {allowed}."))),
    }
}

pub(super) fn parse_callback(obj: &Map<String, Value>, opts: &ParseOptions) -> Result<Option<String>, FieldError> {
    let raw = match obj.get("callback_url") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => return Err(err("callback_url", "callback_url must be a string.")),
    };
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(err("callback_url", "callback_url is limited to 2048 characters."));
    }
    check_url(raw, "callback_url", opts)?;
    Ok(Some(raw.clone()))
}
