//! One test per documented rule of each model beyond Kling 3.0's (whose rules
//! `tests.rs` covers), named after the rule; EvoLink's MCP client's request shapes;
//! and how media map to the gateway's references with the field each came in.

use serde_json::{Value, json};

use super::tests::{fail, ok, param_of, params, spec, uri, with};
use super::*;
use crate::catalog::{AspectRatio, Quality, ReferenceType, Sound};
use crate::image::tests::{png, png_from_raw};
use crate::video::VideoFacts;

const IMG: &str = "https://cdn.example.com/a.png";
const IMG2: &str = "https://cdn.example.com/b.png";
const VID: &str = "https://cdn.example.com/v.mp4";

fn body(model: &str, fields: Value) -> Value {
    let mut b = json!({ "model": model });
    for (k, v) in fields.as_object().into_iter().flatten() {
        b[k] = v.clone();
    }
    b
}

fn message_of(b: Value) -> String {
    fail(&b).message
}

fn video(container: &str, duration_ms: u64, w: u32, h: u32, fps_milli: u32, byte_len: u64) -> VideoFacts {
    VideoFacts {
        container: container.to_owned(),
        video_codec: "h264".to_owned(),
        duration_ms,
        width: w,
        height: h,
        fps_milli,
        has_audio: true,
        byte_len,
    }
}

fn video_ok(t: &CreateTask<MediaSource>, param: &str, v: &VideoFacts) -> Result<(), String> {
    spec(t.model.as_str()).check_video(t, param, v).map_err(|e| format!("{}: {}", e.param, e.message))
}

// ---------------------------------------------------------------- Kling 3.0

#[test]
fn v3_takes_4k_quality() {
    let t2v = ok(&body("kling-v3-text-to-video", json!({"prompt": "p", "quality": "4k"})));
    let i2v = ok(&body("kling-v3-image-to-video", json!({"image_start": IMG, "quality": "4k"})));
    assert_eq!((t2v.quality, i2v.quality), (Quality::P4k, Quality::P4k));
}

#[test]
fn v3_image_end_needs_image_start() {
    let e = fail(&body("kling-v3-image-to-video", json!({"prompt": "p", "image_end": IMG})));
    assert_eq!(e.param, "image_start");
}

// ---------------------------------------------------------------- Kling 3.0 Turbo

fn turbo(fields: Value) -> Value {
    body("kling-v3-turbo-text-to-video", fields)
}

#[test]
fn turbo_refuses_4k() {
    assert_eq!(param_of(turbo(json!({"prompt": "p", "quality": "4k"}))), "quality");
    assert_eq!(ok(&turbo(json!({"prompt": "p", "quality": "1080p"}))).quality, Quality::P1080);
}

#[test]
fn turbo_requires_a_prompt_of_at_most_2500_characters() {
    assert_eq!(param_of(turbo(json!({}))), "prompt");
    assert_eq!(param_of(turbo(json!({"prompt": "x".repeat(2501)}))), "prompt");
}

#[test]
fn turbo_takes_shots_in_the_prompt_not_in_model_params() {
    let e = fail(&turbo(json!({"prompt": "p", "model_params": {"multi_shot": true, "shot_type": "customize"}})));
    assert!(e.param == "model_params.multi_shot" && e.message.contains("镜头"), "{e}");
    // multi_shot false says nothing to refuse.
    assert!(ok(&turbo(json!({"prompt": "p", "model_params": {"multi_shot": false}}))).multi_shot.is_none());
}

#[test]
fn turbo_prompt_shots_add_up_to_duration() {
    let good = "镜头 1, 3, the girl walks toward the window; 镜头 2, 2, the camera zooms into her profile;";
    assert!(ok(&turbo(json!({"prompt": good, "duration": 5}))).prompt.is_some());
    assert!(ok(&turbo(json!({"prompt": "Shot 1, 2, a; shot 2, 4, b;", "duration": 6}))).prompt.is_some());
    let e = fail(&turbo(json!({"prompt": good, "duration": 6})));
    assert!(e.param == "prompt" && e.message.contains("5 s") && e.message.contains("6 s"), "{e}");
}

#[test]
fn turbo_prompt_shots_are_at_most_6_numbered_in_order_with_short_words() {
    let seven: String = (1..=7).map(|i| format!("镜头 {i}, 1, s{i};")).collect();
    assert_eq!(param_of(turbo(json!({"prompt": seven, "duration": 7}))), "prompt");
    assert_eq!(param_of(turbo(json!({"prompt": "镜头 2, 3, a; 镜头 1, 2, b;"}))), "prompt");
    assert_eq!(param_of(turbo(json!({"prompt": "镜头 1, 0, a; 镜头 2, 5, b;"}))), "prompt");
    let long = format!("镜头 1, 5, {};", "w".repeat(513));
    assert_eq!(param_of(turbo(json!({"prompt": long}))), "prompt");
    // Prose without the syntax is just a prompt.
    assert!(ok(&turbo(json!({"prompt": "a shot of the sea; calm, blue"}))).prompt.is_some());
}

