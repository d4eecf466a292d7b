//! Pareto dominance, non-dominated sorting and exact hypervolume, on losses (smaller is better).
//!
//! Every function here takes loss vectors: a maximized objective must already be negated (see
//! [`crate::Objective::loss`]).

use std::cmp::Ordering;

/// Whether `a` Pareto-dominates `b`: no worse in every coordinate and strictly better in at
/// least one. Vectors of different lengths, and any comparison with NaN, never dominate.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut strictly = false;
    for (x, y) in a.iter().zip(b) {
        match x.partial_cmp(y) {
            Some(Ordering::Less) => strictly = true,
            Some(Ordering::Equal) => {}
            Some(Ordering::Greater) | None => return false,
        }
    }
    strictly
}

/// The non-domination rank of every point (fast non-dominated sort, O(M·N²)): rank 1 is the
/// Pareto front, rank 2 the front once rank 1 is removed, and so on. The result is parallel to
/// `points`.
pub fn non_dominated_ranks(points: &[Vec<f64>]) -> Vec<usize> {
    if !points.is_empty() && points.iter().all(|p| p.len() == 2) {
        return ranks_2d(points);
    }
    let n = points.len();
    let mut dominated_by_count = vec![0usize; n];
    let mut dominates_list: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in (i + 1)..n {
            if dominates(&points[i], &points[j]) {
                dominates_list[i].push(j);
                dominated_by_count[j] += 1;
            } else if dominates(&points[j], &points[i]) {
                dominates_list[j].push(i);
                dominated_by_count[i] += 1;
            }
        }
    }
    let mut ranks = vec![0usize; n];
    let mut front: Vec<usize> = (0..n).filter(|&i| dominated_by_count[i] == 0).collect();
    let mut rank = 1;
    while !front.is_empty() {
        let mut next = Vec::new();
        for &i in &front {
            ranks[i] = rank;
            for &j in &dominates_list[i] {
                dominated_by_count[j] -= 1;
                if dominated_by_count[j] == 0 {
                    next.push(j);
                }
            }
        }
        front = next;
        rank += 1;
    }
    ranks
}

/// [`non_dominated_ranks`] for two objectives in O(N log N): points sorted by the first
/// coordinate, each goes to the first front whose lowest second coordinate so far is above its
/// own (those lowest values grow with the front number, so a binary search finds it).
/// Identical points share a rank, as they do not dominate each other.
fn ranks_2d(points: &[Vec<f64>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        points[a][0]
            .total_cmp(&points[b][0])
            .then(points[a][1].total_cmp(&points[b][1]))
    });
    let mut ranks = vec![0usize; points.len()];
    let mut lowest: Vec<f64> = Vec::new();
    let mut prev: Option<usize> = None;
    for &i in &order {
        if let Some(j) = prev.filter(|&j| points[j] == points[i]) {
            ranks[i] = ranks[j];
            continue;
        }
        let y = points[i][1];
        let k = lowest.partition_point(|&m| m.total_cmp(&y).is_le());
        if k == lowest.len() {
            lowest.push(y);
        } else {
            lowest[k] = y;
        }
        ranks[i] = k + 1;
        prev = Some(i);
    }
    ranks
}

/// The exact hypervolume dominated by `points` and bounded by `reference`: the Lebesgue measure
/// of the union of the boxes `[p, reference]`.
///
/// Works in any dimension (`reference.len()`). Points that are not strictly better than the
/// reference in every coordinate, or whose length differs from the reference's, contribute
/// nothing and are ignored. 1-D and 2-D are computed by a sorted sweep (O(N log N)); higher
/// dimensions by slicing along the last coordinate (HSO), which is fine for a few hundred
/// points in 3-D and about two hundred in 4-D.
pub fn hypervolume(points: &[Vec<f64>], reference: &[f64]) -> f64 {
    let d = reference.len();
    if d == 0 {
        return 0.0;
    }
    let pts: Vec<&[f64]> = points
        .iter()
        .filter(|p| p.len() == d && p.iter().zip(reference).all(|(x, r)| x < r))
        .map(Vec::as_slice)
        .collect();
    hv(pts, reference, d)
}

