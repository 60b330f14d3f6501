//! The create rules, driven by the model's catalog entry: which fields it takes,
//! their limits, and the cross-field rules of its shape, with the numbers from the
//! data. Every error names the field at fault. Fields a model does not know are
//! ignored, except media (images, videos, elements) and settings it cannot honour
//! (a `duration` for a model whose length follows its input, a `sound` or
//! `generate_audio` against its fixed sound, a `quality` against its fixed quality):
//! silently dropping those would change what the client gets.

use serde_json::{Map, Value};

use super::fields::{Obj, check_refs, err, or_list};
use super::images::{check_url, parse_image, parse_video_url};
use super::{CreateTask, ElementSpec, MAX_URL_CHARS, MediaSource, MultiShot, ParseOptions, ShotPrompt};
use crate::catalog::{
    Catalog, ImageListRole, KeepSoundField, ModelSpec, MultiShotSpec, Orientation, PromptRequired, Quality, RefKind,
    ReferenceType, Setting, Shape, ShotSyntax, ShotType, Sound, VideoField,
};
use crate::error::FieldError;

pub(super) fn parse(
    catalog: &Catalog,
    body: &Value,
    opts: &ParseOptions,
) -> Result<CreateTask<MediaSource>, FieldError> {
    let map = body.as_object().ok_or_else(|| err("body", "The body must be a JSON object."))?;
    let top = Obj::new(map, "");
    let spec = model(catalog, &top)?;
    let empty = Map::new();
    let params = match map.get("model_params") {
        None | Some(Value::Null) => Obj::new(&empty, "model_params."),
        Some(Value::Object(m)) => Obj::new(m, "model_params."),
        Some(_) => return Err(err("model_params", "model_params must be an object.")),
    };
    let mut task = match spec.shape {
        Shape::CustomElement => custom_element(spec, &params, opts)?,
        _ => video(spec, &top, &params, opts)?,
    };
    task.callback_url = callback_url(&top, opts)?;
    Ok(task)
}

fn model<'c>(catalog: &'c Catalog, top: &Obj<'_>) -> Result<&'c ModelSpec, FieldError> {
    match top.get("model") {
        None => Err(err("model", "model is required.")),
        Some(Value::String(s)) => catalog.get(s).ok_or_else(|| {
            let ids: Vec<&str> = catalog.models().map(|m| m.id.as_str()).collect();
            err("model", format!("Unknown model {s:?}; use one of {}.", ids.join(", ")))
        }),
        Some(_) => Err(err("model", "model must be a string.")),
    }
}

fn callback_url(top: &Obj<'_>, opts: &ParseOptions) -> Result<Option<String>, FieldError> {
    let Some(raw) = top.string("callback_url", usize::MAX)? else { return Ok(None) };
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(err("callback_url", "callback_url is limited to 2048 characters."));
    }
    check_url(&raw, "callback_url", opts)?;
    Ok(Some(raw))
}

/// A generic setting: a choice among the model's values, or its fixed value, which
/// a request may repeat but not contradict.
fn setting<T: Copy + PartialEq + Default + std::fmt::Display>(
    top: &Obj<'_>,
    key: &str,
    setting: Option<&Setting<T>>,
    all: &[T],
    show: fn(T) -> &'static str,
    model: &str,
) -> Result<T, FieldError> {
    match setting {
        None => Ok(T::default()),
        Some(Setting::Choice { values, default }) => Ok(top.choice(key, values, show)?.unwrap_or(*default)),
        Some(Setting::Fixed(fixed)) => match top.choice(key, all, show) {
            Ok(None) => Ok(*fixed),
            Ok(Some(v)) if v == *fixed => Ok(v),
            _ => Err(err(key, format!("{key} is always {fixed} for {model}."))),
        },
    }
}