#[test]
fn turbo_always_has_sound() {
    assert_eq!(ok(&turbo(json!({"prompt": "p"}))).sound, Sound::On);
    assert_eq!(ok(&turbo(json!({"prompt": "p", "sound": "on", "generate_audio": true}))).sound, Sound::On);
    assert_eq!(param_of(turbo(json!({"prompt": "p", "sound": "off"}))), "sound");
    assert_eq!(param_of(turbo(json!({"prompt": "p", "generate_audio": false}))), "generate_audio");
}

#[test]
fn turbo_has_no_elements_and_no_end_frame() {
    let el = json!({"element_list": [{"element_id": "e"}]});
    assert_eq!(param_of(params(turbo(json!({"prompt": "p"})), el.clone())), "model_params.element_list");
    let i2v = |f: Value| body("kling-v3-turbo-image-to-video", f);
    assert_eq!(param_of(params(i2v(json!({"image_start": IMG})), el)), "model_params.element_list");
    let e = fail(&i2v(json!({"image_start": IMG, "image_end": IMG2})));
    assert!(e.param == "image_end" && e.message.contains("no end frame"), "{e}");
    assert_eq!(param_of(i2v(json!({"image_urls": [IMG, IMG2]}))), "image_urls");
}

#[test]
fn turbo_image_to_video_requires_a_first_frame_and_ignores_aspect_ratio() {
    let i2v = |f: Value| body("kling-v3-turbo-image-to-video", f);
    assert_eq!(param_of(i2v(json!({"prompt": "p"}))), "image_start");
    let t = ok(&i2v(json!({"image_start": IMG, "aspect_ratio": "9:16"})));
    assert_eq!((t.aspect_ratio, t.prompt), (None, None));
}

#[test]
fn turbo_image_to_video_takes_images_up_to_50_mb() {
    // A valid PNG of 12 MB: pixels plus a large private ancillary chunk.
    let raw: Vec<u8> = (0..400).flat_map(|_| std::iter::once(0u8).chain(std::iter::repeat_n(7, 1200))).collect();
    let mut big = png_from_raw(400, 400, 2, 8, 0, &raw);
    let iend = big.len() - 12;
    let data = vec![0x5A; 12 * 1024 * 1024];
    let mut typed = b"vgPd".to_vec();
    typed.extend_from_slice(&data);
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(&typed);
    chunk.extend_from_slice(&crate::image::tests::crc(&typed).to_be_bytes());
    big.splice(iend..iend, chunk);
    let img = uri(&big);
    assert!(ok(&body("kling-v3-turbo-image-to-video", json!({"image_start": img}))).image_start.is_some());
    let e = fail(&body("kling-v3-image-to-video", json!({"image_start": img})));
    assert!(e.param == "image_start" && e.message.contains("10 MB"), "{e}");
}

// ---------------------------------------------------------------- Kling 3.0 Motion Control

fn motion(mp: Value) -> Value {
    body("kling-v3-motion-control", json!({"image_urls": [IMG], "video_urls": [VID], "model_params": mp}))
}

#[test]
fn motion_control_needs_one_image_and_one_video() {
    let no_image = body(
        "kling-v3-motion-control",
        json!({"video_urls": [VID], "model_params": {"character_orientation": "image"}}),
    );
    assert_eq!(param_of(no_image), "image_urls");
    let no_video = body(
        "kling-v3-motion-control",
        json!({"image_urls": [IMG], "model_params": {"character_orientation": "image"}}),
    );
    assert_eq!(param_of(no_video), "video_urls");
    assert_eq!(
        param_of(with(motion(json!({"character_orientation": "image"})), "image_urls", json!([IMG, IMG2]))),
        "image_urls"
    );
    assert_eq!(
        param_of(with(motion(json!({"character_orientation": "image"})), "video_urls", json!([VID, VID]))),
        "video_urls"
    );
    assert_eq!(param_of(with(motion(json!({"character_orientation": "image"})), "video_url", json!(VID))), "video_url");
}

#[test]
fn motion_control_requires_character_orientation_image_or_video() {
    let e = fail(&motion(json!({})));
    assert!(e.param == "model_params.character_orientation" && e.message.contains("image or video"), "{e}");
    assert_eq!(param_of(motion(json!({"character_orientation": "left"}))), "model_params.character_orientation");
    let t = ok(&motion(json!({"character_orientation": "video"})));
    assert_eq!(t.character_orientation, Some(Orientation::Video));
}

#[test]
fn motion_control_elements_are_one_at_most_and_only_with_video_orientation() {
    let one = json!([{"element_id": "e1"}]);
    assert_eq!(ok(&motion(json!({"character_orientation": "video", "element_list": one}))).element_ids, ["e1"]);
    let e = fail(&motion(json!({"character_orientation": "image", "element_list": one})));
    assert!(e.param == "model_params.character_orientation" && e.message.contains("video"), "{e}");
    let two = json!([{"element_id": "e1"}, {"element_id": "e2"}]);
    assert_eq!(
        param_of(motion(json!({"character_orientation": "video", "element_list": two}))),
        "model_params.element_list"
    );
}