/// The exclusive contribution of each point of `front`: the hypervolume of all the points minus
/// the hypervolume without that one (0 for a dominated point, a duplicate, or a point outside
/// the reference box). The result is parallel to `front`.
pub fn hypervolume_contributions(front: &[Vec<f64>], reference: &[f64]) -> Vec<f64> {
    let total = hypervolume(front, reference);
    let mut rest: Vec<Vec<f64>> = Vec::with_capacity(front.len().saturating_sub(1));
    (0..front.len())
        .map(|i| {
            rest.clear();
            rest.extend(
                front
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, p)| p.clone()),
            );
            (total - hypervolume(&rest, reference)).max(0.0)
        })
        .collect()
}

/// Hypervolume of `pts` (all strictly inside the reference box) in their first `d` coordinates.
fn hv(mut pts: Vec<&[f64]>, reference: &[f64], d: usize) -> f64 {
    if pts.is_empty() {
        return 0.0;
    }
    match d {
        1 => {
            let best = pts.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
            reference[0] - best
        }
        2 => {
            pts.sort_by(|a, b| cmp(a[0], b[0]).then(cmp(a[1], b[1])));
            let mut area = 0.0;
            let mut best_y = reference[1];
            for p in &pts {
                if p[1] < best_y {
                    area += (reference[0] - p[0]) * (best_y - p[1]);
                    best_y = p[1];
                }
            }
            area
        }
        _ => {
            let last = d - 1;
            pts.sort_by(|a, b| cmp(a[last], b[last]));
            let mut volume = 0.0;
            let mut slice: Vec<&[f64]> = Vec::with_capacity(pts.len());
            for i in 0..pts.len() {
                // Keep the slice's points mutually non-dominated in the first d - 1 coordinates.
                let p = pts[i];
                let head = &p[..last];
                if !slice.iter().any(|q| weakly_dominates(&q[..last], head)) {
                    slice.retain(|q| !weakly_dominates(head, &q[..last]));
                    slice.push(p);
                }
                let top = pts.get(i + 1).map_or(reference[last], |q| q[last]);
                let depth = top - p[last];
                if depth > 0.0 {
                    volume += depth * hv(slice.clone(), reference, last);
                }
            }
            volume
        }
    }
}

/// Whether `a` is no worse than `b` in every coordinate.
fn weakly_dominates(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x <= y)
}

