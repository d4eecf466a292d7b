//! GPU sampling through NVML (loaded at run time by nvml-wrapper): while a trial runs on local
//! GPUs, their utilization and memory are sampled every second; when it ends, the mean and
//! maximum utilization and the peak memory are stored with it. Without NVML (no NVIDIA driver)
//! nothing is sampled and only GPU-seconds are recorded — never a panic.

use crate::model::metrics::Metrics;
use nvml_wrapper::Nvml;
use quantune_state::GpuUsage;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one GPU looks like now, for `quantune status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GpuState {
    /// CUDA index.
    pub index: u32,
    /// Last sampled utilization (0–1), if sampled.
    pub utilization: Option<f64>,
    /// Last sampled memory in use, bytes.
    pub memory_used: Option<u64>,
    /// The trials holding it (`study/number`, comma-separated when `trials_per_gpu` lets
    /// several share it), if any.
    pub trial: Option<String>,
}

#[derive(Default)]
struct Acc {
    sum: f64,
    max: f64,
    peak: u64,
    samples: u64,
}

#[derive(Default)]
struct State {
    /// GPU index → the trials holding it (several with `trials_per_gpu` > 1).
    held: HashMap<u32, Vec<(String, u64)>>,
    /// Samples per running trial.
    acc: HashMap<(String, u64), Acc>,
    /// Last sample per GPU.
    last: HashMap<u32, (f64, u64)>,
}

/// Samples GPUs held by trials.
pub struct GpuMonitor {
    /// NVML, when the library loaded.
    nvml: Option<Nvml>,
    /// Who holds what, and the samples so far.
    state: Mutex<State>,
    /// Every GPU index the daemon has.
    gpus: Vec<u32>,
}

impl GpuMonitor {
    /// A monitor for these GPUs; NVML is loaded only when there are GPUs.
    pub fn new(gpus: Vec<u32>) -> Arc<GpuMonitor> {
        let nvml = if gpus.is_empty() {
            None
        } else {
            match Nvml::init() {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::info!("NVML not available ({e}); GPU utilization is not sampled");
                    None
                }
            }
        };
        Arc::new(GpuMonitor {
            nvml,
            state: Mutex::default(),
            gpus,
        })
    }

    /// Whether samples are taken.
    pub fn sampling(&self) -> bool {
        self.nvml.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Free memory of GPU `g` now, read from NVML: `Ok(None)` without NVML (cannot tell),
    /// `Err` when NVML answers but the device does not (an unhealthy GPU: fallen off the bus,
    /// in an error state).
    pub fn free_memory(&self, g: u32) -> Result<Option<u64>, String> {
        let Some(nvml) = &self.nvml else {
            return Ok(None);
        };
        let dev = nvml.device_by_index(g).map_err(|e| e.to_string())?;
        let mem = dev.memory_info().map_err(|e| e.to_string())?;
        Ok(Some(mem.free))
    }

    /// The NVIDIA driver's version (`"580.159.04"`), from NVML.
    pub fn driver_version(&self) -> Option<String> {
        self.nvml.as_ref()?.sys_driver_version().ok()
    }

    /// Starts the once-a-second sampler (only when NVML loaded), stopped with `tasks`.
    pub fn spawn(self: &Arc<Self>, metrics: Arc<Metrics>, tasks: &crate::tasks::Tasks) {
        if self.nvml.is_none() {
            return;
        }
        let me = self.clone();
        tasks.spawn_until_stopped("gpu sampler", async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                me.sample(&metrics);
            }
        });
    }

    fn sample(&self, metrics: &Metrics) {
        let Some(nvml) = &self.nvml else { return };
        for &g in &self.gpus {
            let Ok(dev) = nvml.device_by_index(g) else {
                continue;
            };
            let util = dev
                .utilization_rates()
                .ok()
                .map(|u| f64::from(u.gpu) / 100.0);
            let mem = dev.memory_info().ok().map(|m| m.used);
            let label = g.to_string();
            if let Some(u) = util {
                metrics
                    .gpu_utilization
                    .with_label_values(&[label.as_str()])
                    .set(u);
            }
            if let Some(m) = mem {
                metrics
                    .gpu_memory_used
                    .with_label_values(&[label.as_str()])
                    .set(m as i64);
            }
            self.record(g, util, mem);
        }
    }

    /// Adds one sample of GPU `g` (utilization 0–1, memory used in bytes) to its last state and
    /// to every trial holding it: a shared GPU's sample is the device's, so each trial on it
    /// gets it.
    fn record(&self, g: u32, util: Option<f64>, mem: Option<u64>) {
        let mut st = self.lock();
        st.last.insert(g, (util.unwrap_or(0.0), mem.unwrap_or(0)));
        for holder in st.held.get(&g).cloned().unwrap_or_default() {
            let acc = st.acc.entry(holder).or_default();
            if let Some(u) = util {
                acc.sum += u;
                acc.max = acc.max.max(u);
                acc.samples += 1;
            }
            acc.peak = acc.peak.max(mem.unwrap_or(0));
        }
    }

    /// A trial started on `gpus`.
    pub fn started(&self, study: &str, trial: u64, gpus: &[u32]) {
        let mut st = self.lock();
        for g in gpus {
            st.held
                .entry(*g)
                .or_default()
                .push((study.to_string(), trial));
        }
    }

    /// A trial's attempt ended: its GPUs are free; adds its samples to `usage` along with
    /// `gpu_seconds` of this attempt.
    pub fn finished(
        &self,
        study: &str,
        trial: u64,
        gpu_seconds: f64,
        usage: &mut Option<GpuUsage>,
    ) {
        let key = (study.to_string(), trial);
        let mut st = self.lock();
        for holders in st.held.values_mut() {
            holders.retain(|h| *h != key);
        }
        st.held.retain(|_, h| !h.is_empty());
        let acc = st.acc.remove(&key).unwrap_or_default();
        let u = usage.get_or_insert_with(GpuUsage::default);
        u.gpu_seconds += gpu_seconds.max(0.0);
        if acc.samples > 0 {
            let total = u.mean_utilization.unwrap_or(0.0) * u.samples as f64 + acc.sum;
            u.samples += acc.samples;
            u.mean_utilization = Some(total / u.samples as f64);
            u.max_utilization = Some(u.max_utilization.unwrap_or(0.0).max(acc.max));
            u.peak_memory_bytes = Some(u.peak_memory_bytes.unwrap_or(0).max(acc.peak));
        }
    }

    /// Every GPU with its last sample and holder.
    pub fn snapshot(&self) -> Vec<GpuState> {
        let st = self.lock();
        self.gpus
            .iter()
            .map(|g| GpuState {
                index: *g,
                utilization: st.last.get(g).map(|l| l.0),
                memory_used: st.last.get(g).map(|l| l.1),
                trial: st.held.get(g).map(|h| {
                    h.iter()
                        .map(|(s, n)| format!("{s}/{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_nvml_only_gpu_seconds_are_recorded() {
        // No GPUs: NVML is not even loaded.
        let m = GpuMonitor::new(Vec::new());
        assert!(!m.sampling());
        m.started("s", 1, &[]);
        let mut usage = None;
        m.finished("s", 1, 12.5, &mut usage);
        m.finished("s", 1, 2.5, &mut usage);
        let u = usage.unwrap();
        assert_eq!(u.gpu_seconds, 15.0);
        assert_eq!(u.mean_utilization, None);
        assert!(m.snapshot().is_empty());
    }

    #[test]
    fn trials_sharing_a_gpu_each_get_its_samples() {
        let m = GpuMonitor::new(Vec::new());
        m.started("s", 1, &[0]);
        m.started("s", 2, &[0]);
        m.record(0, Some(0.5), Some(100));
        let mut u1 = None;
        m.finished("s", 1, 1.0, &mut u1);
        m.record(0, Some(1.0), Some(300));
        let mut u2 = None;
        m.finished("s", 2, 2.0, &mut u2);
        let (u1, u2) = (u1.unwrap(), u2.unwrap());
        assert_eq!(
            (u1.samples, u1.mean_utilization, u1.peak_memory_bytes),
            (1, Some(0.5), Some(100))
        );
        assert_eq!(
            (u2.samples, u2.mean_utilization, u2.max_utilization),
            (2, Some(0.75), Some(1.0))
        );
        assert_eq!(u2.peak_memory_bytes, Some(300));
    }

    #[test]
    fn nvml_missing_is_not_a_panic() {
        // On a machine without the NVIDIA driver this takes the "not available" path.
        let m = GpuMonitor::new(vec![0]);
        let snap = m.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].trial, None);
        if !m.sampling() {
            assert_eq!(
                m.free_memory(0),
                Ok(None),
                "cannot tell: the trial is not held back"
            );
            assert_eq!(m.driver_version(), None);
        }
    }
}
