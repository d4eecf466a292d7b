//! How a search space becomes model features: floats and integers keep their unit-cube
//! coordinate (log parameters are already log-scaled there; integers are relaxed to the
//! interval and snapped back to a value), categoricals become one-hot blocks so that no order
//! is imposed on unordered choices.

use crate::space::{Domain, ParamValue, SearchSpace};

/// How one parameter is represented.
#[derive(Clone, Debug, PartialEq)]
enum Slot {
    /// A float: one feature, the unit coordinate.
    Continuous { feature: usize },
    /// An integer (range or list of values): one relaxed feature, snapped to a value.
    Ordinal { feature: usize },
    /// A categorical with `choices` values: `choices` features, exactly one of them 1.
    OneHot { first: usize, choices: usize },
}

/// The feature map of one search space.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoding {
    slots: Vec<Slot>,
    domains: Vec<Domain>,
    features: usize,
    /// The space, when it has conditional parameters: their features are neutralized
    /// (`crate::conditional`).
    conditional: Option<SearchSpace>,
}

impl Encoding {
    /// The encoding of `space`.
    pub fn new(space: &SearchSpace) -> Self {
        let mut slots = Vec::with_capacity(space.dim());
        let mut features = 0;
        for p in space.params() {
            let slot = match &p.domain {
                Domain::Float { .. } => Slot::Continuous { feature: features },
                Domain::Int { .. } | Domain::IntValues { .. } => {
                    Slot::Ordinal { feature: features }
                }
                Domain::Categorical { choices } => Slot::OneHot {
                    first: features,
                    choices: choices.len(),
                },
            };
            features += match slot {
                Slot::OneHot { choices, .. } => choices,
                _ => 1,
            };
            slots.push(slot);
        }
        Encoding {
            slots,
            domains: space.params().iter().map(|p| p.domain.clone()).collect(),
            features,
            conditional: space.is_conditional().then(|| space.clone()),
        }
    }

    /// Number of model features.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Whether every parameter is categorical (nothing for a gradient method to move).
    pub fn all_categorical(&self) -> bool {
        self.slots.iter().all(|s| matches!(s, Slot::OneHot { .. }))
    }

    /// The features a gradient method may move (floats and relaxed integers).
    pub fn movable(&self) -> Vec<usize> {
        self.ordered_features().into_iter().flatten().collect()
    }

    /// Per parameter, its one feature when it is ordered (a float or an integer), `None` for a
    /// categorical.
    pub fn ordered_features(&self) -> Vec<Option<usize>> {
        self.slots
            .iter()
            .map(|s| match *s {
                Slot::Continuous { feature } | Slot::Ordinal { feature } => Some(feature),
                Slot::OneHot { .. } => None,
            })
            .collect()
    }

    /// The features an input warp may bend ([`crate::input_warp`]): floats and integer ranges
    /// on a linear scale. A log scale (`log = true`) or an explicit list of values is the
    /// user's own statement of the parameter's scale, and is left as it is.
    pub fn warpable(&self) -> Vec<usize> {
        self.slots
            .iter()
            .zip(&self.domains)
            .filter_map(|(s, d)| match (s, d) {
                (Slot::Continuous { feature }, Domain::Float { log: false, .. })
                | (Slot::Ordinal { feature }, Domain::Int { log: false, .. }) => Some(*feature),
                _ => None,
            })
            .collect()
    }

    /// Features of a unit-cube point (`space.dim()` coordinates), appended to `out`.
    pub fn encode_into(&self, unit: &[f64], out: &mut Vec<f64>) {
        let start = out.len();
        out.resize(start + self.features, 0.0);
        for (slot, u) in self.slots.iter().zip(unit) {
            match *slot {
                Slot::Continuous { feature } | Slot::Ordinal { feature } => {
                    out[start + feature] = u.clamp(0.0, 1.0);
                }
                Slot::OneHot { first, choices } => {
                    out[start + first + cell(*u, choices)] = 1.0;
                }
            }
        }
        if let Some(space) = &self.conditional {
            neutralize_inactive(&self.slots, &space.active_in_unit(unit), &mut out[start..]);
        }
    }

    /// Features of a unit-cube point.
    pub fn encode(&self, unit: &[f64]) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.features);
        self.encode_into(unit, &mut out);
        out
    }

    /// The unit-cube point of some features: floats clamped, integers snapped to the nearest
    /// value's cell centre, categoricals to their largest feature.
    pub fn decode(&self, features: &[f64]) -> Vec<f64> {
        self.slots
            .iter()
            .zip(&self.domains)
            .map(|(slot, domain)| match *slot {
                Slot::Continuous { feature } => features[feature].clamp(0.0, 1.0),
                Slot::Ordinal { feature } => snap(domain, features[feature]),
                Slot::OneHot { first, choices } => {
                    let block = &features[first..first + choices];
                    let mut k = 0;
                    for (i, v) in block.iter().enumerate() {
                        if *v > block[k] {
                            k = i;
                        }
                    }
                    (k as f64 + 0.5) / choices as f64
                }
            })
            .collect()
    }

    /// Unit-cube points that differ from `unit` in one discrete parameter: every other choice
    /// of a categorical (up to 32), and the two nearest values either side of an integer.
    pub fn neighbours(&self, unit: &[f64]) -> Vec<Vec<f64>> {
        let mut out = Vec::new();
        for (i, (slot, domain)) in self.slots.iter().zip(&self.domains).enumerate() {
            match *slot {
                Slot::Continuous { .. } => {}
                Slot::OneHot { choices, .. } => {
                    let current = cell(unit[i], choices);
                    for k in (0..choices).filter(|k| *k != current).take(32) {
                        let mut v = unit.to_vec();
                        v[i] = (k as f64 + 0.5) / choices as f64;
                        out.push(v);
                    }
                }
                Slot::Ordinal { .. } => {
                    for u in ordinal_neighbours(domain, unit[i]) {
                        let mut v = unit.to_vec();
                        v[i] = u;
                        out.push(v);
                    }
                }
            }
        }
        out
    }
}