/// A total order for the sweeps (the inputs are never NaN: they passed `x < reference`).
fn cmp(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::mix;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    /// Hypervolume of integer points by counting the unit cells of `[0, reference)` that some
    /// point weakly dominates (exact for integer coordinates in that box).
    fn grid_count(points: &[Vec<f64>], reference: &[i64]) -> f64 {
        let d = reference.len();
        let cells: i64 = reference.iter().product();
        let mut count = 0u64;
        for mut c in 0..cells {
            let mut cell = vec![0i64; d];
            for (k, r) in reference.iter().enumerate() {
                cell[k] = c % r;
                c /= r;
            }
            if points
                .iter()
                .any(|p| p.iter().zip(&cell).all(|(x, y)| *x <= *y as f64))
            {
                count += 1;
            }
        }
        count as f64
    }

    fn pseudo_random(seed: u64, i: u64) -> f64 {
        (mix(seed ^ i.wrapping_mul(0x9E37_79B9)) >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn dominance() {
        assert!(dominates(&[1.0, 2.0], &[1.0, 3.0]));
        assert!(dominates(&[0.0, 0.0, 0.0], &[1.0, 1.0, 1.0]));
        assert!(!dominates(&[1.0, 2.0], &[1.0, 2.0]));
        assert!(!dominates(&[1.0, 3.0], &[2.0, 2.0]));
        assert!(!dominates(&[f64::NAN, 0.0], &[1.0, 1.0]));
        assert!(!dominates(&[0.0], &[1.0, 1.0]));
    }

    #[test]
    fn ranks_of_a_known_set() {
        let points = vec![
            vec![1.0, 5.0],
            vec![2.0, 2.0],
            vec![5.0, 1.0],
            vec![3.0, 3.0],
            vec![4.0, 4.0],
            vec![6.0, 6.0],
            vec![2.0, 2.0],
            vec![1.0, 6.0],
        ];
        assert_eq!(non_dominated_ranks(&points), vec![1, 1, 1, 2, 3, 4, 1, 2]);
        assert_eq!(non_dominated_ranks(&[]), Vec::<usize>::new());
    }

    #[test]
    fn hypervolume_2d_by_hand() {
        let r = [3.0, 3.0];
        assert_eq!(hypervolume(&[vec![1.0, 1.0]], &r), 4.0);
        assert_eq!(hypervolume(&[vec![1.0, 2.0], vec![2.0, 1.0]], &r), 3.0);
        assert_eq!(
            hypervolume(&[vec![1.0, 2.0], vec![2.0, 1.0], vec![2.5, 2.5]], &r),
            3.0
        );
        // Outside (or on the boundary of) the reference box: ignored.
        assert_eq!(
            hypervolume(&[vec![4.0, 0.0], vec![3.0, 1.0], vec![1.0, 2.0]], &r),
            2.0
        );
        assert_eq!(hypervolume(&[], &r), 0.0);
        assert_eq!(hypervolume(&[vec![0.5]], &[2.0]), 1.5);
        assert_eq!(
            hypervolume_contributions(&[vec![1.0, 2.0], vec![2.0, 1.0], vec![2.5, 2.5]], &r),
            vec![1.0, 1.0, 0.0]
        );
        assert_eq!(
            hypervolume_contributions(&[vec![1.0, 1.0], vec![1.0, 1.0]], &r),
            vec![0.0, 0.0]
        );
    }

    #[test]
    fn hypervolume_3d_by_hand() {
        assert_eq!(hypervolume(&[vec![0.0, 0.0, 0.0]], &[1.0, 2.0, 3.0]), 6.0);
        let front = vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ];
        let r = [2.0, 2.0, 2.0];
        // 3 boxes of 4, pairwise overlaps of 2, a common cube of 1: 12 - 6 + 1.
        assert_eq!(hypervolume(&front, &r), 7.0);
        assert_eq!(hypervolume_contributions(&front, &r), vec![1.0, 1.0, 1.0]);
        let front = vec![
            vec![0.0, 3.0, 2.0],
            vec![1.0, 1.0, 3.0],
            vec![2.0, 0.0, 1.0],
            vec![3.0, 2.0, 0.0],
            vec![1.0, 2.0, 2.0],
        ];
        let r = [4, 4, 4];
        let rf: Vec<f64> = r.iter().map(|x| *x as f64).collect();
        assert_eq!(hypervolume(&front, &rf), grid_count(&front, &r));
    }

    #[test]
    fn larger_fronts_are_consistent() {
        // Points on the sphere octant: a non-dominated front. The volume must not depend on
        // the order of coordinates (which changes the slicing entirely).
        for (d, n) in [(3usize, 200u64), (4, 60)] {
            let front: Vec<Vec<f64>> = (0..n)
                .map(|i| {
                    let v: Vec<f64> = (0..d).map(|k| pseudo_random(i, k as u64) + 1e-3).collect();
                    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                    v.iter().map(|x| 1.0 - x / norm).collect()
                })
                .collect();
            let r = vec![1.1; d];
            let hv = hypervolume(&front, &r);
            let rotated: Vec<Vec<f64>> = front
                .iter()
                .map(|p| {
                    let mut q = p.clone();
                    q.rotate_left(1);
                    q
                })
                .collect();
            assert!(close(hv, hypervolume(&rotated, &r)), "{d}-D");
            assert!(hv > 0.0 && hv < 1.1f64.powi(d as i32));
            let ranks = non_dominated_ranks(&front);
            assert!(ranks.iter().all(|r| *r == 1));
        }
    }

    fn arb_points(d: usize, max: i64) -> impl Strategy<Value = Vec<Vec<f64>>> {
        vec(vec((0..=max).prop_map(|x| x as f64), d), 0..12)
    }

    proptest! {
        #[test]
        fn rank_one_is_mutually_non_dominated(d in 1usize..5, seed in any::<u64>(), n in 0u64..40) {
            let points: Vec<Vec<f64>> = (0..n)
                .map(|i| (0..d).map(|k| (pseudo_random(seed, i * 8 + k as u64) * 6.0).floor()).collect())
                .collect();
            let ranks = non_dominated_ranks(&points);
            prop_assert_eq!(ranks.len(), points.len());
            for i in 0..points.len() {
                prop_assert!(ranks[i] >= 1);
                for j in 0..points.len() {
                    if dominates(&points[i], &points[j]) {
                        prop_assert!(ranks[i] < ranks[j]);
                    }
                    if ranks[i] == 1 && ranks[j] == 1 {
                        prop_assert!(!dominates(&points[i], &points[j]));
                    }
                }
                if ranks[i] > 1 {
                    prop_assert!((0..points.len())
                        .any(|j| ranks[j] == ranks[i] - 1 && dominates(&points[j], &points[i])));
                }
            }
        }

        #[test]
        fn hypervolume_2d_matches_cell_count(points in arb_points(2, 9)) {
            prop_assert_eq!(hypervolume(&points, &[8.0, 9.0]), grid_count(&points, &[8, 9]));
        }

        #[test]
        fn hypervolume_3d_matches_cell_count(points in arb_points(3, 6)) {
            prop_assert_eq!(hypervolume(&points, &[6.0, 5.0, 6.0]), grid_count(&points, &[6, 5, 6]));
        }

        #[test]
        fn hypervolume_4d_matches_cell_count(points in arb_points(4, 4)) {
            prop_assert_eq!(
                hypervolume(&points, &[4.0, 4.0, 3.0, 4.0]),
                grid_count(&points, &[4, 4, 3, 4])
            );
        }

        #[test]
        fn contributions_match_cell_counts(points in arb_points(3, 5)) {
            let r = [5, 5, 5];
            let rf = [5.0, 5.0, 5.0];
            let all = grid_count(&points, &r);
            let contributions = hypervolume_contributions(&points, &rf);
            for (i, c) in contributions.iter().enumerate() {
                let mut rest = points.clone();
                rest.remove(i);
                prop_assert_eq!(*c, all - grid_count(&rest, &r));
            }
        }
    }

    #[test]
    fn two_objective_ranks_match_the_pairwise_definition() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for n in [1usize, 2, 5, 40, 300] {
            // Coarse values, so that ties and duplicates are common.
            let points: Vec<Vec<f64>> = (0..n)
                .map(|_| vec![rng.random_range(0..8) as f64, rng.random_range(0..8) as f64])
                .collect();
            let fast = ranks_2d(&points);
            // The definition: rank 1 is non-dominated; rank k is non-dominated once ranks
            // below k are removed.
            let mut slow = vec![0usize; n];
            let mut rank = 1;
            while slow.contains(&0) {
                let left: Vec<usize> = (0..n).filter(|&i| slow[i] == 0).collect();
                let front: Vec<usize> = left
                    .iter()
                    .copied()
                    .filter(|&i| !left.iter().any(|&j| dominates(&points[j], &points[i])))
                    .collect();
                for i in front {
                    slow[i] = rank;
                }
                rank += 1;
            }
            assert_eq!(fast, slow, "n = {n}");
        }
    }
}
