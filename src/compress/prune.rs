use crate::error::{Error, Result};
use std::cmp::Ordering;

/// Magnitude pruning: the flat indices of the weights to keep, in increasing order.
///
/// Keeps exactly `round(density * n)` weights (never more than the non-zero ones): the largest
/// by magnitude, ties broken by the lower index, so the result is deterministic.
pub fn prune_by_magnitude(weights: &[f32], density: f64) -> Result<Vec<usize>> {
    if !(density > 0.0 && density <= 1.0) {
        return Err(Error::InvalidArgument(format!(
            "density {density} is outside (0, 1]"
        )));
    }
    let mut nonzero: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] != 0.0).collect();
    let keep = ((density * weights.len() as f64).round() as usize).min(nonzero.len());
    if keep < nonzero.len() {
        // Larger magnitude first; equal magnitudes: lower index first. A total order.
        let order = |&a: &usize, &b: &usize| -> Ordering {
            weights[b]
                .abs()
                .total_cmp(&weights[a].abs())
                .then(a.cmp(&b))
        };
        if keep > 0 {
            nonzero.select_nth_unstable_by(keep - 1, order);
        }
        nonzero.truncate(keep);
        nonzero.sort_unstable();
    }
    Ok(nonzero)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_exact_count_largest_magnitudes() {
        let w = [0.1, -0.9, 0.5, 0.0, -0.2, 0.7];
        assert_eq!(prune_by_magnitude(&w, 0.5).unwrap(), vec![1, 2, 5]);
        assert_eq!(prune_by_magnitude(&w, 1.0).unwrap(), vec![0, 1, 2, 4, 5]);
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        let w = [0.5, -0.5, 0.5, 0.5];
        assert_eq!(prune_by_magnitude(&w, 0.5).unwrap(), vec![0, 1]);
    }

    #[test]
    fn rejects_density_out_of_range() {
        for d in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(matches!(
                prune_by_magnitude(&[1.0], d),
                Err(Error::InvalidArgument(_))
            ));
        }
    }
}
