//! The search space: named parameters, their domains, and the map to and from the unit cube
//! that space-filling and model-based strategies work in.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One parameter value as a trial sees it. Untagged so JSON/TOML stay natural:
/// `{"learning_rate": 0.001, "batch_size": 16, "quantization": "int8"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A boolean categorical choice.
    Bool(bool),
    /// An integer parameter, or an integer categorical choice.
    Int(i64),
    /// A float parameter, or a float categorical choice.
    Float(f64),
    /// A string categorical choice.
    Str(String),
}

impl fmt::Display for ParamValue {
    /// Writes the value as a trial's argv sees it; floats round-trip exactly (shortest repr).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Str(s) => f.write_str(s),
        }
    }
}

/// A full assignment of values to every parameter of a space, keyed by parameter name.
pub type Params = BTreeMap<String, ParamValue>;

/// What values one parameter may take.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Domain {
    /// A real interval `[low, high]`, searched in log space when `log` (then `low > 0`).
    Float {
        /// Lower bound, inclusive.
        low: f64,
        /// Upper bound, inclusive.
        high: f64,
        /// Search in log space.
        log: bool,
    },
    /// Integers `low, low+step, …` up to `high`, searched in log space when `log` (then `low > 0`, `step == 1`).
    Int {
        /// Lower bound, inclusive.
        low: i64,
        /// Upper bound, inclusive (the largest value on the step grid ≤ high).
        high: i64,
        /// Step between allowed values (≥ 1).
        step: i64,
        /// Search in log space.
        log: bool,
    },
    /// An explicit, ordered list of integers (`values = [8, 16, 32]`); ordinal, not categorical.
    IntValues {
        /// The allowed values, strictly increasing, at least one.
        values: Vec<i64>,
    },
    /// Unordered choices.
    Categorical {
        /// The allowed choices, distinct, at least one.
        choices: Vec<ParamValue>,
    },
}

