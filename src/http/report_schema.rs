//! The detection report as an OpenAPI response body. The report is serialised by serde,
//! exactly as the CLI prints it (the forensics library knows nothing about HTTP); this file
//! only describes its shape to the spec, and a test checks the description against a real
//! report (`tests/http_contract.rs`).

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};

use crate::forensics::report::Flag;
use crate::forensics::{ImageFormat, Report, Verdict};

/// A report on its way out of the API.
#[derive(Debug, Clone)]
pub struct ReportJson(pub Report);

const NAME: &str = "DetectionReport";

fn field(ty: &'static str, description: &'static str) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema { description: Some(description), ..MetaSchema::new(ty) }))
}

fn number(description: &'static str, min: f64, max: f64) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some(description),
        minimum: Some(min),
        maximum: Some(max),
        ..MetaSchema::new_with_format("number", "double")
    }))
}

fn strings(description: &'static str) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some(description),
        items: Some(Box::new(field("string", "one item"))),
        ..MetaSchema::new("array")
    }))
}

/// An object whose every property is always present (the report's nested records).
fn object(description: &'static str, properties: Vec<(&'static str, MetaSchemaRef)>) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some(description),
        required: properties.iter().map(|(name, _)| *name).collect(),
        properties,
        ..MetaSchema::new("object")
    }))
}

/// `schema`, which may also be `null` (an `Option` serde writes as `null`).
fn nullable(schema: MetaSchemaRef) -> MetaSchemaRef {
    match schema {
        MetaSchemaRef::Inline(schema) => {
            MetaSchemaRef::Inline(Box::new(MetaSchema { nullable: true, ..*schema }))
        }
        reference => reference,
    }
}

fn module_schema() -> MetaSchemaRef {
    let flags = MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some("Flags from the documented vocabulary (README, 'Flags')"),
        items: Some(Box::new(MetaSchemaRef::Inline(Box::new(MetaSchema {
            enum_items: Flag::ALL.iter().map(|f| serde_json::to_value(f).unwrap_or_default()).collect(),
            ..MetaSchema::new("string")
        })))),
        ..MetaSchema::new("array")
    }));
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some("One forensic module's evidence"),
        required: vec!["score", "abstained", "flags", "explanations", "elapsed_ms"],
        properties: vec![
            (
                "score",
                number(
                    "0-1 probability of AI generation according to this module (0.5 when abstained)",
                    0.0,
                    1.0,
                ),
            ),
            ("abstained", field("boolean", "true when the module found no evidence either way")),
            ("flags", flags),
            ("explanations", strings("Human-readable reasons")),
            ("elapsed_ms", field("number", "Time the module took")),
        ],
        ..MetaSchema::new("object")
    }))
}

