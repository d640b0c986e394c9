//! Weighing evidence in log-odds: each finding adds a signed weight, and the module's score
//! is the logistic of the sum. Shared by the modules and by fusion.

use super::report::{Flag, ModuleReport};

/// The logistic function: log-odds → probability.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Probability → log-odds, clamped away from 0 and 1 so that one module cannot be infinite.
pub fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-4, 1.0 - 1e-4);
    (p / (1.0 - p)).ln()
}

/// One finding: its weight in log-odds (positive = towards AI), an optional flag, a sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Log-odds contribution; positive points to AI generation.
    pub weight: f64,
    /// The flag this finding raises, if any.
    pub flag: Option<Flag>,
    /// A human sentence.
    pub explanation: String,
}

/// Findings collected by one module.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    findings: Vec<Finding>,
}

impl Evidence {
    /// Record a finding.
    pub fn add(&mut self, weight: f64, flag: Option<Flag>, explanation: impl Into<String>) {
        self.findings.push(Finding { weight, flag, explanation: explanation.into() });
    }

    /// `true` when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty()
    }

    /// The module report: the logistic of the summed weights, explanations strongest first.
    /// With no weighted finding the module abstains: `no_evidence` is its reason, followed by
    /// any weightless notes (flags for the analyst).
    pub fn into_report(mut self, no_evidence: &str) -> ModuleReport {
        if self.findings.iter().all(|f| f.weight == 0.0) {
            let mut report = ModuleReport::abstain(no_evidence);
            report.flags = self.findings.iter().filter_map(|f| f.flag).collect();
            report.flags.sort();
            report.flags.dedup();
            report.explanations.extend(self.findings.into_iter().map(|f| f.explanation));
            return report;
        }
        let total: f64 = self.findings.iter().map(|f| f.weight).sum();
        self.findings.sort_by(|a, b| b.weight.abs().total_cmp(&a.weight.abs()));
        let mut flags: Vec<Flag> = self.findings.iter().filter_map(|f| f.flag).collect();
        flags.sort();
        flags.dedup();
        ModuleReport {
            score: sigmoid(total),
            abstained: false,
            flags,
            explanations: self.findings.into_iter().map(|f| f.explanation).collect(),
            elapsed_ms: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_weights_and_orders_explanations() {
        let mut ev = Evidence::default();
        ev.add(-0.5, None, "weak");
        ev.add(2.0, Some(Flag::CameraExif), "strong");
        let r = ev.into_report("nothing");
        assert!((r.score - sigmoid(1.5)).abs() < 1e-12);
        assert_eq!(r.explanations, vec!["strong", "weak"]);
        assert_eq!(r.flags, vec![Flag::CameraExif]);
        assert!(Evidence::default().into_report("nothing").abstained);
        let mut notes = Evidence::default();
        notes.add(0.0, Some(Flag::StandardQuantTables), "a note");
        let r = notes.into_report("nothing");
        assert!(r.abstained && r.score == 0.5);
        assert_eq!(r.explanations, vec!["nothing", "a note"]);
        assert_eq!(r.flags, vec![Flag::StandardQuantTables]);
    }

    #[test]
    fn logit_inverts_sigmoid() {
        for p in [0.01, 0.3, 0.5, 0.9] {
            assert!((sigmoid(logit(p)) - p).abs() < 1e-9);
        }
    }
}
