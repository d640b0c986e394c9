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
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap, mut i) = (0usize, 0usize, 0.0, 0usize);
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let new_tp = order[i..=j].iter().filter(|&&k| positive[k]).count();
        tp += new_tp;
        seen += j - i + 1;
        ap += (new_tp as f64 / n_pos as f64) * (tp as f64 / seen as f64);
        i = j + 1;
    }
    Some(ap)
}

/// Expected calibration error over `bins` equal-width bins of predicted probability.
pub fn expected_calibration_error(probabilities: &[f64], positive: &[bool], bins: usize) -> Option<f64> {
    if probabilities.is_empty() || bins == 0 {
        return None;
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
    let n = probabilities.len() as f64;
    Some(
        (0..bins)
            .filter(|&b| count[b] > 0)
            .map(|b| {
                let c = count[b] as f64;
                (c / n) * (conf[b] / c - hits[b] as f64 / c).abs()
            })
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
}
