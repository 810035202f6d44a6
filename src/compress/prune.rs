use crate::error::{Error, Result};
use std::cmp::Ordering;

/// Magnitude pruning: the flat indices of the weights to keep, in increasing order.
///
/// Keeps exactly `round(density * n)` weights (never more than the non-zero ones): the largest
/// by magnitude, ties broken by the lower index, so the result is deterministic.
///
/// [`compress_layer`](super::compress_layer) prunes with it; [`prune_balanced`] is the
/// load-balanced alternative.
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

/// Load-balance-aware pruning (ESE, Han et al., FPGA 2017, section 3): the rows of a
/// `rows × cols` matrix (row-major `weights`) are interleaved over `pes` PEs as EIE stores them
/// (row `i` on PE `i mod pes`), and every PE keeps the same number of weights,
/// `round(density × rows × cols / pes)` (all its non-zeros when it has fewer): the largest by
/// magnitude among its own rows, ties broken by the lower index. So each PE gets the same work
/// for a dense input, where plain magnitude pruning ([`prune_by_magnitude`]) can leave one PE
/// with more and make the others wait. Returns the flat indices kept, in increasing order.
pub fn prune_balanced(
    weights: &[f32],
    rows: usize,
    cols: usize,
    density: f64,
    pes: usize,
) -> Result<Vec<usize>> {
    if !(density > 0.0 && density <= 1.0) {
        return Err(Error::InvalidArgument(format!(
            "density {density} is outside (0, 1]"
        )));
    }
    if pes == 0 || rows.checked_mul(cols) != Some(weights.len()) {
        return Err(Error::InvalidArgument(format!(
            "balanced pruning of {} weights as {rows}x{cols} over {pes} PEs",
            weights.len()
        )));
    }
    let per_pe = (density * weights.len() as f64 / pes as f64).round() as usize;
    let mut kept = Vec::new();
    for p in 0..pes.min(rows) {
        let share: Vec<usize> = (p..rows)
            .step_by(pes)
            .flat_map(|i| (i * cols..(i + 1) * cols).filter(|&k| weights[k] != 0.0))
            .collect();
        let own: Vec<f32> = share.iter().map(|&k| weights[k]).collect();
        // Keep the same count per PE: prune_by_magnitude keeps round(d × n) of n values.
        let n = own.len();
        if n == 0 {
            continue;
        }
        let keep = per_pe.min(n);
        if keep == 0 {
            continue;
        }
        let d = keep as f64 / n as f64;
        kept.extend(prune_by_magnitude(&own, d)?.into_iter().map(|i| share[i]));
    }
    kept.sort_unstable();
    Ok(kept)
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
    fn balanced_pruning_keeps_the_same_count_per_pe() {
        // 4 rows over 2 PEs; PE 0's rows (0 and 2) hold the large weights.
        let w = [
            9.0, 8.0, 7.0, //
            0.1, 0.2, 0.3, //
            6.0, 5.0, 4.0, //
            0.4, 0.5, 0.6,
        ];
        assert_eq!(prune_by_magnitude(&w, 0.5).unwrap(), vec![0, 1, 2, 6, 7, 8]);
        assert_eq!(
            prune_balanced(&w, 4, 3, 0.5, 2).unwrap(),
            vec![0, 1, 2, 9, 10, 11]
        );
        assert!(prune_balanced(&w, 4, 4, 0.5, 2).is_err());
        assert!(prune_balanced(&w, 4, 3, 0.5, 0).is_err());
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
