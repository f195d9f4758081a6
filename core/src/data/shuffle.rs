/// Fisher–Yates with SplitMix64: the same seed gives the same order on every platform.
pub fn seeded_shuffle<T>(v: &mut [T], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// `n` items, `round(n · fraction)` of them validation, chosen by a seeded shuffle.
pub fn validation_mask(n: usize, fraction: f64, seed: u64) -> Vec<bool> {
    let mut order: Vec<usize> = (0..n).collect();
    seeded_shuffle(&mut order, seed);
    let n_val = ((n as f64) * fraction).round() as usize;
    let mut is_val = vec![false; n];
    for &i in &order[..n_val.min(n)] {
        is_val[i] = true;
    }
    is_val
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut a: Vec<usize> = (0..100).collect();
        let mut b = a.clone();
        seeded_shuffle(&mut a, 7);
        seeded_shuffle(&mut b, 7);
        assert_eq!(a, b);
        assert_ne!(a, (0..100).collect::<Vec<_>>());
        a.sort();
        assert_eq!(a, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn validation_fraction_is_rounded() {
        let m = validation_mask(95, 0.1, 1);
        assert_eq!(m.iter().filter(|v| **v).count(), 10);
    }
}
