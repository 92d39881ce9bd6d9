//! `janus-bench`: a load generator for Janus-API WebSocket servers (Janus itself or
//! janus-proxy). See `USAGE`. Single-threaded on purpose: the tool must cost little next to
//! the servers it measures on the same machine.

pub mod cycle;
pub mod idle;
pub mod procstat;
pub mod spawn;
pub mod stats;
pub mod store;
pub mod wire;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};

use cycle::{CycleLoad, CycleResult};
use idle::{IdleLoad, IdleResult};
use procstat::Watched;
use spawn::SpawnOptions;
use stats::Kind;

/// One line of the report, to the run's output; a failed write (stdout closed) ends the run.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        writeln!($out, $($arg)*).context("writing the report")?
    };
}
pub(crate) use say;

pub const USAGE: &str = "\
usage: janus-bench <cycle|idle|compare|store> [options]

  cycle     N clients (one WebSocket each) repeat create, attach, message (ack + event),
            keepalive, detach, destroy; prints cycles/s, requests/s, latency percentiles
            per request type and errors by kind.
  idle      S sessions with one handle each, several per WebSocket, kept alive for T seconds;
            prints how many survive and the RSS/CPU of the watched processes before, while
            holding and after.
  compare   the same load against a direct Janus and the proxy, alternating rounds
            (direct, proxy, direct, proxy, ...); prints every figure and the ratio proxy/direct.
  store     the shared store's cost: N proxy processes on one Redis filled with rooms and
            users, held idle (Redis and proxy CPU, Redis commands/s), and how fast a
            registration on one proxy is listed on another (`janus-bench store --help`).

targets:
  --url URL[,URL..]             cycle/idle target (several: clients spread round-robin)
  --pid [LABEL=]PID             cycle/idle: watch this process (repeatable)
  --direct URL[,URL..]          compare: Janus URL(s)
  --proxy URL                   compare: proxy URL
  --direct-pid PID              compare: a Janus process (repeatable)
  --proxy-pid PID               compare: the proxy process
  --spawn                       start Janus (actors-tests/janus-conf) and a janus-proxy process
                                in front of it on free loopback ports; URLs and PIDs from them
  --janus-count N               --spawn: Janus backends (1)
  --target direct|proxy         cycle/idle with --spawn: which one to drive (proxy)
  --proxy-bin PATH              --spawn: proxy binary (proxy-under-test or janus-proxy next to
                                this executable)
  --proxy-log FILTER            --spawn: RUST_LOG of the proxy (warn)
  --proxy-workers N             --spawn: ws.workers of the proxy (its default: 1; 0 = one
                                per core)
  --proxy-config FILE           --spawn: more of the proxy's configuration (TOML sections,
                                e.g. a [store] to measure with Redis)
  --janus-conf DIR              --spawn: Janus config templates (actors-tests/janus-conf)
  --janus-event-loops N         --spawn: Janus event_loops (0 = Janus default, a thread per
                                handle; set it for tens of thousands of handles)

