//! Fusion: module outputs → one 0-100 score, a verdict, confidence and uncertainty.
//!
//! Two layers. A *combiner* turns the module outputs into log-odds: a bias, plus a weight on
//! the logit of each non-abstaining module's score, plus a term for each module that abstained
//! (v1: every weight 1, no abstention terms; the calibrated logistic model fitted by
//! `tellscan calibrate` — see [`crate::learn::calibration`] — sets all three from a labelled corpus
//! and is read with [`FusionWeights::load`]). Then *decisive-evidence rules* bound the result:
//! - a valid C2PA manifest declaring generated content, or generator metadata, or an IPTC
//!   "trained algorithmic" declaration in XMP, puts the score at ≥ 85;
//! - a valid, trusted C2PA manifest declaring a camera capture (and no AI declaration of the
//!   first kind) puts it at ≤ 15.
//!
//! With no evidence at all the answer is 50, `Uncertain`, with high uncertainty (v1); a
//! calibrated model answers its fitted rate for images on which every module abstained.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::evidence::{logit, sigmoid};
use super::report::{
    DetailSignal, Flag, ModuleReport, Verdict, AI_GENERATED_FROM, LIKELY_AI_FROM, UNCERTAIN_FROM,
};

/// Floor for decisive AI evidence (the "AI generated" band starts at 85).
const DECISIVE_AI_FLOOR: f64 = 90.0;
/// Ceiling for a trusted camera-capture manifest (the "Authentic" band ends at 15).
const DECISIVE_CAPTURE_CEILING: f64 = 10.0;

/// The least uncertainty of an `Uncertain` answer that no decisive evidence settles.
const UNDECIDED_UNCERTAINTY: f64 = 0.6;

/// How the input was degraded, which widens uncertainty.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Degradation {
    /// Shorter side in pixels.
    pub short_side: u32,
    /// Estimated JPEG quality, for JPEG input.
    pub jpeg_quality: Option<u8>,
    /// The request came from a browser extension, whose images are usually re-encoded and resized.
    pub from_extension: bool,
    /// The image was resampled (the physics module found an interpolation pattern).
    pub resized: bool,
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
        let resized = if self.resized { 0.1 } else { 0.0 };
        small + compressed + extension + resized
    }
}

/// The combiner's parameters: log-odds = `bias` + Σ over voting modules of
/// `weight × logit(score)` + Σ over abstaining modules of `abstain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusionWeights {
    /// Added to the weighted sum (log-odds).
    pub bias: f64,
    /// Weight per module name; modules not listed get `default_weight`.
    pub weights: BTreeMap<String, f64>,
    /// Weight of a module without its own entry.
    pub default_weight: f64,
    /// Log-odds added when the named module abstains (absent: 0). Empty for v1.
    #[serde(default)]
    pub abstain: BTreeMap<String, f64>,
    /// How these weights were fitted; `None` for hand-set weights such as v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted: Option<FitInfo>,
    /// Where the fused probability sits on the 0-100 score, so that the verdict bands keep
    /// their promise on sources the fit never saw; `None`: the score is 100 × the probability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScoreScale>,
}

/// A monotone, piecewise-linear map from the fused probability to the score (both 0-1),
/// fitted by `tellscan calibrate` so that, on held-out sources, at most the target shares of
/// real photos reach the "Likely AI" (60) and "AI generated" (85) bands. A probability the
/// fit cannot tell from what real photos get is mapped below 60 (`Uncertain` or lower).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreScale {
    /// `[probability, score]` knots, both increasing, from `[0, 0]` to `[1, 1]`.
    pub knots: Vec<[f64; 2]>,
    /// Held-out share of real photos at or above 60, per condition (for the record).
    #[serde(default)]
    pub held_out_fpr_60: BTreeMap<String, f64>,
    /// Held-out share of real photos at or above 85, per condition (for the record).
    #[serde(default)]
    pub held_out_fpr_85: BTreeMap<String, f64>,
}