#[test]
fn motion_control_keeps_the_reference_sound_unless_told_not_to() {
    assert_eq!(ok(&motion(json!({"character_orientation": "image"}))).keep_original_sound, Some(true));
    let t = ok(&motion(json!({"character_orientation": "image", "keep_sound": false})));
    assert_eq!((t.keep_original_sound, t.sound), (Some(false), Sound::Off));
    assert_eq!(
        param_of(motion(json!({"character_orientation": "image", "keep_sound": "no"}))),
        "model_params.keep_sound"
    );
}

#[test]
fn motion_control_length_follows_its_video_so_duration_is_refused() {
    let e = fail(&with(motion(json!({"character_orientation": "image"})), "duration", json!(5)));
    assert!(e.param == "duration" && e.message.contains("input video"), "{e}");
}

#[test]
fn motion_control_video_is_3_to_10_s_for_image_orientation_and_to_30_s_for_video() {
    let image = ok(&motion(json!({"character_orientation": "image"})));
    let clip = |ms| video("mp4", ms, 1280, 720, 30_000, 5_000_000);
    assert_eq!(video_ok(&image, "video_urls[0]", &clip(10_000)), Ok(()));
    let e = video_ok(&image, "video_urls[0]", &clip(10_001)).unwrap_err();
    assert!(e.starts_with("video_urls[0]:") && e.contains("3 to 10 s"), "{e}");
    let v = ok(&motion(json!({"character_orientation": "video"})));
    assert_eq!(video_ok(&v, "video_urls[0]", &clip(30_000)), Ok(()));
    assert!(video_ok(&v, "video_urls[0]", &clip(30_001)).is_err());
    assert!(video_ok(&v, "video_urls[0]", &clip(2_999)).is_err());
}

#[test]
fn motion_control_video_is_340_to_3850_px_up_to_100_mb_mp4_or_mov() {
    let t = ok(&motion(json!({"character_orientation": "video"})));
    assert_eq!(video_ok(&t, "video_urls[0]", &video("mov", 5_000, 340, 3850, 25_000, 100 * 1024 * 1024)), Ok(()));
    for bad in [
        video("mp4", 5_000, 339, 720, 25_000, 1),
        video("mp4", 5_000, 720, 3851, 25_000, 1),
        video("mp4", 5_000, 720, 720, 25_000, 100 * 1024 * 1024 + 1),
        video("webm", 5_000, 720, 720, 25_000, 1),
    ] {
        assert!(video_ok(&t, "video_urls[0]", &bad).is_err(), "{bad:?}");
    }
}

// ---------------------------------------------------------------- Kling O3

#[test]
fn o3_text_to_video_shots_are_customised_only() {
    let b = body(
        "kling-o3-text-to-video",
        json!({"prompt": "p", "model_params": {"multi_shot": true, "shot_type": "intelligence"}}),
    );
    let e = fail(&b);
    assert!(e.param == "model_params.shot_type" && e.message.contains("customize"), "{e}");
}

#[test]
fn o3_text_to_video_takes_up_to_7_elements_and_4k() {
    let ids = |n: usize| Value::Array((0..n).map(|i| json!({"element_id": format!("e{i}")})).collect());
    let b = |n| {
        body(
            "kling-o3-text-to-video",
            json!({"prompt": "p", "quality": "4k", "model_params": {"element_list": ids(n)}}),
        )
    };
    assert_eq!(ok(&b(7)).element_ids.len(), 7);
    assert_eq!(param_of(b(8)), "model_params.element_list");
}

fn o3i(fields: Value) -> Value {
    body("kling-o3-image-to-video", fields)
}

#[test]
fn o3_image_to_video_image_urls_are_reference_images() {
    let t = ok(&o3i(json!({"prompt": "p", "image_urls": [IMG, IMG2]})));
    assert_eq!((t.image_start.is_none(), t.image_urls.len(), t.frames_from_image_urls), (true, 2, false));
}

#[test]
fn o3_image_to_video_needs_an_image() {
    let e = fail(&o3i(json!({"prompt": "p"})));
    assert!(e.param == "image_start" && e.message.contains("image"), "{e}");
}

#[test]
fn o3_end_frame_needs_a_first_frame() {
    assert_eq!(param_of(o3i(json!({"prompt": "p", "image_end": IMG, "image_urls": [IMG2]}))), "image_start");
}

#[test]
fn o3_end_frame_is_refused_with_more_than_2_images() {
    let ok_two = o3i(json!({"prompt": "p", "image_start": IMG, "image_end": IMG2}));
    assert!(ok(&ok_two).image_end.is_some());
    let e = fail(&with(ok_two, "image_urls", json!([IMG])));
    assert!(e.param == "image_end" && e.message.contains("2 images"), "{e}");
}

