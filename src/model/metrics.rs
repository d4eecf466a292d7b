//! Prometheus metrics of the daemon (`GET /metrics`): what finished, what runs, how long
//! suggestions, queueing, trials and store flushes take, slot use, GPU samples. Names follow the
//! Prometheus conventions: `quantune_` prefix, `_total` counters, seconds and bytes.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric the daemon exports.
pub struct Metrics {
    /// The registry they are exposed from.
    registry: Registry,
    /// Trials that reached a final state, by study and state.
    pub trials_finished: IntCounterVec,
    /// Trials running now, by study.
    pub trials_running: IntGaugeVec,
    /// Trials queued now, by study.
    pub trials_queued: IntGaugeVec,
    /// Slots by kind (`cpu`, `gpu`, `slurm`) and state (`free`, `busy`).
    pub slots: IntGaugeVec,
    /// Time a strategy took to suggest a trial, by strategy.
    pub suggestion_seconds: HistogramVec,
    /// Time from queued to started, by executor.
    pub queue_seconds: HistogramVec,
    /// Duration of finished attempts, by final state.
    pub trial_seconds: HistogramVec,
    /// Time a durable store write (write + flush + fdatasync) took, by operation.
    pub flush_seconds: HistogramVec,
    /// Last sampled GPU utilization (0–1), by GPU index.
    pub gpu_utilization: prometheus::GaugeVec,
    /// Last sampled GPU memory in use, bytes, by GPU index.
    pub gpu_memory_used: IntGaugeVec,
    /// Always 1; labels carry the version.
    pub build_info: IntGaugeVec,
    /// Studies known to the daemon.
    pub studies: IntGauge,
    /// Webhook deliveries that ended, by event and outcome (`delivered`, `failed`).
    pub notifications: IntCounterVec,
    /// Notifications dropped because the notifier fell behind, by where (`events`: the
    /// scheduler's queue to the notifier; `deliveries`: a target's queue).
    pub notifications_dropped: IntCounterVec,
    /// The number of each study's best trial (the one `status` and the leaderboard name).
    pub best_trial: IntGaugeVec,
}

fn exp_buckets(start: f64, factor: f64, n: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, n).expect("valid buckets")
}

impl Metrics {
    /// Builds and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let trials_finished = counter(
            "quantune_trials_finished_total",
            "Trials that reached a final state (complete, pruned, failed, infeasible, cancelled).",
            &["study", "state"],
        );
        let trials_running = gauge("quantune_trials_running", "Trials running now.", &["study"]);
        let trials_queued = gauge(
            "quantune_trials_queued",
            "Trials waiting for a slot (retries).",
            &["study"],
        );
        let slots = gauge(
            "quantune_slots",
            "Trial slots by kind and state.",
            &["kind", "state"],
        );
        let suggestion_seconds = histogram(
            "quantune_suggestion_duration_seconds",
            "Time a strategy took to suggest one trial.",
            &["strategy"],
            exp_buckets(1e-6, 4.0, 12),
        );
        let queue_seconds = histogram(
            "quantune_queue_to_start_seconds",
            "Time from a trial (attempt) being queued to its start.",
            &["executor"],
            exp_buckets(1e-3, 4.0, 12),
        );
        let trial_seconds = histogram(
            "quantune_trial_duration_seconds",
            "Duration of finished trials (last attempt), by final state.",
            &["state"],
            exp_buckets(0.01, 4.0, 14),
        );
        let flush_seconds = histogram(
            "quantune_store_flush_duration_seconds",
            "Time a durable store write took (write, flush and fdatasync).",
            &["operation"],
            exp_buckets(1e-5, 4.0, 12),
        );
        let gpu_utilization = prometheus::GaugeVec::new(
            Opts::new(
                "quantune_gpu_utilization_ratio",
                "Last sampled GPU utilization (NVML), 0 to 1.",
            ),
            &["gpu"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(gpu_utilization.clone()))
            .expect("unique metric");
        let gpu_memory_used = gauge(
            "quantune_gpu_memory_used_bytes",
            "Last sampled GPU memory in use (NVML).",
            &["gpu"],
        );
        let build_info = gauge(
            "quantune_build_info",
            "Always 1; the labels say which quantune this is.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let studies = IntGauge::new("quantune_studies", "Studies known to the daemon.")
            .expect("valid metric");
        registry
            .register(Box::new(studies.clone()))
            .expect("unique metric");
        let notifications = counter(
            "quantune_notifications_total",
            "Webhook deliveries that ended, by event and outcome (delivered, failed).",
            &["event", "outcome"],
        );
        let notifications_dropped = counter(
            "quantune_notifications_dropped_total",
            "Notifications dropped because the notifier or a webhook fell behind.",
            &["queue"],
        );
        let best_trial = gauge(
            "quantune_study_best_trial",
            "The number of the study's best trial (single objective: best feasible value; several: the leaderboard's best trade-off).",
            &["study"],
        );
        Metrics {
            notifications,
            notifications_dropped,
            registry,
            best_trial,
            trials_finished,
            trials_running,
            trials_queued,
            slots,
            suggestion_seconds,
            queue_seconds,
            trial_seconds,
            flush_seconds,
            gpu_utilization,
            gpu_memory_used,
            build_info,
            studies,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

#[cfg(test)]
mod tests {
    #[test]
    fn renders_counters_with_conventional_names() {
        let m = super::Metrics::new();
        m.trials_finished
            .with_label_values(&["s", "complete"])
            .inc_by(3);
        m.suggestion_seconds
            .with_label_values(&["sobol"])
            .observe(0.0001);
        let text = m.render();
        assert!(
            text.contains("quantune_trials_finished_total{state=\"complete\",study=\"s\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("quantune_suggestion_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains("quantune_build_info{version="), "{text}");
    }
}
