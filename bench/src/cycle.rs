//! `cycle` load: N clients, one WebSocket each, repeating create → attach → message (ack +
//! event) → keepalive → detach → destroy as fast as the server answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::procstat::{self, Sample, Watched};
use crate::stats::{Errors, Kind, Latencies};
use crate::wire::{self, Conn, Expect, ReqError};

#[derive(Debug, Clone)]
pub struct CycleLoad {
    pub clients: usize,
    /// Measured time (after the warm-up), when `cycles` is 0.
    pub duration: Duration,
    /// Total cycles to run (0: run for `duration`). No warm-up then.
    pub cycles: u64,
    pub warmup: Duration,
    pub plugin: String,
    /// The message body, JSON.
    pub body: String,
    pub timeout: Duration,
}

/// CPU and memory of one watched process over the measured window.
#[derive(Debug, Clone)]
pub struct ProcFigures {
    pub label: String,
    pub pid: u32,
    /// Percent of one core.
    pub cpu_percent: f64,
    pub cpu_seconds: f64,
    pub rss_kib: u64,
}

#[derive(Debug, Clone, Default)]
pub struct CycleResult {
    pub clients: usize,
    pub cycles: u64,
    pub requests: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
    pub errors: Errors,
    pub procs: Vec<ProcFigures>,
}

