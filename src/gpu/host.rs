//! The machine a trial is measured on, as stored with every local trial and every built-in
//! benchmark result.

use std::sync::OnceLock;

/// `"AMD EPYC 7B13, 2 cores"`: the CPU model (from /proc/cpuinfo; the architecture where it has
/// none) and the cores this process may use. Read once.
pub fn description() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        format!("{model}, {cores} cores")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_cpu_and_the_cores() {
        let d = super::description();
        assert!(d.ends_with(" cores"), "{d}");
        assert!(d.len() > " cores".len() + 2, "{d}");
    }
}
