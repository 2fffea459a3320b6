//! Seeded, stratified selection of examples: validation splits and limited-data subsets.
//!
//! Picking `n` of `T` examples allots class `c` (with `T_c` examples) `floor(n * T_c / T)`
//! places, then gives the places left to the classes with the largest remainders (ties: the
//! lower class index). Balanced datasets with `n` a multiple of the class count therefore get
//! exactly `n / classes` per class. Within a class the examples are drawn by a Fisher-Yates
//! shuffle keyed by the seed material.

use super::rng::{keyed, shuffle};
use super::Source;
use crate::error::input_error;
use anyhow::Result;

/// How many of each class a pick of `n` takes, given the class counts (largest remainder).
pub fn quotas(counts: &[usize], n: usize) -> Vec<usize> {
    let total: usize = counts.iter().sum();
    if total == 0 {
        return vec![0; counts.len()];
    }
    let mut q: Vec<usize> = counts
        .iter()
        .map(|&c| (n as u128 * c as u128 / total as u128) as usize)
        .collect();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    let rem = |c: usize| (n as u128 * counts[c] as u128) % total as u128;
    // Stable sort: equal remainders keep the lower class first.
    order.sort_by_key(|&c| std::cmp::Reverse(rem(c)));
    let left = n - q.iter().sum::<usize>();
    for &c in order.iter().take(left) {
        q[c] += 1;
    }
    q
}

/// Split `indices` (examples of `source`) into `n` picked and the rest, stratified by
/// class; both parts are sorted. `key` is the seed material (run seed and a domain tag).
/// `what` names the option for error messages (`data.val_split`).
pub fn stratified_split(
    source: &dyn Source,
    indices: &[usize],
    num_classes: i64,
    n: usize,
    key: &[u64],
    what: &str,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if n > indices.len() {
        return Err(input_error(format!(
            "{what} = {n}: more than the {} training examples available",
            indices.len()
        )));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes.max(0) as usize];
    for &i in indices {
        let label = source.label(i);
        let class = usize::try_from(label)
            .ok()
            .filter(|&c| c < by_class.len())
            .ok_or_else(|| {
                anyhow::anyhow!("example {i} has label {label}, outside 0..{num_classes}")
            })?;
        by_class[class].push(i);
    }
    let counts: Vec<usize> = by_class.iter().map(Vec::len).collect();
    let q = quotas(&counts, n);
    let mut picked = Vec::with_capacity(n);
    let mut rest = Vec::with_capacity(indices.len() - n);
    for (class, mut members) in by_class.into_iter().enumerate() {
        let mut rng = keyed(&[key, &[class as u64]].concat());
        shuffle(&mut members, &mut rng);
        picked.extend_from_slice(&members[..q[class]]);
        rest.extend_from_slice(&members[q[class]..]);
    }
    picked.sort_unstable();
    rest.sort_unstable();
    Ok((picked, rest))
}

#[cfg(test)]
mod tests {
    use super::quotas;

    #[test]
    fn quotas_are_proportional_and_sum_to_n() {
        assert_eq!(quotas(&[100, 100, 100], 30), vec![10, 10, 10]);
        assert_eq!(quotas(&[100, 100, 100], 31), vec![11, 10, 10]);
        assert_eq!(quotas(&[10, 30], 8), vec![2, 6]);
        assert_eq!(quotas(&[1, 1, 5], 7), vec![1, 1, 5]);
        let q = quotas(&[7, 3, 11, 0, 5], 13);
        assert_eq!(q.iter().sum::<usize>(), 13);
        assert!(q.iter().zip([7, 3, 11, 0, 5]).all(|(&a, b)| a <= b));
    }
}