#[test]
fn o3_elements_are_at_most_3_with_a_first_frame() {
    let ids = |n: usize| Value::Array((0..n).map(|i| json!({"element_id": format!("e{i}")})).collect());
    let with_start = |n| o3i(json!({"prompt": "p", "image_start": IMG, "model_params": {"element_list": ids(n)}}));
    assert_eq!(ok(&with_start(3)).element_ids.len(), 3);
    let e = fail(&with_start(4));
    assert!(e.param == "model_params.element_list" && e.message.contains("first frame"), "{e}");
    // Without a first frame, more elements may come with reference images.
    assert_eq!(
        ok(&o3i(json!({"prompt": "p", "image_urls": [IMG], "model_params": {"element_list": ids(6)}})))
            .element_ids
            .len(),
        6
    );
}

#[test]
fn o3_images_and_elements_together_are_at_most_7() {
    let ids = |n: usize| Value::Array((0..n).map(|i| json!({"element_id": format!("e{i}")})).collect());
    let b = |images: usize, elements: usize| {
        o3i(json!({"prompt": "p", "image_urls": vec![IMG; images], "model_params": {"element_list": ids(elements)}}))
    };
    assert!(ok(&b(4, 3)).image_urls.len() == 4);
    let e = fail(&b(4, 4));
    assert!(e.param == "model_params.element_list" && e.message.contains("7"), "{e}");
    assert_eq!(param_of(b(8, 0)), "image_urls");
}

#[test]
fn o3_prompt_image_references_name_a_given_image() {
    let b = |prompt: &str| o3i(json!({"prompt": prompt, "image_start": IMG, "image_urls": [IMG2]}));
    assert!(ok(&b("<<<image_1>>> meets <<<image_2>>>")).prompt.is_some());
    assert_eq!(param_of(b("<<<image_3>>> walks")), "prompt");
}

fn o3r(fields: Value) -> Value {
    let mut b = body("kling-o3-reference-to-video", json!({"prompt": "p", "video_url": VID}));
    for (k, v) in fields.as_object().into_iter().flatten() {
        b[k] = v.clone();
    }
    b
}

#[test]
fn o3_reference_duration_is_3_to_10() {
    assert_eq!(ok(&o3r(json!({"duration": 10}))).duration, Some(10));
    let e = fail(&o3r(json!({"duration": 11})));
    assert!(e.param == "duration" && e.message.contains("3 to 10"), "{e}");
}

#[test]
fn o3_reference_sound_is_forced_off() {
    assert_eq!(ok(&o3r(json!({}))).sound, Sound::Off);
    assert_eq!(ok(&o3r(json!({"sound": "off"}))).sound, Sound::Off);
    assert_eq!(param_of(o3r(json!({"sound": "on"}))), "sound");
    assert_eq!(param_of(o3r(json!({"generate_audio": true}))), "generate_audio");
}

#[test]
fn o3_reference_needs_one_video_url_and_a_prompt() {
    let no_video = body("kling-o3-reference-to-video", json!({"prompt": "p"}));
    assert_eq!(param_of(no_video), "video_url");
    assert_eq!(param_of(o3r(json!({"video_url": 3}))), "video_url");
    assert_eq!(param_of(o3r(json!({"video_urls": [VID]}))), "video_urls");
    assert_eq!(param_of(o3r(json!({"prompt": null}))), "prompt");
    assert_eq!(param_of(o3r(json!({"video_url": "https://192.168.0.2/v.mp4"}))), "video_url");
}

#[test]
fn o3_reference_images_and_elements_together_are_at_most_4() {
    let b = o3r(
        json!({"image_urls": [IMG, IMG2], "model_params": {"element_list": [{"element_id": "a"}, {"element_id": "b"}]}}),
    );
    assert_eq!(ok(&b).element_ids.len(), 2);
    let b = o3r(
        json!({"image_urls": [IMG, IMG2, IMG], "model_params": {"element_list": [{"element_id": "a"}, {"element_id": "b"}]}}),
    );
    assert_eq!(param_of(b), "model_params.element_list");
    assert_eq!(param_of(o3r(json!({"image_urls": [IMG, IMG, IMG, IMG, IMG]}))), "image_urls");
}

#[test]
fn o3_reference_keeps_the_original_sound_by_default() {
    assert_eq!(ok(&o3r(json!({}))).keep_original_sound, Some(true));
    assert_eq!(ok(&o3r(json!({"keep_original_sound": false}))).keep_original_sound, Some(false));
}

#[test]
fn o3_reference_prompt_may_name_its_video() {
    assert!(ok(&o3r(json!({"prompt": "dance like <<<video_1>>>"}))).prompt.is_some());
    assert_eq!(param_of(o3r(json!({"prompt": "dance like <<<video_2>>>"}))), "prompt");
}

