use crate::error::{Error, Result};

/// The result of weight sharing: a codebook and one code per input weight.
///
/// Returned by [`share_weights`].
#[derive(Clone, Debug, PartialEq)]
pub struct SharedWeights {
    /// `2^bits` values; entry 0 is 0.0 (padding / pruned), unused entries are 0.0 too.
    pub codebook: Vec<f32>,
    /// For each input weight, its codebook index (never 0).
    pub codes: Vec<u8>,
}

/// Weight sharing (Deep Compression, section 3): maps the non-zero `values` to a codebook of
/// `2^bits` entries where index 0 stands for zero.
///
/// If the values take at most `2^bits - 1` distinct values, the codebook holds exactly those
/// values (sorted), so an already-quantised layer re-encodes losslessly. Otherwise the other
/// `2^bits - 1` entries are the centroids of a 1-D k-means over the values, initialised linearly
/// between their minimum and maximum (which keeps the rare large weights); Lloyd iterations run
/// until the assignment is stable or `max_iterations` is reached. Because clusters of a 1-D
/// k-means are contiguous ranges of the sorted values, each iteration costs
/// O(K log n) with prefix sums.
///
/// [`compress_layer`](super::compress_layer) runs it after pruning.
pub fn share_weights(values: &[f32], bits: u8, max_iterations: usize) -> Result<SharedWeights> {
    if !(2..=8).contains(&bits) {
        return Err(Error::InvalidArgument(format!(
            "bits {bits} is outside 2..=8"
        )));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite() || *v == 0.0) {
        return Err(Error::InvalidArgument(format!(
            "weight sharing takes finite non-zero weights; value {i} is {}",
            values[i]
        )));
    }
    let k = (1usize << bits) - 1;
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f32::total_cmp);
    let mut distinct = sorted.clone();
    distinct.dedup();
    let centroids: Vec<f32> = if distinct.len() <= k {
        distinct
    } else {
        kmeans_1d(&sorted, k, max_iterations)
    };
    // Boundaries between neighbouring centroids: a value goes to the nearest centroid.
    let bounds: Vec<f32> = centroids
        .windows(2)
        .map(|w| (w[0] as f64 * 0.5 + w[1] as f64 * 0.5) as f32)
        .collect();
    let codes = values
        .iter()
        .map(|&v| {
            let c = bounds.partition_point(|&b| b < v);
            // Exact matches (the lossless path) must land on their own entry.
            let c = if c > 0 && centroids[c - 1] == v {
                c - 1
            } else {
                c
            };
            (c + 1) as u8
        })
        .collect();
    let mut codebook = vec![0f32; 1 << bits];
    codebook[1..=centroids.len()].copy_from_slice(&centroids);
    Ok(SharedWeights { codebook, codes })
}

/// Lloyd's algorithm in one dimension on sorted data with linear initialisation.
fn kmeans_1d(sorted: &[f32], k: usize, max_iterations: usize) -> Vec<f32> {
    let n = sorted.len();
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0f64);
    for &v in sorted {
        prefix.push(prefix[prefix.len() - 1] + v as f64);
    }
    let (lo, hi) = (sorted[0] as f64, sorted[n - 1] as f64);
    let mut centroids: Vec<f64> = (0..k)
        .map(|i| lo + (hi - lo) * i as f64 / (k - 1) as f64)
        .collect();
    let mut ends = vec![usize::MAX; k];
    for _ in 0..max_iterations {
        let mut start = 0usize;
        let mut new_ends = Vec::with_capacity(k);
        for i in 0..k {
            let end = if i + 1 == k {
                n
            } else {
                let b = 0.5 * (centroids[i] + centroids[i + 1]);
                start + sorted[start..].partition_point(|&v| (v as f64) <= b)
            };
            if end > start {
                centroids[i] = (prefix[end] - prefix[start]) / (end - start) as f64;
            }
            new_ends.push(end);
            start = end;
        }
        if new_ends == ends {
            break;
        }
        ends = new_ends;
    }
    centroids.into_iter().map(|c| c as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_distinct_values_are_reproduced_exactly() {
        let v = [0.25, -1.5, 0.25, 3.0, -1.5];
        let s = share_weights(&v, 2, 100).unwrap();
        assert_eq!(s.codebook, vec![0.0, -1.5, 0.25, 3.0]);
        let decoded: Vec<f32> = s.codes.iter().map(|&c| s.codebook[c as usize]).collect();
        assert_eq!(decoded, v);
    }

    #[test]
    fn kmeans_separates_clusters_and_uses_linear_init() {
        let mut v = Vec::new();
        for i in 0..100 {
            v.push(-1.0 + i as f32 * 1e-4);
            v.push(1.0 + i as f32 * 1e-4);
            v.push(5.0); // rare large weight kept by linear initialisation
        }
        let s = share_weights(&v, 2, 100).unwrap();
        let decoded: Vec<f32> = s.codes.iter().map(|&c| s.codebook[c as usize]).collect();
        for (d, x) in decoded.iter().zip(&v) {
            assert!((d - x).abs() < 0.01, "{x} decoded to {d}");
        }
        assert!(s.codes.iter().all(|&c| (1..=3).contains(&c)));
    }

    #[test]
    fn rejects_zero_or_non_finite_values() {
        assert!(share_weights(&[0.0], 4, 10).is_err());
        assert!(share_weights(&[f32::NAN], 4, 10).is_err());
        assert!(share_weights(&[1.0], 9, 10).is_err());
    }
}
