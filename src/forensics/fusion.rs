//! Fusion: module outputs → one 0-100 score, a verdict, confidence and uncertainty.
//!
//! Two layers. A *combiner* turns the non-abstaining modules' scores into log-odds
//! (v1: a weighted sum of each module's logit; the calibrated logistic model fitted by
//! `tellscan calibrate` will replace the weights, not the shape). Then *decisive-evidence
//! rules* bound the result:
//! - a valid C2PA manifest declaring generated content, or generator metadata, or an IPTC
//!   "trained algorithmic" declaration in XMP, puts the score at ≥ 85;
//! - a valid, trusted C2PA manifest declaring a camera capture (and no AI declaration of the
//!   first kind) puts it at ≤ 15.
//!
//! With no evidence at all the answer is 50, `Uncertain`, with high uncertainty.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::evidence::{logit, sigmoid};
use super::report::{DetailSignal, Flag, ModuleReport, Verdict};

/// Floor for decisive AI evidence (the "AI generated" band starts at 85).
const DECISIVE_AI_FLOOR: f64 = 90.0;
/// Ceiling for a trusted camera-capture manifest (the "Authentic" band ends at 15).
const DECISIVE_CAPTURE_CEILING: f64 = 10.0;

/// How the input was degraded, which widens uncertainty.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Degradation {
    /// Shorter side in pixels.
    pub short_side: u32,
    /// Estimated JPEG quality, for JPEG input.
    pub jpeg_quality: Option<u8>,
    /// The request came from a browser extension, whose images are usually re-encoded and resized.
    pub from_extension: bool,
}

impl Degradation {
    /// 0-1: how much the input's condition alone should widen uncertainty.
    fn penalty(&self) -> f64 {
        let small = match self.short_side {
            0..=127 => 0.35,
            128..=255 => 0.2,
            256..=511 => 0.08,
            _ => 0.0,
        };
        let compressed = match self.jpeg_quality {
            Some(q) if q < 60 => 0.2,
            Some(q) if q < 80 => 0.1,
            _ => 0.0,
        };
        let extension = if self.from_extension { 0.1 } else { 0.0 };
        small + compressed + extension
    }
}

/// The combiner's parameters: per-module weights on the logit of each module's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusionWeights {
    /// Added to the weighted sum (log-odds).
    pub bias: f64,
    /// Weight per module name; modules not listed get `default_weight`.
    pub weights: BTreeMap<String, f64>,
    /// Weight of a module without its own entry.
    pub default_weight: f64,
}

impl FusionWeights {
    /// Fusion v1: every module at weight 1. Each module's score is already a log-odds sum of
    /// documented findings whose weights were set from the corpus (see each module's doc), so
    /// weight 1 takes them at face value; the calibrated fit of `tellscan calibrate` replaces this.
    pub fn v1() -> Self {
        Self {
            bias: 0.0,
            weights: BTreeMap::from([("metadata".to_string(), 1.0), ("provenance".to_string(), 1.0)]),
            default_weight: 1.0,
        }
    }
}

/// The fused answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    /// 0-100.
    pub score: f64,
    /// The band of `score`.
    pub verdict: Verdict,
    /// A sentence for user interfaces.
    pub presentation: String,
    /// 0-1.
    pub confidence: f64,
    /// 0-1.
    pub uncertainty: f64,
    /// Strongest reasons first.
    pub explanations: Vec<String>,
    /// The `fusion` entry of the modules map.
    pub report: ModuleReport,
    /// One signal per module that had evidence.
    pub details: Vec<DetailSignal>,
}

/// What decides the answer regardless of the combiner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decisive {
    Ai(&'static str),
    Capture,
}

const GENERATOR_FLAGS: &[Flag] = &[
    Flag::A1111Signature,
    Flag::ComfyuiSignature,
    Flag::NovelaiSignature,
    Flag::InvokeaiSignature,
    Flag::FooocusSignature,
    Flag::MidjourneySignature,
    Flag::DalleSignature,
    Flag::FireflySignature,
    Flag::ImagenSignature,
    Flag::StableDiffusionSignature,
    Flag::StealthMetadata,
    Flag::IptcTrainedAlgorithmicMedia,
    Flag::IptcCompositeWithTrainedAlgorithmicMedia,
];

