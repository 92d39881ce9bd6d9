//! `idle` load: S sessions with one handle each, several sessions per WebSocket, kept alive
//! with keepalives for T seconds while the watched processes' memory and CPU are read.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::procstat::{self, Sample, Watched};
use crate::stats::{Errors, Kind, Latencies};
use crate::wire::{self, Conn, Frame, ReqError};

#[derive(Debug, Clone)]
pub struct IdleLoad {
    pub sessions: usize,
    pub per_connection: usize,
    pub hold: Duration,
    pub keepalive_interval: Duration,
    /// Connections opening their sessions at the same time.
    pub ramp_concurrency: usize,
    /// Wait after closing everything before the last reading.
    pub settle: Duration,
    pub plugin: String,
    pub timeout: Duration,
}

/// Readings of one watched process.
#[derive(Debug, Clone)]
pub struct IdleProc {
    pub label: String,
    pub pid: u32,
    pub before_kib: u64,
    /// When every session was open (start of the hold).
    pub held_kib: u64,
    /// At the end of the hold.
    pub end_kib: u64,
    /// `settle` after every connection was closed.
    pub after_kib: u64,
    /// Percent of one core while the sessions were being opened.
    pub ramp_cpu_percent: f64,
    /// Percent of one core while holding the sessions.
    pub hold_cpu_percent: f64,
}

impl IdleProc {
    /// RSS growth (end of hold − before) per open session, in KiB.
    pub fn growth_kib_per_session(&self, sessions: usize) -> f64 {
        (self.end_kib as f64 - self.before_kib as f64) / sessions.max(1) as f64
    }
}

#[derive(Debug, Clone, Default)]
pub struct IdleResult {
    pub wanted: usize,
    pub connections: usize,
    /// Sessions that got a handle.
    pub opened: usize,
    /// Sessions whose keepalive was acknowledged at the end of the hold.
    pub survived: usize,
    pub ramp: Duration,
    pub hold: Duration,
    pub errors: Errors,
    pub latencies: Latencies,
    pub procs: Vec<IdleProc>,
}

#[derive(Default)]
struct ConnStats {
    survived: usize,
    errors: Errors,
    latencies: Latencies,
}

pub async fn run(
    urls: &[String],
    load: &IdleLoad,
    watched: &[Watched],
) -> anyhow::Result<IdleResult> {
    anyhow::ensure!(!urls.is_empty(), "no URL");
    anyhow::ensure!(
        load.per_connection > 0,
        "--sessions-per-connection must be > 0"
    );
    let before = procstat::sample_all(watched);
    let connections = load.sessions.div_ceil(load.per_connection);
    let ramp = Arc::new(Semaphore::new(load.ramp_concurrency.max(1)));
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let load_shared = Arc::new(load.clone());
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let mut left = load.sessions;
    for i in 0..connections {
        let n = left.min(load.per_connection);
        left -= n;
        // Keepalive rounds of the connections are spread evenly over the interval.
        let offset = load
            .keepalive_interval
            .mul_f64(i as f64 / connections as f64);
        tasks.spawn(connection(
            urls[i % urls.len()].clone(),
            n,
            offset,
            load_shared.clone(),
            ramp.clone(),
            opened_tx.clone(),
            stop_rx.clone(),
        ));
    }
    drop(opened_tx);
    let mut opened = 0;
    for _ in 0..connections {
        match opened_rx.recv().await {
            Some(n) => opened += n,
            None => break,
        }
    }
    let ramp_time = started.elapsed();
    let held = procstat::sample_all(watched);
    let hold_start = Instant::now();
    tokio::time::sleep(load.hold).await;
    let end = procstat::sample_all(watched);
    let hold = hold_start.elapsed();
    let _ = stop_tx.send(true);
    let mut result = IdleResult {
        wanted: load.sessions,
        connections,
        opened,
        ramp: ramp_time,
        hold,
        ..IdleResult::default()
    };
    while let Some(joined) = tasks.join_next().await {
        let st = joined?;
        result.survived += st.survived;
        result.errors.merge(&st.errors);
        result.latencies.merge(&st.latencies);
    }
    tokio::time::sleep(load.settle).await;
    let after = procstat::sample_all(watched);
    for (i, w) in watched.iter().enumerate() {
        let (Some(b), Some(h), Some(e), Some(a)) = (before[i], held[i], end[i], after[i]) else {
            continue;
        };
        result.procs.push(IdleProc {
            label: w.label.clone(),
            pid: w.pid,
            before_kib: b.rss_kib,
            held_kib: h.rss_kib,
            end_kib: e.rss_kib,
            after_kib: a.rss_kib,
            ramp_cpu_percent: cpu(&b, &h),
            hold_cpu_percent: cpu(&h, &e),
        });
    }
    Ok(result)
}

fn cpu(from: &Sample, to: &Sample) -> f64 {
    procstat::cpu_percent(from, to)
}

