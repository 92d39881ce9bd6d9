//! `/metrics`: the shared state in Prometheus text format, built at each scrape (the values
//! live in the actors' snapshots; a scrape every few seconds costs next to nothing).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::state::SharedState;

type Labels = Vec<(String, String)>;

fn gauge(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(value);
    registry.register(name, help, g);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

/// The metrics text (`text/plain; version=0.0.4` / OpenMetrics text).
pub fn render(state: &SharedState) -> Result<String, std::fmt::Error> {
    let mut r = Registry::with_prefix("janus_sentinel");
    {
        let s = state.janus.read();
        gauge(
            &mut r,
            "status",
            "Reported status: 0 normal, 1 abnormal, 2 maintenance, 3 high-water-mark",
            f64::from(s.status.code()),
        );
        gauge(
            &mut r,
            "maintenance",
            "1 while in maintenance",
            f64::from(u8::from(s.maintenance)),
        );
        gauge(
            &mut r,
            "janus_answering",
            "1 while Janus answers pings in time",
            f64::from(u8::from(s.answering)),
        );
        counter(
            &mut r,
            "pings_answered",
            "Pings Janus answered",
            s.pings_answered,
        );
        counter(
            &mut r,
            "pings_failed",
            "Pings not answered (timeout, socket lost)",
            s.pings_failed,
        );
        counter(&mut r, "status_changes", "Status changes", s.status_changes);
        if let Some(rtt) = s.rtt_ms {
            gauge(
                &mut r,
                "ping_rtt_seconds",
                "Round-trip time of the last ping",
                rtt / 1000.0,
            );
        }
        if let Some(n) = s.session_num {
            gauge(
                &mut r,
                "janus_sessions",
                "Janus sessions (Admin API)",
                n as f64,
            );
        }
        if let Some(n) = s.handle_num {
            gauge(
                &mut r,
                "janus_handles",
                "Janus handles (Admin API)",
                n as f64,
            );
        }
        if let Some(load) = s.load {
            gauge(&mut r, "load", "Load figure: 0 idle, 1 at capacity", load);
        }
        let sample = &s.sample;
        for (name, help, value) in [
            (
                "host_cpu_percent",
                "Host CPU in use, percent",
                sample.cpu_percent,
            ),
            (
                "host_memory_percent",
                "Host memory in use, percent",
                sample.memory_percent,
            ),
            (
                "janus_cpu_percent",
                "Janus process CPU, percent of all cores",
                sample.process_cpu_percent,
            ),
            (
                "janus_memory_bytes",
                "Janus process resident memory",
                sample.process_memory_bytes.map(|b| b as f64),
            ),
        ] {
            if let Some(value) = value {
                gauge(&mut r, name, help, value);
            }
        }
    }
    if let Some(process) = &state.process {
        let p = process.read();
        gauge(
            &mut r,
            "process_running",
            "1 while the managed Janus process runs",
            f64::from(p.process_status),
        );
        counter(
            &mut r,
            "process_auto_restarts",
            "Restarts after Janus exited on its own",
            p.auto_restart_count,
        );
        counter(
            &mut r,
            "process_operator_restarts",
            "Restarts asked by an operator",
            p.operator_restart_count,
        );
        if let Some(code) = p.last_return_code {
            gauge(
                &mut r,
                "process_last_return_code",
                "Last exit code of Janus (minus the signal number when killed)",
                f64::from(code),
            );
        }
    }
    crate::sweeper::register_metrics(&mut r, &state.sweeper);
    let ok = Family::<Labels, Counter>::default();
    let failed = Family::<Labels, Counter>::default();
    let connected = Family::<Labels, Gauge>::default();
    for poster in &state.posters {
        let p = poster.read();
        let labels = vec![("url".to_owned(), p.name.clone())];
        ok.get_or_create(&labels).inc_by(p.posts_ok);
        failed.get_or_create(&labels).inc_by(p.posts_failed);
        connected
            .get_or_create(&labels)
            .set(i64::from(u8::from(p.connected)));
    }
    r.register("reports_ok", "Reports accepted, per URL", ok);
    r.register("reports_failed", "Reports that failed, per URL", failed);
    r.register(
        "report_connected",
        "1 when the last report to the URL was accepted",
        connected,
    );
    let mut text = String::new();
    encode(&mut text, &r)?;
    Ok(text)
}