/// Media fields the model cannot take are refused by name.
fn refuse_foreign_media(spec: &ModelSpec, top: &Obj<'_>) -> Result<(), FieldError> {
    let name = spec.id.as_str();
    let frames_in_list = spec.image_urls.as_ref().is_some_and(|l| l.role == ImageListRole::Frames);
    let video_field = spec.video.as_ref().map(|v| v.field);
    for field in ["image_start", "image_end", "image_urls", "video_url", "video_urls"] {
        if !top.has(field) {
            continue;
        }
        let takes = match field {
            "image_start" => spec.image_start.is_some(),
            "image_end" => spec.image_end.is_some(),
            "image_urls" => spec.image_urls.is_some() || spec.image_start.as_ref().is_some_and(|s| s.from_image_urls),
            "video_url" => video_field == Some(VideoField::VideoUrl),
            _ => video_field == Some(VideoField::VideoUrls),
        };
        if takes {
            continue;
        }
        let hint = match field {
            "image_start" | "image_end" if frames_in_list => "; send the frames in image_urls (first, then last)",
            "image_end" if spec.image_start.is_some() => "; it has no end frame",
            "video_url" if video_field == Some(VideoField::VideoUrls) => "; send the video in video_urls",
            "video_urls" if video_field == Some(VideoField::VideoUrl) => "; send the video in video_url",
            _ => "",
        };
        return Err(err(field, format!("{field} is not accepted by {name}{hint}.")));
    }
    Ok(())
}