load:
  --load cycle|idle             compare: which load (cycle)
  --rounds N                    compare: rounds per side (cycle 3, idle 1)
  --timeout SECS                per request (10)
  --plugin NAME                 (janus.plugin.echotest)
  cycle:
  --clients N                   (200)
  --duration SECS               measured time per run (5)
  --cycles N                    run N cycles in all instead (no warm-up)
  --warmup SECS                 unmeasured start of each run (1)
  --body JSON                   message body ({\"audio\":true})
  idle:
  --sessions N                  (5000)
  --sessions-per-connection N   (1: one WebSocket per session, as a browser running janus.js;
                                more multiplexes sessions on fewer connections)
  --hold SECS                   (30)
  --keepalive-interval SECS     (20)
  --ramp-concurrency N          connections opening sessions at once (32)
  --settle SECS                 wait after closing before the last reading (2)

Every run ends with a `RESULT` line of key=value figures.
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Cycle,
    Idle,
    Compare,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadKind {
    Cycle,
    Idle,
}

#[derive(Debug, Clone)]
struct Opts {
    mode: Mode,
    load: LoadKind,
    urls: Vec<String>,
    watched: Vec<Watched>,
    direct: Vec<String>,
    proxy: Option<String>,
    direct_pids: Vec<u32>,
    proxy_pid: Option<u32>,
    spawn: Option<SpawnOptions>,
    target_proxy: bool,
    rounds: Option<usize>,
    cycle: CycleLoad,
    idle: IdleLoad,
}

fn secs(v: &str) -> anyhow::Result<Duration> {
    let s: f64 = v.parse().with_context(|| format!("bad seconds {v:?}"))?;
    if !(0.0..=86_400.0).contains(&s) {
        bail!("seconds out of range: {v}");
    }
    Ok(Duration::from_secs_f64(s))
}

fn num<T: std::str::FromStr>(v: &str) -> anyhow::Result<T> {
    v.parse().map_err(|_| anyhow!("bad number {v:?}"))
}

fn parse(args: &[String]) -> anyhow::Result<Opts> {
    let mode = match args.first().map(String::as_str) {
        Some("cycle") => Mode::Cycle,
        Some("idle") => Mode::Idle,
        Some("compare") => Mode::Compare,
        _ => bail!("{USAGE}"),
    };
    let plugin = "janus.plugin.echotest".to_string();
    let timeout = Duration::from_secs(10);
    let mut o = Opts {
        mode,
        load: if mode == Mode::Idle {
            LoadKind::Idle
        } else {
            LoadKind::Cycle
        },
        urls: Vec::new(),
        watched: Vec::new(),
        direct: Vec::new(),
        proxy: None,
        direct_pids: Vec::new(),
        proxy_pid: None,
        spawn: None,
        target_proxy: true,
        rounds: None,
        cycle: CycleLoad {
            clients: 200,
            duration: Duration::from_secs(5),
            cycles: 0,
            warmup: Duration::from_secs(1),
            plugin: plugin.clone(),
            body: r#"{"audio":true}"#.into(),
            timeout,
        },
        idle: IdleLoad {
            sessions: 5000,
            per_connection: 1,
            hold: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(20),
            ramp_concurrency: 32,
            settle: Duration::from_secs(2),
            plugin,
            timeout,
        },
    };
    let mut spawn = false;
    let mut sp = SpawnOptions {
        janus_count: 1,
        janus_conf: SpawnOptions::default_janus_conf(),
        proxy_bin: SpawnOptions::default_proxy_bin(),
        proxy_log: "warn".into(),
        proxy_workers: None,
        janus_event_loops: 0,
        proxy_config: None,
    };
    let mut it = args[1..].iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if flag == "--spawn" {
            spawn = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            bail!("{USAGE}");
        }
        let v = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| anyhow!("{flag} needs a value"))?,
        };
        match flag {
            "--url" => o.urls = wire::url_list(&v)?,
            "--pid" => {
                let (label, pid) = match v.split_once('=') {
                    Some((l, p)) => (l.to_string(), num(p)?),
                    None => (format!("pid-{v}"), num(&v)?),
                };
                o.watched.push(Watched { label, pid });
            }
            "--direct" => o.direct = wire::url_list(&v)?,
            "--proxy" => o.proxy = wire::url_list(&v)?.into_iter().next(),
            "--direct-pid" => o.direct_pids.push(num(&v)?),
            "--proxy-pid" => o.proxy_pid = Some(num(&v)?),
            "--janus-count" => sp.janus_count = num(&v)?,
            "--target" => {
                o.target_proxy = match v.as_str() {
                    "proxy" => true,
                    "direct" => false,
                    _ => bail!("--target direct|proxy"),
                }
            }
            "--proxy-bin" => sp.proxy_bin = PathBuf::from(v),
            "--proxy-log" => sp.proxy_log = v,
            "--proxy-workers" => sp.proxy_workers = Some(num(&v)?),
            "--proxy-config" => sp.proxy_config = Some(PathBuf::from(v)),
            "--janus-event-loops" => sp.janus_event_loops = num(&v)?,
            "--janus-conf" => sp.janus_conf = PathBuf::from(v),
            "--load" => {
                o.load = match v.as_str() {
                    "cycle" => LoadKind::Cycle,
                    "idle" => LoadKind::Idle,
                    _ => bail!("--load cycle|idle"),
                }
            }
            "--rounds" => o.rounds = Some(num(&v)?),
            "--timeout" => {
                o.cycle.timeout = secs(&v)?;
                o.idle.timeout = o.cycle.timeout;
            }
            "--plugin" => {
                o.cycle.plugin = v.clone();
                o.idle.plugin = v;
            }
            "--clients" => o.cycle.clients = num(&v)?,
            "--duration" => o.cycle.duration = secs(&v)?,
            "--cycles" => o.cycle.cycles = num(&v)?,
            "--warmup" => o.cycle.warmup = secs(&v)?,
            "--body" => {
                serde_json::from_str::<serde_json::Value>(&v).context("--body must be JSON")?;
                o.cycle.body = v;
            }
            "--sessions" => o.idle.sessions = num(&v)?,
            "--sessions-per-connection" => o.idle.per_connection = num(&v)?,
            "--hold" => o.idle.hold = secs(&v)?,
            "--keepalive-interval" => o.idle.keepalive_interval = secs(&v)?,
            "--ramp-concurrency" => o.idle.ramp_concurrency = num(&v)?,
            "--settle" => o.idle.settle = secs(&v)?,
            _ => bail!("unknown option {flag}\n{USAGE}"),
        }
    }
    if o.cycle.clients == 0 || o.idle.per_connection == 0 {
        bail!("--clients and --sessions-per-connection must be > 0");
    }
    if o.idle.keepalive_interval.is_zero() {
        bail!("--keepalive-interval must be > 0");
    }
    if spawn {
        o.spawn = Some(sp);
    } else if o.mode == Mode::Compare {
        if o.direct.is_empty() || o.proxy.is_none() {
            bail!("compare needs --direct and --proxy, or --spawn");
        }
    } else if o.urls.is_empty() {
        bail!("{:?} needs --url, or --spawn", o.mode);
    }
    Ok(o)
}

