//! Request strings whose exact shape the spec publishes while the handler parses them.
//!
//! poem-openapi would refuse a value outside a declared pattern itself, with its generic
//! `bad_request`; the API's errors name the field instead (`invalid_key_id`,
//! `invalid_model`…). So these types publish the shape the handler's own parser accepts
//! (pattern, length, enumeration), take any string from the request, and leave the parsing,
//! and its error, to the handler (`KeyId::parse`, `ModelSlug::parse`…). JSON values must be
//! strings (poem-openapi's own `String` would also take a number or a boolean). The tests in
//! this file hold each pattern to its parser. [`Uploads`] is the required, repeatable `file`
//! part of a multipart form.

use std::borrow::Cow;
use std::marker::PhantomData;

use poem::web::Field;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::multipart::Upload;
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromMultipartField, ParseFromParameter, ParseResult, ToJSON, Type,
};
use serde_json::Value;

use crate::forensics::families::FAMILIES;

/// The published schema of one kind of request string.
pub trait Shape: Send + Sync + 'static {
    /// The string schema (pattern, lengths, enumeration, format) the handler's parser accepts.
    fn schema() -> MetaSchema;
}

/// A request string published with the schema of `S`, parsed by the handler.
pub struct Declared<S> {
    /// The string as the client sent it.
    pub text: String,
    shape: PhantomData<fn() -> S>,
}

impl<S> Declared<S> {
    /// Wrap a string (tests and internal callers).
    pub fn new(text: impl Into<String>) -> Self {
        Declared { text: text.into(), shape: PhantomData }
    }

    /// The string as sent.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl<S> std::fmt::Debug for Declared<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.text.fmt(f)
    }
}

impl<S: Shape> Type for Declared<S> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(S::schema()))
    }

    fn register(_registry: &mut Registry) {}

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl<S: Shape> ParseFromParameter for Declared<S> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Declared::new(value))
    }
}

impl<S: Shape> ParseFromJSON for Declared<S> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(text)) => Ok(Declared::new(text)),
            Some(other) => Err(ParseError::expected_type(other)),
            None => Err(ParseError::expected_input()),
        }
    }
}

impl<S: Shape> ParseFromMultipartField for Declared<S> {
    async fn parse_from_multipart(field: Option<Field>) -> ParseResult<Self> {
        match field {
            Some(field) => Ok(Declared::new(field.text().await.map_err(ParseError::custom)?)),
            None => Err(ParseError::expected_input()),
        }
    }
}

impl<S: Shape> ToJSON for Declared<S> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.text.clone()))
    }
}

/// Characters that are not control characters (what Rust's `char::is_control` refuses:
/// U+0000-U+001F and U+007F-U+009F), as a regular-expression class body.
const PRINTABLE: &str = r"^\u0000-\u001f\u007f-\u009f";

fn string_schema(description: &'static str) -> MetaSchema {
    MetaSchema { description: Some(description), ..MetaSchema::new("string") }
}

fn hex(description: &'static str, digits: usize) -> MetaSchema {
    MetaSchema {
        pattern: Some(format!("^[0-9a-f]{{{digits}}}$")),
        min_length: Some(digits),
        max_length: Some(digits),
        ..string_schema(description)
    }
}

/// A key id: 16 lower-case hex digits (`KeyId::parse`).
pub struct KeyIdText;
impl Shape for KeyIdText {
    fn schema() -> MetaSchema {
        hex("A key id: 16 lower-case hex digits", 16)
    }
}

/// An account id: 16 lower-case hex digits (`AccountId::parse`).
pub struct AccountIdText;
impl Shape for AccountIdText {
    fn schema() -> MetaSchema {
        hex("An account id: 16 lower-case hex digits", 16)
    }
}

/// An analysis id: 32 lower-case hex digits (`AnalysisId::parse`).
pub struct AnalysisIdText;
impl Shape for AnalysisIdText {
    fn schema() -> MetaSchema {
        hex("An analysis id: 32 lower-case hex digits", 32)
    }
}

/// A generator family slug of `GET /api/models` (`ModelSlug::parse`).
pub struct ModelText;
impl Shape for ModelText {
    fn schema() -> MetaSchema {
        MetaSchema {
            enum_items: FAMILIES.iter().map(|f| Value::from(f.slug)).collect(),
            ..string_schema("A generator family slug of GET /api/models")
        }
    }
}

/// A client's own reference: 1-128 characters, none of them a control character.
pub struct ExternalIdText;
impl Shape for ExternalIdText {
    fn schema() -> MetaSchema {
        MetaSchema {
            pattern: Some(format!("^[{PRINTABLE}]{{1,128}}$")),
            ..string_schema("Your own reference, returned as given: 1-128 characters, no control characters")
        }
    }
}

