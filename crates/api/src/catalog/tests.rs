//! Tests of the catalog data: every model loads, every price and billing rule to
//! the unit, operator overrides, the schemas and `GET /v1/models` agreeing, and
//! EvoLink's own documented example bodies passing `parse_create`.

use std::sync::OnceLock;

use serde_json::{Value, json};

use super::*;
use crate::create::ParseOptions;
use crate::credits::Credits;

pub(crate) fn builtin() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::builtin().unwrap())
}

fn spec(id: &str) -> &'static ModelSpec {
    builtin().get(id).unwrap_or_else(|| panic!("no model {id}"))
}

fn parse(body: Value) -> crate::create::CreateTask<crate::create::MediaSource> {
    builtin().parse_create(&body, &ParseOptions::default()).unwrap_or_else(|e| panic!("{body}: {e}"))
}

/// Units per second of this quality and sound.
fn units(id: &str, q: Quality, s: Sound) -> i64 {
    match &spec(id).pricing {
        Pricing::PerSecond(p) => p.row(q, s).map_or(-1, |r| r.per_second.units()),
        Pricing::PerCall { .. } => -1,
    }
}

const ALL: [&str; 13] = [
    "kling-v3-text-to-video",
    "kling-v3-image-to-video",
    "kling-v3-turbo-text-to-video",
    "kling-v3-turbo-image-to-video",
    "kling-v3-motion-control",
    "kling-o3-text-to-video",
    "kling-o3-image-to-video",
    "kling-o3-reference-to-video",
    "kling-o3-video-edit",
    "kling-o1-image-to-video",
    "kling-o1-video-edit",
    "kling-o1-video-edit-fast",
    "kling-custom-element",
];

#[test]
fn the_builtin_catalog_holds_the_13_models_evolink_sells() {
    let ids: Vec<&str> = builtin().models().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ALL);
    let shapes: Vec<Shape> = builtin().models().map(|m| m.shape).collect();
    use Shape::*;
    assert_eq!(
        shapes,
        [
            TextToVideo,
            ImageToVideo,
            TextToVideo,
            ImageToVideo,
            MotionControl,
            TextToVideo,
            ImageToVideo,
            ReferenceToVideo,
            VideoEdit,
            ImageToVideo,
            VideoEdit,
            VideoEdit,
            CustomElement
        ]
    );
    assert!(builtin().get("kling-v2-master").is_none());
}

