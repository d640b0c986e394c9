//! The `Allow` header of every 405 answer (RFC 9110 §15.5.6): the methods the published spec
//! documents for the path, plus `HEAD` wherever `GET` is documented (poem answers `HEAD`
//! through the `GET` route). Built from the spec itself, so the two cannot disagree.

use std::sync::OnceLock;

use serde_json::Value;

/// One documented path template (`/admin/keys/{id}`) and the `Allow` value for it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Path segments; `None` is a `{parameter}` that matches any one segment.
    segments: Vec<Option<String>>,
    allow: String,
}

/// Path templates and their methods, most specific first (literal segments before
/// parameters, as poem routes them: `/api/v1/analyses/url` before `/api/v1/analyses/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowTable(Vec<Entry>);

/// The HTTP methods an OpenAPI path item may document, in the order `Allow` lists them.
const METHODS: [&str; 8] = ["get", "head", "post", "put", "patch", "delete", "options", "trace"];

impl AllowTable {
    /// The table of an OpenAPI document's `paths`.
    pub fn from_spec(spec: &Value) -> AllowTable {
        let mut entries: Vec<Entry> = spec["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(template, item)| {
                let documented =
                    |m: &str| item.get(m).is_some() || (m == "head" && item.get("get").is_some());
                let methods: Vec<String> =
                    METHODS.iter().filter(|m| documented(m)).map(|m| m.to_ascii_uppercase()).collect();
                let segments = template
                    .split('/')
                    .skip(1)
                    .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_string()))
                    .collect();
                Entry { segments, allow: methods.join(", ") }
            })
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.segments.iter().filter(|s| s.is_some()).count()));
        AllowTable(entries)
    }

    /// The `Allow` value for a request path, when the spec documents the path.
    pub fn allow(&self, path: &str) -> Option<&str> {
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        self.0
            .iter()
            .find(|e| {
                e.segments.len() == segments.len()
                    && e.segments.iter().zip(&segments).all(|(t, s)| t.as_deref().is_none_or(|t| t == *s))
            })
            .map(|e| e.allow.as_str())
    }
}

/// The table of the service's own spec, built once.
pub fn allow_for(path: &str) -> Option<&'static str> {
    static TABLE: OnceLock<AllowTable> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let spec = serde_json::from_str(&super::openapi_json()).unwrap_or(Value::Null);
            AllowTable::from_spec(&spec)
        })
        .allow(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_paths_win_and_head_follows_get() {
        let spec = serde_json::json!({"paths": {
            "/api/v1/analyses/{id}": {"get": {}, "delete": {}},
            "/api/v1/analyses/url": {"post": {}},
            "/health": {"get": {}},
        }});
        let table = AllowTable::from_spec(&spec);
        assert_eq!(table.allow("/api/v1/analyses/url"), Some("POST"));
        assert_eq!(table.allow("/api/v1/analyses/0123"), Some("GET, HEAD, DELETE"));
        assert_eq!(table.allow("/health"), Some("GET, HEAD"));
        assert_eq!(table.allow("/api/v1/analyses"), None);
        assert_eq!(table.allow("/nowhere"), None);
    }

    #[test]
    fn every_documented_path_of_the_service_has_an_allow_value() {
        assert_eq!(allow_for("/admin/keys/0123456789abcdef/rotate"), Some("POST"));
        assert_eq!(allow_for("/admin/keys"), Some("GET, HEAD, POST"));
        assert_eq!(allow_for("/api/detect"), Some("POST"));
    }
}