/// Every model that makes a video: text, image, reference, edit, motion control.
fn video(
    spec: &ModelSpec,
    top: &Obj<'_>,
    params: &Obj<'_>,
    opts: &ParseOptions,
) -> Result<CreateTask<MediaSource>, FieldError> {
    let name = spec.id.as_str();
    refuse_foreign_media(spec, top)?;

    let prompt_spec = spec.prompt.as_ref();
    let mut prompt = match prompt_spec {
        Some(p) => top.string("prompt", p.max_chars)?,
        None => None,
    };
    let negative_prompt = match &spec.negative_prompt {
        Some(t) => top.string("negative_prompt", t.max_chars)?,
        None => None,
    };

    let duration = match &spec.duration {
        Some(d) => match top.get("duration") {
            None => Some(d.default),
            Some(v) => {
                let ok = v.as_u64().and_then(|n| u32::try_from(n).ok()).filter(|n| d.allows(*n));
                Some(ok.ok_or_else(|| err("duration", format!("duration must be {} (seconds).", d.describe())))?)
            }
        },
        None if top.has("duration") => {
            return Err(err(
                "duration",
                format!("{name} takes its duration from the input video; leave duration out."),
            ));
        }
        None => None,
    };

    let quality = setting(top, "quality", spec.quality.as_ref(), Quality::ALL, Quality::as_str, name)?;
    let mut sound = setting(top, "sound", spec.sound.as_ref(), Sound::ALL, Sound::as_str, name)?;
    if let Some(v) = top.get("generate_audio") {
        // EvoLink's MCP client: `generate_audio: true|false` means `sound: on|off`.
        let wanted = match v.as_bool() {
            Some(true) => Sound::On,
            Some(false) => Sound::Off,
            None => return Err(err("generate_audio", "generate_audio must be true or false.")),
        };
        if top.has("sound") && wanted != sound {
            return Err(err("generate_audio", "generate_audio contradicts sound; send one of them."));
        }
        let can = spec.sound.as_ref().is_some_and(|s| s.values().contains(&wanted));
        if !can {
            let what = if wanted == Sound::On { "does not generate sound" } else { "always generates sound" };
            return Err(err("generate_audio", format!("{name} {what}; leave generate_audio out.")));
        }
        sound = wanted;
    }
    let aspect_ratio = match &spec.aspect_ratio {
        Some(a) => top.choice("aspect_ratio", &a.values, |r| r.as_str())?.or(a.default),
        None => None,
    };

    let multi_flag = params.bool("multi_shot")?.unwrap_or(false);
    if multi_flag && spec.multi_shot.is_none() {
        let hint = if prompt_spec.is_some_and(|p| p.shot_syntax.is_some()) {
            "; write the shots in the prompt (镜头 1, 3, words; 镜头 2, 2, words;)"
        } else {
            ""
        };
        return Err(err(
            "model_params.multi_shot",
            format!("model_params.multi_shot is not accepted by {name}{hint}."),
        ));
    }
    let element_ids = element_list(spec, params)?;
    let watermark = match (spec.watermark, params.object("watermark_info")?) {
        (true, Some(w)) => w.bool("enabled")?.unwrap_or(false),
        _ => false,
    };
    let keep_original_sound = match &spec.keep_sound {
        Some(k) => match k.field {
            KeepSoundField::KeepOriginalSound => top.bool("keep_original_sound")?,
            KeepSoundField::ModelParamsKeepSound => params.bool("keep_sound")?,
        }
        .or(k.default),
        None => None,
    };
    let character_orientation = match &spec.orientation {
        Some(o) => {
            let values: Vec<Orientation> = o.values.iter().map(|c| c.value).collect();
            let got = params.choice("character_orientation", &values, Orientation::as_str)?;
            if got.is_none() && o.required {
                let names: Vec<&str> = values.iter().map(|v| v.as_str()).collect();
                return Err(err(
                    "model_params.character_orientation",
                    format!("character_orientation is required: {}.", or_list(&names)),
                ));
            }
            got
        }
        None => None,
    };

    let images = frames_and_images(spec, top, opts)?;
    let (video_url, video_urls) = videos(spec, top, opts)?;
    let total_images = images.count();
    let end_param = if images.from_list { "image_urls[1]" } else { "image_end" };

    if spec.shape == Shape::ImageToVideo && total_images == 0 {
        return Err(err("image_start", format!("{name} needs an image: image_start or image_urls.")));
    }
    if let Some(e) = &spec.elements {
        let n = element_ids.len();
        if let Some(max) = e.max_with_first_frame
            && images.start.is_some()
            && n > max
        {
            return Err(err(
                "model_params.element_list",
                format!("element_list takes at most {max} elements with a first frame."),
            ));
        }
        if let Some(max) = e.max_with_images
            && total_images + n > max
        {
            let param = if n > 0 { "model_params.element_list" } else { "image_urls" };
            return Err(err(
                param,
                format!("Images and elements together are limited to {max} for {name} ({} given).", total_images + n),
            ));
        }
        if let Some(o) = e.orientation
            && n > 0
            && character_orientation != Some(o)
        {
            return Err(err(
                "model_params.character_orientation",
                format!("character_orientation must be {o} with model_params.element_list."),
            ));
        }
    }
    if let (Some(end_rules), Some(_)) = (&spec.image_end, &images.end) {
        if !end_rules.with_multi_shot && multi_flag {
            return Err(err(end_param, "image_end cannot be combined with model_params.multi_shot."));
        }
        if let Some(max) = end_rules.max_total_images
            && total_images > max
        {
            return Err(err(
                end_param,
                format!("An end frame is not accepted with more than {max} images in total ({total_images} given)."),
            ));
        }
    }

    let video_count = usize::from(video_url.is_some()) + video_urls.len();
    let refs = Counts { elements: element_ids.len(), images: total_images, videos: video_count };
    let multi_shot = match (&spec.multi_shot, multi_flag) {
        (Some(m), true) => Some(multi_shot(m, spec, params, duration.unwrap_or(0), &refs)?),
        _ => None,
    };

    if let Some(p) = prompt_spec {
        let customized = matches!(multi_shot, Some(MultiShot::Customize(_)));
        if customized && p.required != PromptRequired::Always {
            // With customised shots each shot carries its prompt; the top one is ignored.
            prompt = None;
        } else {
            let required = p.required != PromptRequired::Optional;
            if required && prompt.as_deref().is_none_or(|s| s.trim().is_empty()) {
                return Err(err("prompt", format!("prompt is required for {name}.")));
            }
            if let Some(text) = &prompt {
                refs.check(text, &p.refs, "prompt")?;
                if let (Some(syntax), Some(d)) = (&p.shot_syntax, duration) {
                    check_shot_syntax(text, syntax, d)?;
                }
            }
        }
    }

    Ok(CreateTask {
        model: spec.id.clone(),
        prompt,
        negative_prompt,
        image_start: images.start,
        image_end: images.end,
        frames_from_image_urls: images.from_list,
        image_urls: images.references,
        video_url,
        video_urls,
        duration,
        quality,
        sound,
        aspect_ratio,
        callback_url: None,
        multi_shot,
        element_ids,
        watermark,
        keep_original_sound,
        character_orientation,
        element: None,
    })
}