fn decisive(modules: &BTreeMap<String, ModuleReport>) -> Option<Decisive> {
    let has = |module: &str, flag: Flag| modules.get(module).is_some_and(|m| m.flags.contains(&flag));
    if has("provenance", Flag::C2paValid) && has("provenance", Flag::C2paAiSource) {
        return Some(Decisive::Ai("a valid C2PA manifest declares AI-generated content"));
    }
    if has("provenance", Flag::C2paValid)
        && has("provenance", Flag::C2paTrusted)
        && has("provenance", Flag::C2paCaptureSource)
    {
        return Some(Decisive::Capture);
    }
    if GENERATOR_FLAGS.iter().any(|&f| has("metadata", f)) {
        return Some(Decisive::Ai("the metadata names a generative tool or declares generated content"));
    }
    None
}

/// The sentence shown with a verdict.
pub fn presentation(verdict: Verdict, uncertainty: f64) -> String {
    let hedge = if uncertainty > 0.5 { " (the input is degraded or the evidence thin)" } else { "" };
    let sentence = match verdict {
        Verdict::AiGenerated => "AI generation detected with high confidence",
        Verdict::LikelyAi => "Signs of AI generation detected",
        Verdict::Uncertain => "Not enough evidence to tell whether this image is AI-generated",
        Verdict::LikelyAuthentic => "No strong sign of AI generation; likely an authentic image",
        Verdict::Authentic => "Authentic: the evidence points to a real capture",
    };
    format!("{sentence}{hedge}")
}

/// Combine the module reports.
pub fn fuse(
    weights: &FusionWeights,
    modules: &BTreeMap<String, ModuleReport>,
    degradation: Degradation,
) -> Fused {
    let voting: Vec<(&String, &ModuleReport, f64)> = modules
        .iter()
        .filter(|(_, m)| !m.abstained)
        .map(|(name, m)| {
            let w = weights.weights.get(name).copied().unwrap_or(weights.default_weight);
            (name, m, w * logit(m.score))
        })
        .collect();
    let decision = decisive(modules);
    let mut explanations = Vec::new();
    let (score, uncertainty) = if voting.is_empty() {
        explanations.push(
            "No module found evidence either way: no generator metadata, no provenance manifest, \
             no camera record; the answer is a coin toss"
                .to_string(),
        );
        (50.0, (0.9 + degradation.penalty()).min(1.0))
    } else {
        let total: f64 = weights.bias + voting.iter().map(|(_, _, l)| l).sum::<f64>();
        let mut score = 100.0 * sigmoid(total);
        match decision {
            Some(Decisive::Ai(why)) => {
                score = score.max(DECISIVE_AI_FLOOR);
                explanations.push(format!("Decisive: {why}"));
            }
            Some(Decisive::Capture) => {
                score = score.min(DECISIVE_CAPTURE_CEILING);
                explanations.push("Decisive: a trusted C2PA manifest declares a camera capture".into());
            }
            None => {}
        }
        let abstain_share = 1.0 - voting.len() as f64 / modules.len().max(1) as f64;
        let disagreement = disagreement(&voting);
        let uncertainty = if decision.is_some() {
            0.02 + 0.5 * disagreement
        } else {
            0.1 + 0.3 * abstain_share + disagreement + degradation.penalty()
        };
        (score, uncertainty.clamp(0.0, 1.0))
    };
    // the strongest module reasons, ordered by how far each moved the answer
    let mut ranked = voting.clone();
    ranked.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
    for (name, m, _) in &ranked {
        if let Some(first) = m.explanations.first() {
            explanations.push(format!("{name}: {first}"));
        }
    }
    let details = ranked
        .iter()
        .map(|(name, m, _)| DetailSignal {
            signal_type: name.to_string(),
            confidence: round1(100.0 * m.score),
            description: m.explanations.first().cloned().unwrap_or_default(),
        })
        .collect();
    let verdict = Verdict::from_score(score);
    let confidence = if voting.is_empty() {
        0.0
    } else {
        ((score - 50.0).abs() / 50.0 * (1.0 - uncertainty)).clamp(0.0, 1.0)
    };
    let report = ModuleReport {
        score: score / 100.0,
        abstained: voting.is_empty(),
        flags: vec![],
        explanations: vec![match decision {
            Some(_) => "decisive evidence bounds the weighted log-odds of the modules".into(),
            None if voting.is_empty() => "no module voted".into(),
            None => format!("weighted log-odds of {} module(s) (fusion v1 weights)", voting.len()),
        }],
        elapsed_ms: 0.0,
    };
    Fused {
        score: round1(score),
        verdict,
        presentation: presentation(verdict, uncertainty),
        confidence: round3(confidence),
        uncertainty: round3(uncertainty),
        explanations,
        report,
        details,
    }
}