impl CycleResult {
    pub fn cycles_per_s(&self) -> f64 {
        self.cycles as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn requests_per_s(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Merges another round of the same side (elapsed times add up).
    pub fn merge(&mut self, other: &CycleResult) {
        self.clients = other.clients;
        self.cycles += other.cycles;
        self.requests += other.requests;
        self.elapsed += other.elapsed;
        self.latencies.merge(&other.latencies);
        self.errors.merge(&other.errors);
        for p in &other.procs {
            match self.procs.iter_mut().find(|q| q.label == p.label) {
                Some(q) => {
                    q.cpu_seconds += p.cpu_seconds;
                    q.rss_kib = p.rss_kib;
                }
                None => self.procs.push(p.clone()),
            }
        }
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        for q in &mut self.procs {
            q.cpu_percent = 100.0 * q.cpu_seconds / secs;
        }
    }
}

struct Shared {
    load: CycleLoad,
    measure_start: Instant,
    end: Instant,
    budget: Option<AtomicU64>,
}

#[derive(Default)]
struct ClientStats {
    cycles: u64,
    requests: u64,
    latencies: Latencies,
    errors: Errors,
}

pub async fn run(
    urls: &[String],
    load: &CycleLoad,
    watched: &[Watched],
) -> anyhow::Result<CycleResult> {
    anyhow::ensure!(!urls.is_empty(), "no URL");
    // Connections are made before the clock starts.
    let mut conns = Vec::with_capacity(load.clients);
    for i in 0..load.clients {
        let url = &urls[i % urls.len()];
        conns.push((
            url.clone(),
            Conn::new(wire::connect(url, load.timeout).await?),
        ));
    }
    let start = Instant::now();
    let warmup = if load.cycles > 0 {
        Duration::ZERO
    } else {
        load.warmup
    };
    let measure_start = start + warmup;
    let shared = Arc::new(Shared {
        load: load.clone(),
        measure_start,
        end: measure_start + load.duration,
        budget: (load.cycles > 0).then(|| AtomicU64::new(load.cycles)),
    });
    let mut tasks = JoinSet::new();
    for (url, conn) in conns {
        tasks.spawn(client(conn, url, shared.clone()));
    }
    tokio::time::sleep_until(measure_start).await;
    let before = procstat::sample_all(watched);
    let mut result = CycleResult {
        clients: load.clients,
        ..CycleResult::default()
    };
    while let Some(joined) = tasks.join_next().await {
        let st = joined?;
        result.cycles += st.cycles;
        result.requests += st.requests;
        result.latencies.merge(&st.latencies);
        result.errors.merge(&st.errors);
    }
    let after = procstat::sample_all(watched);
    result.elapsed = Instant::now().duration_since(measure_start);
    result.procs = proc_figures(watched, &before, &after);
    Ok(result)
}

pub fn proc_figures(
    watched: &[Watched],
    before: &[Option<Sample>],
    after: &[Option<Sample>],
) -> Vec<ProcFigures> {
    watched
        .iter()
        .zip(before.iter().zip(after.iter()))
        .filter_map(|(w, (b, a))| {
            let (b, a) = (b.as_ref()?, a.as_ref()?);
            Some(ProcFigures {
                label: w.label.clone(),
                pid: w.pid,
                cpu_percent: procstat::cpu_percent(b, a),
                cpu_seconds: procstat::cpu_seconds(b, a),
                rss_kib: a.rss_kib,
            })
        })
        .collect()
}

async fn client(conn: Conn, url: String, shared: Arc<Shared>) -> ClientStats {
    let mut st = ClientStats::default();
    let mut conn = Some(conn);
    loop {
        let now = Instant::now();
        match &shared.budget {
            Some(budget) => {
                if budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                    .is_err()
                {
                    break;
                }
            }
            None => {
                if now >= shared.end {
                    break;
                }
            }
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match wire::connect(&url, shared.load.timeout).await {
                Ok(ws) => conn.insert(Conn::new(ws)),
                Err(_) => {
                    st.errors.add("connect".into());
                    // Back off a little before the next attempt.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let measured = now >= shared.measure_start;
        match one_cycle(c, &shared.load, measured, &mut st).await {
            Ok(()) => {
                if measured {
                    st.cycles += 1;
                    st.latencies.record(Kind::Cycle, now.elapsed());
                }
            }
            Err(e) => {
                st.errors.add(e.kind());
                if e.is_fatal() {
                    if let Some(c) = conn.take() {
                        c.close().await;
                    }
                }
            }
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
    st
}

async fn step(
    c: &mut Conn,
    kind: Kind,
    make: impl FnOnce(u64) -> String,
    expect: Expect,
    load: &CycleLoad,
    measured: bool,
    st: &mut ClientStats,
) -> Result<u64, ReqError> {
    let tx = c.tx();
    let text = make(tx);
    let t = Instant::now();
    let id = c.request(tx, text, expect, load.timeout).await?;
    if measured {
        st.requests += 1;
        st.latencies.record(kind, t.elapsed());
    }
    Ok(id)
}

async fn one_cycle(
    c: &mut Conn,
    load: &CycleLoad,
    measured: bool,
    st: &mut ClientStats,
) -> Result<(), ReqError> {
    let session = step(
        c,
        Kind::Create,
        wire::create,
        Expect::Success,
        load,
        measured,
        st,
    )
    .await?;
    if session == 0 {
        return Err(ReqError::Unexpected);
    }
    let inner = handle_steps(c, session, load, measured, st).await;
    if let Err(e) = inner {
        if !e.is_fatal() {
            // Best effort: do not leave the session behind.
            let tx = c.tx();
            let _ = c
                .request(
                    tx,
                    wire::destroy(tx, session),
                    Expect::Success,
                    load.timeout,
                )
                .await;
        }
        return Err(e);
    }
    step(
        c,
        Kind::Destroy,
        |tx| wire::destroy(tx, session),
        Expect::Success,
        load,
        measured,
        st,
    )
    .await?;
    Ok(())
}

async fn handle_steps(
    c: &mut Conn,
    session: u64,
    load: &CycleLoad,
    measured: bool,
    st: &mut ClientStats,
) -> Result<(), ReqError> {
    let handle = step(
        c,
        Kind::Attach,
        |tx| wire::attach(tx, session, &load.plugin),
        Expect::Success,
        load,
        measured,
        st,
    )
    .await?;
    if handle == 0 {
        return Err(ReqError::Unexpected);
    }
    step(
        c,
        Kind::Message,
        |tx| wire::message(tx, session, handle, &load.body),
        Expect::AckAndEvent,
        load,
        measured,
        st,
    )
    .await?;
    step(
        c,
        Kind::Keepalive,
        |tx| wire::keepalive(tx, session),
        Expect::Ack,
        load,
        measured,
        st,
    )
    .await?;
    step(
        c,
        Kind::Detach,
        |tx| wire::detach(tx, session, handle),
        Expect::Success,
        load,
        measured,
        st,
    )
    .await?;
    Ok(())
}