fn element_list(spec: &ModelSpec, params: &Obj<'_>) -> Result<Vec<String>, FieldError> {
    let param = "model_params.element_list";
    let Some(v) = params.get("element_list") else { return Ok(Vec::new()) };
    let Some(rules) = &spec.elements else {
        return Err(err(param, format!("model_params.element_list is not accepted by {}.", spec.id)));
    };
    let Value::Array(items) = v else {
        return Err(err(param, "element_list must be an array of {\"element_id\": ...} objects."));
    };
    if items.len() > rules.max {
        return Err(err(param, format!("element_list takes at most {} elements.", rules.max)));
    }
    let mut ids = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let param = format!("model_params.element_list[{i}].element_id");
        match item.get("element_id") {
            Some(Value::String(s)) if s.chars().count() > rules.id_max_chars => {
                return Err(err(param, format!("element_id is limited to {} characters.", rules.id_max_chars)));
            }
            Some(Value::String(s)) if !s.trim().is_empty() => ids.push(s.clone()),
            _ => return Err(err(param, "element_id must be a non-empty string.")),
        }
    }
    Ok(ids)
}

/// The images of a request, in canonical places.
struct Images {
    start: Option<MediaSource>,
    end: Option<MediaSource>,
    references: Vec<MediaSource>,
    /// The frames came in `image_urls`.
    from_list: bool,
}

impl Images {
    fn count(&self) -> usize {
        usize::from(self.start.is_some()) + usize::from(self.end.is_some()) + self.references.len()
    }
}

fn frames_and_images(spec: &ModelSpec, top: &Obj<'_>, opts: &ParseOptions) -> Result<Images, FieldError> {
    let name = spec.id.as_str();
    let rules = spec.image_rules();
    let mut out = Images { start: None, end: None, references: Vec::new(), from_list: false };
    let image_list = |max: usize, min: usize, what: &str| -> Result<Vec<MediaSource>, FieldError> {
        let list = top.array("image_urls")?.map(Vec::as_slice).unwrap_or_default();
        if list.len() < min || list.len() > max {
            let count = if min == max { format!("exactly {max}") } else { format!("{min} to {max}") };
            return Err(err("image_urls", format!("image_urls takes {count} images for {name}: {what}.")));
        }
        list.iter().enumerate().map(|(i, v)| parse_image(v, &format!("image_urls[{i}]"), &rules, opts)).collect()
    };

    if let Some(l) = &spec.image_urls {
        if top.has("image_urls") {
            match l.role {
                ImageListRole::Reference => {
                    out.references = image_list(l.max, l.min, "reference images")?;
                }
                ImageListRole::Frames => {
                    let mut frames = image_list(l.max, l.min.max(1), "the first frame, then the last")?.into_iter();
                    out.start = frames.next();
                    out.end = frames.next();
                    out.from_list = true;
                }
            }
        } else if l.required {
            return Err(err("image_urls", format!("image_urls is required for {name}.")));
        }
    }

    if let Some(start_rules) = &spec.image_start {
        if start_rules.from_image_urls && top.has("image_urls") {
            if top.has("image_start") || top.has("image_end") {
                return Err(err(
                    "image_urls",
                    "Send the frames either as image_start/image_end or as image_urls, not both.",
                ));
            }
            let max = if spec.image_end.is_some() { 2 } else { 1 };
            let what = if max == 2 { "the first frame, then the last" } else { "the first frame" };
            let mut frames = image_list(max, 1, what)?.into_iter();
            out.start = frames.next();
            out.end = frames.next();
            out.from_list = true;
        } else {
            out.start = top.get("image_start").map(|v| parse_image(v, "image_start", &rules, opts)).transpose()?;
            out.end = top.get("image_end").map(|v| parse_image(v, "image_end", &rules, opts)).transpose()?;
        }
        if out.start.is_none() {
            if out.end.is_some() {
                return Err(err("image_start", "image_end needs image_start: give the first frame too."));
            }
            if start_rules.required {
                return Err(err("image_start", "image_start is required for image-to-video."));
            }
        }
    }
    Ok(out)
}

