//! Evening out sources: how much each item weighs when its group (a source, and whatever else
//! sets it apart) holds many others. Shared by the `ml` loss (`train.rs`) and the fusion fit
//! (`calibration.rs`), so both mean the same by "a source weighs n^-x".

use std::collections::HashMap;
use std::hash::Hash;

/// Each item's weight `n^-exponent`, `n` being how many items share its key: 0 weighs every
/// item alike, 1 every key alike (each key's items then sum to 1).
pub fn group_size_weights<K: Hash + Eq>(keys: &[K], exponent: f64) -> Vec<f64> {
    let mut counts: HashMap<&K, usize> = HashMap::new();
    for key in keys {
        *counts.entry(key).or_default() += 1;
    }
    keys.iter().map(|key| (counts[key] as f64).powf(-exponent)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_weighs_a_power_of_its_size() {
        let keys = ["a", "a", "a", "a", "b"];
        assert_eq!(group_size_weights(&keys, 0.0), vec![1.0; 5]);
        assert_eq!(group_size_weights(&keys, 1.0), vec![0.25, 0.25, 0.25, 0.25, 1.0]);
        assert_eq!(group_size_weights(&keys, 0.5), vec![0.5, 0.5, 0.5, 0.5, 1.0]);
    }
}
