//! Proptest generators shared by the unit tests.

use crate::space::{Domain, Param, ParamValue, SearchSpace};
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;

/// Any valid float domain (linear or log), including very wide and very narrow ones.
pub fn arb_float() -> impl Strategy<Value = Domain> {
    prop_oneof![
        (-1e6f64..1e6, 1e-9f64..1e6).prop_map(|(low, w)| Domain::Float {
            low,
            high: low + w,
            log: false
        }),
        (1e-12f64..1e3, 1.0001f64..1e9).prop_map(|(low, f)| Domain::Float {
            low,
            high: low * f,
            log: true
        }),
        Just(Domain::Float {
            low: -f64::MAX,
            high: f64::MAX,
            log: false
        }),
        Just(Domain::Float {
            low: f64::MIN_POSITIVE,
            high: f64::MAX,
            log: true
        }),
    ]
}

/// Any valid integer domain (linear with a step, or log), including the extremes of i64.
pub fn arb_int() -> impl Strategy<Value = Domain> {
    prop_oneof![
        (-1000i64..1000, 0i64..2000, 1i64..20).prop_map(|(low, span, step)| Domain::Int {
            low,
            high: low + span,
            step,
            log: false
        }),
        (1i64..1000, 0i64..100_000).prop_map(|(low, span)| Domain::Int {
            low,
            high: low + span,
            step: 1,
            log: true
        }),
        (any::<i64>(), any::<i64>(), 2i64..i64::MAX).prop_map(|(a, b, step)| Domain::Int {
            low: a.min(b),
            high: a.max(b),
            step,
            log: false
        }),
        (1i64..i64::MAX).prop_map(|low| Domain::Int {
            low,
            high: i64::MAX,
            step: 1,
            log: true
        }),
    ]
}

/// Any valid ordinal list of integers.
pub fn arb_int_values() -> impl Strategy<Value = Domain> {
    btree_set(any::<i64>(), 1..12).prop_map(|s| Domain::IntValues {
        values: s.into_iter().collect(),
    })
}

/// Any valid categorical domain: distinct strings, or a mix of bools, ints and floats.
pub fn arb_categorical() -> impl Strategy<Value = Domain> {
    prop_oneof![
        btree_set("[a-z0-9]{1,6}", 1..8).prop_map(|s| Domain::Categorical {
            choices: s.into_iter().map(ParamValue::Str).collect(),
        }),
        btree_set(-50i64..50, 1..8).prop_map(|s| Domain::Categorical {
            choices: s
                .into_iter()
                .map(|i| {
                    if i % 3 == 0 {
                        ParamValue::Float(i as f64 + 0.5)
                    } else {
                        ParamValue::Int(i)
                    }
                })
                .chain(std::iter::once(ParamValue::Bool(true)))
                .collect(),
        }),
    ]
}

/// Any valid domain.
pub fn arb_domain() -> impl Strategy<Value = Domain> {
    prop_oneof![arb_float(), arb_int(), arb_int_values(), arb_categorical()]
}

/// Any valid discrete domain.
pub fn arb_discrete() -> impl Strategy<Value = Domain> {
    prop_oneof![arb_int(), arb_int_values(), arb_categorical()]
}

/// Any valid space of 1 to 6 parameters.
pub fn arb_space() -> impl Strategy<Value = SearchSpace> {
    vec(arb_domain(), 1..7).prop_map(|domains| {
        let params = domains
            .into_iter()
            .enumerate()
            .map(|(i, d)| Param::new(format!("p{i}"), d))
            .collect();
        SearchSpace::new(params).expect("generated spaces are valid")
    })
}

/// A space of 1 to 4 small discrete parameters (grid of at most a few thousand points).
pub fn arb_small_grid_space() -> impl Strategy<Value = SearchSpace> {
    let small = prop_oneof![
        (-10i64..10, 0i64..6, 1i64..3).prop_map(|(low, span, step)| Domain::Int {
            low,
            high: low + span,
            step,
            log: false
        }),
        btree_set(-100i64..100, 1..5).prop_map(|s| Domain::IntValues {
            values: s.into_iter().collect()
        }),
        btree_set("[a-z]{1,3}", 1..4).prop_map(|s| Domain::Categorical {
            choices: s.into_iter().map(ParamValue::Str).collect(),
        }),
        (-5.0f64..5.0, 0.1f64..10.0).prop_map(|(low, w)| Domain::Float {
            low,
            high: low + w,
            log: false
        }),
    ];
    vec(small, 1..5).prop_map(|domains| {
        let params = domains
            .into_iter()
            .enumerate()
            .map(|(i, d)| Param::new(format!("q{i}"), d))
            .collect();
        SearchSpace::new(params).expect("generated spaces are valid")
    })
}