fn videos(
    spec: &ModelSpec,
    top: &Obj<'_>,
    opts: &ParseOptions,
) -> Result<(Option<MediaSource>, Vec<MediaSource>), FieldError> {
    let Some(v) = &spec.video else { return Ok((None, Vec::new())) };
    let (mut one, mut list) = (None, Vec::new());
    match v.field {
        VideoField::VideoUrl => {
            one = top.get("video_url").map(|x| parse_video_url(x, "video_url", opts)).transpose()?
        }
        VideoField::VideoUrls => {
            if let Some(items) = top.array("video_urls")? {
                if items.len() != 1 {
                    return Err(err("video_urls", "video_urls takes exactly one video."));
                }
                list = items.iter().map(|x| parse_video_url(x, "video_urls[0]", opts)).collect::<Result<_, _>>()?;
            }
        }
    }
    if v.required && one.is_none() && list.is_empty() {
        let field = v.field.as_str();
        return Err(err(field, format!("{field} is required for {}.", spec.id)));
    }
    Ok((one, list))
}

/// How many of each medium a prompt may reference.
struct Counts {
    elements: usize,
    images: usize,
    videos: usize,
}

impl Counts {
    /// `<<<element_N>>>` always names an element of `element_list`; images and
    /// videos are checked for the models whose docs define those references.
    fn check(&self, text: &str, kinds: &[RefKind], param: &str) -> Result<(), FieldError> {
        check_refs(text, "element", self.elements, param, "elements of model_params.element_list")?;
        if kinds.contains(&RefKind::Image) {
            check_refs(text, "image", self.images, param, "images")?;
        }
        if kinds.contains(&RefKind::Video) {
            check_refs(text, "video", self.videos, param, "videos")?;
        }
        Ok(())
    }
}

fn multi_shot(
    m: &MultiShotSpec,
    spec: &ModelSpec,
    params: &Obj<'_>,
    duration: u32,
    refs: &Counts,
) -> Result<MultiShot, FieldError> {
    let types: Vec<&str> = m.shot_types.iter().map(|t| t.as_str()).collect();
    let shot_type = match params.get("shot_type") {
        None => {
            return Err(err(
                "model_params.shot_type",
                format!("shot_type is required with multi_shot: {}.", or_list(&types)),
            ));
        }
        Some(v) => v
            .as_str()
            .and_then(ShotType::parse)
            .filter(|t| m.shot_types.contains(t))
            .ok_or_else(|| err("model_params.shot_type", format!("shot_type must be {}.", or_list(&types))))?,
    };
    if shot_type == ShotType::Intelligence {
        return Ok(MultiShot::Intelligence);
    }
    let param = "model_params.multi_prompt";
    let items = match params.get("multi_prompt") {
        None => return Err(err(param, "multi_prompt is required with shot_type customize.")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(err(param, "multi_prompt must be an array.")),
    };
    if items.is_empty() || items.len() > m.max_shots {
        return Err(err(param, format!("multi_prompt takes 1 to {} shots.", m.max_shots)));
    }
    let max_shot = spec.duration.as_ref().map_or(duration, |d| d.max());
    let kinds = spec.prompt.as_ref().map(|p| p.refs.as_slice()).unwrap_or_default();
    let mut shots = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let base = format!("{param}[{i}]");
        let item = item.as_object().ok_or_else(|| err(base.clone(), "Each shot must be an object."))?;
        let index =
            item.get("index").and_then(Value::as_u64).filter(|v| (1..=m.max_shots as u64).contains(v)).ok_or_else(
                || err(format!("{base}.index"), format!("index must be an integer from 1 to {}.", m.max_shots)),
            )?;
        if index != i as u64 + 1 {
            return Err(err(
                format!("{base}.index"),
                format!("Shots must be numbered 1, 2, 3... in order; expected {}.", i + 1),
            ));
        }
        let prompt = match item.get("prompt") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => return Err(err(format!("{base}.prompt"), "prompt must be a non-empty string.")),
        };
        if prompt.chars().count() > m.shot_prompt_max_chars {
            return Err(err(
                format!("{base}.prompt"),
                format!("A shot's prompt is limited to {} characters.", m.shot_prompt_max_chars),
            ));
        }
        refs.check(&prompt, kinds, &format!("{base}.prompt"))?;
        let d = match item.get("duration") {
            Some(Value::String(s)) => s.trim().parse::<u32>().ok().filter(|d| (1..=max_shot).contains(d)),
            _ => None,
        }
        .ok_or_else(|| {
            err(
                format!("{base}.duration"),
                format!(
                    "duration must be a string holding a whole number of seconds from 1 to {max_shot}, e.g. \"3\"."
                ),
            )
        })?;
        shots.push(ShotPrompt { index: index as u32, prompt, duration: d });
    }
    let total: u32 = shots.iter().map(|s| s.duration).sum();
    if total != duration {
        return Err(err(param, format!("The shots' durations add up to {total} s but duration is {duration} s.")));
    }
    Ok(MultiShot::Customize(shots))
}