/// Gives the features of inactive parameters one neutral value, whatever their coordinate:
/// [`crate::space::INACTIVE_UNIT`] for a number, all zeros for a one-hot block. Points that
/// differ only in an inactive parameter are then the same point to the model, and the parent's
/// features tell it which parameters a point has.
fn neutralize_inactive(slots: &[Slot], active: &[bool], features: &mut [f64]) {
    for (slot, a) in slots.iter().zip(active) {
        if *a {
            continue;
        }
        match *slot {
            Slot::Continuous { feature } | Slot::Ordinal { feature } => {
                features[feature] = crate::space::INACTIVE_UNIT;
            }
            Slot::OneHot { first, choices } => features[first..first + choices].fill(0.0),
        }
    }
}

/// The cell of `u` among `n` equal cells.
fn cell(u: f64, n: usize) -> usize {
    ((u.clamp(0.0, 1.0) * n as f64) as usize).min(n.saturating_sub(1))
}

/// The unit coordinate of the domain value nearest `u`.
fn snap(domain: &Domain, u: f64) -> f64 {
    domain
        .to_unit(&domain.from_unit(u))
        .unwrap_or(u.clamp(0.0, 1.0))
}

/// Unit coordinates of the values one and two steps either side of the value at `u`.
fn ordinal_neighbours(domain: &Domain, u: f64) -> Vec<f64> {
    let value = domain.from_unit(u);
    let ParamValue::Int(v) = value else {
        return Vec::new();
    };
    let candidates: Vec<ParamValue> = match domain {
        Domain::Int { step, .. } => [-2i64, -1, 1, 2]
            .iter()
            .filter_map(|k| v.checked_add(k.checked_mul(*step)?))
            .map(ParamValue::Int)
            .collect(),
        Domain::IntValues { values } => {
            let Ok(i) = values.binary_search(&v) else {
                return Vec::new();
            };
            [-2isize, -1, 1, 2]
                .iter()
                .filter_map(|k| values.get(i.checked_add_signed(*k)?).copied())
                .map(ParamValue::Int)
                .collect()
        }
        _ => Vec::new(),
    };
    candidates
        .iter()
        .filter_map(|c| domain.to_unit(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Param;

    /// Log scales and value lists are the user's own scale: only linear floats and integer
    /// ranges may be warped.
    #[test]
    fn only_linear_scales_are_warpable() {
        let space = SearchSpace::new(vec![
            Param::new(
                "lr",
                Domain::Float {
                    low: 1e-5,
                    high: 1e-1,
                    log: true,
                },
            ),
            Param::new(
                "frac",
                Domain::Float {
                    low: 0.0,
                    high: 1.0,
                    log: false,
                },
            ),
            Param::new(
                "batch",
                Domain::IntValues {
                    values: vec![8, 16, 32],
                },
            ),
            Param::new(
                "layers",
                Domain::Int {
                    low: 1,
                    high: 64,
                    step: 1,
                    log: true,
                },
            ),
            Param::new(
                "depth",
                Domain::Int {
                    low: 1,
                    high: 9,
                    step: 1,
                    log: false,
                },
            ),
        ])
        .unwrap();
        let e = Encoding::new(&space);
        // Features in name order: batch, depth, frac, layers, lr.
        assert_eq!(e.movable(), vec![0, 1, 2, 3, 4]);
        assert_eq!(e.warpable(), vec![1, 2]);
    }

    #[test]
    fn round_trip_and_neighbours() {
        let space = SearchSpace::new(vec![
            Param::new(
                "a",
                Domain::Float {
                    low: 0.0,
                    high: 2.0,
                    log: false,
                },
            ),
            Param::new(
                "b",
                Domain::Categorical {
                    choices: vec![
                        ParamValue::Str("x".into()),
                        ParamValue::Str("y".into()),
                        ParamValue::Str("z".into()),
                    ],
                },
            ),
            Param::new(
                "c",
                Domain::Int {
                    low: 0,
                    high: 9,
                    step: 1,
                    log: false,
                },
            ),
        ])
        .unwrap();
        let e = Encoding::new(&space);
        assert_eq!(e.features(), 5);
        assert_eq!(e.movable(), vec![0, 4]);
        assert_eq!(e.warpable(), vec![0, 4]);
        let f = e.encode(&[0.3, 0.5, 0.55]);
        assert_eq!(f, vec![0.3, 0.0, 1.0, 0.0, 0.55]);
        assert_eq!(e.decode(&f), vec![0.3, 0.5, 0.55]);
        // Relaxed integer features snap to the cell centre; one-hot blocks to the largest.
        let back = e.decode(&[0.3, 0.2, 0.1, 0.7, 0.51]);
        assert_eq!(back, vec![0.3, 2.5 / 3.0, 0.55]);
        let n = e.neighbours(&[0.3, 0.5, 0.55]);
        // Two other choices, and c = 3, 4, 6, 7.
        assert_eq!(n.len(), 6);
        assert!(n.iter().all(|v| space.contains(&space.from_unit(v))));
        assert!(e.neighbours(&[0.3, 0.5, 0.05]).len() == 4);
    }
}