/// A key's label: 1-100 characters, no control character, not only white space.
pub struct KeyNameText;
impl Shape for KeyNameText {
    fn schema() -> MetaSchema {
        MetaSchema {
            pattern: Some(format!(r"^[{PRINTABLE}]*[^\s\u0000-\u001f\u007f-\u009f][{PRINTABLE}]*$")),
            min_length: Some(1),
            max_length: Some(100),
            ..string_schema(
                "A label for humans: 1-100 characters, no control characters, not only white space",
            )
        }
    }
}

/// A tier name: 1-32 of `a-z`, `0-9` and `-` (`Tier::parse`); it must also be configured.
pub struct TierText;
impl Shape for TierText {
    fn schema() -> MetaSchema {
        MetaSchema {
            pattern: Some("^[a-z0-9-]{1,32}$".into()),
            ..string_schema(
                "A configured tier (free, premium and enterprise by default); another well-formed name is 422",
            )
        }
    }
}

/// An `http` or `https` URL; one the server may not or cannot fetch is 422.
pub struct UrlText;
impl Shape for UrlText {
    fn schema() -> MetaSchema {
        MetaSchema {
            format: Some("uri"),
            ..string_schema(
                "An http or https URL of a public address; any other URL, or one that cannot be used, is 422",
            )
        }
    }
}

/// The required `file` part of a multipart form, repeated for a batch: at least one upload.
#[derive(Debug)]
pub struct Uploads(pub Vec<Upload>);

impl Type for Uploads {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Upload;

    fn name() -> Cow<'static, str> {
        "[binary]".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            items: Some(Box::new(Upload::schema_ref())),
            min_items: Some(1),
            ..MetaSchema::new("array")
        }))
    }

    fn register(registry: &mut Registry) {
        Upload::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.0.iter())
    }
}

impl ParseFromMultipartField for Uploads {
    async fn parse_from_multipart(field: Option<Field>) -> ParseResult<Self> {
        match field {
            Some(field) => Ok(Uploads(vec![Upload::parse_from_multipart(Some(field))
                .await
                .map_err(ParseError::propagate)?])),
            None => Err(ParseError::expected_input()),
        }
    }

    async fn parse_from_repeated_field(mut self, field: Field) -> ParseResult<Self> {
        self.0.push(Upload::parse_from_multipart(Some(field)).await.map_err(ParseError::propagate)?);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyses::AnalysisId;
    use crate::auth::clean_name;
    use crate::auth::key::{AccountId, KeyId, Tier};
    use crate::forensics::families::ModelSlug;
    use crate::http::analyses_api::check_external_id;

    /// Whether the published schema of `S` accepts `text` (pattern, lengths, enumeration).
    fn published<S: Shape>(text: &str) -> bool {
        let schema = S::schema();
        let chars = text.chars().count();
        schema.pattern.as_ref().is_none_or(|p| regex::Regex::new(p).unwrap().is_match(text))
            && schema.min_length.is_none_or(|n| chars >= n)
            && schema.max_length.is_none_or(|n| chars <= n)
            && (schema.enum_items.is_empty() || schema.enum_items.contains(&Value::from(text)))
    }

    /// Samples around every rule of the parsers: lengths, case, control characters, white space.
    fn samples() -> Vec<String> {
        let mut all: Vec<String> = [
            "",
            " ",
            "a",
            " a ",
            "\ta",
            "a\u{7f}",
            "a\u{85}b",
            "\u{a0}",
            "é",
            "x y",
            "free",
            "Gold",
            "gold-2",
            "0123456789abcdef",
            "0123456789ABCDEF",
            "0123456789abcde",
            "0123456789abcdef0",
            "sdxl",
            "SDXL",
            "flux.1-dev",
            "not-a-model",
            "-",
            "a_b",
            "\n",
            "ok\n",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for n in [16, 31, 32, 33, 99, 100, 101, 127, 128, 129] {
            all.push("a".repeat(n));
            all.push("é".repeat(n));
            all.push(format!(" {}", "b".repeat(n.saturating_sub(1))));
        }
        all.push("0123456789abcdef0123456789abcdef".into());
        all.push("ab".repeat(17));
        all.extend(FAMILIES.iter().map(|f| f.slug.to_string()));
        all
    }

    fn agree<S: Shape>(what: &str, parser: impl Fn(&str) -> bool) {
        for text in samples() {
            assert_eq!(
                published::<S>(&text),
                parser(&text),
                "{what}: the spec and the parser disagree on {text:?}"
            );
        }
    }

    #[test]
    fn every_published_shape_is_exactly_what_its_parser_accepts() {
        agree::<KeyIdText>("key id", |t| KeyId::parse(t).is_ok());
        agree::<AccountIdText>("account id", |t| AccountId::parse(t).is_ok());
        agree::<AnalysisIdText>("analysis id", |t| AnalysisId::parse(t).is_ok());
        agree::<ModelText>("model", |t| ModelSlug::parse(t).is_ok());
        agree::<ExternalIdText>("external id", |t| check_external_id(t.to_string()).is_ok());
        agree::<KeyNameText>("key name", |t| clean_name(t).is_ok());
        agree::<TierText>("tier", |t| Tier::parse(t).is_ok());
    }
}