/// One `镜头 n, m, words` (or `shot n, m, words`) segment of a prompt.
fn shot_segment(seg: &str) -> Option<(u32, u32, &str)> {
    let seg = seg.trim();
    let rest = match seg.strip_prefix("镜头") {
        Some(r) => r,
        None if seg.len() >= 4 && seg.is_char_boundary(4) && seg[..4].eq_ignore_ascii_case("shot") => &seg[4..],
        None => return None,
    };
    let mut parts = rest.splitn(3, [',', '，']);
    let n = parts.next()?.trim().parse().ok()?;
    let m = parts.next()?.trim().parse().ok()?;
    Some((n, m, parts.next()?.trim()))
}

/// Kling 3.0 Turbo's shots inside the prompt: when the prompt uses the syntax, at
/// most `max_shots` shots numbered 1, 2, 3..., each at least 1 s with words of at
/// most `shot_prompt_max_chars`, adding up to `duration`.
fn check_shot_syntax(prompt: &str, syntax: &ShotSyntax, duration: u32) -> Result<(), FieldError> {
    let shots: Vec<(u32, u32, &str)> = prompt.split([';', '；']).filter_map(shot_segment).collect();
    if shots.is_empty() {
        return Ok(());
    }
    if shots.len() > syntax.max_shots {
        return Err(err(
            "prompt",
            format!("The prompt describes {} shots; at most {} are allowed.", shots.len(), syntax.max_shots),
        ));
    }
    for (i, (n, m, words)) in shots.iter().enumerate() {
        if *n as usize != i + 1 {
            return Err(err(
                "prompt",
                format!("Shots must be numbered 1, 2, 3... in order; shot {} is numbered {n}.", i + 1),
            ));
        }
        if *m == 0 {
            return Err(err("prompt", format!("Shot {n} lasts 0 s; each shot lasts at least 1 s.")));
        }
        if words.chars().count() > syntax.shot_prompt_max_chars {
            return Err(err(
                "prompt",
                format!("Shot {n}'s words are limited to {} characters.", syntax.shot_prompt_max_chars),
            ));
        }
    }
    let total: u32 = shots.iter().map(|(_, m, _)| m).sum();
    if total != duration {
        return Err(err("prompt", format!("The prompt's shots add up to {total} s but duration is {duration} s.")));
    }
    Ok(())
}

