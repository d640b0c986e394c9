//! The published OpenAPI document: what poem-openapi generates from the operations, plus the
//! two things its derive macros cannot say.
//!
//! - The multipart forms are closed (`additionalProperties: false`): the server refuses an
//!   unknown part (the forms derive `deny_unknown_fields`), so the spec must not promise that
//!   one is accepted.
//! - Links from the operations that create a resource to those that use it (an analysis id
//!   to poll and delete it; a key id to read, rotate, disable, enable, revoke and re-tier it),
//!   so a client generator, and schemathesis's stateful phase, can follow them.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

/// `(path, method, status)` of a creating operation, the JSON pointer of the id in its body,
/// and the operations the id feeds (operation id, its path parameter).
const LINKS: &[(&str, &str, &str, &str, &[&str])] = &[
    ("/api/v1/analyses", "post", "202", "/id", &["get_analysis", "delete_analysis"]),
    ("/api/v1/analyses/url", "post", "202", "/id", &["get_analysis", "delete_analysis"]),
    (
        "/admin/keys",
        "post",
        "201",
        "/record/id",
        &["get_key", "rotate_key", "disable_key", "enable_key", "revoke_key", "set_key_tier"],
    ),
];

/// The document as served at `/api/openapi.json` and committed as `openapi/openapi.json`.
pub fn refine(generated: &str) -> String {
    let mut spec: Value = match serde_json::from_str(generated) {
        Ok(spec) => spec,
        // poem-openapi writes JSON; nothing to refine in anything else
        Err(_) => return generated.to_string(),
    };
    close_multipart_forms(&mut spec);
    add_links(&mut spec);
    serde_json::to_string_pretty(&spec).unwrap_or_else(|_| generated.to_string())
}

/// The refined document, computed once.
pub fn served(generated: impl FnOnce() -> String) -> &'static str {
    static SPEC: OnceLock<String> = OnceLock::new();
    SPEC.get_or_init(|| refine(&generated()))
}

fn close_multipart_forms(spec: &mut Value) {
    let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for operation in item.values_mut() {
            let schema = operation.pointer_mut("/requestBody/content/multipart~1form-data/schema");
            if let Some(Value::Object(schema)) = schema {
                schema.insert("additionalProperties".into(), Value::Bool(false));
            }
        }
    }
}

fn add_links(spec: &mut Value) {
    for (path, method, status, pointer, targets) in LINKS {
        let pointer_to_response = format!("/paths/{}/{method}/responses/{status}", path.replace('/', "~1"));
        let Some(Value::Object(response)) = spec.pointer_mut(&pointer_to_response) else {
            continue;
        };
        let links: Map<String, Value> = targets
            .iter()
            .map(|target| {
                let link = json!({
                    "operationId": target,
                    "parameters": { "id": format!("$response.body#{pointer}") },
                });
                (target.to_string(), link)
            })
            .collect();
        response.insert("links".into(), Value::Object(links));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_closed_and_every_link_names_an_operation_of_the_spec() {
        let spec: Value = serde_json::from_str(&super::super::openapi_json()).unwrap();
        let detect = &spec["paths"]["/api/detect"]["post"]["requestBody"]["content"]["multipart/form-data"];
        assert_eq!(detect["schema"]["additionalProperties"], false);
        let operation_ids: Vec<&str> = spec["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        for (path, method, status, _, targets) in LINKS {
            let links = &spec["paths"][path][method]["responses"][status]["links"];
            for target in *targets {
                assert!(operation_ids.contains(target), "{target} is not an operation id");
                assert_eq!(links[target]["operationId"], *target, "{path} {method} has no link to {target}");
            }
        }
    }
}