impl ScoreScale {
    /// The map that sends `p60` to 0.60 and `p85` to 0.85, linear in between and beyond, and
    /// the identity up to 0.40 (`p60` ≥ 0.6 and `p85` > `p60` are enforced).
    pub fn new(p60: f64, p85: f64) -> Self {
        let (uncertain, likely, ai) =
            (UNCERTAIN_FROM / 100.0, LIKELY_AI_FROM / 100.0, AI_GENERATED_FROM / 100.0);
        let p60 = p60.clamp(likely, 0.999_998);
        let p85 = p85.clamp(ai.max(p60 + 1e-6), 0.999_999);
        Self {
            knots: vec![[0.0, 0.0], [uncertain, uncertain], [p60, likely], [p85, ai], [1.0, 1.0]],
            held_out_fpr_60: BTreeMap::new(),
            held_out_fpr_85: BTreeMap::new(),
        }
    }

    /// The probability a score threshold (0-1) corresponds to.
    pub fn probability_at(&self, score: f64) -> f64 {
        interpolate(&self.knots, score, 1, 0)
    }

    /// The score (0-1) of a probability.
    pub fn apply(&self, p: f64) -> f64 {
        interpolate(&self.knots, p, 0, 1)
    }

    fn check(&self) -> anyhow::Result<()> {
        let ok = self.knots.len() >= 2
            && self.knots.iter().flatten().all(|v| v.is_finite() && (0.0..=1.0).contains(v))
            && self.knots.windows(2).all(|w| w[1][0] > w[0][0] && w[1][1] >= w[0][1])
            && self.knots.first() == Some(&[0.0, 0.0])
            && self.knots.last() == Some(&[1.0, 1.0]);
        if !ok {
            bail!("scale.knots must rise from [0, 0] to [1, 1] with finite values in 0-1");
        }
        Ok(())
    }
}

/// Linear interpolation through `knots` from coordinate `from` to coordinate `to`.
fn interpolate(knots: &[[f64; 2]], x: f64, from: usize, to: usize) -> f64 {
    let x = x.clamp(0.0, 1.0);
    for w in knots.windows(2) {
        let (a, b) = (w[0], w[1]);
        if x <= b[from] {
            let span = b[from] - a[from];
            let t = if span > 0.0 { (x - a[from]) / span } else { 1.0 };
            return a[to] + t * (b[to] - a[to]);
        }
    }
    knots.last().map_or(x, |k| k[to])
}