/// Entry point of the binary: parses `args` (without the program name), runs on a
/// single-threaded runtime, prints the report to stdout.
pub fn main_with_args(args: &[String]) -> anyhow::Result<()> {
    run_with_output(args, &mut std::io::stdout())
}

/// As [`main_with_args`], with the report (every line, the `RESULT` line last) written to
/// `out`: the tests run the tool in-process and read what it printed. Warnings still go to
/// stderr.
pub fn run_with_output(args: &[String], out: &mut dyn Write) -> anyhow::Result<()> {
    if args.first().map(String::as_str) == Some("store") {
        if args.iter().any(|a| a == "--help" || a == "-h") {
            bail!("{}", store::USAGE);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return runtime.block_on(store::run(&args[1..], out));
    }
    let opts = parse(args)?;
    let limit = procstat::raise_nofile_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(opts, limit, out))
}

async fn run(mut o: Opts, nofile: u64, out: &mut dyn Write) -> anyhow::Result<()> {
    let spawned = match &o.spawn {
        Some(sp) => {
            let s = spawn::spawn(sp).await?;
            say!(
                out,
                "spawned: {} (pid {}) {}; proxy {} (pid {}) {}",
                s.janus
                    .iter()
                    .map(|j| j.label.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                s.janus
                    .iter()
                    .map(|j| j.pid().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                s.direct_urls().join(","),
                sp.proxy_bin.display(),
                s.proxy.pid(),
                s.proxy.url
            );
            Some(s)
        }
        None => None,
    };
    // Where each side's URLs and watched processes come from.
    let (direct_watch, proxy_watch) = match &spawned {
        Some(s) => {
            o.direct = s.direct_urls();
            o.proxy = Some(s.proxy.url.clone());
            let janus = s.janus_watched();
            let mut proxy_side = vec![s.proxy.watched()];
            proxy_side.extend(janus.iter().cloned());
            (janus, proxy_side)
        }
        None => {
            let janus: Vec<Watched> = o
                .direct_pids
                .iter()
                .enumerate()
                .map(|(i, pid)| Watched {
                    label: format!("janus-{}", i + 1),
                    pid: *pid,
                })
                .collect();
            let mut proxy_side: Vec<Watched> = o
                .proxy_pid
                .map(|pid| Watched {
                    label: "proxy".into(),
                    pid,
                })
                .into_iter()
                .collect();
            proxy_side.extend(janus.iter().cloned());
            (janus, proxy_side)
        }
    };
    if o.mode != Mode::Compare && spawned.is_some() {
        if o.target_proxy {
            o.urls = o.proxy.iter().cloned().collect();
            o.watched = proxy_watch.clone();
        } else {
            o.urls = o.direct.clone();
            o.watched = direct_watch.clone();
        }
    }
    // The tool's own cost, to show it stays small next to the servers.
    let me = Watched {
        label: "loadgen".into(),
        pid: std::process::id(),
    };
    let (mut direct_watch, mut proxy_watch) = (direct_watch, proxy_watch);
    for list in [&mut direct_watch, &mut proxy_watch, &mut o.watched] {
        list.push(me.clone());
    }
    if o.load == LoadKind::Idle {
        let needed = o.idle.sessions.div_ceil(o.idle.per_connection) as u64;
        // Each connection is one fd here and one in the server.
        if needed + 64 > nofile {
            eprintln!(
                "janus-bench: {needed} connections but RLIMIT_NOFILE is {nofile}; raise it or --sessions-per-connection"
            );
        }
    }
    match o.mode {
        Mode::Cycle => {
            let mut r = cycle::run(&o.urls, &o.cycle, &o.watched).await?;
            print_cycle(out, &format!("cycle {}", o.urls.join(",")), &mut r)?;
        }
        Mode::Idle => {
            let r = idle::run(&o.urls, &o.idle, &o.watched).await?;
            print_idle(out, &format!("idle {}", o.urls.join(",")), &r)?;
        }
        Mode::Compare => {
            let proxy = o.proxy.clone().ok_or_else(|| anyhow!("no proxy URL"))?;
            let sides = [
                ("direct", o.direct.clone(), direct_watch),
                ("proxy", vec![proxy], proxy_watch),
            ];
            match o.load {
                LoadKind::Cycle => compare_cycle(&o, &sides, out).await?,
                LoadKind::Idle => compare_idle(&o, &sides, out).await?,
            }
        }
    }
    drop(spawned);
    Ok(())
}

type Side = (&'static str, Vec<String>, Vec<Watched>);

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

fn ratio(p: f64, d: f64) -> String {
    if d > 0.0 && p.is_finite() {
        format!("{:.2}", p / d)
    } else {
        "-".into()
    }
}

fn print_cycle(out: &mut dyn Write, title: &str, r: &mut CycleResult) -> anyhow::Result<()> {
    r.latencies.sort();
    say!(out, "== {title}");
    say!(
        out,
        "clients {}  elapsed {:.2} s  cycles {}  cycles/s {:.1}  requests/s {:.1}  errors {}",
        r.clients,
        r.elapsed.as_secs_f64(),
        r.cycles,
        r.cycles_per_s(),
        r.requests_per_s(),
        r.errors.summary()
    );
    say!(
        out,
        "  {:<10} {:>8} {:>9} {:>9} {:>9}",
        "latency ms",
        "n",
        "p50",
        "p95",
        "p99"
    );
    for k in Kind::ALL {
        say!(
            out,
            "  {:<10} {:>8} {:>9} {:>9} {:>9}",
            k.name(),
            r.latencies.count(k),
            ms(r.latencies.quantile_ms(k, 0.50)),
            ms(r.latencies.quantile_ms(k, 0.95)),
            ms(r.latencies.quantile_ms(k, 0.99))
        );
    }
    for p in &r.procs {
        say!(
            out,
            "  {} (pid {}): CPU {:.1} % of a core, {:.0} µs CPU per cycle, RSS {} KiB",
            p.label,
            p.pid,
            p.cpu_percent,
            1e6 * p.cpu_seconds / (r.cycles.max(1) as f64),
            p.rss_kib
        );
    }
    let mut line = format!(
        "RESULT mode=cycle clients={} cycles={} cycles_per_s={:.1} requests_per_s={:.1} errors={}",
        r.clients,
        r.cycles,
        r.cycles_per_s(),
        r.requests_per_s(),
        r.errors.total()
    );
    for k in Kind::ALL {
        line.push_str(&format!(
            " {}_p50_ms={} {}_p99_ms={}",
            k.name(),
            ms(r.latencies.quantile_ms(k, 0.5)),
            k.name(),
            ms(r.latencies.quantile_ms(k, 0.99))
        ));
    }
    say!(out, "{line}");
    Ok(())
}

fn print_idle(out: &mut dyn Write, title: &str, r: &IdleResult) -> anyhow::Result<()> {
    say!(out, "== {title}");
    say!(out,
        "sessions {} over {} connections: opened {} in {:.1} s, held {:.1} s, survived {}  errors {}",
        r.wanted,
        r.connections,
        r.opened,
        r.ramp.as_secs_f64(),
        r.hold.as_secs_f64(),
        r.survived,
        r.errors.summary()
    );
    for p in &r.procs {
        say!(out,
            "  {} (pid {}): RSS KiB before {} / held {} / end of hold {} / after {}; growth {:.2} KiB/session; CPU {:.1} % opening, {:.2} % of a core holding",
            p.label,
            p.pid,
            p.before_kib,
            p.held_kib,
            p.end_kib,
            p.after_kib,
            p.growth_kib_per_session(r.opened),
            p.ramp_cpu_percent,
            p.hold_cpu_percent
        );
    }
    let mut line = format!(
        "RESULT mode=idle sessions={} opened={} survived={} errors={}",
        r.wanted,
        r.opened,
        r.survived,
        r.errors.total()
    );
    for p in &r.procs {
        line.push_str(&format!(
            " {0}_rss_growth_kib_per_session={1:.2} {0}_hold_cpu_percent={2:.2}",
            p.label,
            p.growth_kib_per_session(r.opened),
            p.hold_cpu_percent
        ));
    }
    say!(out, "{line}");
    Ok(())
}

async fn compare_cycle(o: &Opts, sides: &[Side; 2], out: &mut dyn Write) -> anyhow::Result<()> {
    let rounds = o.rounds.unwrap_or(3).max(1);
    let mut totals = [CycleResult::default(), CycleResult::default()];
    for round in 1..=rounds {
        for (i, (name, urls, watched)) in sides.iter().enumerate() {
            let mut r = cycle::run(urls, &o.cycle, watched).await?;
            print_cycle(
                out,
                &format!("round {round} {name} {}", urls.join(",")),
                &mut r,
            )?;
            totals[i].merge(&r);
        }
    }
    let [d, p] = &mut totals;
    d.latencies.sort();
    p.latencies.sort();
    say!(
        out,
        "== compare cycle: {} clients, {rounds} rounds per side, alternating",
        o.cycle.clients
    );
    say!(
        out,
        "  {:<22} {:>10} {:>10} {:>12}",
        "",
        "direct",
        "proxy",
        "proxy/direct"
    );
    let row = |out: &mut dyn Write, name: &str, dv: f64, pv: f64| -> anyhow::Result<()> {
        say!(
            out,
            "  {:<22} {:>10.3} {:>10.3} {:>12}",
            name,
            dv,
            pv,
            ratio(pv, dv)
        );
        Ok(())
    };
    row(out, "cycles/s", d.cycles_per_s(), p.cycles_per_s())?;
    row(out, "requests/s", d.requests_per_s(), p.requests_per_s())?;
    let mut line = format!(
        "RESULT mode=compare load=cycle clients={} throughput_ratio={} direct_cycles_per_s={:.1} proxy_cycles_per_s={:.1} direct_errors={} proxy_errors={}",
        o.cycle.clients,
        ratio(p.cycles_per_s(), d.cycles_per_s()),
        d.cycles_per_s(),
        p.cycles_per_s(),
        d.errors.total(),
        p.errors.total()
    );
    for k in Kind::ALL {
        for (q, qn) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
            let (dv, pv) = (
                d.latencies.quantile_ms(k, q).unwrap_or(0.0),
                p.latencies.quantile_ms(k, q).unwrap_or(0.0),
            );
            row(out, &format!("{} {qn} ms", k.name()), dv, pv)?;
            if qn != "p95" {
                line.push_str(&format!(" {}_{qn}_ratio={}", k.name(), ratio(pv, dv)));
            }
        }
    }
    say!(
        out,
        "  errors: direct {}; proxy {}",
        d.errors.summary(),
        p.errors.summary()
    );
    let per_cycle = |r: &CycleResult, label: &str| {
        r.procs
            .iter()
            .filter(|q| q.label.starts_with(label))
            .map(|q| q.cpu_seconds)
            .sum::<f64>()
            * 1e6
            / r.cycles.max(1) as f64
    };
    let (dj, pj, pp) = (
        per_cycle(d, "janus"),
        per_cycle(p, "janus"),
        per_cycle(p, "proxy"),
    );
    if dj > 0.0 || pp > 0.0 {
        say!(out,
            "  CPU µs per cycle: janus (direct) {dj:.0}; janus (behind proxy) {pj:.0}; proxy {pp:.0}  proxy/janus {}",
            ratio(pp, dj)
        );
        line.push_str(&format!(
            " janus_cpu_us_per_cycle={dj:.0} proxy_cpu_us_per_cycle={pp:.0}"
        ));
    }
    say!(out, "{line}");
    Ok(())
}

async fn compare_idle(o: &Opts, sides: &[Side; 2], out: &mut dyn Write) -> anyhow::Result<()> {
    let rounds = o.rounds.unwrap_or(1).max(1);
    // Per side: growth per session and hold CPU of its own server process(es), last round.
    let mut figures: [Vec<(f64, f64, usize, usize)>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=rounds {
        for (i, (name, urls, watched)) in sides.iter().enumerate() {
            let r = idle::run(urls, &o.idle, watched).await?;
            print_idle(out, &format!("round {round} {name} {}", urls.join(",")), &r)?;
            // The direct side's server is Janus; the proxy side's is the proxy.
            let own = |label: &str| {
                if i == 0 {
                    label.starts_with("janus")
                } else {
                    label == "proxy"
                }
            };
            let growth: f64 = r
                .procs
                .iter()
                .filter(|p| own(&p.label))
                .map(|p| p.growth_kib_per_session(r.opened))
                .sum();
            let cpu: f64 = r
                .procs
                .iter()
                .filter(|p| own(&p.label))
                .map(|p| p.hold_cpu_percent)
                .sum();
            figures[i].push((growth, cpu, r.opened, r.survived));
        }
    }
    let avg = |v: &[(f64, f64, usize, usize)], f: fn(&(f64, f64, usize, usize)) -> f64| {
        v.iter().map(f).sum::<f64>() / v.len().max(1) as f64
    };
    // Memory is measured in the first round: later rounds reuse what the allocator kept.
    let first = |v: &[(f64, f64, usize, usize)]| v.first().map(|x| x.0).unwrap_or(0.0);
    let (dg, pg) = (first(&figures[0]), first(&figures[1]));
    let (dc, pc) = (avg(&figures[0], |x| x.1), avg(&figures[1], |x| x.1));
    let survived = |v: &[(f64, f64, usize, usize)]| v.iter().map(|x| x.3).min().unwrap_or(0);
    say!(
        out,
        "== compare idle: {} sessions, {} per connection, {rounds} round(s) per side",
        o.idle.sessions,
        o.idle.per_connection
    );
    say!(
        out,
        "  {:<34} {:>10} {:>10} {:>12}",
        "",
        "janus",
        "proxy",
        "proxy/janus"
    );
    say!(
        out,
        "  {:<34} {:>10.2} {:>10.2} {:>12}",
        "RSS growth KiB/session (round 1)",
        dg,
        pg,
        ratio(pg, dg)
    );
    say!(
        out,
        "  {:<34} {:>10.2} {:>10.2} {:>12}",
        "CPU % of a core while holding",
        dc,
        pc,
        ratio(pc, dc)
    );
    say!(
        out,
        "  survived (min over rounds): direct {} proxy {}",
        survived(&figures[0]),
        survived(&figures[1])
    );
    say!(out,
        "RESULT mode=compare load=idle sessions={} direct_survived={} proxy_survived={} janus_rss_growth_kib_per_session={dg:.2} proxy_rss_growth_kib_per_session={pg:.2} rss_growth_ratio={} janus_hold_cpu_percent={dc:.2} proxy_hold_cpu_percent={pc:.2} cpu_ratio={}",
        o.idle.sessions,
        survived(&figures[0]),
        survived(&figures[1]),
        ratio(pg, dg),
        ratio(pc, dc)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_options() {
        let o = parse(&args(
            "cycle --url ws://127.0.0.1:1,ws://127.0.0.1:2 --clients=4 --duration 1.5 --pid proxy=12",
        ))
        .expect("valid");
        assert_eq!(o.urls.len(), 2);
        assert_eq!(o.cycle.clients, 4);
        assert_eq!(o.cycle.duration, Duration::from_millis(1500));
        assert_eq!(o.watched[0].label, "proxy");
        let o = parse(&args("compare --spawn --load idle --sessions 10")).expect("valid");
        assert_eq!(o.load, LoadKind::Idle);
        assert!(o.spawn.is_some());
        assert!(parse(&args("compare --direct ws://x")).is_err());
        assert!(parse(&args("cycle --url ws://x --bogus 1")).is_err());
        assert!(parse(&args("cycle --url ws://x --body notjson")).is_err());
        assert!(parse(&args("fly")).is_err());
    }
}