/// Sends one request per item at once, then collects the replies (matched by transaction).
/// Returns, per item, the `data.id` of a `success`, 1 for an `ack`, or the error.
async fn pipelined(
    c: &mut Conn,
    items: &[u64],
    make: impl Fn(u64, u64) -> String,
    timeout: Duration,
    lat: Option<&mut Latencies>,
) -> Result<Vec<Result<u64, ReqError>>, ReqError> {
    let mut out: Vec<Result<u64, ReqError>> = vec![Err(ReqError::Timeout); items.len()];
    if items.is_empty() {
        return Ok(out);
    }
    let sent_at = Instant::now();
    let mut first_tx = 0;
    for (i, item) in items.iter().enumerate() {
        let tx = c.tx();
        if i == 0 {
            first_tx = tx;
        }
        c.send(make(tx, *item)).await?;
    }
    let mut lat = lat;
    let deadline = sent_at + timeout;
    let mut missing = items.len();
    while missing > 0 {
        let text = match c.recv(deadline).await {
            Ok(Frame::Text(t)) => t,
            Ok(Frame::Closed) => return Err(ReqError::Closed),
            Err(ReqError::Timeout) => break,
            Err(e) => return Err(e),
        };
        let Some(slot) = wire::transaction(&text)
            .and_then(|tx| tx.checked_sub(first_tx))
            .and_then(|i| usize::try_from(i).ok())
            .filter(|i| *i < items.len())
        else {
            c.other_frames += 1;
            continue;
        };
        if out[slot] != Err(ReqError::Timeout) {
            continue;
        }
        out[slot] = match wire::janus_kind(&text) {
            Some("success") => Ok(wire::field(&text, "\"id\"")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)),
            Some("ack") => Ok(1),
            Some("error") => Err(ReqError::Janus(
                wire::field(&text, "\"code\"")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            _ => Err(ReqError::Unexpected),
        };
        if let Some(l) = lat.as_deref_mut() {
            l.record(Kind::Keepalive, sent_at.elapsed());
        }
        missing -= 1;
    }
    Ok(out)
}

enum Wake {
    Round,
    Frame(Result<Frame, ReqError>),
    Stop,
}

async fn connection(
    url: String,
    n: usize,
    offset: Duration,
    load: Arc<IdleLoad>,
    ramp: Arc<Semaphore>,
    opened_tx: mpsc::UnboundedSender<usize>,
    mut stop: watch::Receiver<bool>,
) -> ConnStats {
    let mut st = ConnStats::default();
    let permit = ramp.acquire_owned().await;
    let mut c = match wire::connect(&url, load.timeout).await {
        Ok(ws) => Conn::new(ws),
        Err(_) => {
            st.errors.add("connect".into());
            let _ = opened_tx.send(0);
            return st;
        }
    };
    let opened = open_sessions(&mut c, n, &load, &mut st).await;
    drop(permit);
    let _ = opened_tx.send(opened.as_ref().map(Vec::len).unwrap_or(0));
    let Ok(mut sessions) = opened else {
        return st;
    };
    let mut next = Instant::now() + offset;
    let far = Duration::from_secs(3600);
    loop {
        let wake = tokio::select! {
            _ = tokio::time::sleep_until(next) => Wake::Round,
            f = c.recv(Instant::now() + far) => Wake::Frame(f),
            _ = stop.changed() => Wake::Stop,
        };
        match wake {
            Wake::Round => {
                next += load.keepalive_interval;
                if let Err(e) = keepalive_round(&mut c, &mut sessions, &load, &mut st).await {
                    st.errors.add(e.kind());
                    return st;
                }
            }
            Wake::Frame(Ok(Frame::Text(text))) => {
                if wire::janus_kind(&text) == Some("timeout") {
                    st.errors.add(ReqError::SessionTimeout.kind());
                    if let Some(s) =
                        wire::field(&text, "\"session_id\"").and_then(|v| v.parse::<u64>().ok())
                    {
                        sessions.retain(|x| *x != s);
                    }
                }
            }
            Wake::Frame(Ok(Frame::Closed)) => {
                st.errors.add(ReqError::Closed.kind());
                return st;
            }
            Wake::Frame(Err(e)) => {
                st.errors.add(e.kind());
                return st;
            }
            Wake::Stop => break,
        }
    }
    // The final round counts the survivors.
    match keepalive_round(&mut c, &mut sessions, &load, &mut st).await {
        Ok(()) => st.survived = sessions.len(),
        Err(e) => st.errors.add(e.kind()),
    }
    c.close().await;
    st
}

/// Creates `n` sessions and attaches one handle to each; returns the sessions that have one.
async fn open_sessions(
    c: &mut Conn,
    n: usize,
    load: &IdleLoad,
    st: &mut ConnStats,
) -> Result<Vec<u64>, ReqError> {
    let slots = vec![0u64; n];
    let created = pipelined(c, &slots, |tx, _| wire::create(tx), load.timeout, None)
        .await
        .inspect_err(|e| st.errors.add(e.kind()))?;
    let mut sessions = Vec::with_capacity(n);
    for r in created {
        match r {
            Ok(id) if id != 0 => sessions.push(id),
            Ok(_) => st.errors.add(ReqError::Unexpected.kind()),
            Err(e) => st.errors.add(e.kind()),
        }
    }
    let plugin = load.plugin.as_str();
    let attached = pipelined(
        c,
        &sessions,
        |tx, s| wire::attach(tx, s, plugin),
        load.timeout,
        None,
    )
    .await
    .inspect_err(|e| st.errors.add(e.kind()))?;
    let mut with_handle = Vec::with_capacity(sessions.len());
    for (s, r) in sessions.iter().zip(attached) {
        match r {
            Ok(id) if id != 0 => with_handle.push(*s),
            Ok(_) => st.errors.add(ReqError::Unexpected.kind()),
            Err(e) => st.errors.add(e.kind()),
        }
    }
    Ok(with_handle)
}

/// One keepalive per live session; sessions that do not get an `ack` are dropped.
async fn keepalive_round(
    c: &mut Conn,
    sessions: &mut Vec<u64>,
    load: &IdleLoad,
    st: &mut ConnStats,
) -> Result<(), ReqError> {
    let replies = pipelined(
        c,
        sessions,
        wire::keepalive,
        load.timeout,
        Some(&mut st.latencies),
    )
    .await?;
    let mut i = 0;
    sessions.retain(|_| {
        let keep = replies[i].is_ok();
        if let Err(e) = &replies[i] {
            st.errors.add(e.kind());
        }
        i += 1;
        keep
    });
    Ok(())
}
