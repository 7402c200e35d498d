//! Prometheus metrics (the `metrics` facade with its Prometheus exporter), rendered at
//! `GET /metrics`. The recorder is process-wide: installed once, shared by every server
//! in the process (tests start several).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::actors::reconciler::ReconcilerStats;
use crate::workflows::checkout::Phase;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (once) and returns the handle that renders the text format.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be set (a library user's): then ours only renders
        // what it records, which is nothing; metrics still go to theirs.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!("ordersaga_sagas_started_total", "Checkout sagas started");
    metrics::describe_counter!("ordersaga_sagas_completed_total", "Sagas completed (paid)");
    metrics::describe_counter!("ordersaga_sagas_compensated_total", "Sagas undone (closed)");
    metrics::describe_counter!(
        "ordersaga_sagas_failed_total",
        "Sagas refused before taking anything"
    );
    metrics::describe_counter!(
        "ordersaga_sagas_stuck_total",
        "Sagas stuck on a failing compensation"
    );
    metrics::describe_histogram!(
        "ordersaga_saga_step_duration_seconds",
        "Time a saga step took, by step"
    );
    metrics::describe_counter!(
        "ordersaga_notifications_total",
        "WeChat payment notifications, by result"
    );
}

/// A saga was created.
pub fn saga_started() {
    metrics::counter!("ordersaga_sagas_started_total").increment(1);
}

/// A transition was committed: counts arrivals in the notable phases and times the step.
pub fn transition(from: Phase, to: Phase, step: &'static str, took: Duration) {
    metrics::histogram!("ordersaga_saga_step_duration_seconds", "step" => step)
        .record(took.as_secs_f64());
    if from == to {
        return;
    }
    let name = match to {
        Phase::Completed => "ordersaga_sagas_completed_total",
        Phase::Compensated => "ordersaga_sagas_compensated_total",
        Phase::Failed => "ordersaga_sagas_failed_total",
        Phase::Stuck(_) => "ordersaga_sagas_stuck_total",
        Phase::Started
        | Phase::StockReserved
        | Phase::OrderWritten
        | Phase::PointsAwarded
        | Phase::CartCleared
        | Phase::AwaitingPayment
        | Phase::Paying
        | Phase::Compensating(_) => return,
    };
    metrics::counter!(name).increment(1);
}

/// A notification was answered: `accepted` (SUCCESS) or `rejected` (FAIL).
pub fn notification(result: &'static str) {
    metrics::counter!("ordersaga_notifications_total", "result" => result).increment(1);
}

/// The reconciler's counters and queue, copied into gauges just before rendering.
pub fn reconciler(stats: &ReconcilerStats) {
    let g = |name: &'static str, v: f64| metrics::gauge!(name).set(v);
    g("ordersaga_reconciler_passes", stats.passes as f64);
    g("ordersaga_reconciler_claimed", stats.claimed as f64);
    g("ordersaga_reconciler_queried", stats.queried as f64);
    g(
        "ordersaga_reconciler_paid",
        stats.paid_by_reconciliation as f64,
    );
    g("ordersaga_reconciler_rescheduled", stats.rescheduled as f64);
    g("ordersaga_reconciler_failed", stats.failed as f64);
    g("ordersaga_reconciler_queue_depth", stats.queue.depth as f64);
    g("ordersaga_reconciler_queue_due", stats.queue.due as f64);
}
