//! CUDA device discovery through cudarc, loaded at run time: on a machine without a CUDA
//! driver this reports "no driver" and the daemon runs on CPU slots only — never a panic.

pub mod hardware;
pub mod host;
pub mod monitor;
pub mod slots;

use serde::{Deserialize, Serialize};

/// One CUDA device.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GpuInfo {
    /// CUDA device ordinal.
    pub index: u32,
    /// Device name.
    pub name: String,
    /// Total memory in bytes.
    pub memory_total: u64,
    /// Free memory in bytes when discovery ran (`None` when it could not be read).
    #[serde(default)]
    pub memory_free: Option<u64>,
    /// Compute capability, `"major.minor"` (e.g. `"8.9"`).
    #[serde(default)]
    pub compute_capability: Option<String>,
}

impl GpuInfo {
    /// `NVIDIA H100 80GB HBM3 (cc 9.0)`: the name and compute capability, for messages and
    /// the trial record.
    pub fn label(&self) -> String {
        format!(
            "{} (cc {})",
            self.name,
            self.compute_capability.as_deref().unwrap_or("?")
        )
    }
}

/// Bytes as GiB with one decimal: `79.2 GiB`.
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// What discovery found.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GpuDiscovery {
    /// The devices (empty without a driver).
    pub devices: Vec<GpuInfo>,
    /// Why there are none, when there are none.
    pub note: Option<String>,
    /// The CUDA driver's version (`"12.4"`), when a driver answered.
    #[serde(default)]
    pub driver_version: Option<String>,
}

/// Lists CUDA devices. Never panics: a missing driver or a failing call gives an empty list
/// with a note saying why.
pub fn discover() -> GpuDiscovery {
    // SAFETY: is_culib_present only tries to dlopen libcuda; it does not call into it.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return GpuDiscovery {
            devices: Vec::new(),
            note: Some("no CUDA driver (libcuda) found; GPU slots disabled".into()),
            driver_version: None,
        };
    }
    match std::panic::catch_unwind(list_devices) {
        Ok(Ok((devices, driver_version))) => GpuDiscovery {
            note: devices
                .is_empty()
                .then(|| "the CUDA driver reports no devices".to_string()),
            devices,
            driver_version,
        },
        Ok(Err(e)) => GpuDiscovery {
            devices: Vec::new(),
            note: Some(format!("CUDA driver present but unusable: {e}")),
            driver_version: None,
        },
        Err(_) => GpuDiscovery {
            devices: Vec::new(),
            note: Some("CUDA driver present but device query failed".into()),
            driver_version: None,
        },
    }
}

/// `12040` → `"12.4"` (the driver API's encoding: 1000·major + 10·minor).
fn driver_version_string(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

fn list_devices() -> Result<(Vec<GpuInfo>, Option<String>), String> {
    use cudarc::driver::{result, sys};
    result::init().map_err(|e| e.to_string())?;
    let mut version = 0;
    // SAFETY: a plain out-parameter call; the driver was initialized above.
    let driver_version = (unsafe { sys::cuDriverGetVersion(&mut version) }
        == sys::CUresult::CUDA_SUCCESS)
        .then(|| driver_version_string(version));
    let n = result::device::get_count().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for i in 0..n {
        let dev = result::device::get(i).map_err(|e| e.to_string())?;
        let name = result::device::get_name(dev).unwrap_or_else(|_| "unknown".into());
        // SAFETY: dev is a valid device handle returned by cuDeviceGet above.
        let memory_total = unsafe { result::device::total_mem(dev) }.unwrap_or(0) as u64;
        let attr = |a| {
            // SAFETY: as above.
            unsafe { result::device::get_attribute(dev, a) }.ok()
        };
        let compute_capability = match (
            attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
            attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
        ) {
            (Some(major), Some(minor)) => Some(format!("{major}.{minor}")),
            _ => None,
        };
        out.push(GpuInfo {
            index: i as u32,
            name,
            memory_total,
            memory_free: free_memory(dev),
            compute_capability,
        });
    }
    Ok((out, driver_version))
}

/// Free memory of `dev`: needs a current context, so the device's primary context is retained
/// for the query and released after (it is shared with every other user of the device).
fn free_memory(dev: cudarc::driver::sys::CUdevice) -> Option<u64> {
    use cudarc::driver::result;
    // SAFETY: dev comes from cuDeviceGet; the context retained here is released below, and it
    // is made current only on this thread, for this query.
    unsafe {
        let ctx = result::primary_ctx::retain(dev).ok()?;
        let free = result::ctx::set_current(ctx)
            .ok()
            .and_then(|()| result::mem_get_info().ok())
            .map(|(free, _)| free as u64);
        let _ = result::primary_ctx::release(dev);
        free
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn discovery_never_panics() {
        let d = super::discover();
        assert!(d.devices.is_empty() == d.note.is_some());
        if d.devices.is_empty() {
            assert!(d.devices.iter().all(|g| g.memory_free.is_none()));
        }
    }

    #[test]
    fn driver_versions_read_like_nvidia_smi() {
        assert_eq!(super::driver_version_string(12040), "12.4");
        assert_eq!(super::driver_version_string(12080), "12.8");
        assert_eq!(super::driver_version_string(11020), "11.2");
    }
}