#[test]
fn o3_input_video_is_mp4_or_mov_3_s_or_more_720_to_2160_px_24_to_60_fps_up_to_200_mb() {
    for m in ["kling-o3-reference-to-video", "kling-o3-video-edit"] {
        let t = ok(&body(m, json!({"prompt": "p", "video_url": VID})));
        assert_eq!(
            video_ok(&t, "video_url", &video("mp4", 3_000, 720, 2160, 24_000, 200 * 1024 * 1024)),
            Ok(()),
            "{m}"
        );
        for (bad, words) in [
            (video("mp4", 2_999, 1280, 720, 30_000, 1), "3 to 15.5 s"),
            (video("mp4", 5_000, 640, 480, 30_000, 1), "720 to 2160 px"),
            (video("mp4", 5_000, 3840, 2160, 30_000, 1), "720 to 2160 px"),
            (video("mp4", 5_000, 1280, 720, 23_976, 1), "24 to 60 fps"),
            (video("mp4", 5_000, 1280, 720, 30_000, 200 * 1024 * 1024 + 1), "200 MB"),
            (video("mkv", 5_000, 1280, 720, 30_000, 1), "MP4 or MOV"),
        ] {
            let e = video_ok(&t, "video_url", &bad).unwrap_err();
            assert!(e.starts_with("video_url:") && e.contains(words), "{m}: {e}");
        }
    }
}

#[test]
fn o3_video_edit_follows_its_input_so_duration_and_frames_are_refused() {
    let b = |f: Value| body("kling-o3-video-edit", f);
    let t = ok(&b(json!({"video_url": VID})));
    assert_eq!((t.duration, t.prompt.is_none(), t.aspect_ratio), (None, true, None));
    assert_eq!(param_of(b(json!({"video_url": VID, "duration": 5}))), "duration");
    assert_eq!(param_of(b(json!({"video_url": VID, "image_start": IMG}))), "image_start");
    assert_eq!(param_of(b(json!({"video_url": VID, "quality": "4k"}))), "quality");
    let four = b(
        json!({"video_url": VID, "image_urls": [IMG, IMG], "model_params": {"element_list": [{"element_id": "a"}, {"element_id": "b"}, {"element_id": "c"}]}}),
    );
    assert_eq!(param_of(four), "model_params.element_list");
}

// ---------------------------------------------------------------- Kling O1

fn o1(fields: Value) -> Value {
    let mut b = body("kling-o1-image-to-video", json!({"prompt": "p", "image_urls": [IMG]}));
    for (k, v) in fields.as_object().into_iter().flatten() {
        b[k] = v.clone();
    }
    b
}

#[test]
fn o1_duration_is_5_or_10() {
    assert_eq!(ok(&o1(json!({}))).duration, Some(5));
    assert_eq!(ok(&o1(json!({"duration": 10}))).duration, Some(10));
    let e = fail(&o1(json!({"duration": 7})));
    assert!(e.param == "duration" && e.message.contains("5 or 10"), "{e}");
}

#[test]
fn o1_image_urls_are_the_first_frame_then_the_last() {
    let t = ok(&o1(json!({"image_urls": [IMG, IMG2]})));
    assert_eq!(t.image_start, Some(MediaSource::Url(IMG.to_owned())));
    assert_eq!(t.image_end, Some(MediaSource::Url(IMG2.to_owned())));
    assert!(t.frames_from_image_urls && t.image_urls.is_empty());
    assert_eq!(param_of(o1(json!({"image_urls": []}))), "image_urls");
    assert_eq!(param_of(o1(json!({"image_urls": [IMG, IMG, IMG]}))), "image_urls");
    assert_eq!(param_of(o1(json!({"image_urls": null}))), "image_urls");
    assert_eq!(param_of(o1(json!({"image_urls": [IMG, "ftp://x"]}))), "image_urls[1]");
    let e = fail(&o1(json!({"image_start": IMG})));
    assert!(e.param == "image_start" && e.message.contains("image_urls"), "{e}");
}

#[test]
fn o1_prompt_is_required_up_to_5000_characters() {
    assert!(ok(&o1(json!({"prompt": "x".repeat(5000)}))).prompt.is_some());
    assert_eq!(param_of(o1(json!({"prompt": "x".repeat(5001)}))), "prompt");
    assert_eq!(param_of(o1(json!({"prompt": null}))), "prompt");
}

#[test]
fn o1_has_no_sound_and_a_fixed_quality() {
    let t = ok(&o1(json!({"generate_audio": false, "quality": "1080p"})));
    assert_eq!((t.sound, t.quality), (Sound::Off, Quality::P1080));
    assert_eq!(param_of(o1(json!({"generate_audio": true}))), "generate_audio");
    assert_eq!(param_of(o1(json!({"quality": "720p"}))), "quality");
    assert_eq!(param_of(o1(json!({"aspect_ratio": "4:3"}))), "aspect_ratio");
    assert_eq!(ok(&o1(json!({}))).aspect_ratio, None);
}

fn o1e(model: &str, fields: Value) -> Value {
    let mut b = body(model, json!({"prompt": "p", "video_urls": [VID]}));
    for (k, v) in fields.as_object().into_iter().flatten() {
        b[k] = v.clone();
    }
    b
}

