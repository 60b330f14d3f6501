//! Tests of the create rules of Kling 3.0 (the seed's models) and of the elements:
//! one per rule, each naming the field it refuses. `models.rs` has the other models.

use base64::Engine;
use serde_json::{Value, json};

use super::*;
use crate::addr::is_file_link;
use crate::catalog::{AspectRatio, ModelSpec, Quality, ReferenceType, Sound};
use crate::image::tests::{jpeg, jpeg_header, png, png_header};
use crate::image::{ImageFormat, ImageInfo, MAX_IMAGE_BYTES};

pub(super) fn parse_create(body: &Value, opts: &ParseOptions) -> Result<CreateTask<MediaSource>, FieldError> {
    crate::catalog::tests::builtin().parse_create(body, opts)
}

pub(super) fn spec(id: &str) -> &'static ModelSpec {
    crate::catalog::tests::builtin().get(id).unwrap()
}

/// The price held at create for a task billed by its request.
fn price(t: &CreateTask<MediaSource>) -> i64 {
    t.price(spec(t.model.as_str())).unwrap().units()
}

pub(super) fn uri(bytes: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn i2v() -> Value {
    json!({"model": "kling-v3-image-to-video", "prompt": "p", "image_start": uri(&png(400, 400))})
}

pub(super) fn param_of(body: Value) -> String {
    match parse_create(&body, &ParseOptions::default()) {
        Ok(_) => "<ok>".to_owned(),
        Err(e) => e.param,
    }
}

pub(super) fn with(mut base: Value, key: &str, v: Value) -> Value {
    base[key] = v;
    base
}

#[test]
fn a_minimal_image_to_video_request_takes_the_defaults() {
    let t = parse_create(&i2v(), &ParseOptions::default());
    let t = match t {
        Ok(t) => t,
        Err(e) => unreachable!("{e}"),
    };
    assert_eq!((t.duration, t.quality, t.sound, t.watermark), (Some(5), Quality::P720, Sound::Off, false));
    assert_eq!(price(&t), 270_000);
    assert!(matches!(t.image_start, Some(MediaSource::Inline { .. })));
}

#[test]
fn each_rule_names_its_field() {
    let img = uri(&png(400, 400));
    let cases: Vec<(Value, &str)> = vec![
        (json!(1), "body"),
        (json!({}), "model"),
        (json!({"model": "x"}), "model"),
        (with(i2v(), "prompt", json!("x".repeat(2501))), "prompt"),
        (with(i2v(), "negative_prompt", json!(3)), "negative_prompt"),
        (with(i2v(), "image_start", json!(null)), "image_start"),
        (with(i2v(), "image_start", json!("http://example.com/a.png")), "image_start"),
        (with(i2v(), "image_start", json!("https://10.0.0.1/a.png")), "image_start"),
        (with(i2v(), "image_start", json!(uri(&png_header(299, 400)))), "image_start"),
        (with(i2v(), "image_start", json!(uri(&png_header(751, 300)))), "image_start"),
        (with(i2v(), "image_start", json!(uri(b"GIF89a...."))), "image_start"),
        (with(i2v(), "image_end", json!(uri(&png_header(10, 10)))), "image_end"),
        (with(i2v(), "duration", json!(2)), "duration"),
        (with(i2v(), "duration", json!(16)), "duration"),
        (with(i2v(), "duration", json!(4.5)), "duration"),
        (with(i2v(), "duration", json!(-3)), "duration"),
        (with(i2v(), "quality", json!("480p")), "quality"),
        (with(i2v(), "sound", json!("loud")), "sound"),
        (with(i2v(), "callback_url", json!("http://x.example/cb")), "callback_url"),
        (with(i2v(), "callback_url", json!("https://user:pw@x.example/cb")), "callback_url"),
        (with(i2v(), "callback_url", json!("https://[fd00::1]/cb")), "callback_url"),
        (with(i2v(), "callback_url", json!("https://0x7f.1/cb")), "callback_url"),
        (with(i2v(), "prompt", json!("see <<<element_1>>>")), "prompt"),
        (
            with(
                i2v(),
                "model_params",
                json!({"multi_shot": true, "shot_type": "customize", "multi_prompt": [{"index": 2, "prompt": "a", "duration": "5"}]}),
            ),
            "model_params.multi_prompt[0].index",
        ),
        (
            with(
                i2v(),
                "model_params",
                json!({"multi_shot": true, "shot_type": "customize", "multi_prompt": [{"index": 1, "prompt": "a", "duration": 5}]}),
            ),
            "model_params.multi_prompt[0].duration",
        ),
        (
            with(
                i2v(),
                "model_params",
                json!({"multi_shot": true, "shot_type": "customize", "multi_prompt": [{"index": 1, "prompt": "", "duration": "5"}]}),
            ),
            "model_params.multi_prompt[0].prompt",
        ),
        (
            with(i2v(), "model_params", json!({"element_list": [{"element_id": ""}]})),
            "model_params.element_list[0].element_id",
        ),
        (with(i2v(), "model_params", json!({"watermark_info": true})), "model_params.watermark_info"),
        (with(i2v(), "model_params", json!(5)), "model_params"),
        (json!({"model": "kling-v3-text-to-video", "prompt": "p", "image_end": img}), "image_end"),
        (
            json!({"model": "kling-v3-text-to-video", "prompt": "p", "model_params": {"element_list": []}}),
            "model_params.element_list",
        ),
        (json!({"model": "kling-v3-text-to-video", "prompt": "  "}), "prompt"),
    ];
    for (body, param) in cases {
        assert_eq!(param_of(body.clone()), param, "{body}");
    }
}

#[test]
fn customised_shots_must_add_up_and_replace_the_prompt() {
    let body = with(
        i2v(),
        "model_params",
        json!({"multi_shot": true, "shot_type": "customize", "multi_prompt": [
            {"index": 1, "prompt": "zoom in", "duration": "2"},
            {"index": 2, "prompt": "pan left", "duration": "3"}]}),
    );
    let t = parse_create(&body, &ParseOptions::default()).map_err(|e| e.to_string());
    assert!(
        matches!(&t, Ok(t) if t.prompt.is_none() && matches!(&t.multi_shot, Some(MultiShot::Customize(s)) if s.len() == 2)),
        "{t:?}"
    );
    let bad = with(body.clone(), "duration", json!(6));
    assert_eq!(param_of(bad), "model_params.multi_prompt");
    let t2v = json!({"model": "kling-v3-text-to-video", "duration": 5, "model_params": body["model_params"].clone()});
    assert_eq!(param_of(t2v), "<ok>");
}

#[test]
fn private_urls_are_allowed_only_when_configured() {
    let body = with(i2v(), "image_start", json!("http://127.0.0.1:9000/a.png"));
    assert_eq!(param_of(body.clone()), "image_start");
    let opts = ParseOptions { allow_private_urls: true, trust_file_links: false };
    assert!(parse_create(&body, &opts).is_ok());
}

#[test]
fn jpeg_inline_images_are_accepted() {
    let body = with(
        i2v(),
        "image_start",
        json!(format!("data:image/jpeg;base64,{}", base64::engine::general_purpose::STANDARD.encode(jpeg(800, 600)))),
    );
    assert_eq!(param_of(body), "<ok>");
}

#[test]
fn custom_elements_are_validated() {
    let img = uri(&png(400, 400));
    let ok = json!({"model": "kling-custom-element", "model_params": {"element_name": "cat", "element_description": "a cat",
        "element_image_list": {"frontal_image": img, "refer_images": [{"image_url": img}]}}});
    let t = parse_create(&ok, &ParseOptions::default()).map_err(|e| e.to_string());
    assert!(matches!(&t, Ok(t) if price(t) == 10_000 && spec(t.model.as_str()).video_seconds(t, None) == 0), "{t:?}");
    let mut bad = ok.clone();
    bad["model_params"]["element_image_list"]["refer_images"] =
        json!([{"image_url": img}, {"image_url": img}, {"image_url": img}, {"image_url": img}]);
    assert_eq!(param_of(bad), "model_params.element_image_list.refer_images");
    let mut bad = ok.clone();
    bad["model_params"]["element_image_list"]["refer_images"] = json!([{"image_url": "ftp://x"}]);
    assert_eq!(param_of(bad), "model_params.element_image_list.refer_images[0].image_url");
}

#[test]
fn a_create_task_round_trips_through_json() {
    let t = parse_create(&i2v(), &ParseOptions::default()).unwrap();
    let back: CreateTask<MediaSource> = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
    assert_eq!(back, t);
}

// ---- one test per rule -------------------------------------------------------

fn t2v() -> Value {
    json!({"model": "kling-v3-text-to-video", "prompt": "a red fox in snow"})
}

fn element() -> Value {
    let img = uri(&png(400, 400));
    json!({"model": "kling-custom-element", "model_params": {"element_name": "cat", "element_description": "a grey cat",
        "element_image_list": {"frontal_image": img, "refer_images": [{"image_url": "https://cdn.example.com/cat2.jpg"}]}}})
}

pub(super) fn ok(body: &Value) -> CreateTask<MediaSource> {
    match parse_create(body, &ParseOptions::default()) {
        Ok(t) => t,
        Err(e) => unreachable!("expected success for {body}: {e}"),
    }
}

pub(super) fn fail(body: &Value) -> FieldError {
    match parse_create(body, &ParseOptions::default()) {
        Ok(t) => unreachable!("expected an error for {body}, got {t:?}"),
        Err(e) => e,
    }
}

const DEV: ParseOptions = ParseOptions { allow_private_urls: true, trust_file_links: false };

#[test]
fn file_links_skip_address_checks_only_when_trusted() {
    let link = "http://127.0.0.1:8080/files/file-abc123?exp=99&sig=xyz";
    assert!(is_file_link(link));
    assert!(!is_file_link("http://127.0.0.1/files/file-../x?exp=1&sig=2"));
    let body = with(i2v(), "image_start", json!(link));
    assert_eq!(param_of(body.clone()), "image_start");
    let opts = ParseOptions { allow_private_urls: false, trust_file_links: true };
    assert!(parse_create(&body, &opts).is_ok());
}

pub(super) fn params(base: Value, p: Value) -> Value {
    with(base, "model_params", p)
}

pub(super) fn shots(items: &[(u32, &str, &str)]) -> Value {
    Value::Array(items.iter().map(|(i, p, d)| json!({"index": i, "prompt": p, "duration": d})).collect())
}

#[test]
fn the_body_must_be_a_json_object() {
    for b in [json!([]), json!("x"), json!(null), json!(5)] {
        let e = fail(&b);
        assert_eq!(e.param, "body");
        assert!(e.message.contains("JSON object"), "{e}");
    }
}

#[test]
fn model_is_required_and_must_be_in_the_catalog() {
    assert_eq!(fail(&json!({"prompt": "p"})).param, "model");
    assert_eq!(fail(&json!({"model": null})).param, "model");
    assert_eq!(fail(&json!({"model": 7})).param, "model");
    let e = fail(&json!({"model": "kling-v2-master"}));
    assert!(e.param == "model" && e.message.contains("kling-v3-image-to-video"), "{e}");
}

#[test]
fn unknown_fields_are_ignored() {
    let mut b = with(i2v(), "seed", json!(42));
    b["model_params"] = json!({"cfg_scale": 0.5, "mode": "pro"});
    assert_eq!(ok(&b).model, "kling-v3-image-to-video");
}

#[test]
fn prompt_is_limited_to_2500_characters_not_bytes() {
    let t = ok(&with(i2v(), "prompt", json!("é".repeat(2500))));
    assert_eq!(t.prompt.map(|p| p.chars().count()), Some(2500));
    let e = fail(&with(i2v(), "prompt", json!("é".repeat(2501))));
    assert!(e.param == "prompt" && e.message.contains("2500"), "{e}");
    assert_eq!(fail(&with(i2v(), "prompt", json!(["a"]))).param, "prompt");
    assert_eq!(ok(&with(i2v(), "prompt", json!(null))).prompt, None);
}

#[test]
fn negative_prompt_is_limited_to_2500_characters() {
    assert_eq!(ok(&with(i2v(), "negative_prompt", json!("blur"))).negative_prompt.as_deref(), Some("blur"));
    assert_eq!(fail(&with(i2v(), "negative_prompt", json!("n".repeat(2501)))).param, "negative_prompt");
    assert_eq!(fail(&with(t2v(), "negative_prompt", json!(false))).param, "negative_prompt");
}

#[test]
fn image_to_video_requires_image_start() {
    let mut b = i2v();
    b.as_object_mut().map(|o| o.remove("image_start"));
    let e = fail(&b);
    assert!(e.param == "image_start" && e.message.contains("required"), "{e}");
    assert_eq!(fail(&with(i2v(), "image_start", json!(12))).param, "image_start");
    assert_eq!(fail(&with(i2v(), "image_start", json!(""))).param, "image_start");
}

#[test]
fn text_to_video_refuses_images_and_elements() {
    let img = uri(&png(400, 400));
    assert_eq!(fail(&with(t2v(), "image_start", json!(img))).param, "image_start");
    assert_eq!(fail(&with(t2v(), "image_end", json!(img))).param, "image_end");
    let e = fail(&params(t2v(), json!({"element_list": [{"element_id": "el_1"}]})));
    assert_eq!(e.param, "model_params.element_list");
    // Explicit nulls are the same as absent.
    assert!(ok(&with(t2v(), "image_start", json!(null))).image_start.is_none());
}

#[test]
fn text_to_video_requires_a_prompt() {
    let mut b = t2v();
    b.as_object_mut().map(|o| o.remove("prompt"));
    assert_eq!(fail(&b).param, "prompt");
    assert_eq!(fail(&with(t2v(), "prompt", json!(""))).param, "prompt");
    // Intelligent multi-shot still needs the prompt to work from.
    let b = params(with(t2v(), "prompt", json!(null)), json!({"multi_shot": true, "shot_type": "intelligence"}));
    assert_eq!(fail(&b).param, "prompt");
}

#[test]
fn image_end_follows_the_image_rules_and_is_optional() {
    let t = ok(&with(i2v(), "image_end", json!(uri(&png(500, 400)))));
    assert!(matches!(t.image_end, Some(MediaSource::Inline { info: ImageInfo { width: 500, .. }, .. })));
    let e = fail(&with(i2v(), "image_end", json!(uri(&png_header(1000, 300)))));
    assert!(e.param == "image_end" && e.message.contains("aspect"), "{e}");
}

#[test]
fn image_end_is_refused_with_multi_shot() {
    let b = params(
        with(i2v(), "image_end", json!(uri(&png(400, 400)))),
        json!({"multi_shot": true, "shot_type": "intelligence"}),
    );
    let e = fail(&b);
    assert!(e.param == "image_end" && e.message.contains("multi_shot"), "{e}");
    let b = params(with(i2v(), "image_end", json!(uri(&png(400, 400)))), json!({"multi_shot": false}));
    assert!(ok(&b).image_end.is_some());
}

#[test]
fn duration_is_an_integer_from_3_to_15_defaulting_to_5() {
    assert_eq!(ok(&i2v()).duration, Some(5));
    assert_eq!(ok(&with(i2v(), "duration", json!(null))).duration, Some(5));
    assert_eq!(ok(&with(i2v(), "duration", json!(3))).duration, Some(3));
    assert_eq!(ok(&with(i2v(), "duration", json!(15))).duration, Some(15));
    for bad in [
        json!(2),
        json!(16),
        json!(0),
        json!(-5),
        json!(5.5),
        json!(5.0),
        json!("5"),
        json!(true),
        json!(1e20),
        json!([5]),
    ] {
        let e = fail(&with(i2v(), "duration", bad.clone()));
        assert!(e.param == "duration" && e.message.contains("3 to 15"), "{bad}: {e}");
    }
}

#[test]
fn quality_and_sound_are_enums_with_defaults() {
    let t = ok(&with(with(i2v(), "quality", json!("1080p")), "sound", json!("on")));
    assert_eq!((t.quality, t.sound), (Quality::P1080, Sound::On));
    for (field, bad) in [
        ("quality", json!("480p")),
        ("quality", json!(1080)),
        ("quality", json!("1080P")),
        ("sound", json!(true)),
        ("sound", json!("yes")),
    ] {
        assert_eq!(fail(&with(i2v(), field, bad.clone())).param, field, "{bad}");
    }
}

#[test]
fn aspect_ratio_is_for_text_to_video_only() {
    assert_eq!(ok(&t2v()).aspect_ratio, Some(AspectRatio::R16x9));
    assert_eq!(ok(&with(t2v(), "aspect_ratio", json!("9:16"))).aspect_ratio, Some(AspectRatio::R9x16));
    assert_eq!(ok(&with(t2v(), "aspect_ratio", json!("1:1"))).aspect_ratio, Some(AspectRatio::R1x1));
    assert_eq!(fail(&with(t2v(), "aspect_ratio", json!("4:3"))).param, "aspect_ratio");
    assert_eq!(fail(&with(t2v(), "aspect_ratio", json!(1.77))).param, "aspect_ratio");
    // Image-to-video follows its image: the field is ignored.
    assert_eq!(ok(&with(i2v(), "aspect_ratio", json!("4:3"))).aspect_ratio, None);
}

#[test]
fn callback_url_must_be_public_https() {
    let good = "https://hooks.example.com/vidgate?x=1";
    assert_eq!(ok(&with(i2v(), "callback_url", json!(good))).callback_url.as_deref(), Some(good));
    let long = format!("https://hooks.example.com/{}", "a".repeat(2048));
    for bad in [
        json!("http://hooks.example.com/cb"),
        json!("ftp://hooks.example.com/cb"),
        json!("not a url"),
        json!("https://"),
        json!("https://user:pw@hooks.example.com/cb"),
        json!("https://user@hooks.example.com/cb"),
        json!("https://127.0.0.1/cb"),
        json!("https://169.254.169.254/latest/meta-data"),
        json!("https://[::1]/cb"),
        json!("https://[::ffff:10.0.0.1]/cb"),
        json!("https://2130706433/cb"),
        json!("https://localhost/cb"),
        json!("https://x.localhost./cb"),
        json!(long),
        json!(42),
    ] {
        assert_eq!(fail(&with(i2v(), "callback_url", bad.clone())).param, "callback_url", "{bad}");
    }
    // Private literal hosts are the gateway's DNS job for names, ours for IPs.
    assert!(ok(&with(i2v(), "callback_url", json!("https://internal.corp.example/cb"))).callback_url.is_some());
}

#[test]
fn callback_url_may_be_private_http_in_development() {
    for u in ["http://127.0.0.1:8080/cb", "http://localhost:3000/cb", "https://10.0.0.5/cb"] {
        let t = parse_create(&with(i2v(), "callback_url", json!(u)), &DEV);
        assert!(matches!(&t, Ok(t) if t.callback_url.as_deref() == Some(u)), "{u}: {t:?}");
    }
    // Still no credentials and no other schemes.
    let e = parse_create(&with(i2v(), "callback_url", json!("http://a:b@127.0.0.1/")), &DEV).map(|_| ());
    assert_eq!(e.map_err(|e| e.param), Err("callback_url".to_owned()));
    let e = parse_create(&with(i2v(), "callback_url", json!("file:///etc/passwd")), &DEV).map(|_| ());
    assert_eq!(e.map_err(|e| e.param), Err("callback_url".to_owned()));
}

#[test]
fn image_urls_must_be_public_https() {
    let t = ok(&with(i2v(), "image_start", json!("https://cdn.example.com/a.png")));
    assert_eq!(t.image_start, Some(MediaSource::Url("https://cdn.example.com/a.png".to_owned())));
    let long = format!("https://cdn.example.com/{}.png", "a".repeat(2048));
    for bad in [
        "http://cdn.example.com/a.png",
        "ftp://cdn.example.com/a.png",
        "file:///etc/passwd",
        "https://192.168.1.10/a.png",
        "https://[fe80::1]/a.png",
        "https://0x7f.1/a.png",
        "https://localhost/a.png",
        "https://u:p@cdn.example.com/a.png",
        "/relative/a.png",
        &long,
    ] {
        assert_eq!(fail(&with(i2v(), "image_start", json!(bad))).param, "image_start", "{bad}");
    }
    let t = parse_create(&with(i2v(), "image_start", json!("http://127.0.0.1:9000/a.png")), &DEV);
    assert!(matches!(t, Ok(CreateTask { image_start: Some(MediaSource::Url(_)), .. })));
}

#[test]
fn data_uris_are_decoded_and_checked_by_content() {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let png = png(400, 300);
    for prefix in
        ["data:image/png;base64,", "data:image/jpeg;base64,", "data:image/jpg;base64,", "data:IMAGE/PNG;base64,"]
    {
        let t = ok(&with(i2v(), "image_start", json!(format!("{prefix}{}", b64(&png)))));
        assert!(
            matches!(&t.image_start, Some(MediaSource::Inline { bytes, info }) if *bytes == png && info.format == ImageFormat::Png),
            "{prefix}"
        );
    }
    // The declared type does not matter, the bytes do: a GIF labelled PNG is refused.
    let mut gif = b"GIF87a".to_vec();
    gif.extend_from_slice(&[0x90, 0x01, 0x90, 0x01, 0, 0, 0]);
    let e = fail(&with(i2v(), "image_start", json!(format!("data:image/png;base64,{}", b64(&gif)))));
    assert!(e.param == "image_start" && e.message.contains("JPG or PNG"), "{e}");
    for bad in [
        format!("data:image/gif;base64,{}", b64(&gif)),
        format!("data:image/webp;base64,{}", b64(&png)),
        format!("data:image/png,{}", b64(&png)),
        "data:image/png;base64".to_owned(),
        "data:image/png;base64,@@@notbase64@@@".to_owned(),
        "data:image/png;base64,".to_owned(),
    ] {
        assert_eq!(fail(&with(i2v(), "image_start", json!(bad.clone()))).param, "image_start", "{bad}");
    }
    // Unpadded base64, as some clients send it.
    let unpadded = b64(&png).trim_end_matches('=').to_owned();
    assert!(ok(&with(i2v(), "image_start", json!(format!("data:image/png;base64,{unpadded}")))).image_start.is_some());
}

#[test]
fn inline_image_rules_name_the_field() {
    for (img, what) in [
        (png_header(299, 400), "300"),
        (png_header(400, 299), "300"),
        (png_header(751, 300), "aspect"),
        (jpeg_header(300, 751), "aspect"),
        (png_header(20_000, 20_000), "megapixels"),
    ] {
        let e = fail(&with(i2v(), "image_start", json!(uri(&img))));
        assert!(e.param == "image_start" && e.message.contains(what), "{e}");
    }
    assert!(ok(&with(i2v(), "image_start", json!(uri(&png(750, 300))))).image_start.is_some());
}

#[test]
fn oversized_data_uris_are_refused_before_decoding() {
    // 14 M base64 characters would decode to more than 10 MB; the length alone decides.
    let huge = format!("data:image/png;base64,{}", "A".repeat(14 * 1024 * 1024 + 8));
    let e = fail(&with(i2v(), "image_start", json!(huge)));
    assert!(e.param == "image_start" && e.message.contains("10 MB"), "{e}");
    // A valid image padded to just over 10 MB decodes but is refused on size.
    let mut big = png(400, 400);
    big.resize(MAX_IMAGE_BYTES + 1, 0);
    let e = fail(&with(i2v(), "image_start", json!(uri(&big))));
    assert!(e.param == "image_start" && e.message.contains("10 MB"), "{e}");
}

#[test]
fn multi_shot_must_be_a_bool_and_needs_a_shot_type() {
    assert_eq!(fail(&params(i2v(), json!({"multi_shot": "true"}))).param, "model_params.multi_shot");
    assert_eq!(fail(&params(i2v(), json!({"multi_shot": true}))).param, "model_params.shot_type");
    assert_eq!(fail(&params(i2v(), json!({"multi_shot": true, "shot_type": "auto"}))).param, "model_params.shot_type");
    assert!(ok(&params(i2v(), json!({"multi_shot": false, "shot_type": "auto"}))).multi_shot.is_none());
    let t = ok(&params(i2v(), json!({"multi_shot": true, "shot_type": "intelligence"})));
    assert_eq!((t.multi_shot, t.prompt.as_deref()), (Some(MultiShot::Intelligence), Some("p")));
}

#[test]
fn customised_shots_need_a_multi_prompt_of_1_to_6_items() {
    let base = |mp: Value| params(i2v(), json!({"multi_shot": true, "shot_type": "customize", "multi_prompt": mp}));
    let e = fail(&params(i2v(), json!({"multi_shot": true, "shot_type": "customize"})));
    assert!(e.param == "model_params.multi_prompt" && e.message.contains("required"), "{e}");
    assert_eq!(fail(&base(json!("shot"))).param, "model_params.multi_prompt");
    assert_eq!(fail(&base(json!([]))).param, "model_params.multi_prompt");
    let seven: Vec<(u32, &str, &str)> = (1..=7).map(|i| (i, "x", "1")).collect();
    assert_eq!(fail(&with(base(shots(&seven)), "duration", json!(7))).param, "model_params.multi_prompt");
    let six: Vec<(u32, &str, &str)> = (1..=6).map(|i| (i, "x", if i == 1 { "5" } else { "2" })).collect();
    let t = ok(&with(base(shots(&six)), "duration", json!(15)));
    assert!(matches!(&t.multi_shot, Some(MultiShot::Customize(s)) if s.len() == 6 && s[0].duration == 5));
    assert_eq!(fail(&base(json!(["shot one"]))).param, "model_params.multi_prompt[0]");
}

#[test]
fn each_shot_is_checked_field_by_field() {
    let base = |mp: Value| params(i2v(), json!({"multi_shot": true, "shot_type": "customize", "multi_prompt": mp}));
    let long = "s".repeat(513);
    let cases: Vec<(Value, &str)> = vec![
        (shots(&[(1, "a", "2"), (1, "b", "3")]), "model_params.multi_prompt[1].index"),
        (shots(&[(0, "a", "5")]), "model_params.multi_prompt[0].index"),
        (shots(&[(2, "a", "2"), (1, "b", "3")]), "model_params.multi_prompt[0].index"),
        (json!([{"index": "1", "prompt": "a", "duration": "5"}]), "model_params.multi_prompt[0].index"),
        (json!([{"index": 1.5, "prompt": "a", "duration": "5"}]), "model_params.multi_prompt[0].index"),
        (json!([{"prompt": "a", "duration": "5"}]), "model_params.multi_prompt[0].index"),
        (shots(&[(1, "a", "2"), (2, "", "3")]), "model_params.multi_prompt[1].prompt"),
        (json!([{"index": 1, "duration": "5"}]), "model_params.multi_prompt[0].prompt"),
        (shots(&[(1, &long, "5")]), "model_params.multi_prompt[0].prompt"),
        (shots(&[(1, "a", "2"), (2, "b", "x")]), "model_params.multi_prompt[1].duration"),
        (shots(&[(1, "a", "0"), (2, "b", "5")]), "model_params.multi_prompt[0].duration"),
        (shots(&[(1, "a", "-1")]), "model_params.multi_prompt[0].duration"),
        (shots(&[(1, "a", "2.5")]), "model_params.multi_prompt[0].duration"),
        (shots(&[(1, "a", "4294967295"), (2, "b", "4294967295")]), "model_params.multi_prompt[0].duration"),
        (json!([{"index": 1, "prompt": "a", "duration": 5}]), "model_params.multi_prompt[0].duration"),
    ];
    for (mp, param) in cases {
        assert_eq!(fail(&base(mp.clone())).param, param, "{mp}");
    }
    // 512 characters (not bytes) is the limit.
    let ok512 = "ü".repeat(512);
    assert!(ok(&base(shots(&[(1, &ok512, "5")]))).multi_shot.is_some());
}

#[test]
fn shot_durations_must_add_up_to_duration() {
    let b = params(
        i2v(),
        json!({"multi_shot": true, "shot_type": "customize", "multi_prompt": shots(&[(1, "a", "4"), (2, "b", "4")])}),
    );
    let e = fail(&b);
    assert!(e.param == "model_params.multi_prompt" && e.message.contains("8") && e.message.contains("5"), "{e}");
    let t = ok(&with(b, "duration", json!(8)));
    assert_eq!((t.duration, price(&t)), (Some(8), 8 * 54_000));
}

#[test]
fn customised_shots_replace_the_prompt_even_for_text_to_video() {
    let mp = json!({"multi_shot": true, "shot_type": "customize", "multi_prompt": shots(&[(1, "sunrise", "3"), (2, "noon", "2")])});
    let t = ok(&params(json!({"model": "kling-v3-text-to-video"}), mp.clone()));
    assert_eq!(t.prompt, None);
    let t = ok(&params(t2v(), mp));
    assert_eq!(t.prompt, None);
    assert_eq!(
        t.multi_shot,
        Some(MultiShot::Customize(vec![
            ShotPrompt { index: 1, prompt: "sunrise".to_owned(), duration: 3 },
            ShotPrompt { index: 2, prompt: "noon".to_owned(), duration: 2 },
        ]))
    );
}

#[test]
fn element_list_takes_up_to_three_ids() {
    let t =
        ok(&params(i2v(), json!({"element_list": [{"element_id": "a"}, {"element_id": "b"}, {"element_id": "c"}]})));
    assert_eq!(t.element_ids, ["a", "b", "c"]);
    let four =
        json!({"element_list": [{"element_id": "a"}, {"element_id": "b"}, {"element_id": "c"}, {"element_id": "d"}]});
    assert_eq!(fail(&params(i2v(), four)).param, "model_params.element_list");
    assert_eq!(fail(&params(i2v(), json!({"element_list": "a"}))).param, "model_params.element_list");
    assert_eq!(
        fail(&params(i2v(), json!({"element_list": [{"id": "a"}]}))).param,
        "model_params.element_list[0].element_id"
    );
    assert_eq!(
        fail(&params(i2v(), json!({"element_list": [{"element_id": "a"}, {"element_id": 2}]}))).param,
        "model_params.element_list[1].element_id"
    );
    assert_eq!(fail(&params(i2v(), json!({"element_list": ["a"]}))).param, "model_params.element_list[0].element_id");
    let long = "e".repeat(129);
    let e = fail(&params(i2v(), json!({"element_list": [{"element_id": long}]})));
    assert!(e.message.contains("128"), "{e}");
}

#[test]
fn element_references_in_prompts_must_name_a_listed_element() {
    let two = json!({"element_list": [{"element_id": "a"}, {"element_id": "b"}]});
    assert!(
        ok(&params(with(i2v(), "prompt", json!("<<<element_1>>> hugs <<<element_2>>>")), two.clone())).prompt.is_some()
    );
    for bad in [
        "<<<element_3>>> waves",
        "<<<element_0>>>",
        "<<<element_x>>>",
        "<<<element_4>>>",
        "a <<<element_1>>> b <<<element_9>>>",
    ] {
        let e = fail(&params(with(i2v(), "prompt", json!(bad)), two.clone()));
        assert_eq!(e.param, "prompt", "{bad}");
    }
    assert_eq!(fail(&with(t2v(), "prompt", json!("<<<element_1>>> dances"))).param, "prompt");
    let mp = json!({"element_list": [{"element_id": "a"}], "multi_shot": true, "shot_type": "customize",
        "multi_prompt": [{"index": 1, "prompt": "<<<element_1>>> sits", "duration": "2"}, {"index": 2, "prompt": "<<<element_2>>> runs", "duration": "3"}]});
    assert_eq!(fail(&params(i2v(), mp)).param, "model_params.multi_prompt[1].prompt");
}

#[test]
fn watermark_info_enabled_is_a_bool() {
    assert!(ok(&params(i2v(), json!({"watermark_info": {"enabled": true}}))).watermark);
    assert!(!ok(&params(i2v(), json!({"watermark_info": {}}))).watermark);
    assert!(!ok(&params(t2v(), json!({"watermark_info": {"enabled": false}}))).watermark);
    assert_eq!(
        fail(&params(i2v(), json!({"watermark_info": {"enabled": "yes"}}))).param,
        "model_params.watermark_info.enabled"
    );
    assert_eq!(fail(&params(i2v(), json!({"watermark_info": [true]}))).param, "model_params.watermark_info");
}

#[test]
fn model_params_must_be_an_object() {
    assert_eq!(fail(&params(i2v(), json!([]))).param, "model_params");
    assert_eq!(fail(&params(element(), json!("x"))).param, "model_params");
    assert!(ok(&params(i2v(), json!(null))).multi_shot.is_none());
}

#[test]
fn prices_follow_the_catalog() {
    let t = ok(&with(with(with(i2v(), "quality", json!("1080p")), "sound", json!("on")), "duration", json!(10)));
    let s = spec("kling-v3-image-to-video");
    assert_eq!((price(&t), s.hold_seconds(&t, None), s.video_seconds(&t, None)), (1_080_000, Some(10), 10));
    let t = ok(&with(with(t2v(), "quality", json!("1080p")), "duration", json!(3)));
    assert_eq!((price(&t), spec("kling-v3-text-to-video").hold_seconds(&t, None)), (215_946, Some(3)));
}

#[test]
fn a_custom_element_needs_name_description_and_images() {
    let t = ok(&element());
    let el = match &t.element {
        Some(el) => el,
        None => unreachable!("no element"),
    };
    assert_eq!((el.name.as_str(), el.description.as_str(), el.refer_images.len()), ("cat", "a grey cat", 1));
    assert!(matches!(el.frontal_image, Some(MediaSource::Inline { .. })));
    let s = spec("kling-custom-element");
    assert_eq!((price(&t), s.hold_seconds(&t, None), s.video_seconds(&t, None)), (10_000, Some(0), 0));
    assert_eq!((t.duration, t.quality, t.sound, t.prompt.as_ref()), (None, Quality::P720, Sound::Off, None));

    let set = |path: &[&str], v: Value| {
        let mut b = element();
        let mut cur = &mut b["model_params"];
        for k in &path[..path.len() - 1] {
            cur = &mut cur[*k];
        }
        match v {
            Value::Null => {
                cur.as_object_mut().map(|o| o.remove(path[path.len() - 1]));
            }
            v => cur[path[path.len() - 1]] = v,
        }
        b
    };
    let img = uri(&png(400, 400));
    let cases: Vec<(Value, &str)> = vec![
        (set(&["element_name"], Value::Null), "model_params.element_name"),
        (set(&["element_name"], json!("")), "model_params.element_name"),
        (set(&["element_name"], json!(3)), "model_params.element_name"),
        (set(&["element_name"], json!("n".repeat(21))), "model_params.element_name"),
        (set(&["element_description"], Value::Null), "model_params.element_description"),
        (set(&["element_description"], json!("d".repeat(101))), "model_params.element_description"),
        (set(&["reference_type"], json!("sketch_refer")), "model_params.reference_type"),
        (set(&["element_image_list"], Value::Null), "model_params.element_image_list"),
        (set(&["element_image_list"], json!([img])), "model_params.element_image_list"),
        (set(&["element_image_list", "frontal_image"], Value::Null), "model_params.element_image_list.frontal_image"),
        (
            set(&["element_image_list", "frontal_image"], json!(uri(&png_header(100, 100)))),
            "model_params.element_image_list.frontal_image",
        ),
        (
            set(&["element_image_list", "frontal_image"], json!("http://cdn.example.com/f.png")),
            "model_params.element_image_list.frontal_image",
        ),
        (set(&["element_image_list", "refer_images"], Value::Null), "model_params.element_image_list.refer_images"),
        (set(&["element_image_list", "refer_images"], json!([])), "model_params.element_image_list.refer_images"),
        (
            set(&["element_image_list", "refer_images"], json!({"image_url": img})),
            "model_params.element_image_list.refer_images",
        ),
        (
            set(&["element_image_list", "refer_images"], json!([{"url": img}])),
            "model_params.element_image_list.refer_images[0].image_url",
        ),
        (
            set(&["element_image_list", "refer_images"], json!([{"image_url": img}, {"image_url": uri(b"BM1234")}])),
            "model_params.element_image_list.refer_images[1].image_url",
        ),
        (with(element(), "callback_url", json!("http://x.example/")), "callback_url"),
        (json!({"model": "kling-custom-element"}), "model_params.element_name"),
    ];
    for (b, param) in cases {
        assert_eq!(param_of(b.clone()), param, "{b}");
    }
    // 20 and 100 characters, counted as characters.
    let t = ok(&set(&["element_name"], json!("猫".repeat(20))));
    assert_eq!(t.element.map(|e| e.name.chars().count()), Some(20));
    assert!(ok(&set(&["element_description"], json!("d".repeat(100)))).element.is_some());
    assert!(ok(&set(&["reference_type"], json!("image_refer"))).element.is_some());
    let three = json!([{"image_url": img}, {"image_url": img}, {"image_url": "https://cdn.example.com/3.png"}]);
    assert_eq!(ok(&set(&["element_image_list", "refer_images"], three)).element.map(|e| e.refer_images.len()), Some(3));
}

#[test]
fn a_custom_element_from_a_video_takes_one_video_and_an_optional_voice() {
    let body = json!({"model": "kling-custom-element", "model_params": {"element_name": "me", "element_description": "a person",
        "reference_type": "video_refer", "element_video_list": {"refer_videos": [{"video_url": "https://cdn.example.com/me.mp4"}]},
        "element_voice_id": "829824295735410756"}});
    let t = ok(&body);
    let e = t.element.as_ref().unwrap();
    assert_eq!(e.reference_type, ReferenceType::VideoRefer);
    assert_eq!(e.refer_video, Some(MediaSource::Url("https://cdn.example.com/me.mp4".to_owned())));
    assert_eq!((e.voice_id.as_deref(), e.frontal_image.is_none()), (Some("829824295735410756"), true));
    assert_eq!(
        t.media().iter().map(|(k, p, _)| (*k, p.clone())).collect::<Vec<_>>(),
        [(MediaKind::Video, "model_params.element_video_list.refer_videos[0].video_url".to_owned())]
    );
    // Without reference_type, the list given says which it is.
    let mut inferred = body.clone();
    inferred["model_params"].as_object_mut().unwrap().remove("reference_type");
    assert_eq!(ok(&inferred).element.map(|e| e.reference_type), Some(ReferenceType::VideoRefer));
    let mut b = element();
    b["model_params"]["reference_type"] = json!("video_refer");
    let e = fail(&b);
    assert!(e.param == "model_params.reference_type" && e.message.contains("element_video_list"), "{e}");
    for (mp, param) in [
        (json!({"element_video_list": {"refer_videos": []}}), "model_params.element_video_list.refer_videos"),
        (
            json!({"element_video_list": {"refer_videos": [{"video_url": "a"}, {"video_url": "b"}]}}),
            "model_params.element_video_list.refer_videos",
        ),
        (
            json!({"element_video_list": {"refer_videos": [{}]}}),
            "model_params.element_video_list.refer_videos[0].video_url",
        ),
        (
            json!({"element_video_list": {"refer_videos": [{"video_url": "http://10.0.0.1/v.mp4"}]}}),
            "model_params.element_video_list.refer_videos[0].video_url",
        ),
        (
            json!({"element_video_list": {"refer_videos": [{"video_url": "data:video/mp4;base64,AAAA"}]}}),
            "model_params.element_video_list.refer_videos[0].video_url",
        ),
        (json!({"element_video_list": "x"}), "model_params.element_video_list"),
        (json!({}), "model_params.element_video_list"),
    ] {
        let mut b = json!({"model": "kling-custom-element", "model_params": {"element_name": "me", "element_description": "d", "reference_type": "video_refer"}});
        for (k, v) in mp.as_object().unwrap() {
            b["model_params"][k] = v.clone();
        }
        assert_eq!(param_of(b.clone()), param, "{b}");
    }
    // A voice is only for a video element.
    let mut b = element();
    b["model_params"]["element_voice_id"] = json!("1");
    assert_eq!(param_of(b), "model_params.element_voice_id");
}

#[test]
fn a_task_turned_back_into_its_documented_body_parses_to_the_same_task() {
    let full_i2v = json!({"model": "kling-v3-image-to-video", "prompt": "<<<element_1>>> walks", "negative_prompt": "blur",
        "image_start": "https://cdn.example.com/a.png", "image_end": uri(&jpeg(640, 480)), "duration": 7,
        "quality": "1080p", "sound": "on", "callback_url": "https://hooks.example.com/cb",
        "model_params": {"element_list": [{"element_id": "el_9"}], "watermark_info": {"enabled": true}}});
    let t2v_shots = params(
        t2v(),
        json!({"multi_shot": true, "shot_type": "customize", "multi_prompt": shots(&[(1, "a", "3"), (2, "b", "2")])}),
    );
    let t2v_plain = with(t2v(), "aspect_ratio", json!("9:16"));
    let video_element = json!({"model": "kling-custom-element", "model_params": {"element_name": "me", "element_description": "a person",
        "reference_type": "video_refer", "element_video_list": {"refer_videos": [{"video_url": "https://cdn.example.com/me.mp4"}]},
        "element_voice_id": "42"}});
    let examples: Value = serde_json::from_str(include_str!("../catalog/evolink_examples.json")).unwrap();
    let mut bodies = vec![full_i2v, t2v_shots, t2v_plain, element(), i2v(), video_element];
    bodies.extend(examples["examples"].as_object().unwrap().values().cloned());
    for body in bodies {
        let t = ok(&body);
        let spec = spec(t.model.as_str());
        let strings = t.clone().try_map_media(|_, _, m| Ok::<_, ()>(m.to_wire_string())).unwrap();
        let wire = strings.to_wire(spec);
        assert_eq!(parse_create(&wire, &ParseOptions::default()).as_ref(), Ok(&t), "{body}\n-> {wire}");
    }
    // Image to video sends no aspect ratio; an element sends no duration.
    let to_wire = |b: &Value| {
        let t = ok(b).try_map_media(|_, _, m| Ok::<_, ()>(m.to_wire_string())).unwrap();
        t.to_wire(spec(t.model.as_str()))
    };
    let v = to_wire(&i2v());
    assert!(v.get("aspect_ratio").is_none() && v.get("model_params").is_none() && v["duration"] == json!(5), "{v}");
    let v = to_wire(&element());
    assert!(v.get("duration").is_none() && v["model_params"]["reference_type"] == json!("image_refer"), "{v}");
}

#[test]
fn field_errors_display_their_path() {
    let e = FieldError::new("model_params.multi_prompt[1].duration", "bad");
    assert_eq!(e.to_string(), "model_params.multi_prompt[1].duration: bad");
}
