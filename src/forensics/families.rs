//! The catalogue of generator families the detector can name, and the per-family score
//! reported when a request asks about one (`model=<slug>`).
//!
//! The slugs are the ones the metadata module attributes (`metadata::generators`); a test
//! checks that every family it can emit is listed here.

use super::report::{ModelScore, Report};

/// One generator family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Lower-case slug, as accepted in `model=` and reported in `generator.family`.
    pub slug: &'static str,
    /// Display name.
    pub name: &'static str,
}

const fn f(slug: &'static str, name: &'static str) -> Family {
    Family { slug, name }
}

/// Every known family, ordered by slug.
pub const FAMILIES: &[Family] = &[
    f("auraflow", "AuraFlow"),
    f("chroma", "Chroma"),
    f("cogview", "CogView"),
    f("cosmos-predict1", "NVIDIA Cosmos Predict 1"),
    f("cosmos-predict2", "NVIDIA Cosmos Predict 2"),
    f("dalle", "OpenAI DALL-E"),
    f("firefly", "Adobe Firefly"),
    f("flux.1-dev", "FLUX.1 [dev]"),
    f("flux.1-kontext", "FLUX.1 Kontext"),
    f("flux.1-schnell", "FLUX.1 [schnell]"),
    f("flux.2", "FLUX.2"),
    f("gpt-image", "OpenAI GPT Image"),
    f("hidream", "HiDream"),
    f("hunyuan-dit", "Hunyuan-DiT"),
    f("hunyuan-image", "HunyuanImage"),
    f("hunyuan-video", "HunyuanVideo"),
    f("imagen", "Google Imagen"),
    f("kandinsky", "Kandinsky"),
    f("kolors", "Kolors"),
    f("ltx-video", "LTX-Video"),
    f("lumina-next", "Lumina-Next"),
    f("lumina2", "Lumina Image 2.0"),
    f("midjourney", "Midjourney"),
    f("mochi", "Mochi"),
    f("novelai", "NovelAI"),
    f("omnigen", "OmniGen"),
    f("omnigen2", "OmniGen2"),
    f("pixart", "PixArt"),
    f("playground", "Playground"),
    f("qwen-image", "Qwen-Image"),
    f("sd1.5", "Stable Diffusion 1.x"),
    f("sd2.x", "Stable Diffusion 2.x"),
    f("sd3", "Stable Diffusion 3"),
    f("sd3.5", "Stable Diffusion 3.5"),
    f("sdxl", "Stable Diffusion XL"),
    f("stable-cascade", "Stable Cascade"),
    f("wan2.1", "Wan 2.1"),
    f("wan2.2", "Wan 2.2"),
    f("z-image", "Z-Image"),
];

/// A requested `model` slug that is well-formed and known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSlug(&'static Family);

/// Why a `model` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    /// Not lower-case `[a-z0-9][a-z0-9.-]{0,63}`.
    #[error("model '{0}' is not a slug: use lower-case [a-z0-9][a-z0-9.-]{{0,63}}")]
    Malformed(String),
    /// Well-formed but not in the catalogue.
    #[error("model '{0}' is not a known generator; GET /api/models lists the known slugs")]
    Unknown(String),
}

impl ModelSlug {
    /// Parse a requested slug.
    pub fn parse(s: &str) -> Result<ModelSlug, SlugError> {
        let bytes = s.as_bytes();
        let well_formed = !bytes.is_empty()
            && bytes.len() <= 64
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-');
        if !well_formed {
            return Err(SlugError::Malformed(s.chars().take(70).collect()));
        }
        FAMILIES.iter().find(|f| f.slug == s).map(ModelSlug).ok_or_else(|| SlugError::Unknown(s.to_string()))
    }

    /// The family.
    pub fn family(&self) -> &'static Family {
        self.0
    }

    /// The 0-100 score that the analysed image comes from this family.
    ///
    /// Only metadata and provenance name families so far, so this is the overall AI score
    /// weighted by the attribution: the score times the attribution confidence when the
    /// evidence names this family, times its complement when it names another, and the
    /// overall score itself when no family is named (the pixel evidence is family-agnostic).
    pub fn score(&self, report: &Report) -> ModelScore {
        let factor = match &report.generator {
            Some(g) if g.family == self.0.slug => g.confidence,
            Some(g) if g.family != "unknown" => 1.0 - g.confidence,
            _ => 1.0,
        };
        ModelScore { slug: self.0.slug.to_string(), score: (report.score * factor * 10.0).round() / 10.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_sorted_and_every_slug_parses() {
        assert!(FAMILIES.windows(2).all(|w| w[0].slug < w[1].slug));
        for family in FAMILIES {
            assert_eq!(ModelSlug::parse(family.slug).unwrap().family(), family);
        }
    }

    #[test]
    fn bad_slugs_are_told_apart() {
        assert!(matches!(ModelSlug::parse("SDXL"), Err(SlugError::Malformed(_))));
        assert!(matches!(ModelSlug::parse(".sdxl"), Err(SlugError::Malformed(_))));
        assert!(matches!(ModelSlug::parse(&"a".repeat(65)), Err(SlugError::Malformed(_))));
        assert!(matches!(ModelSlug::parse("sdxl-turbo-9"), Err(SlugError::Unknown(_))));
    }

    #[test]
    fn every_family_the_metadata_module_names_is_listed() {
        let source = include_str!("metadata/generators.rs");
        let source = source.split("#[cfg(test)]").next().unwrap_or(source);
        let mut named = Vec::new();
        for line in source.lines() {
            // family literals appear as `=> "slug"`, `, "slug")` in the rule table, and `Some("slug")`
            for marker in ["=> \"", "], \"", "Some(\""] {
                for (i, _) in line.match_indices(marker) {
                    let rest = &line[i + marker.len()..];
                    if let Some(end) = rest.find('"') {
                        named.push(rest[..end].to_string());
                    }
                }
            }
        }
        let families: Vec<&str> = FAMILIES.iter().map(|f| f.slug).collect();
        // keep what is shaped like a slug (EXIF tag names and messages are not)
        let missing: Vec<&String> = named
            .iter()
            .filter(|s| !matches!(ModelSlug::parse(s), Err(SlugError::Malformed(_))))
            .filter(|s| !families.contains(&s.as_str()))
            .collect();
        assert!(missing.is_empty(), "named by the metadata module but not in the catalogue: {missing:?}");
        for slug in ["sdxl", "flux.1-dev", "midjourney", "dalle", "gpt-image", "imagen", "firefly", "novelai"]
        {
            assert!(named.iter().any(|n| n == slug), "{slug} is no longer named by the metadata module");
        }
    }
}