#[test]
fn o1_video_edit_takes_exactly_one_video_in_video_urls() {
    for m in ["kling-o1-video-edit", "kling-o1-video-edit-fast"] {
        assert_eq!(ok(&o1e(m, json!({}))).video_urls.len(), 1);
        assert_eq!(param_of(o1e(m, json!({"video_urls": [VID, VID]}))), "video_urls");
        assert_eq!(param_of(o1e(m, json!({"video_urls": []}))), "video_urls");
        assert_eq!(param_of(o1e(m, json!({"video_urls": null}))), "video_urls");
        let e = fail(&o1e(m, json!({"video_url": VID})));
        assert!(e.param == "video_url" && e.message.contains("video_urls"), "{e}");
    }
}

#[test]
fn o1_video_edit_takes_1_to_4_reference_images_and_a_prompt() {
    for m in ["kling-o1-video-edit", "kling-o1-video-edit-fast"] {
        assert_eq!(ok(&o1e(m, json!({"image_urls": [IMG, IMG, IMG, IMG]}))).image_urls.len(), 4);
        assert_eq!(param_of(o1e(m, json!({"image_urls": [IMG, IMG, IMG, IMG, IMG]}))), "image_urls");
        assert_eq!(param_of(o1e(m, json!({"image_urls": []}))), "image_urls");
        assert_eq!(param_of(o1e(m, json!({"prompt": ""}))), "prompt");
        assert_eq!(param_of(o1e(m, json!({"duration": 5}))), "duration");
        assert_eq!(ok(&o1e(m, json!({"keep_original_sound": true}))).keep_original_sound, Some(true));
        assert_eq!(ok(&o1e(m, json!({}))).keep_original_sound, None);
    }
}

#[test]
fn o1_video_edit_bills_any_length_so_only_size_and_container_are_limits() {
    for m in ["kling-o1-video-edit", "kling-o1-video-edit-fast"] {
        let t = ok(&o1e(m, json!({})));
        assert_eq!(video_ok(&t, "video_urls[0]", &video("mov", 25_000, 640, 360, 15_000, 100 * 1024 * 1024)), Ok(()));
        assert!(video_ok(&t, "video_urls[0]", &video("mp4", 5_000, 640, 360, 15_000, 100 * 1024 * 1024 + 1)).is_err());
        assert!(video_ok(&t, "video_urls[0]", &video("avi", 5_000, 640, 360, 15_000, 1)).is_err());
    }
}

#[test]
fn a_custom_elements_video_is_at_most_8_s_and_720_to_2160_px_wide() {
    let t =
        ok(&json!({"model": "kling-custom-element", "model_params": {"element_name": "me", "element_description": "d",
        "reference_type": "video_refer", "element_video_list": {"refer_videos": [{"video_url": VID}]}}}));
    let param = "model_params.element_video_list.refer_videos[0].video_url";
    assert_eq!(video_ok(&t, param, &video("mp4", 8_000, 1080, 1920, 30_000, 1)), Ok(()));
    let e = video_ok(&t, param, &video("mp4", 8_001, 1080, 1920, 30_000, 1)).unwrap_err();
    assert!(e.starts_with(param) && e.contains("3 to 8 s"), "{e}");
    assert!(video_ok(&t, param, &video("mp4", 5_000, 700, 1280, 30_000, 1)).unwrap_err().contains("wide"));
    assert_eq!(t.element.as_ref().map(|e| e.reference_type), Some(ReferenceType::VideoRefer));
}

// ---------------------------------------------------------------- EvoLink's MCP client

/// The body `@evolinkai/evolink-media` 1.2.1's `generate_video` sends: its schema's
/// fields, spread as given (`tools/generate-video.js`).
fn mcp(model: &str, fields: Value) -> Value {
    let mut b = json!({"prompt": "A fox runs through fresh snow", "model": model});
    for (k, v) in fields.as_object().into_iter().flatten() {
        b[k] = v.clone();
    }
    b
}

#[test]
fn the_mcp_client_creates_kling_v3_text_to_video() {
    let t = ok(&mcp(
        "kling-v3-text-to-video",
        json!({"duration": 8, "quality": "1080p", "aspect_ratio": "9:16", "generate_audio": true}),
    ));
    assert_eq!(
        (t.duration, t.quality, t.sound, t.aspect_ratio),
        (Some(8), Quality::P1080, Sound::On, Some(AspectRatio::R9x16))
    );
    assert_eq!(ok(&mcp("kling-v3-text-to-video", json!({"generate_audio": false}))).sound, Sound::Off);
    for (field, value) in [
        ("quality", json!("480p")),
        ("aspect_ratio", json!("adaptive")),
        ("aspect_ratio", json!("21:9")),
        ("image_urls", json!([IMG])),
    ] {
        assert_eq!(param_of(mcp("kling-v3-text-to-video", json!({ field: value }))), field, "{value}");
    }
    assert_eq!(param_of(mcp("kling-v3-text-to-video", json!({"prompt": "x".repeat(5000)}))), "prompt");
}