#[test]
fn v3_prices_are_evolinks_to_the_unit_for_every_duration() {
    // EVO-WEB kling-3: 5.4, 8.1, 7.1982 and 10.8 credits a second.
    let table = [
        (Quality::P720, Sound::Off, 54_000),
        (Quality::P720, Sound::On, 81_000),
        (Quality::P1080, Sound::Off, 71_982),
        (Quality::P1080, Sound::On, 108_000),
    ];
    let mut cases = 0;
    for id in ["kling-v3-text-to-video", "kling-v3-image-to-video"] {
        for (q, s, per) in table {
            for d in 3..=15u32 {
                assert_eq!(spec(id).price(q, s, d), Some(Credits::from_units(per * i64::from(d))), "{id} {q} {s} {d}");
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 104);
    assert_eq!(
        spec("kling-v3-image-to-video").price(Quality::P1080, Sound::Off, 15),
        Some(Credits::from_units(1_079_730))
    );
}

#[test]
fn v3_4k_is_estimated_at_27_credits_a_second_with_or_without_sound() {
    for s in [Sound::Off, Sound::On] {
        assert_eq!(units("kling-v3-text-to-video", Quality::P4k, s), 270_000);
    }
    let list = builtin().model_list();
    let v3 = &list.data[0];
    let est: Vec<(Quality, bool)> = v3.pricing.iter().map(|p| (p.quality, p.estimated)).collect();
    assert!(est.iter().all(|(q, e)| *e == (*q == Quality::P4k)), "{est:?}");
    assert!(v3.estimated);
}

#[test]
fn o3_image_to_video_prices_use_the_1_334_multiplier() {
    let id = "kling-o3-image-to-video";
    assert_eq!(units(id, Quality::P720, Sound::Off), 54_000);
    assert_eq!(units(id, Quality::P720, Sound::On), 72_036);
    assert_eq!(units(id, Quality::P1080, Sound::Off), 72_036);
    assert_eq!(units(id, Quality::P1080, Sound::On), 90_018);
    assert_eq!(units(id, Quality::P4k, Sound::On), 270_000);
}

#[test]
fn o3_reference_and_edit_cost_8_1_and_10_8054_credits_a_second() {
    for id in ["kling-o3-reference-to-video", "kling-o3-video-edit"] {
        assert_eq!(units(id, Quality::P720, Sound::Off), 81_000, "{id}");
        assert_eq!(units(id, Quality::P1080, Sound::Off), 108_054, "{id}");
        assert!(!spec(id).pricing.estimated(), "{id}");
    }
}

#[test]
fn o1_video_edit_costs_12_credits_a_second_billed_3_to_10() {
    let s = spec("kling-o1-video-edit");
    assert_eq!(s.price(Quality::P1080, Sound::Off, 5), Some(Credits::from_units(600_000)));
    assert_eq!(s.price(Quality::P1080, Sound::Off, 1), Some(Credits::from_units(360_000)));
    assert_eq!(s.price(Quality::P1080, Sound::Off, 30), Some(Credits::from_units(1_200_000)));
    assert!(!s.pricing.estimated());
}

#[test]
fn estimated_prices_are_official_kling_units_times_nine_credits() {
    // KLING-PRICE units x $0.14 x 0.075/0.084 x 72 = units x 9 credits.
    let cases: [(&str, Quality, Sound, i64); 14] = [
        ("kling-v3-turbo-text-to-video", Quality::P720, Sound::On, 72_000),
        ("kling-v3-turbo-text-to-video", Quality::P1080, Sound::On, 90_000),
        ("kling-v3-turbo-image-to-video", Quality::P720, Sound::On, 72_000),
        ("kling-v3-turbo-image-to-video", Quality::P1080, Sound::On, 90_000),
        ("kling-v3-motion-control", Quality::P720, Sound::Off, 81_000),
        ("kling-v3-motion-control", Quality::P1080, Sound::Off, 108_000),
        ("kling-o3-text-to-video", Quality::P720, Sound::Off, 54_000),
        ("kling-o3-text-to-video", Quality::P720, Sound::On, 72_000),
        ("kling-o3-text-to-video", Quality::P1080, Sound::Off, 72_000),
        ("kling-o3-text-to-video", Quality::P1080, Sound::On, 90_000),
        ("kling-o3-text-to-video", Quality::P4k, Sound::Off, 270_000),
        ("kling-o1-image-to-video", Quality::P1080, Sound::Off, 72_000),
        ("kling-o1-video-edit-fast", Quality::P1080, Sound::Off, 108_000),
        ("kling-o3-image-to-video", Quality::P4k, Sound::Off, 270_000),
    ];
    for (id, q, s, per) in cases {
        assert_eq!(units(id, q, s), per, "{id} {q} {s}");
        assert!(spec(id).pricing.estimated(), "{id} is marked estimated");
    }
    for id in ["kling-v3-turbo-text-to-video", "kling-o1-video-edit-fast", "kling-v3-motion-control"] {
        assert!(
            builtin()
                .model_list()
                .data
                .iter()
                .any(|m| m.id == id && m.estimated && m.pricing.iter().all(|p| p.estimated))
        );
    }
}

#[test]
fn a_custom_element_costs_one_credit_per_call() {
    let s = spec("kling-custom-element");
    assert_eq!(s.pricing.rule(), BillingRule::PerCall);
    let t = parse(
        json!({"model": "kling-custom-element", "model_params": {"element_name": "cat", "element_description": "a cat",
        "element_image_list": {"frontal_image": "https://cdn.example.com/f.png", "refer_images": [{"image_url": "https://cdn.example.com/s.png"}]}}}),
    );
    assert_eq!(s.hold_seconds(&t, None), Some(0));
    assert_eq!(t.price(s), Some(Credits::from_units(10_000)));
    assert_eq!(s.price(Quality::P4k, Sound::On, 99), Some(Credits::from_units(10_000)));
    assert_eq!(s.video_seconds(&t, None), 0);
}

#[test]
fn billing_by_duration_holds_the_duration_within_the_billed_range() {
    let s = spec("kling-v3-text-to-video");
    let t = parse(
        json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 7, "quality": "1080p", "sound": "on"}),
    );
    assert_eq!((s.hold_seconds(&t, None), s.settle_seconds(7, Some(3_000))), (Some(7), 7));
    assert_eq!(t.price(s), Some(Credits::from_units(7 * 108_000)));
    // The seconds are clamped into 3..15 whatever is asked.
    assert_eq!(s.price(Quality::P720, Sound::Off, 1), Some(Credits::from_units(162_000)));
    assert_eq!(s.price(Quality::P720, Sound::Off, 40), Some(Credits::from_units(810_000)));
    let o1 = spec("kling-o1-image-to-video");
    let t = parse(
        json!({"model": "kling-o1-image-to-video", "prompt": "p", "image_urls": ["https://cdn.example.com/a.png"], "duration": 10}),
    );
    assert_eq!((o1.hold_seconds(&t, None), t.price(o1)), (Some(10), Some(Credits::from_units(720_000))));
}

