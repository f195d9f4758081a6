/// SplitMix64: a small seeded generator, the same stream on every platform (and in wasm).
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Fisher–Yates with SplitMix64: the same seed gives the same order on every platform.
pub fn seeded_shuffle<T>(v: &mut [T], seed: u64) {
    let mut rng = SeededRng::new(seed);
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
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

/// Indices of the validation (or training) items of a split mask.
pub fn split_indices(is_val: &[bool], validation: bool) -> Vec<usize> {
    (0..is_val.len())
        .filter(|&i| is_val[i] == validation)
        .collect()
}

/// The training batches of `epoch` (1-based): the training items shuffled by (seed, epoch);
/// a last batch smaller than `batch_size` is dropped (a contrastive batch of a few pairs
/// has almost no negatives), unless it is the only one.
pub fn epoch_batches(
    train: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let mut order = train.to_vec();
    seeded_shuffle(
        &mut order,
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let batch_size = batch_size.max(1);
    let mut batches: Vec<Vec<usize>> = order.chunks(batch_size).map(<[usize]>::to_vec).collect();
    if batches.len() > 1 && batches.last().is_some_and(|b| b.len() < batch_size) {
        batches.pop();
    }
    batches
}

/// Batches of similar `size` (the padded dimension of a row, e.g. its sites) from an epoch's
/// shuffled batches: each window of `window` batches is sorted by size and cut again, and the
/// new batches are shuffled (by `seed`). The same rows, the same batch sizes and still a random
/// order, but a batch padded to its largest row wastes little on the rest.
pub fn bucket_by_size(
    batches: Vec<Vec<usize>>,
    size: impl Fn(usize) -> usize,
    window: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::with_capacity(batches.len());
    for group in batches.chunks(window.max(1)) {
        let lengths: Vec<usize> = group.iter().map(Vec::len).collect();
        let mut rows: Vec<usize> = group.concat();
        rows.sort_by_cached_key(|&i| size(i));
        let mut start = 0;
        for len in lengths {
            out.push(rows[start..start + len].to_vec());
            start += len;
        }
    }
    seeded_shuffle(&mut out, seed);
    out
}

/// How many batches `epoch_batches` makes of `rows` items, without shuffling them.
pub fn batches_per_epoch(rows: usize, batch_size: usize) -> usize {
    let batch_size = batch_size.max(1);
    match rows {
        0 => 0,
        n if n <= batch_size => 1,
        n => n / batch_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_count_matches_the_batches() {
        for n in [0, 1, 7, 8, 9, 16, 17, 100] {
            let items: Vec<usize> = (0..n).collect();
            assert_eq!(
                epoch_batches(&items, 8, 3, 1).len(),
                batches_per_epoch(n, 8),
                "{n}"
            );
        }
    }

    #[test]
    fn bucketing_keeps_rows_and_batch_sizes_and_groups_sizes() {
        let sizes: Vec<usize> = (0..200).map(|i| (i * 37) % 50).collect();
        let batches = epoch_batches(&(0..200).collect::<Vec<_>>(), 16, 3, 1);
        let bucketed = bucket_by_size(batches.clone(), |i| sizes[i], 4, 9);
        assert_eq!(
            bucketed.iter().map(Vec::len).collect::<Vec<_>>(),
            batches.iter().map(Vec::len).collect::<Vec<_>>()
        );
        let (mut got, mut want) = (bucketed.concat(), batches.concat());
        got.sort();
        want.sort();
        assert_eq!(got, want);
        // Padding to each batch's largest row: bucketing must waste far less.
        let padding = |bs: &[Vec<usize>]| -> usize {
            bs.iter()
                .map(|b| {
                    let max = b.iter().map(|&i| sizes[i]).max().unwrap_or(0);
                    b.iter().map(|&i| max - sizes[i]).sum::<usize>()
                })
                .sum()
        };
        assert!(padding(&bucketed) * 3 < padding(&batches));
    }

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
