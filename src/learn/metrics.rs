//! Ranking and calibration metrics for binary labels (`true` = AI-generated).

/// Area under the ROC curve (Mann-Whitney U with average ranks for ties);
/// `None` when one class is missing.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += order[i..=j].iter().filter(|&&k| positive[k]).count() as f64 * avg_rank;
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

/// Average precision (area under the precision-recall curve, step-wise, tied scores
/// taken as one threshold); `None` without positives.
pub fn average_precision(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    if n_pos == 0 {
        return None;
    }
    let (mut tp, mut seen, mut ap) = (0usize, 0usize, 0.0);
    for (new_tp, size) in thresholds(scores, positive) {
        tp += new_tp;
        seen += size;
        ap += (new_tp as f64 / n_pos as f64) * (tp as f64 / seen as f64);
    }
    Some(ap)
}

/// The distinct scores from the highest down, each as (positives, images) scored exactly
/// that: the steps of the ROC and precision-recall curves.
fn thresholds(scores: &[f64], positive: &[bool]) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut steps = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        steps.push((order[i..=j].iter().filter(|&&k| positive[k]).count(), j - i + 1));
        i = j + 1;
    }
    steps
}

/// Expected calibration error over `bins` equal-width bins of predicted probability.
pub fn expected_calibration_error(probabilities: &[f64], positive: &[bool], bins: usize) -> Option<f64> {
    if probabilities.is_empty() || bins == 0 {
        return None;
    }
    let n = probabilities.len() as f64;
    Some(
        reliability_bins(probabilities, positive, bins)
            .iter()
            .filter_map(|b| Some((b.count as f64 / n) * (b.mean_predicted? - b.observed?).abs()))
            .sum(),
    )
}

/// The `q`-quantile (0-1) by nearest rank; `None` for an empty slice.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The ROC curve as `(false-positive rate, true-positive rate)` points from `(0, 0)` to
/// `(1, 1)`, one point per distinct score taken as the threshold (`score ≥ t` is positive),
/// highest threshold first; the trapezoids under it add up to [`roc_auc`]. `None` when one
/// class is missing.
pub fn roc_points(scores: &[f64], positive: &[bool]) -> Option<Vec<(f64, f64)>> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    for (pos, size) in thresholds(scores, positive) {
        tp += pos;
        fp += size - pos;
        points.push((fp as f64 / n_neg as f64, tp as f64 / n_pos as f64));
    }
    Some(points)
}

/// Area under a polyline of `(x, y)` points by the trapezoid rule.
pub fn trapezoid_area(points: &[(f64, f64)]) -> f64 {
    points.windows(2).map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0).sum()
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReliabilityBin {
    /// Lower edge of the bin (predicted probability).
    pub lo: f64,
    /// Upper edge of the bin.
    pub hi: f64,
    /// Predictions in the bin.
    pub count: usize,
    /// Mean predicted probability in the bin; `None` when empty.
    pub mean_predicted: Option<f64>,
    /// Share of positives in the bin; `None` when empty.
    pub observed: Option<f64>,
}

/// A reliability diagram over `bins` equal-width bins of predicted probability (the bins of
/// [`expected_calibration_error`]: 1.0 falls in the last one).
pub fn reliability_bins(probabilities: &[f64], positive: &[bool], bins: usize) -> Vec<ReliabilityBin> {
    if bins == 0 {
        return Vec::new();
    }
    let mut count = vec![0usize; bins];
    let mut conf = vec![0.0; bins];
    let mut hits = vec![0usize; bins];
    for (&p, &y) in probabilities.iter().zip(positive) {
        let b = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        count[b] += 1;
        conf[b] += p;
        hits[b] += y as usize;
    }
    (0..bins)
        .map(|b| ReliabilityBin {
            lo: b as f64 / bins as f64,
            hi: (b + 1) as f64 / bins as f64,
            count: count[b],
            mean_predicted: (count[b] > 0).then(|| conf[b] / count[b] as f64),
            observed: (count[b] > 0).then(|| hits[b] as f64 / count[b] as f64),
        })
        .collect()
}

