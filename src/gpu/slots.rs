//! Where trials may run on this machine: CPU slots and GPU slots (one per device, or more with
//! `trials_per_gpu`). The scheduler takes a slot before it starts a trial and gives it back after.

use serde::{Deserialize, Serialize};

/// A slot held by one running trial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Slot {
    /// Display name, e.g. `cpu1` or `gpu0` (`gpu0+gpu1` for a two-GPU trial).
    pub name: String,
    /// CUDA device indices for `CUDA_VISIBLE_DEVICES` (empty on a CPU slot).
    pub gpus: Vec<u32>,
    cpu: Option<usize>,
}

impl Slot {
    /// A slot that is not drawn from a pool (external trials).
    pub fn detached(name: &str) -> Slot {
        Slot {
            name: name.to_string(),
            gpus: Vec::new(),
            cpu: None,
        }
    }
}

/// The free/busy state of every slot.
#[derive(Debug)]
pub struct SlotPool {
    /// Busy flag per CPU slot.
    cpu_busy: Vec<bool>,
    /// Device index and trials running on it, per GPU.
    gpu_load: Vec<(u32, u32)>,
    /// How many trials may share one GPU.
    per_gpu: u32,
}

/// Slot counts for `status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SlotUsage {
    /// CPU slots in all.
    pub cpu_total: usize,
    /// CPU slots in use.
    pub cpu_busy: usize,
    /// GPU slots in all (devices × trials_per_gpu).
    pub gpu_total: usize,
    /// GPU slots in use.
    pub gpu_busy: usize,
}

impl SlotPool {
    /// A pool with `cpu` CPU slots and the given CUDA devices.
    pub fn new(cpu: usize, gpus: &[u32], per_gpu: u32) -> SlotPool {
        SlotPool {
            cpu_busy: vec![false; cpu],
            gpu_load: gpus.iter().map(|&g| (g, 0)).collect(),
            per_gpu: per_gpu.max(1),
        }
    }

    /// Number of GPU devices.
    pub fn gpu_devices(&self) -> usize {
        self.gpu_load.len()
    }

    /// Takes a slot for a trial needing `gpus` GPUs (0 = a CPU slot), if one is free.
    pub fn acquire(&mut self, gpus: u32) -> Option<Slot> {
        self.acquire_where(gpus, |_| true)
    }

    /// [`SlotPool::acquire`] among the GPUs `usable` accepts (health, free memory); `usable`
    /// is asked only about GPUs with a free slot. CPU slots ignore it.
    pub fn acquire_where(
        &mut self,
        gpus: u32,
        mut usable: impl FnMut(u32) -> bool,
    ) -> Option<Slot> {
        if gpus == 0 {
            let i = self.cpu_busy.iter().position(|b| !b)?;
            self.cpu_busy[i] = true;
            return Some(Slot {
                name: format!("cpu{i}"),
                gpus: Vec::new(),
                cpu: Some(i),
            });
        }
        // Least-loaded devices first, so trials spread before they share.
        let mut free: Vec<usize> = (0..self.gpu_load.len())
            .filter(|&i| self.gpu_load[i].1 < self.per_gpu)
            .filter(|&i| usable(self.gpu_load[i].0))
            .collect();
        if free.len() < gpus as usize {
            return None;
        }
        free.sort_by_key(|&i| (self.gpu_load[i].1, i));
        free.truncate(gpus as usize);
        free.sort_unstable();
        let mut devices = Vec::new();
        for &i in &free {
            self.gpu_load[i].1 += 1;
            devices.push(self.gpu_load[i].0);
        }
        let name = devices
            .iter()
            .map(|d| format!("gpu{d}"))
            .collect::<Vec<_>>()
            .join("+");
        Some(Slot {
            name,
            gpus: devices,
            cpu: None,
        })
    }

    /// Gives a slot back.
    pub fn release(&mut self, slot: &Slot) {
        if let Some(i) = slot.cpu {
            if let Some(b) = self.cpu_busy.get_mut(i) {
                *b = false;
            }
        }
        for d in &slot.gpus {
            if let Some(entry) = self.gpu_load.iter_mut().find(|(g, _)| g == d) {
                entry.1 = entry.1.saturating_sub(1);
            }
        }
    }

    /// Current usage.
    pub fn usage(&self) -> SlotUsage {
        SlotUsage {
            cpu_total: self.cpu_busy.len(),
            cpu_busy: self.cpu_busy.iter().filter(|b| **b).count(),
            gpu_total: self.gpu_load.len() * self.per_gpu as usize,
            gpu_busy: self.gpu_load.iter().map(|(_, n)| *n as usize).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_that_are_not_usable_are_skipped() {
        let mut p = SlotPool::new(0, &[0, 1, 2], 1);
        let s = p.acquire_where(1, |d| d != 0).unwrap();
        assert_eq!(s.gpus, vec![1]);
        assert!(
            p.acquire_where(2, |d| d == 2).is_none(),
            "one usable GPU for two"
        );
        let both = p.acquire_where(2, |_| true).unwrap();
        assert_eq!(both.gpus, vec![0, 2], "gpu1 is busy");
        p.release(&both);
        p.release(&s);
        assert_eq!(p.acquire_where(2, |d| d != 0).unwrap().gpus, vec![1, 2]);
        assert!(p.acquire_where(0, |_| false).is_none(), "no CPU slots here");
    }

    #[test]
    fn cpu_and_gpu_slots() {
        let mut p = SlotPool::new(1, &[0, 1], 1);
        let a = p.acquire(0).unwrap();
        assert!(p.acquire(0).is_none());
        let g = p.acquire(2).unwrap();
        assert_eq!(g.gpus, vec![0, 1]);
        assert_eq!(g.name, "gpu0+gpu1");
        assert!(p.acquire(1).is_none());
        p.release(&g);
        p.release(&a);
        assert_eq!(p.usage().cpu_busy + p.usage().gpu_busy, 0);
        assert!(SlotPool::new(0, &[], 1).acquire(1).is_none());
    }
}
