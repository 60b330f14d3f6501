//! A task back into the request body its model documents (its own field names,
//! `image_urls` as frames for O1, `model_params.keep_sound` for motion control...),
//! so `parse_create` reads it back into the same task. The `evolink` upstream
//! adapter sends this body (without our `callback_url`).

use serde_json::{Map, Value, json};

use super::{CreateTask, MultiShot};
use crate::catalog::{ImageListRole, KeepSoundField, ModelSpec, Setting, Shape};

impl CreateTask<String> {
    /// The documented request body of this task for `spec` (its own model).
    pub fn to_wire(&self, spec: &ModelSpec) -> Value {
        let mut body = Map::new();
        let mut params = Map::new();
        body.insert("model".to_owned(), json!(self.model.as_str()));
        if spec.shape == Shape::CustomElement {
            if let Some(e) = &self.element {
                params.insert("element_name".to_owned(), json!(e.name));
                params.insert("element_description".to_owned(), json!(e.description));
                params.insert("reference_type".to_owned(), json!(e.reference_type.as_str()));
                if let Some(front) = &e.frontal_image {
                    let refer: Vec<Value> = e.refer_images.iter().map(|u| json!({ "image_url": u })).collect();
                    params.insert(
                        "element_image_list".to_owned(),
                        json!({"frontal_image": front, "refer_images": refer}),
                    );
                }
                if let Some(video) = &e.refer_video {
                    params.insert("element_video_list".to_owned(), json!({"refer_videos": [{"video_url": video}]}));
                }
                if let Some(voice) = &e.voice_id {
                    params.insert("element_voice_id".to_owned(), json!(voice));
                }
            }
        } else {
            self.video_fields(spec, &mut body, &mut params);
        }
        if let Some(cb) = &self.callback_url {
            body.insert("callback_url".to_owned(), json!(cb));
        }
        if !params.is_empty() {
            body.insert("model_params".to_owned(), Value::Object(params));
        }
        Value::Object(body)
    }

    fn video_fields(&self, spec: &ModelSpec, body: &mut Map<String, Value>, params: &mut Map<String, Value>) {
        let mut put = |k: &str, v: Value| {
            body.insert(k.to_owned(), v);
        };
        if let Some(p) = &self.prompt {
            put("prompt", json!(p));
        }
        if let Some(p) = &self.negative_prompt {
            put("negative_prompt", json!(p));
        }
        if let Some(d) = self.duration {
            put("duration", json!(d));
        }
        if spec.quality.as_ref().is_some_and(Setting::is_choice) {
            put("quality", json!(self.quality.as_str()));
        }
        if spec.sound.as_ref().is_some_and(Setting::is_choice) {
            put("sound", json!(self.sound.as_str()));
        }
        if let Some(a) = self.aspect_ratio {
            put("aspect_ratio", json!(a.as_str()));
        }
        let frames_in_list = spec.image_urls.as_ref().is_some_and(|l| l.role == ImageListRole::Frames);
        if frames_in_list {
            let frames: Vec<&String> = self.image_start.iter().chain(self.image_end.iter()).collect();
            put("image_urls", json!(frames));
        } else {
            if let Some(s) = &self.image_start {
                put("image_start", json!(s));
            }
            if let Some(e) = &self.image_end {
                put("image_end", json!(e));
            }
            if !self.image_urls.is_empty() {
                put("image_urls", json!(self.image_urls));
            }
        }
        if let Some(v) = &self.video_url {
            put("video_url", json!(v));
        }
        if !self.video_urls.is_empty() {
            put("video_urls", json!(self.video_urls));
        }
        if let (Some(keep), Some(k)) = (self.keep_original_sound, &spec.keep_sound) {
            match k.field {
                KeepSoundField::KeepOriginalSound => put("keep_original_sound", json!(keep)),
                KeepSoundField::ModelParamsKeepSound => {
                    params.insert("keep_sound".to_owned(), json!(keep));
                }
            }
        }
        match &self.multi_shot {
            None => {}
            Some(MultiShot::Intelligence) => {
                params.insert("multi_shot".to_owned(), json!(true));
                params.insert("shot_type".to_owned(), json!("intelligence"));
            }
            Some(MultiShot::Customize(shots)) => {
                params.insert("multi_shot".to_owned(), json!(true));
                params.insert("shot_type".to_owned(), json!("customize"));
                let shots: Vec<Value> = shots
                    .iter()
                    .map(|s| json!({"index": s.index, "prompt": s.prompt, "duration": s.duration.to_string()}))
                    .collect();
                params.insert("multi_prompt".to_owned(), Value::Array(shots));
            }
        }
        if !self.element_ids.is_empty() {
            let list: Vec<Value> = self.element_ids.iter().map(|id| json!({ "element_id": id })).collect();
            params.insert("element_list".to_owned(), Value::Array(list));
        }
        if self.watermark {
            params.insert("watermark_info".to_owned(), json!({"enabled": true}));
        }
        if let Some(o) = self.character_orientation {
            params.insert("character_orientation".to_owned(), json!(o.as_str()));
        }
    }
}