/// Facts about a fit by `tellscan calibrate` (no dates: the same corpus gives the same file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitInfo {
    /// The model, in words.
    pub method: String,
    /// What the samples were (e.g. normalised and raw files).
    #[serde(default)]
    pub inputs: String,
    /// Samples (images × conditions), decisive ones included.
    pub samples: usize,
    /// AI samples.
    pub positive: usize,
    /// Real samples.
    pub negative: usize,
    /// Samples left out of the fit because a decisive-evidence rule sets their answer.
    #[serde(default)]
    pub decisive: usize,
    /// Cross-validation folds (one per source group, leave-one-group-out).
    pub folds: usize,
    /// The chosen L2 penalty on the summed log-loss, pulling the weights towards v1's and the
    /// abstention terms towards 0 (the bias is free).
    pub l2: f64,
    /// Held-out mean log-loss of the fused probability at the chosen penalty.
    pub cv_log_loss: f64,
    /// Held-out expected calibration error (10 bins) of the fused v1 probability.
    pub cv_ece_uncalibrated: f64,
    /// Held-out expected calibration error (10 bins) of the calibrated probability.
    pub cv_ece_calibrated: f64,
    /// Held-out ROC AUC of the fused v1 probability.
    pub cv_auc_uncalibrated: Option<f64>,
    /// Held-out ROC AUC of the calibrated probability.
    pub cv_auc_calibrated: Option<f64>,
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
            abstain: BTreeMap::new(),
            fitted: None,
            scale: None,
        }
    }

    /// `true` for a fitted model (or any weights with abstention terms): it answers even when
    /// no module voted, from `bias` and the abstention terms.
    pub fn is_calibrated(&self) -> bool {
        self.fitted.is_some() || !self.abstain.is_empty()
    }

    /// Read weights written by `tellscan calibrate`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Self::parse(&Self::read(path)?, path)
    }

    /// The bytes of a fusion file, with the errors [`FusionWeights::load`] gives.
    pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "fusion weights file {} does not exist; `tellscan calibrate --labels LABELS.csv \
                 --out {}` writes it",
                path.display(),
                path.display()
            ),
            Err(e) => Err(e).with_context(|| format!("cannot read fusion weights {}", path.display())),
        }
    }

    /// Parse and check the JSON of a fusion file (`origin` names it in errors).
    pub fn parse(json: &[u8], origin: &Path) -> anyhow::Result<Self> {
        let weights: Self = serde_json::from_slice(json).map_err(|e| {
            anyhow::anyhow!("{} is not a valid fusion weights JSON file: {e}", origin.display())
        })?;
        weights.check().map_err(|e| anyhow::anyhow!("fusion weights {}: {e}", origin.display()))?;
        Ok(weights)
    }

    /// Write the weights as pretty JSON (creating the parent folder).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        self.check()?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(self)? + "\n";
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Every number must be finite.
    fn check(&self) -> anyhow::Result<()> {
        let named = [("bias", self.bias), ("default_weight", self.default_weight)];
        for (what, v) in named {
            if !v.is_finite() {
                bail!("{what} is {v}, not a finite number");
            }
        }
        for (kind, map) in [("weights", &self.weights), ("abstain", &self.abstain)] {
            if let Some((name, v)) = map.iter().find(|(_, v)| !v.is_finite()) {
                bail!("{kind}.{name} is {v}, not a finite number");
            }
        }
        if let Some(scale) = &self.scale {
            scale.check()?;
        }
        Ok(())
    }

    /// The combiner's log-odds for module outputs `(name, score 0-1, abstained)`; `None` when
    /// no module voted and the weights have no answer for that case (v1: the caller says 50).
    pub fn log_odds<'a>(&self, modules: impl IntoIterator<Item = (&'a str, f64, bool)>) -> Option<f64> {
        let (mut voted, mut votes, mut abstained) = (false, 0.0, 0.0);
        for (name, score, abstain) in modules {
            if abstain {
                abstained += self.abstain.get(name).copied().unwrap_or(0.0);
            } else {
                voted = true;
                votes += self.vote(name, score);
            }
        }
        (voted || self.is_calibrated()).then_some(self.bias + votes + abstained)
    }

    /// The fused probability (0-1): the combiner, 0.5 where it has no answer, then the
    /// decisive-evidence bound, without the score scale (what calibration fits and measures
    /// log-loss on). `fuse` reports 100 × [`Self::score`], which places it on the scale.
    pub fn probability<'a>(
        &self,
        modules: impl IntoIterator<Item = (&'a str, f64, bool)>,
        bound: Option<Bound>,
    ) -> f64 {
        match self.log_odds(modules) {
            Some(z) => bound.map_or(sigmoid(z), |b| b.apply(sigmoid(z))),
            None => 0.5,
        }
    }

    /// The fused score (0-1) before rounding: the combiner's probability placed on the score
    /// scale (when fitted), then the decisive-evidence bound; 0.5 where the combiner has no
    /// answer. `fuse` reports 100 × this.
    pub fn score<'a>(
        &self,
        modules: impl IntoIterator<Item = (&'a str, f64, bool)>,
        bound: Option<Bound>,
    ) -> f64 {
        match self.log_odds(modules) {
            Some(z) => {
                let scaled = self.place(sigmoid(z));
                bound.map_or(scaled, |b| b.apply(scaled))
            }
            None => 0.5,
        }
    }

    /// A probability's place on the score (0-1): the fitted scale, or the probability itself.
    fn place(&self, probability: f64) -> f64 {
        self.scale.as_ref().map_or(probability, |s| s.apply(probability))
    }

    /// One voting module's term: its weight times the logit of its score.
    fn vote(&self, name: &str, score: f64) -> f64 {
        self.weights.get(name).copied().unwrap_or(self.default_weight) * logit(score)
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

/// The bound a decisive-evidence rule puts on the fused probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bound {
    /// Decisive AI evidence: at least 0.90.
    AiFloor,
    /// A trusted camera-capture manifest: at most 0.10.
    CaptureCeiling,
}