/// Counts of `values` in `bins` equal-width bins spanning `[lo, hi]` (values at `hi` fall in
/// the last bin, values outside are clamped to the nearest bin).
pub fn histogram(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<usize> {
    let mut counts = vec![0usize; bins];
    if bins == 0 || hi <= lo {
        return counts;
    }
    for &v in values {
        let t = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
        counts[((t * bins as f64) as usize).min(bins - 1)] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_inverted_rankings() {
        let y = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &y), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &y), Some(0.0));
        assert_eq!(roc_auc(&[0.5, 0.5, 0.5, 0.5], &y), Some(0.5));
        assert_eq!(roc_auc(&[0.1, 0.4, 0.35, 0.8], &y), Some(0.75));
        assert_eq!(roc_auc(&[0.1], &[true]), None);
    }

    #[test]
    fn average_precision_matches_hand_computation() {
        // ranking: pos, neg, pos → AP = (1/2)(1/1) + (1/2)(2/3)
        let ap = average_precision(&[0.9, 0.8, 0.7], &[true, false, true]).unwrap();
        assert!((ap - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
        assert_eq!(average_precision(&[0.5, 0.5], &[true, false]), Some(0.5));
    }

    #[test]
    fn ece_is_zero_when_calibrated_and_large_when_not() {
        let p = [0.0, 0.0, 1.0, 1.0];
        let y = [false, false, true, true];
        assert_eq!(expected_calibration_error(&p, &y, 10), Some(0.0));
        let p = [0.95, 0.95, 0.95, 0.95];
        let e = expected_calibration_error(&p, &y, 10).unwrap();
        assert!((e - 0.45).abs() < 1e-12);
    }

    #[test]
    fn quantile_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.95), Some(95.0));
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
    #[test]
    fn roc_points_run_from_origin_to_corner_and_enclose_the_auc() {
        let y = [false, false, true, true];
        assert_eq!(
            roc_points(&[0.1, 0.2, 0.8, 0.9], &y).unwrap(),
            vec![(0.0, 0.0), (0.0, 0.5), (0.0, 1.0), (0.5, 1.0), (1.0, 1.0)]
        );
        // tied scores make one diagonal step
        assert_eq!(roc_points(&[0.5; 4], &y).unwrap(), vec![(0.0, 0.0), (1.0, 1.0)]);
        assert_eq!(roc_points(&[0.5], &[true]), None);
        let scores = [0.3, 0.1, 0.4, 0.35, 0.8, 0.35, 0.2, 0.9, 0.1];
        let y = [false, false, true, true, true, false, true, false, true];
        let points = roc_points(&scores, &y).unwrap();
        assert!(points.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1));
        assert!((trapezoid_area(&points) - roc_auc(&scores, &y).unwrap()).abs() < 1e-12);
    }

    #[test]
    fn reliability_bins_agree_with_the_ece() {
        let p = [0.05, 0.15, 0.12, 0.55, 0.58, 0.91, 1.0, 0.97];
        let y = [false, false, true, true, false, true, true, true];
        let bins = reliability_bins(&p, &y, 10);
        assert_eq!(bins.len(), 10);
        assert_eq!(bins.iter().map(|b| b.count).sum::<usize>(), p.len());
        assert_eq!(bins[9].count, 3, "1.0 falls in the last bin");
        assert_eq!(bins[1].observed, Some(0.5));
        assert_eq!(bins[3].mean_predicted, None);
        // bins 0 (0.05, no), 1 (0.15 no, 0.12 yes), 5 (0.55 yes, 0.58 no), 9 (all yes)
        let ece = (0.05 + 2.0 * (0.135f64 - 0.5).abs() + 2.0 * (0.565f64 - 0.5).abs() + 3.0 * 0.04) / 8.0;
        assert!((ece - expected_calibration_error(&p, &y, 10).unwrap()).abs() < 1e-12);
    }

    #[test]
    fn histogram_bins_of_five_points() {
        let counts = histogram(&[0.0, 4.99, 5.0, 50.0, 99.9, 100.0], 0.0, 100.0, 20);
        assert_eq!(counts.len(), 20);
        assert_eq!((counts[0], counts[1], counts[10], counts[19]), (2, 1, 1, 2));
        assert_eq!(counts.iter().sum::<usize>(), 6);
    }
}
