//! Smoke test of `janus-bench` (the `bench/` crate, run in-process through its library): a real
//! Janus and a janus-proxy process spawned by the tool itself (`--spawn`), a very short
//! `compare` of each load. No timing is asserted: only that work was done without errors and
//! that the figures are printed.

use std::collections::HashMap;

fn bench(args: &[&str]) -> String {
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.extend([
        "--spawn".to_string(),
        "--proxy-bin".to_string(),
        env!("CARGO_BIN_EXE_proxy-under-test").to_string(),
    ]);
    let mut out = Vec::new();
    let run = janus_bench::run_with_output(&args, &mut out);
    let stdout = String::from_utf8_lossy(&out).into_owned();
    if let Err(e) = run {
        panic!("janus-bench {args:?} failed: {e:#}\n{stdout}");
    }
    stdout
}

/// The key=value figures of the last `RESULT` line.
fn result(stdout: &str) -> HashMap<String, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{stdout}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn number(r: &HashMap<String, String>, key: &str) -> f64 {
    r.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {key} in {r:?}"))
}

#[test]
fn cycle_compare_runs_without_errors() {
    let out = bench(&[
        "compare",
        "--clients",
        "4",
        "--duration",
        "0.5",
        "--warmup",
        "0.2",
        "--rounds",
        "1",
    ]);
    let r = result(&out);
    assert_eq!(r.get("load").map(String::as_str), Some("cycle"), "{out}");
    assert!(number(&r, "direct_cycles_per_s") > 0.0, "{out}");
    assert!(number(&r, "proxy_cycles_per_s") > 0.0, "{out}");
    assert_eq!(number(&r, "direct_errors"), 0.0, "{out}");
    assert_eq!(number(&r, "proxy_errors"), 0.0, "{out}");
    assert!(number(&r, "throughput_ratio") > 0.0, "{out}");
    for figure in [
        "cycles/s",
        "requests/s",
        "message p99 ms",
        "proxy/direct",
        "CPU µs per cycle",
    ] {
        assert!(out.contains(figure), "no {figure:?} in:\n{out}");
    }
}

#[test]
fn idle_compare_keeps_every_session() {
    let out = bench(&[
        "compare",
        "--load",
        "idle",
        "--sessions",
        "50",
        "--sessions-per-connection",
        "10",
        "--hold",
        "1",
        "--keepalive-interval",
        "0.4",
        "--settle",
        "0.2",
    ]);
    let r = result(&out);
    assert_eq!(r.get("load").map(String::as_str), Some("idle"), "{out}");
    assert_eq!(number(&r, "direct_survived"), 50.0, "{out}");
    assert_eq!(number(&r, "proxy_survived"), 50.0, "{out}");
    assert!(r.contains_key("proxy_rss_growth_kib_per_session"), "{out}");
    assert!(r.contains_key("proxy_hold_cpu_percent"), "{out}");
    for figure in [
        "RSS growth KiB/session (round 1)",
        "CPU % of a core while holding",
        "errors 0",
    ] {
        assert!(out.contains(figure), "no {figure:?} in:\n{out}");
    }
}