impl Bound {
    /// Bound a probability (0-1).
    pub fn apply(self, p: f64) -> f64 {
        match self {
            Bound::AiFloor => p.max(DECISIVE_AI_FLOOR / 100.0),
            Bound::CaptureCeiling => p.min(DECISIVE_CAPTURE_CEILING / 100.0),
        }
    }
}

/// The decisive-evidence rule that applies to these module reports, if any.
pub fn bound(modules: &BTreeMap<String, ModuleReport>) -> Option<Bound> {
    decisive(modules).map(|d| match d {
        Decisive::Ai(_) => Bound::AiFloor,
        Decisive::Capture => Bound::CaptureCeiling,
    })
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
        .map(|(name, m)| (name, m, weights.vote(name, m.score)))
        .collect();
    let calibrated = weights.is_calibrated();
    let decision = decisive(modules);
    let mut explanations = Vec::new();
    let log_odds = weights.log_odds(modules.iter().map(|(name, m)| (name.as_str(), m.score, m.abstained)));
    let (score, uncertainty) = match log_odds {
        None => {
            explanations.push(
                "No module found evidence either way: no generator metadata, no provenance manifest, \
                 no camera record; the answer is a coin toss"
                    .to_string(),
            );
            (50.0, (0.9 + degradation.penalty()).min(1.0))
        }
        Some(total) => {
            if voting.is_empty() {
                explanations.push(
                    "No module found evidence either way: no generator metadata, no provenance \
                     manifest, no camera record; the score is the calibrated rate for such images"
                        .to_string(),
                );
            }
            let probability = sigmoid(total);
            let mut score = 100.0 * weights.place(probability);
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
            let mut uncertainty = if voting.is_empty() {
                0.9 + degradation.penalty()
            } else if decision.is_some() {
                0.02 + 0.5 * disagreement
            } else {
                0.1 + 0.3 * abstain_share + disagreement + degradation.penalty()
            };
            if decision.is_none() && !voting.is_empty() && (UNCERTAIN_FROM..LIKELY_AI_FROM).contains(&score) {
                // the bands promise few real photos above 60; below it, say why we cannot tell
                uncertainty = uncertainty.max(UNDECIDED_UNCERTAINTY);
                explanations.push(format!(
                    "No provenance manifest or generator metadata decides this image, and the pixel evidence \
                     is too weak to call it: {}",
                    if probability > 0.5 {
                        "it leans towards generation, but real photos that were resized and re-compressed \
                         show the same signs often enough"
                    } else {
                        "it does not point clearly either way"
                    }
                ));
            }
            (score, uncertainty.clamp(0.0, 1.0))
        }
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
    let combiner = if calibrated {
        format!("calibrated logistic fusion ({} modules)", voting.len())
    } else {
        format!("weighted log-odds of {} module(s) (fusion v1 weights)", voting.len())
    };
    let report = ModuleReport {
        score: score / 100.0,
        // a calibrated model always answers (with its no-evidence rate when nothing voted)
        abstained: log_odds.is_none(),
        flags: vec![],
        explanations: vec![match decision {
            Some(_) if calibrated => format!("decisive evidence bounds the {combiner}"),
            Some(_) => "decisive evidence bounds the weighted log-odds of the modules".into(),
            None if log_odds.is_none() => "no module voted".into(),
            None if voting.is_empty() => format!("{combiner}: no module voted"),
            None => combiner,
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

    fn calibrated() -> FusionWeights {
        FusionWeights {
            bias: -0.4,
            weights: BTreeMap::from([("metadata".to_string(), 0.5)]),
            default_weight: 0.0,
            abstain: BTreeMap::from([("metadata".to_string(), 0.3), ("provenance".to_string(), -0.2)]),
            fitted: None,
            scale: None,
        }
    }

    #[test]
    fn calibrated_weights_add_abstention_terms_and_answer_without_votes() {
        let w = calibrated();
        assert!(w.is_calibrated() && !FusionWeights::v1().is_calibrated());
        let modules = BTreeMap::from([
            ("metadata".to_string(), module(0.8, &[])),
            ("provenance".to_string(), ModuleReport::abstain("none")),
            ("visual".to_string(), module(0.99, &[])), // unknown to the fit: weight 0
        ]);
        let f = fuse(&w, &modules, Degradation::default());
        let want = sigmoid(-0.4 + 0.5 * logit(0.8) - 0.2);
        assert!((f.report.score - want).abs() < 1e-12);
        assert_eq!(f.report.explanations, vec!["calibrated logistic fusion (2 modules)"]);
        let none = BTreeMap::from([
            ("metadata".to_string(), ModuleReport::abstain("none")),
            ("provenance".to_string(), ModuleReport::abstain("none")),
        ]);
        let f = fuse(&w, &none, Degradation::default());
        assert!((f.report.score - sigmoid(-0.4 + 0.3 - 0.2)).abs() < 1e-12);
        assert!(!f.report.abstained && f.uncertainty >= 0.9 && f.confidence == 0.0);
        assert!(f.explanations[0].contains("calibrated rate"));
    }

    #[test]
    fn decisive_rules_bound_calibrated_fusion() {
        let ai = BTreeMap::from([("metadata".to_string(), module(0.01, &[Flag::DalleSignature]))]);
        let f = fuse(&calibrated(), &ai, Degradation::default());
        assert_eq!(f.score, DECISIVE_AI_FLOOR);
        assert!(f.report.explanations[0].starts_with("decisive evidence bounds the calibrated"));
        let capture = BTreeMap::from([(
            "provenance".to_string(),
            module(0.9, &[Flag::C2paValid, Flag::C2paTrusted, Flag::C2paCaptureSource]),
        )]);
        let f = fuse(&calibrated(), &capture, Degradation::default());
        assert!(f.score <= DECISIVE_CAPTURE_CEILING);
        assert_eq!(bound(&capture), Some(Bound::CaptureCeiling));
        assert_eq!(Bound::AiFloor.apply(0.2), 0.9);
    }

    #[test]
    fn the_score_scale_moves_weak_evidence_into_uncertain_and_says_why() {
        let mut w = calibrated();
        w.scale = Some(ScoreScale::new(0.9, 0.99));
        // metadata at 0.9 alone: log-odds -0.4 + 0.5·logit(0.9) - 0.2 ≈ 0.50, p ≈ 0.62
        let modules = BTreeMap::from([
            ("metadata".to_string(), module(0.9, &[])),
            ("provenance".to_string(), ModuleReport::abstain("none")),
        ]);
        let p = sigmoid(-0.4 + 0.5 * logit(0.9) - 0.2);
        let f = fuse(&w, &modules, Degradation { short_side: 2000, ..Default::default() });
        assert!((f.score - round1(100.0 * w.scale.as_ref().unwrap().apply(p))).abs() < 1e-9);
        assert_eq!(f.verdict, Verdict::Uncertain, "{}", f.score);
        assert!(f.uncertainty >= UNDECIDED_UNCERTAINTY);
        assert!(
            f.explanations.iter().any(|e| e.contains("leans towards generation")),
            "{:?}",
            f.explanations
        );
        // decisive evidence is bounded after the scale
        let ai = BTreeMap::from([("metadata".to_string(), module(0.9, &[Flag::DalleSignature]))]);
        assert!(fuse(&w, &ai, Degradation::default()).score >= 90.0);
    }

    #[test]
    fn degradation_widens_uncertainty() {
        let modules = BTreeMap::from([("metadata".to_string(), module(0.25, &[Flag::CameraExif]))]);
        let clean =
            fuse(&FusionWeights::v1(), &modules, Degradation { short_side: 2000, ..Default::default() });
        let degraded = fuse(
            &FusionWeights::v1(),
            &modules,
            Degradation { short_side: 100, jpeg_quality: Some(40), from_extension: true, resized: false },
        );
        assert!(degraded.uncertainty > clean.uncertainty);
        assert_eq!(clean.score, degraded.score);
        let resized = fuse(
            &FusionWeights::v1(),
            &modules,
            Degradation { short_side: 2000, resized: true, ..Default::default() },
        );
        assert!(resized.uncertainty > clean.uncertainty, "detected resizing widens uncertainty");
    }
}