#[test]
fn billing_by_input_video_rounds_up_and_clamps_to_the_billed_range() {
    let edit = |id: &str| {
        let field = if id == "kling-o3-video-edit" { "video_url" } else { "video_urls" };
        let video = if field == "video_url" {
            json!("https://cdn.example.com/v.mp4")
        } else {
            json!(["https://cdn.example.com/v.mp4"])
        };
        parse(json!({"model": id, "prompt": "p", field: video}))
    };
    for (id, input_ms, seconds) in [
        ("kling-o3-video-edit", 4_200, 5),
        ("kling-o3-video-edit", 1_000, 3),
        ("kling-o3-video-edit", 15_500, 16),
        ("kling-o3-video-edit", 40_000, 16),
        ("kling-o1-video-edit", 1_000, 3),
        ("kling-o1-video-edit", 9_001, 10),
        ("kling-o1-video-edit", 12_000, 10),
        ("kling-o1-video-edit-fast", 5_000, 6),
        ("kling-o1-video-edit-fast", 13_100, 14),
        ("kling-o1-video-edit-fast", 25_000, 20),
    ] {
        let (s, t) = (spec(id), edit(id));
        assert_eq!(s.hold_seconds(&t, Some(input_ms)), Some(seconds), "{id} {input_ms}");
        // Charged on the input too: the output does not change it.
        assert_eq!(s.settle_seconds(seconds, Some(2_000)), seconds, "{id}");
    }
    // Without the probe there is nothing to hold yet.
    let (s, t) = (spec("kling-o3-video-edit"), edit("kling-o3-video-edit"));
    assert_eq!((s.hold_seconds(&t, None), t.price(s)), (None, None));
    assert_eq!(s.hold_price(&t, Some(4_200)), Some(Credits::from_units(5 * 81_000)));
    assert_eq!(s.video_seconds(&t, Some(4_200)), 5);
}