/// Standard deviation of the voting modules' scores, doubled so that full disagreement
/// (one module at 0, one at 1) is 1.
fn disagreement(voting: &[(&String, &ModuleReport, f64)]) -> f64 {
    if voting.len() < 2 {
        return 0.0;
    }
    let n = voting.len() as f64;
    let mean = voting.iter().map(|(_, m, _)| m.score).sum::<f64>() / n;
    let var = voting.iter().map(|(_, m, _)| (m.score - mean).powi(2)).sum::<f64>() / n;
    2.0 * var.sqrt()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(score: f64, flags: &[Flag]) -> ModuleReport {
        ModuleReport {
            score,
            abstained: false,
            flags: flags.to_vec(),
            explanations: vec!["why".into()],
            elapsed_ms: 0.0,
        }
    }

    #[test]
    fn no_evidence_is_fifty_and_uncertain() {
        let modules = BTreeMap::from([
            ("metadata".to_string(), ModuleReport::abstain("none")),
            ("provenance".to_string(), ModuleReport::abstain("none")),
        ]);
        let f = fuse(&FusionWeights::v1(), &modules, Degradation { short_side: 1000, ..Default::default() });
        assert_eq!(f.score, 50.0);
        assert_eq!(f.verdict, Verdict::Uncertain);
        assert!(f.uncertainty >= 0.9);
        assert_eq!(f.confidence, 0.0);
        assert!(f.explanations[0].contains("No module found evidence"));
    }

    #[test]
    fn generator_metadata_is_decisive_even_against_a_camera_record() {
        let modules = BTreeMap::from([
            ("metadata".to_string(), module(0.3, &[Flag::ComfyuiSignature])),
            ("provenance".to_string(), ModuleReport::abstain("none")),
        ]);
        let f = fuse(&FusionWeights::v1(), &modules, Degradation::default());
        assert!(f.score >= 85.0, "{}", f.score);
        assert_eq!(f.verdict, Verdict::AiGenerated);
    }

    #[test]
    fn trusted_capture_manifest_caps_the_score() {
        let modules = BTreeMap::from([
            ("metadata".to_string(), module(0.7, &[])),
            (
                "provenance".to_string(),
                module(0.05, &[Flag::C2paValid, Flag::C2paTrusted, Flag::C2paCaptureSource]),
            ),
        ]);
        let f = fuse(&FusionWeights::v1(), &modules, Degradation::default());
        assert!(f.score <= 15.0);
        assert_eq!(f.verdict, Verdict::Authentic);
    }

    #[test]
    fn degradation_widens_uncertainty() {
        let modules = BTreeMap::from([("metadata".to_string(), module(0.25, &[Flag::CameraExif]))]);
        let clean =
            fuse(&FusionWeights::v1(), &modules, Degradation { short_side: 2000, ..Default::default() });
        let degraded = fuse(
            &FusionWeights::v1(),
            &modules,
            Degradation { short_side: 100, jpeg_quality: Some(40), from_extension: true },
        );
        assert!(degraded.uncertainty > clean.uncertainty);
        assert_eq!(clean.score, degraded.score);
    }
}