#[test]
fn the_mcp_client_creates_kling_v3_image_to_video_from_image_urls() {
    let t = ok(&mcp("kling-v3-image-to-video", json!({"image_urls": [IMG], "duration": 5, "generate_audio": false})));
    assert_eq!((t.image_start.clone(), t.image_end.clone()), (Some(MediaSource::Url(IMG.to_owned())), None));
    assert!(t.frames_from_image_urls);
    let t = ok(&mcp("kling-v3-image-to-video", json!({"image_urls": [IMG, IMG2], "aspect_ratio": "adaptive"})));
    assert_eq!(t.image_end, Some(MediaSource::Url(IMG2.to_owned())));
    assert_eq!(param_of(mcp("kling-v3-image-to-video", json!({"image_urls": [IMG, IMG2, IMG]}))), "image_urls");
    assert_eq!(
        param_of(mcp("kling-v3-image-to-video", json!({"image_urls": [IMG], "image_start": IMG}))),
        "image_urls"
    );
    assert_eq!(
        param_of(mcp("kling-v3-image-to-video", json!({"image_urls": ["http://10.1.1.1/a.png"]}))),
        "image_urls[0]"
    );
    // The end frame from image_urls is still not allowed with multi_shot.
    let e = fail(&params(
        mcp("kling-v3-image-to-video", json!({"image_urls": [IMG, IMG2]})),
        json!({"multi_shot": true, "shot_type": "intelligence"}),
    ));
    assert_eq!(e.param, "image_urls[1]");
    assert_eq!(param_of(mcp("kling-v3-image-to-video", json!({}))), "image_start");
}

#[test]
fn the_mcp_client_creates_kling_o3_text_to_video() {
    let t = ok(&mcp(
        "kling-o3-text-to-video",
        json!({"duration": 15, "quality": "4k", "aspect_ratio": "1:1", "generate_audio": true}),
    ));
    assert_eq!(
        (t.duration, t.quality, t.sound, t.aspect_ratio),
        (Some(15), Quality::P4k, Sound::On, Some(AspectRatio::R1x1))
    );
    assert_eq!(param_of(mcp("kling-o3-text-to-video", json!({"aspect_ratio": "4:3"}))), "aspect_ratio");
}

#[test]
fn the_mcp_client_creates_kling_o3_image_to_video_with_reference_images() {
    let t = ok(&mcp(
        "kling-o3-image-to-video",
        json!({"image_urls": [IMG], "duration": 5, "quality": "1080p", "generate_audio": false}),
    ));
    assert_eq!((t.image_urls.len(), t.image_start.is_none(), t.sound), (1, true, Sound::Off));
    assert_eq!(param_of(mcp("kling-o3-image-to-video", json!({"image_urls": [IMG], "quality": "480p"}))), "quality");
}

#[test]
fn the_mcp_client_creates_kling_o1_image_to_video() {
    let t = ok(&mcp(
        "kling-o1-image-to-video",
        json!({"image_urls": [IMG, IMG2], "duration": 10, "aspect_ratio": "16:9", "generate_audio": false}),
    ));
    assert_eq!((t.duration, t.image_end.is_some(), t.aspect_ratio), (Some(10), true, Some(AspectRatio::R16x9)));
    assert_eq!(param_of(mcp("kling-o1-image-to-video", json!({"image_urls": [IMG], "duration": 7}))), "duration");
    assert_eq!(
        param_of(mcp("kling-o1-image-to-video", json!({"image_urls": [IMG], "generate_audio": true}))),
        "generate_audio"
    );
    assert_eq!(param_of(mcp("kling-o1-image-to-video", json!({"duration": 5}))), "image_urls");
}

#[test]
fn generate_audio_must_be_a_bool_and_agree_with_sound() {
    let b = |f: Value| mcp("kling-v3-text-to-video", f);
    assert_eq!(param_of(b(json!({"generate_audio": "yes"}))), "generate_audio");
    assert_eq!(param_of(b(json!({"generate_audio": true, "sound": "off"}))), "generate_audio");
    assert_eq!(ok(&b(json!({"generate_audio": true, "sound": "on"}))).sound, Sound::On);
}

// ---------------------------------------------------------------- media for the gateway