#[test]
fn billing_by_output_holds_on_duration_and_settles_on_the_rounded_output() {
    let s = spec("kling-o3-reference-to-video");
    let t = parse(
        json!({"model": "kling-o3-reference-to-video", "prompt": "p", "video_url": "https://cdn.example.com/v.mp4", "duration": 10, "quality": "1080p"}),
    );
    assert_eq!(s.hold_seconds(&t, Some(20_000)), Some(10));
    assert_eq!(t.price(s), Some(Credits::from_units(10 * 108_054)));
    for (output_ms, seconds) in [(7_400, 7), (7_500, 8), (9_499, 9), (12_000, 10), (2_000, 3), (10_000, 10)] {
        assert_eq!(s.settle_seconds(10, Some(output_ms)), seconds, "{output_ms}");
    }
    // Never above what was held.
    assert_eq!(s.settle_seconds(5, Some(9_000)), 5);
    assert_eq!(s.settle_seconds(8, None), 8);
}

#[test]
fn motion_control_holds_on_its_input_capped_by_orientation_and_settles_on_the_output() {
    let s = spec("kling-v3-motion-control");
    let task = |o: &str| {
        parse(json!({"model": "kling-v3-motion-control", "image_urls": ["https://cdn.example.com/a.png"],
            "video_urls": ["https://cdn.example.com/v.mp4"], "quality": "1080p", "model_params": {"character_orientation": o}}))
    };
    let image = task("image");
    assert_eq!(s.hold_seconds(&image, Some(12_000)), Some(10));
    assert_eq!(s.hold_seconds(&image, Some(6_200)), Some(7));
    let video = task("video");
    assert_eq!(s.hold_seconds(&video, Some(25_000)), Some(25));
    assert_eq!(s.hold_seconds(&video, Some(45_000)), Some(30));
    assert_eq!(s.hold_seconds(&video, Some(2_000)), Some(3));
    assert_eq!(s.hold_price(&video, Some(25_000)), Some(Credits::from_units(25 * 108_000)));
    assert_eq!(s.settle_seconds(25, Some(21_400)), 21);
    assert_eq!((image.price(s), s.video_seconds(&image, Some(12_000))), (None, 10));
}

fn overridden(text: &str) -> Catalog {
    Catalog::with_overrides_str(text).unwrap_or_else(|e| panic!("{e}"))
}

fn override_error(text: &str) -> CatalogError {
    match Catalog::with_overrides_str(text) {
        Ok(_) => panic!("the override should be refused:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn an_override_changes_one_field_and_keeps_the_rest_of_the_model() {
    let c = overridden(
        r#"
        [[models]]
        id = "kling-v3-text-to-video"
        pricing = { base_credits = "5" }
        duration = { min = 3, max = 10, default = 4 }
        "#,
    );
    let s = c.get("kling-v3-text-to-video").unwrap();
    assert_eq!(s.price(Quality::P720, Sound::Off, 1), Some(Credits::from_units(150_000)));
    assert_eq!(s.price(Quality::P1080, Sound::Off, 1), Some(Credits::from_units(3 * 66_650)));
    assert_eq!(s.price(Quality::P4k, Sound::On, 1), Some(Credits::from_units(3 * 270_000)));
    assert_eq!((s.name.as_str(), s.duration.as_ref().map(|d| d.default)), ("Kling 3.0 Text to Video", Some(4)));
    // Other models are untouched, and the schema follows the data.
    assert_eq!(
        c.get("kling-v3-image-to-video").map(|m| m.price(Quality::P720, Sound::Off, 1)),
        Some(Some(Credits::from_units(162_000)))
    );
    assert_eq!(s.create_schema()["properties"]["duration"]["maximum"], json!(10));
    let e = c.parse_create(
        &json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 11}),
        &ParseOptions::default(),
    );
    assert_eq!(e.map_err(|e| e.param).err().as_deref(), Some("duration"));
}

