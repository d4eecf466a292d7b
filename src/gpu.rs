//! CUDA device discovery through cudarc, loaded at run time: on a machine without a CUDA
//! driver this reports "no driver" and the daemon runs on CPU slots only — never a panic.

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
}

/// What discovery found.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GpuDiscovery {
    /// The devices (empty without a driver).
    pub devices: Vec<GpuInfo>,
    /// Why there are none, when there are none.
    pub note: Option<String>,
}

/// Lists CUDA devices. Never panics: a missing driver or a failing call gives an empty list
/// with a note saying why.
pub fn discover() -> GpuDiscovery {
    // SAFETY: is_culib_present only tries to dlopen libcuda; it does not call into it.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return GpuDiscovery {
            devices: Vec::new(),
            note: Some("no CUDA driver (libcuda) found; GPU slots disabled".into()),
        };
    }
    match std::panic::catch_unwind(list_devices) {
        Ok(Ok(devices)) => GpuDiscovery {
            devices,
            note: None,
        },
        Ok(Err(e)) => GpuDiscovery {
            devices: Vec::new(),
            note: Some(format!("CUDA driver present but unusable: {e}")),
        },
        Err(_) => GpuDiscovery {
            devices: Vec::new(),
            note: Some("CUDA driver present but device query failed".into()),
        },
    }
}

fn list_devices() -> Result<Vec<GpuInfo>, String> {
    use cudarc::driver::result;
    result::init().map_err(|e| e.to_string())?;
    let n = result::device::get_count().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for i in 0..n {
        let dev = result::device::get(i).map_err(|e| e.to_string())?;
        let name = result::device::get_name(dev).unwrap_or_else(|_| "unknown".into());
        // SAFETY: dev is a valid device handle returned by cuDeviceGet above.
        let memory_total = unsafe { result::device::total_mem(dev) }.unwrap_or(0) as u64;
        out.push(GpuInfo {
            index: i as u32,
            name,
            memory_total,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn discovery_never_panics() {
        let d = super::discover();
        assert!(d.devices.is_empty() == d.note.is_some());
    }
}
