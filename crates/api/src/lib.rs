//! vidgate's wire contract: the model catalog as data (parameters, rules, prices,
//! JSON Schemas), create-request validation driven by it, the task object, the
//! error body, credits, and the image and video checks. Pure: no IO, no async.
//! Shared by the server and its CLI.

pub mod addr;
pub mod catalog;
pub mod create;
pub mod credits;
pub mod error;
pub mod image;
pub mod task;
pub mod video;

#[cfg(test)]
mod openapi_tests {
    use utoipa::ToSchema;
    use utoipa::openapi::ComponentsBuilder;

    use crate::{catalog, error, image, task};

    fn with_deps<T: ToSchema>(b: ComponentsBuilder) -> ComponentsBuilder {
        let mut deps = Vec::new();
        T::schemas(&mut deps);
        b.schema_from::<T>().schemas_from_iter(deps)
    }

    #[test]
    fn every_wire_type_renders_as_an_openapi_schema() {
        let mut b = ComponentsBuilder::new();
        b = with_deps::<task::TaskObject>(b);
        b = with_deps::<task::TaskList>(b);
        b = with_deps::<task::CreditsResponse>(b);
        b = with_deps::<task::FileObject>(b);
        b = with_deps::<error::ErrorBody>(b);
        b = with_deps::<catalog::ModelList>(b);
        b = with_deps::<image::ImageInfo>(b);
        b = with_deps::<crate::credits::Credits>(b);
        let json = serde_json::to_value(b.build()).unwrap_or_default();
        let schemas = &json["schemas"];
        // Every $ref points at a registered schema.
        let text = json.to_string();
        for piece in text.split("\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap_or_default();
            assert!(schemas.get(name).is_some(), "dangling $ref to {name}");
        }
        let props = |name: &str| schemas[name]["properties"].clone();
        assert!(props("TaskObject").get("type").is_some(), "{json}");
        assert!(props("TaskObject").get("kind").is_none());
        assert!(props("ErrorDetail").get("param").is_some());
        assert!(props("ModelEntry").get("parameters").is_some());
        assert_eq!(schemas["Credits"]["type"], serde_json::json!("integer"));
        assert!(schemas["TaskStatus"].to_string().contains("processing"));
        assert_eq!(schemas["Quality"]["enum"], serde_json::json!(["720p", "1080p", "4k"]));
        assert!(schemas["Shape"].to_string().contains("motion_control"), "{}", schemas["Shape"]);
        assert!(schemas["BilledBy"].to_string().contains("output_video"));
    }
}