#[test]
fn an_override_adds_a_model_of_an_existing_shape_as_data_only() {
    let c = overridden(
        r#"
        [[models]]
        id = "kling-v3-text-to-video-cheap"
        name = "Kling 3.0 Text to Video (house price)"
        shape = "text_to_video"
        prompt = { max_chars = 1000, required = "always" }
        duration = { min = 5, max = 10, default = 5 }
        quality = { values = ["720p"], default = "720p" }
        sound = { fixed = "off" }
        pricing = { rule = "per_second", billed_by = "duration", min_seconds = 5, max_seconds = 10, base_credits = "4", prices = [{ multiplier = "1" }] }
        "#,
    );
    let s = c.get("kling-v3-text-to-video-cheap").unwrap();
    let t = c
        .parse_create(&json!({"model": "kling-v3-text-to-video-cheap", "prompt": "p"}), &ParseOptions::default())
        .unwrap();
    assert_eq!((t.duration, t.price(s)), (Some(5), Some(Credits::from_units(200_000))));
    assert_eq!(c.models().count(), 14);
    assert!(c.model_list().data.iter().any(|m| m.id == "kling-v3-text-to-video-cheap"));
    let bad = c.parse_create(
        &json!({"model": "kling-v3-text-to-video-cheap", "prompt": "p", "quality": "1080p"}),
        &ParseOptions::default(),
    );
    assert_eq!(bad.map_err(|e| e.param).err().as_deref(), Some("quality"));
}

#[test]
fn an_override_can_stop_serving_a_model() {
    let c = overridden("[[models]]\nid = \"kling-o1-video-edit-fast\"\nenabled = false\n");
    assert!(c.get("kling-o1-video-edit-fast").is_none());
    assert_eq!(c.models().count(), 12);
    let e = c.parse_create(&json!({"model": "kling-o1-video-edit-fast"}), &ParseOptions::default());
    assert_eq!(e.map_err(|e| e.param).err().as_deref(), Some("model"));
    assert!(!c.create_body_schema().to_string().contains("kling-o1-video-edit-fast"));
}

#[test]
fn invalid_overrides_name_the_model_and_the_field() {
    for (text, model, field, words) in [
        (
            "[[models]]\nid = \"kling-v3-text-to-video\"\ncolour = \"red\"\n",
            Some("kling-v3-text-to-video"),
            "colour",
            "unknown field",
        ),
        (
            "[[models]]\nid = \"kling-v3-text-to-video\"\nduration = { min = \"three\", max = 15, default = 5 }\n",
            Some("kling-v3-text-to-video"),
            "duration",
            "invalid type",
        ),
        (
            "[[models]]\nid = \"kling-v3-text-to-video\"\nduration = { min = 3, max = 15, default = 20 }\n",
            Some("kling-v3-text-to-video"),
            "duration",
            "default",
        ),
        (
            "[[models]]\nid = \"kling-v3-text-to-video\"\npricing = { base_credits = \"5.4321\" }\n",
            Some("kling-v3-text-to-video"),
            "pricing",
            "whole number of units",
        ),
        (
            "[[models]]\nid = \"kling-v3-text-to-video\"\npricing = { base_credits = \"5.4\", prices = [{ quality = \"720p\", multiplier = \"1\" }] }\n",
            Some("kling-v3-text-to-video"),
            "pricing",
            "no price for quality 1080p",
        ),
        (
            "[[models]]\nid = \"kling-v3-text-to-video\"\npricing = { base_credits = 5.4 }\n",
            Some("kling-v3-text-to-video"),
            "pricing",
            "invalid type",
        ),
        (
            "[[models]]\nid = \"kling-o3-video-edit\"\nduration = { min = 3, max = 10, default = 5 }\n",
            Some("kling-o3-video-edit"),
            "duration",
            "video_edit model cannot have it",
        ),
        (
            "[[models]]\nid = \"kling-o1-image-to-video\"\nimages = { max_mb = 10, min_side = 300, max_aspect = \"2.5\", formats = [\"webp\"] }\n",
            Some("kling-o1-image-to-video"),
            "images",
            "webp",
        ),
        ("[[models]]\nid = \"kling-new\"\nname = \"New\"\n", Some("kling-new"), "shape", "required"),
        ("[[models]]\nid = \"Kling New\"\n", Some("Kling New"), "id", "lowercase"),
        ("[[models]]\nname = \"no id\"\n", None, "id", "id"),
        ("models = 3\n", None, "models", "array"),
        ("[other]\nx = 1\n", None, "other", "unknown"),
        (
            "[[models]]\nid = \"kling-custom-element\"\npricing = { rule = \"per_call\", credits = \"0\" }\n",
            Some("kling-custom-element"),
            "pricing",
            "positive",
        ),
        (
            "[[models]]\nid = \"kling-v3-image-to-video\"\nsound = { values = [\"on\"], default = \"off\" }\n",
            Some("kling-v3-image-to-video"),
            "sound",
            "default",
        ),
    ] {
        let e = override_error(text);
        assert_eq!((e.model.as_deref(), e.field.as_str()), (model, field), "{text}: {e}");
        assert!(e.to_string().contains(words), "{text}: {e}");
    }
}