/// `kling-custom-element`: a subject from images (`image_refer`) or a video (`video_refer`).
fn custom_element(
    spec: &ModelSpec,
    params: &Obj<'_>,
    opts: &ParseOptions,
) -> Result<CreateTask<MediaSource>, FieldError> {
    let Some(rules) = &spec.element else {
        return Err(err("model", format!("{} has no element rules.", spec.id)));
    };
    let text = |key: &str, max: usize| -> Result<String, FieldError> {
        match params.string(key, max)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(err(params.path(key), format!("{key} is required."))),
        }
    };
    let name = text("element_name", rules.name_max_chars)?;
    let description = text("element_description", rules.description_max_chars)?;
    let given = params.choice("reference_type", &rules.reference_types, ReferenceType::as_str)?;
    // EvoLink requires `reference_type`; without one, the list given says which it is.
    let reference_type = given.unwrap_or(if params.has("element_video_list") && !params.has("element_image_list") {
        ReferenceType::VideoRefer
    } else {
        ReferenceType::ImageRefer
    });
    if !rules.reference_types.contains(&reference_type) {
        return Err(err(
            "model_params.reference_type",
            format!("reference_type {reference_type} is not accepted by {}.", spec.id),
        ));
    }
    let image_rules = spec.image_rules();
    let mut element = ElementSpec {
        name,
        description,
        reference_type,
        frontal_image: None,
        refer_images: Vec::new(),
        refer_video: None,
        voice_id: None,
    };
    match reference_type {
        ReferenceType::ImageRefer => {
            if params.has("element_voice_id") {
                return Err(err(
                    "model_params.element_voice_id",
                    "element_voice_id is only for reference_type video_refer.",
                ));
            }
            let list = params.object("element_image_list")?.ok_or_else(|| {
                err(
                    "model_params.element_image_list",
                    "element_image_list is required with reference_type image_refer.",
                )
            })?;
            let frontal = list
                .get("frontal_image")
                .ok_or_else(|| err(list.path("frontal_image"), "frontal_image is required."))?;
            element.frontal_image = Some(parse_image(frontal, &list.path("frontal_image"), &image_rules, opts)?);
            let (min, max) = (rules.refer_images.min, rules.refer_images.max);
            let refer_param = list.path("refer_images");
            let refs = match list.get("refer_images") {
                Some(Value::Array(a)) if (min..=max).contains(&a.len()) => a,
                _ => return Err(err(refer_param, format!("refer_images takes {min} to {max} images."))),
            };
            for (i, r) in refs.iter().enumerate() {
                let param = format!("{refer_param}[{i}].image_url");
                let v = r
                    .get("image_url")
                    .filter(|v| !v.is_null())
                    .ok_or_else(|| err(param.clone(), "image_url is required."))?;
                element.refer_images.push(parse_image(v, &param, &image_rules, opts)?);
            }
        }
        ReferenceType::VideoRefer => {
            if !params.has("element_video_list") {
                if params.has("element_image_list") {
                    return Err(err(
                        "model_params.reference_type",
                        "reference_type video_refer takes model_params.element_video_list, not element_image_list.",
                    ));
                }
                return Err(err(
                    "model_params.element_video_list",
                    "element_video_list is required with reference_type video_refer.",
                ));
            }
            let list = params
                .object("element_video_list")?
                .ok_or_else(|| err("model_params.element_video_list", "element_video_list is required."))?;
            let videos_param = list.path("refer_videos");
            let video = match list.get("refer_videos") {
                Some(Value::Array(a)) if a.len() == 1 => &a[0],
                _ => return Err(err(videos_param, "refer_videos takes exactly one video.")),
            };
            let param = format!("{videos_param}[0].video_url");
            let url = video
                .get("video_url")
                .filter(|v| !v.is_null())
                .ok_or_else(|| err(param.clone(), "video_url is required."))?;
            element.refer_video = Some(parse_video_url(url, &param, opts)?);
            if rules.voice_id {
                element.voice_id = params.string("element_voice_id", 128)?;
            }
        }
    }
    Ok(CreateTask {
        model: spec.id.clone(),
        prompt: None,
        negative_prompt: None,
        image_start: None,
        image_end: None,
        frames_from_image_urls: false,
        image_urls: Vec::new(),
        video_url: None,
        video_urls: Vec::new(),
        duration: None,
        quality: Quality::default(),
        sound: Sound::default(),
        aspect_ratio: None,
        callback_url: None,
        multi_shot: None,
        element_ids: Vec::new(),
        watermark: false,
        keep_original_sound: None,
        character_orientation: None,
        element: Some(element),
    })
}