#[test]
fn media_map_to_stored_references_naming_the_field_each_came_in() {
    let t = ok(&mcp("kling-v3-image-to-video", json!({"image_urls": [IMG, uri(&png(400, 400))]})));
    let mapped = t.try_map_media(|kind, param, m| {
        Ok::<_, String>(format!("{kind:?}:{param}:{}", matches!(m, MediaSource::Inline { .. })))
    });
    let mapped = mapped.unwrap();
    assert_eq!(mapped.image_start.as_deref(), Some("Image:image_urls[0]:false"));
    assert_eq!(mapped.image_end.as_deref(), Some("Image:image_urls[1]:true"));

    let t = ok(
        &json!({"model": "kling-o3-reference-to-video", "prompt": "p", "video_url": VID, "image_urls": [IMG, IMG2]}),
    );
    let seen: Vec<(MediaKind, String)> = t.media().into_iter().map(|(k, p, _)| (k, p)).collect();
    assert_eq!(
        seen,
        [
            (MediaKind::Image, "image_urls[0]".to_owned()),
            (MediaKind::Image, "image_urls[1]".to_owned()),
            (MediaKind::Video, "video_url".to_owned())
        ]
    );
    // The first failure stops the mapping and names its field.
    let e = t.try_map_media(|_, param, _| if param == "image_urls[1]" { Err(param.to_owned()) } else { Ok(()) });
    assert_eq!(e.err().as_deref(), Some("image_urls[1]"));
    let t = ok(&o1e("kling-o1-video-edit", json!({"image_urls": [IMG]})));
    let params: Vec<String> = t.media().into_iter().map(|(_, p, _)| p).collect();
    assert_eq!(params, ["image_urls[0]", "video_urls[0]"]);
    assert_eq!(t.input_videos().count(), 1);
}

/// What the gateway stored before this task type was generic (`StoredRequest`
/// with `ImageRef`), to show such rows still read.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredRef {
    File(String),
    Url(String),
}

#[test]
fn a_request_stored_before_the_catalog_reads_as_a_create_task() {
    let old = r#"{"model":"kling-v3-image-to-video","prompt":"p","negative_prompt":null,"image_start":{"file":"file-abc"},
        "image_end":null,"duration":5,"quality":"1080p","sound":"on","aspect_ratio":"16:9","multi_shot":{"customize":[{"index":1,"prompt":"a","duration":5}]},
        "element_ids":["el_1"],"watermark":true,"element":null}"#;
    let t: CreateTask<StoredRef> = serde_json::from_str(old).unwrap();
    assert_eq!(t.image_start, Some(StoredRef::File("file-abc".to_owned())));
    assert_eq!((t.duration, t.quality, t.sound, t.watermark), (Some(5), Quality::P1080, Sound::On, true));
    let element = r#"{"model":"kling-custom-element","prompt":null,"negative_prompt":null,"image_start":null,"image_end":null,"duration":5,
        "quality":"720p","sound":"off","aspect_ratio":"16:9","multi_shot":null,"element_ids":[],"watermark":false,
        "element":{"name":"cat","description":"a cat","frontal_image":{"url":"https://x.example/f.png"},"refer_images":[{"file":"file-1"}]}}"#;
    let t: CreateTask<StoredRef> = serde_json::from_str(element).unwrap();
    let e = t.element.unwrap();
    assert_eq!((e.reference_type, e.refer_images.len()), (ReferenceType::ImageRefer, 1));
    // And the new form round-trips.
    let t = ok(&o1e("kling-o1-video-edit", json!({"image_urls": [IMG]})));
    let back: CreateTask<MediaSource> = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
    assert_eq!(back, t);
}

#[test]
fn video_urls_are_urls_never_inline_data() {
    let e = fail(&o1e("kling-o1-video-edit", json!({"video_urls": ["data:video/mp4;base64,AAAA"]})));
    assert!(e.param == "video_urls[0]" && e.message.contains("/v1/files"), "{e}");
    let long = format!("https://cdn.example.com/{}.mp4", "v".repeat(2048));
    assert_eq!(param_of(o1e("kling-o1-video-edit", json!({"video_urls": [long]}))), "video_urls[0]");
    let link = "http://127.0.0.1:8080/files/file-abc?exp=9&sig=x";
    let trusted = ParseOptions { allow_private_urls: false, trust_file_links: true };
    let b = o1e("kling-o1-video-edit", json!({"video_urls": [link]}));
    assert!(super::tests::parse_create(&b, &trusted).is_ok());
    assert!(message_of(b).contains("https://"));
}

#[test]
fn motion_control_reference_and_edit_render_720p_or_1080p_only() {
    let q4k = |b: Value| with(b, "quality", json!("4k"));
    assert_eq!(param_of(q4k(motion(json!({"character_orientation": "image"})))), "quality");
    assert_eq!(param_of(q4k(o3r(json!({})))), "quality");
    let t = ok(&with(o3r(json!({"aspect_ratio": "9:16"})), "quality", json!("1080p")));
    assert_eq!((t.quality, t.aspect_ratio), (Quality::P1080, Some(AspectRatio::R9x16)));
    assert_eq!(param_of(o3r(json!({"aspect_ratio": "4:3"}))), "aspect_ratio");
    // Motion control's prompt is optional, and at most 2500 characters.
    assert!(ok(&motion(json!({"character_orientation": "image"}))).prompt.is_none());
    assert_eq!(
        param_of(with(motion(json!({"character_orientation": "image"})), "prompt", json!("x".repeat(2501)))),
        "prompt"
    );
}