#[test]
fn every_models_oneof_branch_is_exactly_its_model_list_schema() {
    for c in [
        builtin().clone(),
        overridden(
            "[[models]]\nid = \"kling-v3-text-to-video\"\nprompt = { max_chars = 100, required = \"always\" }\n",
        ),
    ] {
        let body = c.create_body_schema();
        let components: std::collections::BTreeMap<String, Value> = c.component_schemas().into_iter().collect();
        let list = c.model_list();
        let branches = body["oneOf"].as_array().unwrap();
        assert_eq!(branches.len(), list.data.len());
        for (branch, entry) in branches.iter().zip(&list.data) {
            let name = branch["$ref"].as_str().unwrap().trim_start_matches("#/components/schemas/");
            assert_eq!(components.get(name), Some(&entry.parameters), "{}", entry.id);
            assert_eq!(body["discriminator"]["mapping"][&entry.id], branch["$ref"]);
            assert_eq!(entry.parameters["properties"]["model"]["const"], json!(entry.id));
        }
        assert_eq!(body["discriminator"]["propertyName"], json!("model"));
    }
}

#[test]
fn schemas_carry_every_expressible_constraint() {
    let v3 = spec("kling-v3-text-to-video").create_schema();
    let p = &v3["properties"];
    assert_eq!(
        p["duration"],
        json!({"type": "integer", "minimum": 3, "maximum": 15, "default": 5, "description": "Seconds of video."})
    );
    assert_eq!(p["quality"]["enum"], json!(["720p", "1080p", "4k"]));
    assert_eq!(p["sound"]["enum"], json!(["off", "on"]));
    assert_eq!(p["aspect_ratio"]["enum"], json!(["16:9", "9:16", "1:1"]));
    assert_eq!((p["prompt"]["maxLength"].clone(), p["prompt"]["minLength"].clone()), (json!(2500), json!(1)));
    assert_eq!(p["callback_url"]["maxLength"], json!(2048));
    assert_eq!(p["model_params"]["properties"]["multi_prompt"]["maxItems"], json!(6));
    assert_eq!(v3["required"], json!(["model", "prompt"]));
    assert_eq!(
        p["model_params"]["properties"]["multi_prompt"]["prefixItems"][1]["properties"]["index"]["const"],
        json!(2)
    );
    assert_eq!(v3["not"], json!({"required": ["sound", "generate_audio"]}));

    let o1 = spec("kling-o1-image-to-video").create_schema();
    assert_eq!(o1["properties"]["duration"]["enum"], json!([5, 10]));
    assert_eq!(
        (o1["properties"]["image_urls"]["minItems"].clone(), o1["properties"]["image_urls"]["maxItems"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(o1["properties"]["generate_audio"]["enum"], json!([false]));
    assert_eq!(o1["properties"]["prompt"]["maxLength"], json!(5000));

    let i2v = spec("kling-v3-image-to-video").create_schema();
    assert_eq!(i2v["properties"]["image_urls"]["maxItems"], json!(2));
    let alternatives: Vec<&Value> = i2v["allOf"].as_array().unwrap().iter().map(|a| &a["anyOf"]).collect();
    assert!(
        alternatives.contains(&&json!([{"not": {"required": ["image_end"]}}, {"required": ["image_start"]}])),
        "image_end needs image_start"
    );
    assert!(
        alternatives.iter().any(|a| a.to_string().contains(r#"{"required":["image_urls"]"#)),
        "image_start or image_urls, one way: {alternatives:?}"
    );
    assert_eq!(i2v["properties"]["model_params"]["properties"]["element_list"]["maxItems"], json!(3));

    let motion = spec("kling-v3-motion-control").create_schema();
    assert_eq!(motion["required"], json!(["model", "image_urls", "video_urls", "model_params"]));
    assert_eq!(motion["properties"]["model_params"]["required"], json!(["character_orientation"]));
    assert_eq!(motion["properties"]["model_params"]["properties"]["keep_sound"]["default"], json!(true));
    assert!(motion["properties"].get("duration").is_none());

    let turbo = spec("kling-v3-turbo-text-to-video").create_schema();
    assert_eq!(turbo["properties"]["quality"]["enum"], json!(["720p", "1080p"]));
    assert!(turbo["properties"].get("model_params").is_none());

    let element = spec("kling-custom-element").create_schema();
    let mp = &element["properties"]["model_params"];
    assert_eq!(mp["required"], json!(["element_name", "element_description"]));
    assert_eq!(mp["properties"]["element_name"]["maxLength"], json!(20));
    assert_eq!(mp["oneOf"].as_array().map(Vec::len), Some(2));
}

#[test]
fn schemas_only_require_declared_properties_and_use_known_types() {
    fn walk(v: &Value, path: &str) {
        if let Some(o) = v.as_object() {
            let is_object = o.get("type").and_then(Value::as_str) == Some("object");
            if let (true, Some(req), Some(props)) =
                (is_object, o.get("required").and_then(Value::as_array), o.get("properties"))
            {
                for r in req {
                    assert!(props.get(r.as_str().unwrap()).is_some(), "{path}: {r} is required but not a property");
                }
            }
            if let Some(t) = o.get("type") {
                assert!(
                    ["object", "array", "string", "integer", "boolean"].contains(&t.as_str().unwrap()),
                    "{path}: {t}"
                );
            }
            if let Some(e) = o.get("enum") {
                assert!(!e.as_array().unwrap().is_empty(), "{path}: empty enum");
            }
            for (k, child) in o {
                walk(child, &format!("{path}.{k}"));
            }
        } else if let Some(a) = v.as_array() {
            for (i, child) in a.iter().enumerate() {
                walk(child, &format!("{path}[{i}]"));
            }
        }
    }
    for m in builtin().models() {
        walk(&m.create_schema(), m.id.as_str());
    }
}

#[test]
fn the_model_list_shows_exact_units_and_display_prices() {
    let list = builtin().model_list();
    assert_eq!(list.object, "list");
    let v3 = &list.data[1];
    assert_eq!(
        (v3.id.as_str(), v3.name.as_str(), v3.kind.as_str(), v3.object.as_str()),
        ("kling-v3-image-to-video", "Kling 3.0 Image to Video", "video", "model")
    );
    assert_eq!(
        (v3.billed_by, v3.min_billed_seconds, v3.max_billed_seconds),
        (Some(BilledBy::Duration), Some(3), Some(15))
    );
    let rows: Vec<(i64, f64, f64)> =
        v3.pricing.iter().map(|p| (p.units_per_second, p.credits_per_second, p.usd_per_second)).collect();
    assert_eq!(
        rows,
        [
            (54_000, 5.4, 0.075),
            (81_000, 8.1, 0.113),
            (71_982, 7.1982, 0.1),
            (108_000, 10.8, 0.15),
            (270_000, 27.0, 0.375),
            (270_000, 27.0, 0.375)
        ]
    );
    let o3 = list.data.iter().find(|m| m.id == "kling-o3-image-to-video").unwrap();
    let usd: Vec<f64> = o3.pricing.iter().take(4).map(|p| p.usd_per_second).collect();
    assert_eq!(usd, [0.075, 0.1, 0.1, 0.125]);
    let r2v = list.data.iter().find(|m| m.id == "kling-o3-reference-to-video").unwrap();
    assert_eq!(
        r2v.pricing.iter().map(|p| (p.quality, p.sound, p.usd_per_second)).collect::<Vec<_>>(),
        [(Quality::P720, Sound::Off, 0.113), (Quality::P1080, Sound::Off, 0.15)]
    );
    assert_eq!(r2v.billed_by, Some(BilledBy::OutputVideo));
    let el = list.data.last().unwrap();
    assert_eq!(
        (el.billing_rule, el.units_per_call, el.price_per_call, el.usd_per_call, el.pricing.len()),
        (BillingRule::PerCall, Some(10_000), Some(1.0), Some(0.014), 0)
    );
    let json = serde_json::to_value(&list).unwrap();
    assert_eq!(json["data"][0]["pricing"][2]["units_per_second"], json!(71_982));
    assert!(json["data"][12].get("billed_by").is_none());
}

#[test]
fn every_documented_example_body_passes_parse_create() {
    let doc: Value = serde_json::from_str(include_str!("evolink_examples.json")).unwrap();
    let examples = doc["examples"].as_object().unwrap();
    assert_eq!(examples.len(), 39);
    let mut models = std::collections::BTreeSet::new();
    for (name, body) in examples {
        let t = builtin().parse_create(body, &ParseOptions::default());
        assert!(t.is_ok(), "{name}: {t:?}");
        models.insert(body["model"].as_str().unwrap().to_owned());
    }
    assert_eq!(models.len(), 13, "an example for every model");
}

#[test]
fn names_parse_back_and_serialize_as_their_wire_spelling() {
    for q in Quality::ALL {
        assert_eq!(Quality::parse(q.as_str()), Some(*q));
        assert_eq!(serde_json::to_value(q).ok(), Some(json!(q.as_str())));
    }
    assert_eq!(Quality::parse("4k").map(Quality::short_side), Some(2160));
    assert_eq!(AspectRatio::parse("9:16").map(AspectRatio::ratio), Some((9, 16)));
    assert_eq!(serde_json::to_value(BillingRule::PerCall).ok(), Some(json!("per_call")));
    assert_eq!(serde_json::to_value(BilledBy::OutputVideo).ok(), Some(json!("output_video")));
    assert_eq!(
        (Quality::default(), Sound::default(), AspectRatio::default()),
        (Quality::P720, Sound::Off, AspectRatio::R16x9)
    );
    assert_eq!(serde_json::to_value(ModelId::new("kling-o3-video-edit")).ok(), Some(json!("kling-o3-video-edit")));
    assert!(ModelId::is_valid("kling-o1.5_x-2") && !ModelId::is_valid("-x") && !ModelId::is_valid("Kling"));
}

#[test]
fn uploads_are_capped_by_the_largest_medium_a_model_takes() {
    // Kling 3.0 Turbo image to video takes 50 MB images; O3 takes 200 MB videos.
    assert_eq!(builtin().max_image_bytes(), 50 * 1024 * 1024);
    assert_eq!(builtin().max_video_bytes(), 200 * 1024 * 1024);
    let c = overridden("[[models]]\nid = \"kling-v3-turbo-image-to-video\"\nenabled = false\n");
    assert_eq!(c.max_image_bytes(), 10 * 1024 * 1024);
}

#[test]
fn multi_shot_is_refused_on_a_model_whose_length_follows_its_input() {
    let e = override_error(
        "[[models]]\nid = \"kling-o3-video-edit\"\nmulti_shot = { shot_types = [\"customize\"], max_shots = 6, shot_prompt_max_chars = 512 }\n",
    );
    assert_eq!((e.model.as_deref(), e.field.as_str()), (Some("kling-o3-video-edit"), "multi_shot"), "{e}");
}
