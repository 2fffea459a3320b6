//! Seeded randomness for the data layer: every random choice is a pure function of its key.
//!
//! Keys are tuples of `u64` (the run seed, a domain tag, the epoch, a position ...) hashed
//! with SplitMix64 into a 256-bit ChaCha8 seed. Integer draws use Lemire's unbiased
//! multiply-and-reject method on `next_u64`, written out here (not `rand`'s `gen_range` or
//! `shuffle`, whose algorithms may change between `rand` versions), so a data order stays
//! the same across dependency updates.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Domain tag for the order of an epoch.
pub const ORDER: u64 = 0x006f_7264_6572;
/// Domain tag for the augmentation of one example.
pub const AUGMENT: u64 = 0x6175_676d;
/// Domain tag for the validation split.
pub const VAL_SPLIT: u64 = 0x0076_616c;
/// Domain tag for the training subset.
pub const SUBSET: u64 = 0x7375_6273;
/// Domain tag for synthetic examples.
pub const SYNTHETIC: u64 = 0x7379_6e74;

/// SplitMix64's output function (Steele, Lea & Flood 2014).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A ChaCha8 generator whose seed is a hash of `parts` (order matters).
pub fn keyed(parts: &[u64]) -> ChaCha8Rng {
    let mut h = 0x9e37_79b9_7f4a_7c15_u64 ^ parts.len() as u64;
    for &p in parts {
        h = mix(h ^ mix(p.wrapping_add(0x9e37_79b9_7f4a_7c15)));
    }
    let mut seed = [0u8; 32];
    for (i, chunk) in seed.chunks_mut(8).enumerate() {
        h = mix(h.wrapping_add(0x9e37_79b9_7f4a_7c15).wrapping_add(i as u64));
        chunk.copy_from_slice(&h.to_le_bytes());
    }
    ChaCha8Rng::from_seed(seed)
}

/// Uniform integer in `0..n` (`n > 0`), unbiased (Lemire 2019, "Fast random integer
/// generation in an interval").
pub fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    assert!(n > 0, "below(0)");
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = (rng.next_u64() as u128) * (n as u128);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// Fisher-Yates shuffle (Durstenfeld's in-place form, from the back).
pub fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// The order of epoch `epoch`: a permutation of `0..n` that depends on `(seed, epoch)` only.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, &mut keyed(&[seed, ORDER, epoch]));
    order
}

/// The generator handed to the augmentation of the example at `position` of epoch `epoch`
/// (the position in the epoch's order, not the example's index).
pub fn example_rng(seed: u64, epoch: u64, position: usize) -> ChaCha8Rng {
    keyed(&[seed, AUGMENT, epoch, position as u64])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_in_range_and_covers_it() {
        let mut rng = keyed(&[1, 2, 3]);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            seen[below(&mut rng, 7) as usize] += 1;
        }
        // Each value has probability 1/7: 1000 expected, far from 0 or 7000.
        assert!(seen.iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
    }

    #[test]
    fn epoch_order_is_a_permutation_and_depends_on_seed_and_epoch() {
        let a = epoch_order(100, 5, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 5, 0));
        assert_ne!(a, epoch_order(100, 5, 1));
        assert_ne!(a, epoch_order(100, 6, 0));
    }
}