impl Domain {
    /// Checks the domain is well formed. The message names the offending field and what is
    /// allowed, e.g. `log = true needs low > 0 (got low = 0)`; the caller prefixes the key path.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Domain::Float { low, high, log } => {
                if !low.is_finite() {
                    return Err(format!("low must be a finite number (got low = {low})"));
                }
                if !high.is_finite() {
                    return Err(format!("high must be a finite number (got high = {high})"));
                }
                if low >= high {
                    return Err(format!(
                        "low must be < high (got low = {low}, high = {high})"
                    ));
                }
                if log && low <= 0.0 {
                    return Err(format!("log = true needs low > 0 (got low = {low})"));
                }
                Ok(())
            }
            Domain::Int {
                low,
                high,
                step,
                log,
            } => {
                if step < 1 {
                    return Err(format!("step must be >= 1 (got {step})"));
                }
                if low > high {
                    return Err(format!(
                        "low must be <= high (got low = {low}, high = {high})"
                    ));
                }
                if log && low <= 0 {
                    return Err(format!("log = true needs low > 0 (got low = {low})"));
                }
                if log && step != 1 {
                    return Err(format!("log = true needs step = 1 (got step = {step})"));
                }
                if int_count(low, high, step) > u128::from(u64::MAX) {
                    return Err(format!(
                        "the range has more than {} values (got low = {low}, high = {high}, step = {step})",
                        u64::MAX
                    ));
                }
                Ok(())
            }
            Domain::IntValues { ref values } => {
                if values.is_empty() {
                    return Err("values must not be empty".to_string());
                }
                if let Some(w) = values.windows(2).find(|w| w[0] >= w[1]) {
                    return Err(format!(
                        "values must be strictly increasing ({} then {})",
                        w[0], w[1]
                    ));
                }
                Ok(())
            }
            Domain::Categorical { ref choices } => {
                if choices.is_empty() {
                    return Err("choices must not be empty".to_string());
                }
                for c in choices {
                    if let ParamValue::Float(x) = c {
                        if !x.is_finite() {
                            return Err(format!("choices must be finite numbers (got {x})"));
                        }
                    }
                }
                for (i, c) in choices.iter().enumerate() {
                    if choices[..i].iter().any(|d| same_choice(c, d)) {
                        return Err(format!(
                            "choices must be distinct ({} appears twice)",
                            quoted(c)
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// Maps `u ∈ [0, 1]` to a value of the domain (log scale where `log`; integer and discrete
    /// domains split the unit interval into equal cells). Values outside [0, 1] are clamped.
    pub fn from_unit(&self, u: f64) -> ParamValue {
        let u = clamp_unit(u);
        match *self {
            Domain::Float { low, high, log } => {
                ParamValue::Float(float_from_unit(low, high, log, u))
            }
            Domain::Int {
                low,
                high,
                step,
                log,
            } => {
                if log {
                    if low == high {
                        return ParamValue::Int(low);
                    }
                    let (a, b) = log_int_edges(low, high);
                    let x = (a + u * (b - a)).exp().round();
                    // `as` saturates, and the clamp keeps the result on the (step = 1) grid.
                    ParamValue::Int((x as i64).clamp(low, high))
                } else {
                    let n = int_count(low, high, step);
                    let k = cell_index(u, n);
                    ParamValue::Int(int_at(low, step, k))
                }
            }
            Domain::IntValues { ref values } => {
                let k = cell_index(u, values.len() as u128);
                ParamValue::Int(values[k as usize])
            }
            Domain::Categorical { ref choices } => {
                let k = cell_index(u, choices.len() as u128);
                choices[k as usize].clone()
            }
        }
    }

    /// The inverse of [`Domain::from_unit`] (the centre of the value's cell for discrete
    /// domains); `None` when the value does not belong to the domain.
    pub fn to_unit(&self, value: &ParamValue) -> Option<f64> {
        if !self.contains(value) {
            return None;
        }
        let u = match *self {
            Domain::Float { low, high, log } => {
                let x = match *value {
                    ParamValue::Float(x) => x,
                    ParamValue::Int(i) => i as f64,
                    _ => return None,
                };
                if log {
                    (x.ln() - low.ln()) / (high.ln() - low.ln())
                } else {
                    let width = high - low;
                    if width.is_finite() {
                        (x - low) / width
                    } else {
                        (x * 0.5 - low * 0.5) / (high * 0.5 - low * 0.5)
                    }
                }
            }
            Domain::Int {
                low,
                high,
                step,
                log,
            } => {
                let ParamValue::Int(v) = *value else {
                    return None;
                };
                if log {
                    if low == high {
                        return Some(0.5);
                    }
                    let (a, b) = log_int_edges(low, high);
                    let v = v as f64;
                    let centre = 0.5 * ((v - 0.5).ln() + (v + 0.5).ln());
                    (centre - a) / (b - a)
                } else {
                    let k = (i128::from(v) - i128::from(low)) / i128::from(step);
                    cell_centre(k as u128, int_count(low, high, step))
                }
            }
            Domain::IntValues { ref values } => {
                let ParamValue::Int(v) = *value else {
                    return None;
                };
                let k = values.binary_search(&v).ok()?;
                cell_centre(k as u128, values.len() as u128)
            }
            Domain::Categorical { ref choices } => {
                let k = choices.iter().position(|c| same_choice(c, value))?;
                cell_centre(k as u128, choices.len() as u128)
            }
        };
        Some(u.clamp(0.0, 1.0))
    }

    /// Whether `value` is one of the domain's values (an `Int` counts as a float for `Float`).
    pub fn contains(&self, value: &ParamValue) -> bool {
        match *self {
            Domain::Float { low, high, .. } => {
                let x = match *value {
                    ParamValue::Float(x) => x,
                    ParamValue::Int(i) => i as f64,
                    _ => return false,
                };
                low <= x && x <= high
            }
            Domain::Int {
                low, high, step, ..
            } => match *value {
                ParamValue::Int(v) => {
                    low <= v
                        && v <= high
                        && step >= 1
                        && (i128::from(v) - i128::from(low)) % i128::from(step) == 0
                }
                _ => false,
            },
            Domain::IntValues { ref values } => match *value {
                ParamValue::Int(v) => values.binary_search(&v).is_ok(),
                _ => false,
            },
            Domain::Categorical { ref choices } => choices.iter().any(|c| same_choice(c, value)),
        }
    }

    /// The number of distinct values, `None` for a continuous float domain.
    pub fn cardinality(&self) -> Option<u64> {
        match *self {
            Domain::Float { .. } => None,
            Domain::Int {
                low, high, step, ..
            } => Some(u64::try_from(int_count(low, high, step)).unwrap_or(u64::MAX)),
            Domain::IntValues { ref values } => Some(values.len() as u64),
            Domain::Categorical { ref choices } => Some(choices.len() as u64),
        }
    }

    /// The `k`-th of the domain's distinct values (`k < cardinality`); for floats, the `k`-th of
    /// `points` evenly spaced values (log-spaced when `log`).
    ///
    /// An out-of-range `k` is clamped to the last value; a float grid of one point is the
    /// (geometric, when `log`) midpoint of the interval.
    pub fn grid_value(&self, k: u64, points: u64) -> ParamValue {
        match *self {
            Domain::Float { low, high, log } => {
                let u = if points <= 1 {
                    0.5
                } else {
                    k.min(points - 1) as f64 / (points - 1) as f64
                };
                ParamValue::Float(float_from_unit(low, high, log, u))
            }
            Domain::Int {
                low, high, step, ..
            } => {
                let n = int_count(low, high, step);
                ParamValue::Int(int_at(low, step, u128::from(k).min(n.saturating_sub(1))))
            }
            Domain::IntValues { ref values } => {
                ParamValue::Int(values[(k as usize).min(values.len().saturating_sub(1))])
            }
            Domain::Categorical { ref choices } => {
                choices[(k as usize).min(choices.len().saturating_sub(1))].clone()
            }
        }
    }
}

/// One named parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Param {
    /// The name used in `{name}` substitution and in `QUANTUNE_PARAMS`.
    pub name: String,
    /// Its domain.
    pub domain: Domain,
}

impl Param {
    /// A parameter with this name and domain.
    pub fn new(name: impl Into<String>, domain: Domain) -> Self {
        Param {
            name: name.into(),
            domain,
        }
    }
}

/// The parameters of a study, in a fixed order (sorted by name) so that unit-cube coordinates are
/// stable across restarts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchSpace {
    params: Vec<Param>,
    /// `when` conditions per conditional parameter (see [`Condition`]); empty for a space
    /// without conditional parameters (and then not serialized, so older records still load).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    conditions: BTreeMap<String, Vec<Condition>>,
}

/// One `when` entry of a conditional parameter: the parameter exists only in trials whose
/// `parent` is active and takes one of `values`. A parameter with several conditions exists
/// when all of them hold.
///
/// The parent must have listed values (a categorical, including booleans, or an int parameter
/// with `values = [...]`), every value must be one of them, and conditions must not form a
/// cycle: [`SearchSpace::with_conditions`] checks all three.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// The parameter the condition looks at.
    pub parent: String,
    /// The parent's values for which the conditional parameter exists.
    pub values: Vec<ParamValue>,
}

/// The unit coordinate [`SearchSpace::to_unit`] gives an inactive parameter: the middle of its
/// range, a neutral value for the models (which also see the parent that switched it off).
pub const INACTIVE_UNIT: f64 = 0.5;

impl SearchSpace {
    /// Builds a space; fails with `"<name>: <problem>"` on an invalid domain, a duplicate or
    /// empty name, or an empty list.
    pub fn new(mut params: Vec<Param>) -> Result<Self, String> {
        if params.is_empty() {
            return Err("the search space needs at least one parameter".to_string());
        }
        for p in &params {
            if p.name.is_empty() {
                return Err("a parameter name must not be empty".to_string());
            }
            p.domain
                .validate()
                .map_err(|e| format!("{}: {e}", p.name))?;
        }
        params.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = params.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(format!("{}: the parameter is defined twice", w[0].name));
        }
        Ok(SearchSpace {
            params,
            conditions: BTreeMap::new(),
        })
    }

    /// The parameters, sorted by name.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Number of parameters (the unit cube's dimension).
    pub fn dim(&self) -> usize {
        self.params.len()
    }

    /// Maps a point of the unit cube (`u.len() == dim()`) to parameter values.
    ///
    /// A missing coordinate (a slice shorter than `dim()`) counts as 0.5; extra ones are ignored.
    pub fn from_unit(&self, u: &[f64]) -> Params {
        debug_assert_eq!(u.len(), self.dim(), "unit point has the wrong dimension");
        if self.conditions.is_empty() {
            return self
                .params
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let ui = u.get(i).copied().unwrap_or(0.5);
                    (p.name.clone(), p.domain.from_unit(ui))
                })
                .collect();
        }
        let values: Vec<ParamValue> = self
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| p.domain.from_unit(u.get(i).copied().unwrap_or(0.5)))
            .collect();
        let active = self.active_by(|j| values.get(j));
        self.params
            .iter()
            .zip(values.iter())
            .zip(active)
            .filter(|(_, a)| *a)
            .map(|((p, v), _)| (p.name.clone(), v.clone()))
            .collect()
    }

    /// Maps parameter values to the unit cube; `None` if an active parameter is missing or out
    /// of domain, or an inactive one is present. An inactive parameter's coordinate is
    /// [`INACTIVE_UNIT`].
    pub fn to_unit(&self, params: &Params) -> Option<Vec<f64>> {
        if self.conditions.is_empty() {
            return self
                .params
                .iter()
                .map(|p| p.domain.to_unit(params.get(&p.name)?))
                .collect();
        }
        let active = self.active(params);
        self.params
            .iter()
            .zip(active)
            .map(|(p, a)| match (a, params.get(&p.name)) {
                (true, Some(v)) => p.domain.to_unit(v),
                (false, None) => Some(INACTIVE_UNIT),
                _ => None,
            })
            .collect()
    }

    /// Whether `params` names exactly this space's active parameters (see
    /// [`SearchSpace::active`]), each within its domain.
    pub fn contains(&self, params: &Params) -> bool {
        if self.conditions.is_empty() {
            return params.len() == self.params.len()
                && self
                    .params
                    .iter()
                    .all(|p| params.get(&p.name).is_some_and(|v| p.domain.contains(v)));
        }
        self.check_params(params).is_ok()
    }

    /// Why `params` is not a point of the space, as a message naming the parameter and the fix
    /// (`group_size: only exists when quantization is "int4" or "int8-int4" (here quantization
    /// = "bf16"); remove it`); `Ok` exactly when [`SearchSpace::contains`] holds.
    pub fn check_params(&self, params: &Params) -> Result<(), String> {
        if let Some(k) = params.keys().find(|k| self.index_of(k).is_none()) {
            let known: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
            return Err(format!(
                "{k}: not a parameter of the study (parameters: {})",
                known.join(", ")
            ));
        }
        let active = self.active(params);
        for (p, a) in self.params.iter().zip(active) {
            match (a, params.get(&p.name)) {
                (true, Some(v)) if !p.domain.contains(v) => {
                    return Err(format!(
                        "{}: {} is not in the parameter's domain",
                        p.name,
                        quoted(v)
                    ))
                }
                (true, None) => {
                    let why = self
                        .conditions
                        .get(&p.name)
                        .map(|c| {
                            format!(" (it exists because {})", self.describe_present(c, params))
                        })
                        .unwrap_or_default();
                    return Err(format!("{}: missing{why}; give it a value", p.name));
                }
                (false, Some(_)) => {
                    return Err(format!(
                        "{}: {}; remove it",
                        p.name,
                        self.why_inactive(&p.name, params)
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether each parameter (in [`SearchSpace::params`] order) exists in a trial with these
    /// values: an unconditional parameter always; a conditional one when its parents are active
    /// and every condition holds. Only the parents' values are looked at, so `params` may be
    /// partial or hold extra keys.
    pub fn active(&self, params: &Params) -> Vec<bool> {
        self.active_by(|j| params.get(&self.params[j].name))
    }

    /// [`SearchSpace::active`] for a point of the unit cube (`u.len() == dim()`): the parents'
    /// values are those the coordinates map to.
    pub fn active_in_unit(&self, u: &[f64]) -> Vec<bool> {
        if self.conditions.is_empty() {
            return vec![true; self.params.len()];
        }
        let values: Vec<ParamValue> = self
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| p.domain.from_unit(u.get(i).copied().unwrap_or(0.5)))
            .collect();
        self.active_by(|j| values.get(j))
    }

    /// Whether parameter `name` exists in a trial with these values (false for an unknown name).
    pub fn is_active(&self, name: &str, params: &Params) -> bool {
        self.index_of(name).is_some_and(|i| self.active(params)[i])
    }

    /// Whether any parameter is conditional.
    pub fn is_conditional(&self) -> bool {
        !self.conditions.is_empty()
    }

    /// The conditions of parameter `name` (empty for an unconditional or unknown parameter).
    pub fn conditions_of(&self, name: &str) -> &[Condition] {
        self.conditions.get(name).map_or(&[], Vec::as_slice)
    }

    /// Every conditional parameter and its conditions, by name.
    pub fn conditions(&self) -> &BTreeMap<String, Vec<Condition>> {
        &self.conditions
    }

    /// The index of parameter `name` in [`SearchSpace::params`].
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.params
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
    }

    /// This space with `when` conditions: `conditions[child]` lists the conditions under which
    /// `child` exists. Fails with `(key, message)`, the key a path below `space` such as
    /// `group_size.when.quantization`, when a child or parent is unknown, a parameter is its own
    /// parent, the parent has no listed values (only categoricals, booleans and int
    /// `values = [...]` lists can be conditioned on), a value list is empty, repeats a value or
    /// holds one the parent cannot take, or the conditions form a cycle.
    pub fn with_conditions(
        mut self,
        conditions: BTreeMap<String, Vec<Condition>>,
    ) -> Result<Self, (String, String)> {
        let names = || {
            self.params
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (child, conds) in &conditions {
            if self.index_of(child).is_none() {
                return Err((
                    child.clone(),
                    format!("not a parameter of the study (parameters: {})", names()),
                ));
            }
            for (k, c) in conds.iter().enumerate() {
                let key = format!("{child}.when.{}", c.parent);
                if conds[..k].iter().any(|d| d.parent == c.parent) {
                    return Err((key, "names the same parent twice; merge the lists".into()));
                }
                if c.parent == *child {
                    return Err((key, "a parameter cannot be conditioned on itself".into()));
                }
                let Some(j) = self.index_of(&c.parent) else {
                    return Err((
                        key,
                        format!(
                            "\"{}\" is not a parameter of the study (parameters: {}); when = {{ <parameter> = [values…] }} names another parameter",
                            c.parent,
                            names()
                        ),
                    ));
                };
                let domain = &self.params[j].domain;
                if !matches!(
                    domain,
                    Domain::Categorical { .. } | Domain::IntValues { .. }
                ) {
                    return Err((
                        key,
                        format!(
                            "\"{}\" has a range, not listed values; a condition's parent must be a type = \"categorical\" parameter (booleans included) or an int parameter with values = [...]",
                            c.parent
                        ),
                    ));
                }
                if c.values.is_empty() {
                    return Err((key, format!("needs at least one value of \"{}\"", c.parent)));
                }
                for (i, v) in c.values.iter().enumerate() {
                    if !domain.contains(v) {
                        return Err((
                            key,
                            format!(
                                "{} is not a value of \"{}\" (its values: {})",
                                quoted(v),
                                c.parent,
                                domain_values(domain)
                            ),
                        ));
                    }
                    if c.values[..i].iter().any(|w| same_choice(v, w)) {
                        return Err((key, format!("{} appears twice", quoted(v))));
                    }
                }
            }
        }
        // Cycles: depth-first search over child -> parent edges.
        let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 = on the stack, 2 = done
        for start in conditions.keys() {
            let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
            let mut path: Vec<&str> = Vec::new();
            while let Some((node, k)) = stack.pop() {
                if k == 0 {
                    match state.get(node) {
                        Some(2) => continue,
                        Some(1) => {
                            let from = path.iter().position(|n| *n == node).unwrap_or(0);
                            let mut cycle: Vec<&str> = path[from..].to_vec();
                            cycle.push(node);
                            return Err((
                                format!("{}.when", cycle[0]),
                                format!(
                                    "the conditions form a cycle ({}); a parameter cannot depend on itself through other parameters",
                                    cycle.join(" -> ")
                                ),
                            ));
                        }
                        _ => {}
                    }
                    state.insert(node, 1);
                    path.push(node);
                }
                let parents = conditions.get(node).map_or(&[][..], Vec::as_slice);
                if let Some(c) = parents.get(k) {
                    stack.push((node, k + 1));
                    stack.push((c.parent.as_str(), 0));
                } else {
                    state.insert(node, 2);
                    path.pop();
                }
            }
        }
        self.conditions = conditions
            .into_iter()
            .filter(|(_, c)| !c.is_empty())
            .collect();
        Ok(self)
    }

    /// A space with the same conditions over other domains of the same parameters (the
    /// hardware restriction of [`crate::restrict`] narrows categorical choices). The
    /// conditions are not re-checked against the narrower domains: a value no longer allowed
    /// simply never occurs.
    pub fn with_domains(&self, params: Vec<Param>) -> Result<Self, String> {
        let mut space = SearchSpace::new(params)?;
        if space
            .params
            .iter()
            .map(|p| &p.name)
            .ne(self.params.iter().map(|p| &p.name))
        {
            return Err("the restricted space must have the same parameters".into());
        }
        space.conditions = self.conditions.clone();
        Ok(space)
    }

    /// `params` completed into a point of the space: values in `given` are kept, a missing
    /// active parameter takes its value from `fill` (a strategy's suggestion), or the middle
    /// of its domain when `fill` lacks it (the suggestion had the parent elsewhere); inactive
    /// parameters of `fill` are left out. Fails, naming the parameter, when `given` holds an
    /// unknown or inactive parameter or a value outside a domain.
    pub fn complete(&self, given: Params, fill: &Params) -> Result<Params, String> {
        let mut out = given.clone();
        // Parents first: fill in dependency order until nothing changes (depth ≤ dim).
        for _ in 0..=self.params.len() {
            let active = self.active(&out);
            let mut changed = false;
            for (p, a) in self.params.iter().zip(&active) {
                if *a && !out.contains_key(&p.name) {
                    let v = fill
                        .get(&p.name)
                        .filter(|v| p.domain.contains(v))
                        .cloned()
                        .unwrap_or_else(|| p.domain.from_unit(0.5));
                    out.insert(p.name.clone(), v);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let active = self.active(&out);
        for (p, a) in self.params.iter().zip(active) {
            if !a && !given.contains_key(&p.name) {
                out.remove(&p.name);
            }
        }
        self.check_params(&out)?;
        Ok(out)
    }

    /// Why parameter `name` does not exist for these values: what its conditions need and
    /// what `params` has (`only exists when quantization is "int4" (here quantization =
    /// "bf16")`).
    pub fn why_inactive(&self, name: &str, params: &Params) -> String {
        let Some(conds) = self.conditions.get(name) else {
            return "is not conditional".into();
        };
        let mut parts = Vec::new();
        for c in conds {
            let need = c.values.iter().map(quoted).collect::<Vec<_>>().join(" or ");
            let here = match params.get(&c.parent) {
                Some(v) if self.is_active(&c.parent, params) => {
                    format!("here {} = {}", c.parent, quoted(v))
                }
                _ => format!("here {} does not exist either", c.parent),
            };
            parts.push(format!("{} is {need} ({here})", c.parent));
        }
        format!("only exists when {}", parts.join(" and "))
    }

    /// Which parent values make a conditional parameter exist, for a "missing" message.
    fn describe_present(&self, conds: &[Condition], params: &Params) -> String {
        conds
            .iter()
            .map(|c| match params.get(&c.parent) {
                Some(v) => format!("{} = {}", c.parent, quoted(v)),
                None => c.parent.clone(),
            })
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// Activity of every parameter given a way to look up parameter `j`'s value.
    fn active_by<'v>(&self, value: impl Fn(usize) -> Option<&'v ParamValue>) -> Vec<bool> {
        let n = self.params.len();
        if self.conditions.is_empty() {
            return vec![true; n];
        }
        let mut state: Vec<Option<bool>> = vec![None; n];
        for i in 0..n {
            self.resolve(i, &value, &mut state, 0);
        }
        state.into_iter().map(|s| s.unwrap_or(false)).collect()
    }

    fn resolve<'v>(
        &self,
        i: usize,
        value: &impl Fn(usize) -> Option<&'v ParamValue>,
        state: &mut Vec<Option<bool>>,
        depth: usize,
    ) -> bool {
        if let Some(b) = state[i] {
            return b;
        }
        // A cycle cannot pass `with_conditions`; a deserialized one counts as inactive.
        let b = depth <= self.params.len()
            && match self.conditions.get(&self.params[i].name) {
                None => true,
                Some(conds) => conds.iter().all(|c| {
                    self.index_of(&c.parent).is_some_and(|j| {
                        self.resolve(j, value, state, depth + 1)
                            && value(j).is_some_and(|v| c.values.iter().any(|w| same_choice(w, v)))
                    })
                }),
            };
        state[i] = Some(b);
        b
    }

    /// Number of grid points when each float gets `float_points` values; `None` on overflow.
    /// For a conditional space this is the full product, an upper bound:
    /// [`crate::conditional::ConditionalGrid::total`] counts the valid points.
    pub fn grid_size(&self, float_points: u64) -> Option<u64> {
        self.params.iter().try_fold(1u64, |acc, p| {
            acc.checked_mul(p.domain.cardinality().unwrap_or(float_points))
        })
    }
}

/// Clamps `u` into [0, 1]; NaN counts as 0.
fn clamp_unit(u: f64) -> f64 {
    if u >= 0.0 {
        u.min(1.0)
    } else {
        0.0
    }
}

/// Number of values `low, low + step, …` not above `high` (0 when `low > high` or `step < 1`).
fn int_count(low: i64, high: i64, step: i64) -> u128 {
    if low > high || step < 1 {
        return 0;
    }
    ((i128::from(high) - i128::from(low)) / i128::from(step) + 1) as u128
}

/// The `k`-th value `low + k * step` (the caller keeps it within the domain).
fn int_at(low: i64, step: i64, k: u128) -> i64 {
    let v = i128::from(low) + k as i128 * i128::from(step);
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// The cell of `u ∈ [0, 1]` when the unit interval is split into `n ≥ 1` equal cells.
fn cell_index(u: f64, n: u128) -> u128 {
    let k = (u * n as f64).floor();
    // `as` saturates (and maps NaN to 0); clamp u = 1 into the last cell.
    (k as u128).min(n.saturating_sub(1))
}

/// The centre of cell `k` of `n`.
fn cell_centre(k: u128, n: u128) -> f64 {
    (k as f64 + 0.5) / n as f64
}

/// The log-space interval a log-scaled integer domain is sampled on: every integer `v` owns
/// `[ln(v - 0.5), ln(v + 0.5))`.
fn log_int_edges(low: i64, high: i64) -> (f64, f64) {
    ((low as f64 - 0.5).ln(), (high as f64 + 0.5).ln())
}

/// Maps `u ∈ [0, 1]` into `[low, high]`, linearly or log-linearly; the ends map exactly.
fn float_from_unit(low: f64, high: f64, log: bool, u: f64) -> f64 {
    if u <= 0.0 {
        return low;
    }
    if u >= 1.0 {
        return high;
    }
    let x = if log {
        let (a, b) = (low.ln(), high.ln());
        (a + u * (b - a)).exp()
    } else {
        let width = high - low;
        if width.is_finite() {
            low + u * width
        } else {
            (1.0 - u) * low + u * high
        }
    };
    x.clamp(low, high)
}

/// Categorical equality: exact, except that an integer and a float with the same value match.
pub fn same_choice(a: &ParamValue, b: &ParamValue) -> bool {
    match (a, b) {
        (ParamValue::Int(i), ParamValue::Float(x)) | (ParamValue::Float(x), ParamValue::Int(i)) => {
            *x == *i as f64 && *x as i128 == i128::from(*i)
        }
        _ => a == b,
    }
}

/// A listed-value domain's values as an error message shows them.
fn domain_values(domain: &Domain) -> String {
    match domain {
        Domain::Categorical { choices } => {
            choices.iter().map(quoted).collect::<Vec<_>>().join(", ")
        }
        Domain::IntValues { values } => values
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

/// A choice as error messages show it: strings quoted, everything else as displayed.
fn quoted(v: &ParamValue) -> String {
    match v {
        ParamValue::Str(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{arb_discrete, arb_domain, arb_float, arb_space};
    use proptest::prelude::*;

    fn float(low: f64, high: f64, log: bool) -> Domain {
        Domain::Float { low, high, log }
    }

    fn int(low: i64, high: i64, step: i64, log: bool) -> Domain {
        Domain::Int {
            low,
            high,
            step,
            log,
        }
    }

    fn strs(xs: &[&str]) -> Vec<ParamValue> {
        xs.iter().map(|s| ParamValue::Str(s.to_string())).collect()
    }

    #[test]
    fn display_round_trips() {
        assert_eq!(ParamValue::Int(-16).to_string(), "-16");
        assert_eq!(ParamValue::Bool(true).to_string(), "true");
        assert_eq!(ParamValue::Str("int8".into()).to_string(), "int8");
        assert_eq!(ParamValue::Float(0.001).to_string(), "0.001");
        assert_eq!(ParamValue::Float(1e-5).to_string(), "0.00001");
        for x in [
            0.1,
            1.0,
            1e-5,
            3.0e-4,
            2.5e10,
            1.0 / 3.0,
            -7.25,
            1e-300,
            1e300,
            f64::MAX,
        ] {
            let shown = ParamValue::Float(x).to_string();
            assert_eq!(shown.parse::<f64>().unwrap(), x, "{shown}");
        }
    }

    #[test]
    fn serde_shapes() {
        let v: ParamValue = serde_json::from_str("16").unwrap();
        assert_eq!(v, ParamValue::Int(16));
        let v: ParamValue = serde_json::from_str("0.5").unwrap();
        assert_eq!(v, ParamValue::Float(0.5));
        let v: ParamValue = serde_json::from_str("\"int8\"").unwrap();
        assert_eq!(v, ParamValue::Str("int8".into()));
        let d: Domain =
            serde_json::from_str(r#"{"type":"float","low":1e-5,"high":1e-3,"log":true}"#).unwrap();
        assert_eq!(d, float(1e-5, 1e-3, true));
        let json = serde_json::to_string(&Domain::IntValues {
            values: vec![8, 16],
        })
        .unwrap();
        assert_eq!(json, r#"{"type":"int_values","values":[8,16]}"#);
    }

    #[test]
    fn validation_messages() {
        let err = |d: Domain| d.validate().unwrap_err();
        assert_eq!(
            err(float(0.0, 1.0, true)),
            "log = true needs low > 0 (got low = 0)"
        );
        assert_eq!(
            err(float(5.0, 1.0, false)),
            "low must be < high (got low = 5, high = 1)"
        );
        assert_eq!(
            err(float(1.0, 1.0, false)),
            "low must be < high (got low = 1, high = 1)"
        );
        assert_eq!(
            err(float(f64::NAN, 1.0, false)),
            "low must be a finite number (got low = NaN)"
        );
        assert_eq!(
            err(float(0.0, f64::INFINITY, false)),
            "high must be a finite number (got high = inf)"
        );
        assert_eq!(err(int(0, 10, 0, false)), "step must be >= 1 (got 0)");
        assert_eq!(
            err(int(5, 1, 1, false)),
            "low must be <= high (got low = 5, high = 1)"
        );
        assert_eq!(
            err(int(0, 10, 1, true)),
            "log = true needs low > 0 (got low = 0)"
        );
        assert_eq!(
            err(int(1, 10, 2, true)),
            "log = true needs step = 1 (got step = 2)"
        );
        assert!(err(int(i64::MIN, i64::MAX, 1, false)).starts_with("the range has more than"));
        assert_eq!(
            err(Domain::IntValues { values: vec![] }),
            "values must not be empty"
        );
        assert_eq!(
            err(Domain::IntValues {
                values: vec![4, 8, 8]
            }),
            "values must be strictly increasing (8 then 8)"
        );
        assert_eq!(
            err(Domain::IntValues {
                values: vec![16, 8]
            }),
            "values must be strictly increasing (16 then 8)"
        );
        assert_eq!(
            err(Domain::Categorical { choices: vec![] }),
            "choices must not be empty"
        );
        assert_eq!(
            err(Domain::Categorical {
                choices: strs(&["int8", "int4", "int8"])
            }),
            r#"choices must be distinct ("int8" appears twice)"#
        );
        assert_eq!(
            err(Domain::Categorical {
                choices: vec![ParamValue::Int(1), ParamValue::Float(1.0)]
            }),
            "choices must be distinct (1 appears twice)"
        );
        assert_eq!(
            err(Domain::Categorical {
                choices: vec![ParamValue::Float(f64::NAN)]
            }),
            "choices must be finite numbers (got NaN)"
        );
        assert!(int(3, 3, 1, false).validate().is_ok());
        assert!(int(3, 3, 1, true).validate().is_ok());
        assert!(int(i64::MIN, i64::MAX, 2, false).validate().is_ok());
        assert!(float(-f64::MAX, f64::MAX, false).validate().is_ok());
    }

    #[test]
    fn float_mapping_hits_both_ends() {
        for d in [
            float(1e-5, 1e-3, true),
            float(-2.0, 3.0, false),
            float(0.1, 0.7, false),
        ] {
            let Domain::Float { low, high, .. } = d else {
                unreachable!()
            };
            assert_eq!(d.from_unit(0.0), ParamValue::Float(low));
            assert_eq!(d.from_unit(1.0), ParamValue::Float(high));
            assert_eq!(d.from_unit(-3.0), ParamValue::Float(low));
            assert_eq!(d.from_unit(7.0), ParamValue::Float(high));
            assert_eq!(d.from_unit(f64::NAN), ParamValue::Float(low));
            assert_eq!(d.to_unit(&ParamValue::Float(low)), Some(0.0));
            assert_eq!(d.to_unit(&ParamValue::Float(high)), Some(1.0));
            assert_eq!(d.grid_value(0, 5), ParamValue::Float(low));
            assert_eq!(d.grid_value(4, 5), ParamValue::Float(high));
        }
        let d = float(1e-5, 1e-3, true);
        let ParamValue::Float(mid) = d.from_unit(0.5) else {
            panic!()
        };
        assert!((mid - 1e-4).abs() < 1e-15, "{mid}");
        let ParamValue::Float(g) = d.grid_value(1, 3) else {
            panic!()
        };
        assert!((g - 1e-4).abs() < 1e-15, "{g}");
        assert!((d.to_unit(&ParamValue::Float(1e-4)).unwrap() - 0.5).abs() < 1e-12);
        let d = float(-2.0, 3.0, false);
        assert_eq!(d.from_unit(0.5), ParamValue::Float(0.5));
        assert_eq!(d.grid_value(0, 1), ParamValue::Float(0.5));
        let wide = float(-f64::MAX, f64::MAX, false);
        assert_eq!(wide.from_unit(0.5), ParamValue::Float(0.0));
        assert_eq!(wide.to_unit(&ParamValue::Float(0.0)), Some(0.5));
    }

    #[test]
    fn int_mapping() {
        let d = int(0, 9, 1, false);
        assert_eq!(d.from_unit(0.0), ParamValue::Int(0));
        assert_eq!(d.from_unit(0.55), ParamValue::Int(5));
        assert_eq!(d.from_unit(1.0), ParamValue::Int(9));
        assert_eq!(d.to_unit(&ParamValue::Int(5)), Some(0.55));
        // The upper bound is the last grid value at or below `high`.
        let d = int(0, 10, 3, false);
        assert_eq!(d.cardinality(), Some(4));
        assert_eq!(d.from_unit(1.0), ParamValue::Int(9));
        assert!(d.contains(&ParamValue::Int(6)));
        assert!(!d.contains(&ParamValue::Int(10)));
        assert!(!d.contains(&ParamValue::Int(7)));
        assert!(!d.contains(&ParamValue::Float(6.0)));
        assert_eq!(d.grid_value(3, 5), ParamValue::Int(9));
        assert_eq!(d.grid_value(99, 5), ParamValue::Int(9));
        let single = int(7, 7, 1, true);
        assert_eq!(single.from_unit(0.3), ParamValue::Int(7));
        assert_eq!(single.to_unit(&ParamValue::Int(7)), Some(0.5));
        let huge = int(i64::MIN, i64::MAX, 2, false);
        assert_eq!(huge.cardinality(), Some(1 << 63));
        assert_eq!(huge.from_unit(0.0), ParamValue::Int(i64::MIN));
        assert_eq!(huge.from_unit(1.0), ParamValue::Int(i64::MAX - 1));
        assert!(huge.contains(&huge.from_unit(0.3)));
    }

    #[test]
    fn log_int_mapping() {
        let d = int(1, 1000, 1, true);
        assert_eq!(d.from_unit(0.0), ParamValue::Int(1));
        assert_eq!(d.from_unit(1.0), ParamValue::Int(1000));
        for v in 1..=1000 {
            let u = d.to_unit(&ParamValue::Int(v)).unwrap();
            assert_eq!(d.from_unit(u), ParamValue::Int(v));
        }
        // Log-uniform: about half the mass below the geometric mean of the cell edges.
        let below = (0..1000)
            .filter(|i| matches!(d.from_unit((*i as f64 + 0.5) / 1000.0), ParamValue::Int(v) if v <= 22))
            .count();
        assert!((450..550).contains(&below), "{below}");
    }

    #[test]
    fn discrete_mapping() {
        let d = Domain::IntValues {
            values: vec![8, 16, 32],
        };
        assert_eq!(d.from_unit(0.0), ParamValue::Int(8));
        assert_eq!(d.from_unit(0.5), ParamValue::Int(16));
        assert_eq!(d.from_unit(1.0), ParamValue::Int(32));
        assert_eq!(d.to_unit(&ParamValue::Int(32)), Some(2.5 / 3.0));
        assert_eq!(d.to_unit(&ParamValue::Int(12)), None);
        assert_eq!(d.grid_value(1, 5), ParamValue::Int(16));
        let d = Domain::Categorical {
            choices: vec![
                ParamValue::Str("int8".into()),
                ParamValue::Float(0.5),
                ParamValue::Float(1.0),
                ParamValue::Bool(false),
            ],
        };
        assert_eq!(d.cardinality(), Some(4));
        assert_eq!(d.from_unit(0.3), ParamValue::Float(0.5));
        assert!(d.contains(&ParamValue::Int(1)));
        assert_eq!(d.to_unit(&ParamValue::Int(1)), Some(0.625));
        assert!(!d.contains(&ParamValue::Int(0)));
        assert!(!d.contains(&ParamValue::Str("int4".into())));
        assert!(d.contains(&ParamValue::Bool(false)));
        assert!(!d.contains(&ParamValue::Bool(true)));
    }

    #[test]
    fn float_contains() {
        let d = float(0.0, 10.0, false);
        assert!(d.contains(&ParamValue::Float(10.0)));
        assert!(d.contains(&ParamValue::Int(3)));
        assert!(!d.contains(&ParamValue::Int(11)));
        assert!(!d.contains(&ParamValue::Float(f64::NAN)));
        assert!(!d.contains(&ParamValue::Str("3".into())));
        assert_eq!(d.to_unit(&ParamValue::Int(5)), Some(0.5));
        assert_eq!(d.cardinality(), None);
    }

    #[test]
    fn space_new_checks() {
        assert_eq!(
            SearchSpace::new(vec![]).unwrap_err(),
            "the search space needs at least one parameter"
        );
        assert_eq!(
            SearchSpace::new(vec![Param::new("", float(0.0, 1.0, false))]).unwrap_err(),
            "a parameter name must not be empty"
        );
        assert_eq!(
            SearchSpace::new(vec![
                Param::new("lr", float(0.0, 1.0, false)),
                Param::new("bits", Domain::IntValues { values: vec![4, 8] }),
                Param::new("lr", float(0.0, 2.0, false)),
            ])
            .unwrap_err(),
            "lr: the parameter is defined twice"
        );
        assert_eq!(
            SearchSpace::new(vec![Param::new("lr", float(0.0, 1.0, true))]).unwrap_err(),
            "lr: log = true needs low > 0 (got low = 0)"
        );
        let space = SearchSpace::new(vec![
            Param::new("z", float(0.0, 1.0, false)),
            Param::new("a", Domain::IntValues { values: vec![4, 8] }),
            Param::new(
                "m",
                Domain::Categorical {
                    choices: strs(&["x", "y", "w"]),
                },
            ),
        ])
        .unwrap();
        let names: Vec<_> = space.params().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "m", "z"]);
        assert_eq!(space.dim(), 3);
        assert_eq!(space.grid_size(5), Some(30));
        let p = space.from_unit(&[0.9, 0.0, 0.5]);
        assert_eq!(p["a"], ParamValue::Int(8));
        assert_eq!(p["m"], ParamValue::Str("x".into()));
        assert_eq!(p["z"], ParamValue::Float(0.5));
        assert!(space.contains(&p));
        assert_eq!(space.to_unit(&p), Some(vec![0.75, 1.0 / 6.0, 0.5]));
        let mut extra = p.clone();
        extra.insert("q".into(), ParamValue::Int(1));
        assert!(!space.contains(&extra));
        let mut missing = p.clone();
        missing.remove("m");
        assert!(!space.contains(&missing));
        assert_eq!(space.to_unit(&missing), None);
        let mut bad = p;
        bad.insert("a".into(), ParamValue::Int(5));
        assert!(!space.contains(&bad));
        assert_eq!(space.to_unit(&bad), None);
    }

    #[test]
    fn grid_size_overflow() {
        let params = (0..5)
            .map(|i| Param::new(format!("p{i}"), int(0, 1 << 20, 1, false)))
            .collect();
        let space = SearchSpace::new(params).unwrap();
        assert_eq!(space.grid_size(5), None);
    }

    proptest! {
        #[test]
        fn from_unit_lands_in_domain(d in arb_domain(), u in -0.5f64..1.5) {
            prop_assert!(d.validate().is_ok());
            let v = d.from_unit(u);
            prop_assert!(d.contains(&v), "{:?} -> {:?}", d, v);
            prop_assert!(d.to_unit(&v).is_some());
        }

        #[test]
        fn discrete_round_trip(d in arb_discrete(), u in 0.0f64..=1.0) {
            let v = d.from_unit(u);
            let back = d.to_unit(&v).unwrap();
            prop_assert!((0.0..=1.0).contains(&back));
            prop_assert_eq!(d.from_unit(back), v);
        }

        #[test]
        fn discrete_grid_values_round_trip(d in arb_discrete(), k in any::<u64>()) {
            let n = d.cardinality().unwrap();
            let v = d.grid_value(k % n, 5);
            prop_assert!(d.contains(&v));
            let u = d.to_unit(&v).unwrap();
            // Small domains must map every value back to itself; huge ones may collapse
            // neighbours below f64's resolution.
            if n < (1 << 40) {
                prop_assert_eq!(d.from_unit(u), v);
            }
        }

        #[test]
        fn float_round_trip(d in arb_float(), u in 0.0f64..=1.0) {
            let v = d.from_unit(u);
            let back = d.to_unit(&v).unwrap();
            prop_assert!((back - u).abs() < 1e-9, "{} vs {}", back, u);
        }

        #[test]
        fn space_round_trip(space in arb_space(), seed in any::<u64>()) {
            let u: Vec<f64> = (0..space.dim())
                .map(|i| (crate::strategy::mix(seed ^ i as u64) >> 11) as f64 / (1u64 << 53) as f64)
                .collect();
            let p = space.from_unit(&u);
            prop_assert!(space.contains(&p));
            let back = space.to_unit(&p).unwrap();
            prop_assert_eq!(back.len(), space.dim());
            prop_assert!(space.contains(&space.from_unit(&back)));
        }
    }
}