fn report_schema() -> MetaSchema {
    let verdicts = [
        Verdict::AiGenerated,
        Verdict::LikelyAi,
        Verdict::Uncertain,
        Verdict::LikelyAuthentic,
        Verdict::Authentic,
    ];
    let verdict = MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some("Band of the score: >= 85, 60-85, 40-60, 15-40, < 15"),
        enum_items: verdicts.iter().map(|v| serde_json::to_value(v).unwrap_or_default()).collect(),
        ..MetaSchema::new("string")
    }));
    let properties: Vec<(&'static str, MetaSchemaRef)> = vec![
        ("score", number("0-100 calibrated probability (x100) that the image is AI-generated", 0.0, 100.0)),
        ("verdict", verdict),
        ("presentation", field("string", "A sentence for user interfaces")),
        ("confidence", number("0-1: how sure the verdict is", 0.0, 1.0)),
        ("uncertainty", number("0-1: how much the evidence disagrees or is degraded", 0.0, 1.0)),
        ("explanations", strings("The strongest reasons, most important first")),
        ("hashes", object("Digests of the file", vec![("sha256", field("string", "hex SHA-256"))])),
        (
            "modules",
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                description: Some(
                    "Per-module evidence: metadata, provenance, frequency, visual, physics, fusion",
                ),
                additional_properties: Some(Box::new(module_schema())),
                ..MetaSchema::new("object")
            })),
        ),
        (
            "generator",
            nullable(MetaSchemaRef::Inline(Box::new(MetaSchema {
                description: Some("The generator family the evidence names; null when not attributable"),
                required: vec!["family", "confidence"],
                properties: vec![
                    ("family", field("string", "Family slug (see GET /api/models), or unknown")),
                    ("confidence", number("0-1", 0.0, 1.0)),
                    ("tool", field("string", "The tool that wrote the metadata, when it is known")),
                    ("model", field("string", "Checkpoint or model name from the metadata, when written")),
                ],
                ..MetaSchema::new("object")
            }))),
        ),
        (
            "model",
            object(
                "Score for the family named in the request's model field (absent without one)",
                vec![("slug", field("string", "The requested slug")), ("score", number("0-100", 0.0, 100.0))],
            ),
        ),
        (
            "image",
            object(
                "The decoded image",
                vec![
                    (
                        "format",
                        MetaSchemaRef::Inline(Box::new(MetaSchema {
                            description: Some("The format read from the magic bytes"),
                            enum_items: ImageFormat::ALL.iter().map(|f| f.name().into()).collect(),
                            ..MetaSchema::new("string")
                        })),
                    ),
                    ("width", field("integer", "pixels")),
                    ("height", field("integer", "pixels")),
                    ("bytes", field("integer", "file size")),
                ],
            ),
        ),
        ("cached", field("boolean", "true when the report came from the result cache")),
        ("elapsed_ms", field("number", "Analysis time in milliseconds")),
        (
            "details",
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                description: Some("Signals as {signal_type, confidence 0-100, description}"),
                items: Some(Box::new(object(
                    "One signal",
                    vec![
                        ("signal_type", field("string", "module or signal name")),
                        ("confidence", number("0-100", 0.0, 100.0)),
                        ("description", field("string", "what was seen")),
                    ],
                ))),
                ..MetaSchema::new("array")
            })),
        ),
        (
            "regions",
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                description: Some("The most suspicious regions, strongest first"),
                items: Some(Box::new(object(
                    "A rectangle in image pixels",
                    vec![
                        ("x", field("integer", "left")),
                        ("y", field("integer", "top")),
                        ("width", field("integer", "pixels")),
                        ("height", field("integer", "pixels")),
                        ("score", number("0-1", 0.0, 1.0)),
                        ("module", field("string", "the module that marked it")),
                    ],
                ))),
                ..MetaSchema::new("array")
            })),
        ),
        (
            "file_metadata",
            object(
                "Creator, dates, camera, software and dimensions read from the file",
                vec![
                    ("creator", nullable(field("string", "author or artist; null when not written"))),
                    (
                        "created",
                        nullable(field(
                            "string",
                            "creation date as written in the file; null when not written",
                        )),
                    ),
                    (
                        "modified",
                        nullable(field(
                            "string",
                            "modification date as written in the file; null when not written",
                        )),
                    ),
                    ("camera", nullable(field("string", "make and model; null when not written"))),
                    (
                        "software",
                        nullable(field("string", "software that wrote the file; null when not written")),
                    ),
                    ("width", field("integer", "pixels")),
                    ("height", field("integer", "pixels")),
                ],
            ),
        ),
    ];
    MetaSchema {
        description: Some("The detection report"),
        // every field is always written, but `model` (only when the request named one)
        required: properties.iter().map(|(name, _)| *name).filter(|name| *name != "model").collect(),
        properties,
        ..MetaSchema::new("object")
    }
}

impl Type for ReportJson {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        NAME.into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(NAME.to_string())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(NAME.to_string(), |_| report_schema());
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for ReportJson {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        serde_json::from_value(value.unwrap_or_default()).map(ReportJson).map_err(ParseError::custom)
    }
}

impl ToJSON for ReportJson {
    fn to_json(&self) -> Option<serde_json::Value> {
        serde_json::to_value(&self.0).ok()
    }
}

/// The property names the spec documents for the report, for the drift test.
pub fn documented_properties() -> Vec<&'static str> {
    report_schema().properties.iter().map(|(name, _)| *name).collect()
}
