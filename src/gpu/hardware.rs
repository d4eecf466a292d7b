//! Hardware-aware choices: a categorical choice may declare what it needs
//! (`requires = { fp8 = { compute_capability = "8.9" } }`), and a trial only gets that choice
//! on a slot whose GPUs meet it. CPU slots meet no GPU requirement.

use crate::gpu::GpuInfo;
use quantune_strategies::restrict::Exclusions;
use quantune_strategies::ParamValue;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A CUDA compute capability, `major.minor`, ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Capability {
    /// Major version (9 for Hopper).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl Capability {
    /// Parses `"8.9"` (also `"9"` = 9.0).
    pub fn parse(s: &str) -> Result<Capability, String> {
        let bad =
            || format!("\"{s}\" is not a compute capability; write major.minor, e.g. \"8.9\"");
        let (major, minor) = s.trim().split_once('.').unwrap_or((s.trim(), "0"));
        Ok(Capability {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// What one categorical choice needs of the GPUs its trial runs on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChoiceRequirement {
    /// The parameter, e.g. `quantization`.
    pub param: String,
    /// The choice, e.g. `"fp8"`.
    pub choice: ParamValue,
    /// The lowest compute capability every GPU of the trial must have.
    pub compute_capability: Capability,
}

impl ChoiceRequirement {
    /// Whether a slot with these GPUs (none: a CPU slot) can run the choice. A GPU whose
    /// capability could not be read does not meet it.
    pub fn met_by(&self, gpus: &[&GpuInfo]) -> bool {
        !gpus.is_empty()
            && gpus.iter().all(|g| {
                g.compute_capability
                    .as_deref()
                    .and_then(|c| Capability::parse(c).ok())
                    .is_some_and(|c| c >= self.compute_capability)
            })
    }

    /// `quantization = fp8 needs compute capability >= 8.9`.
    pub fn describe(&self) -> String {
        format!(
            "{} = {} needs compute capability >= {}",
            self.param, self.choice, self.compute_capability
        )
    }
}

/// The choices a slot with these GPUs cannot run.
pub fn exclusions(requirements: &[ChoiceRequirement], gpus: &[&GpuInfo]) -> Exclusions {
    let mut e = Exclusions::none();
    for r in requirements.iter().filter(|r| !r.met_by(gpus)) {
        e.exclude(&r.param, r.choice.clone());
    }
    e
}

/// Warnings for `validate` and `submit`: requirements that no slot of a machine with `gpus`
/// can meet, for a study whose trials take `trial_gpus` GPUs (0 = CPU slots).
pub fn unmet_warnings(
    requirements: &[ChoiceRequirement],
    trial_gpus: u32,
    gpus: &[GpuInfo],
) -> Vec<String> {
    let found = if gpus.is_empty() {
        "none".to_string()
    } else {
        gpus.iter()
            .map(GpuInfo::label)
            .collect::<Vec<_>>()
            .join(", ")
    };
    requirements
        .iter()
        .filter_map(|r| {
            let path = format!("space.{}.requires.{}", r.param, r.choice);
            if trial_gpus == 0 {
                return Some(format!(
                    "{path}: trials run on CPU slots (trial.gpus = 0), so {}: it will never be proposed",
                    r.describe()
                ));
            }
            let any = gpus.iter().any(|g| r.met_by(&[g]));
            (!any).then(|| {
                format!(
                    "{path}: {}, and no GPU here meets it (found: {found}): it will never be proposed on this machine",
                    r.describe()
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, cc: Option<&str>) -> GpuInfo {
        GpuInfo {
            index,
            name: format!("GPU{index}"),
            memory_total: 80 << 30,
            memory_free: None,
            compute_capability: cc.map(String::from),
        }
    }

    fn fp8() -> ChoiceRequirement {
        ChoiceRequirement {
            param: "quantization".into(),
            choice: ParamValue::Str("fp8".into()),
            compute_capability: Capability::parse("8.9").unwrap(),
        }
    }

    #[test]
    fn capabilities_parse_and_order() {
        let c = |s| Capability::parse(s).unwrap();
        assert!(c("9.0") > c("8.9"));
        assert!(c("10.0") > c("9.0"), "numeric, not lexical");
        assert!(c("8.6") < c("8.9"));
        assert_eq!(c("9"), c("9.0"));
        assert_eq!(c("12.0").to_string(), "12.0");
        assert!(Capability::parse("hopper")
            .unwrap_err()
            .contains("e.g. \"8.9\""));
    }

    #[test]
    fn a_slot_meets_a_requirement_only_if_every_gpu_does() {
        let h100 = gpu(0, Some("9.0"));
        let a100 = gpu(1, Some("8.0"));
        let unknown = gpu(2, None);
        let r = fp8();
        assert!(r.met_by(&[&h100]));
        assert!(!r.met_by(&[&a100]));
        assert!(!r.met_by(&[&h100, &a100]));
        assert!(!r.met_by(&[&unknown]));
        assert!(!r.met_by(&[]), "a CPU slot has no GPU");
        let fp8_value = |q: &str| {
            [("quantization".to_string(), ParamValue::Str(q.into()))]
                .into_iter()
                .collect()
        };
        let on_a100 = exclusions(std::slice::from_ref(&r), &[&a100]);
        assert!(!on_a100.allows(&fp8_value("fp8")));
        assert!(on_a100.allows(&fp8_value("int8")));
        assert!(exclusions(&[r], &[&h100]).is_empty());
    }

    #[test]
    fn warnings_name_the_key_and_what_was_found() {
        let w = unmet_warnings(&[fp8()], 1, &[gpu(0, Some("8.0"))]);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("space.quantization.requires.fp8: quantization = fp8 needs compute capability >= 8.9, and no GPU here meets it (found: GPU0 (cc 8.0))"),
            "{}",
            w[0]
        );
        let cpu = unmet_warnings(&[fp8()], 0, &[gpu(0, Some("9.0"))]);
        assert!(cpu[0].contains("CPU slots (trial.gpus = 0)"), "{}", cpu[0]);
        assert!(unmet_warnings(&[fp8()], 1, &[gpu(0, Some("9.0"))]).is_empty());
        assert!(unmet_warnings(&[fp8()], 1, &[])[0].contains("found: none"));
    }
}
