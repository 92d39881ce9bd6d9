//! `Poster`: one actor per report URL, so that a URL that is down or slow never delays the
//! others. It posts the latest report periodically and at once when the status changes;
//! a failed post is retried with capped backoff (always with the latest report); one request
//! is in flight at a time, and a report that arrives meanwhile is posted right after it.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use janus_protocol::ServerReport;
use parking_lot::RwLock;
use serde::Serialize;

use crate::config::{ReportConfig, ReportFormat, ResolvedTarget};
use janus_cloud_common::{unix_now, Backoff};

/// The latest report from the monitor; `urgent` (the status changed): post it now.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct ReportUpdated {
    pub report: ServerReport,
    pub urgent: bool,
}

/// Shutdown: post this report once (no retries), after the post in flight if any, and stop.
/// Answers whether it was accepted.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct PostFinalReport(pub ServerReport);

/// What `GET /sentinel/posters` and `/metrics` show about one poster (janus-cloud's fields
/// `post_type`, `name`, `connected`, `post_urls`, `expire`, plus counters). Never the token:
/// not the bearer token, nor a `token` in the URL's query (masked).
#[derive(Debug, Clone, Serialize)]
pub struct PosterStats {
    pub post_type: &'static str,
    pub name: String,
    pub post_urls: Vec<String>,
    pub format: ReportFormat,
    pub token: bool,
    pub expire: u64,
    /// The last post was accepted.
    pub connected: bool,
    pub posts_ok: u64,
    pub posts_failed: u64,
    pub consecutive_failures: u64,
    pub last_success_time: Option<f64>,
    pub last_error: Option<String>,
    /// Status code of the last report accepted.
    pub last_status_posted: Option<u8>,
}

impl PosterStats {
    pub fn new(target: &ResolvedTarget, expire: u64) -> Self {
        PosterStats {
            post_type: "http",
            name: target.display_url(),
            post_urls: vec![target.display_url()],
            format: target.format,
            token: target.token.is_some(),
            expire,
            connected: false,
            posts_ok: 0,
            posts_failed: 0,
            consecutive_failures: 0,
            last_success_time: None,
            last_error: None,
            last_status_posted: None,
        }
    }
}

pub struct Poster {
    target: ResolvedTarget,
    interval: Duration,
    timeout: Duration,
    stats: Arc<RwLock<PosterStats>>,
    client: awc::Client,
    latest: Option<ServerReport>,
    in_flight: bool,
    /// A newer report arrived while a post was in flight: post again when it ends.
    again: bool,
    retry: Backoff,
    retry_at: Option<SpawnHandle>,
    finished: bool,
    /// Told when the post in flight ends (the final report waits for it, so that it is the
    /// last report the proxy gets).
    idle_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// Posts one report; Ok when the answer is 2xx.
async fn post(
    client: &awc::Client,
    target: &ResolvedTarget,
    report: &ServerReport,
) -> Result<(), String> {
    let mut request = client.post(target.url.as_str());
    if let Some(token) = &target.token {
        request = request.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let sent = match target.format {
        ReportFormat::Json => request.send_json(report).await,
        ReportFormat::Form => request.send_form(&report.to_form_fields()).await,
    };
    let mut response = sent.map_err(|e| e.to_string())?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.body().limit(512).await.unwrap_or_default();
    Err(format!(
        "HTTP {}: {}",
        status.as_u16(),
        String::from_utf8_lossy(&body).trim()
    ))
}

impl Poster {
    pub fn new(
        target: ResolvedTarget,
        config: &ReportConfig,
        stats: Arc<RwLock<PosterStats>>,
    ) -> Self {
        let timeout = Duration::from_millis(config.timeout_ms);
        Poster {
            client: crate::janus_ws::client(timeout),
            interval: config.interval(),
            timeout,
            retry: Backoff::new(
                Duration::from_millis(config.retry_min_ms),
                Duration::from_millis(config.retry_max_ms),
            ),
            target,
            stats,
            latest: None,
            in_flight: false,
            again: false,
            retry_at: None,
            finished: false,
            idle_waiters: Vec::new(),
        }
    }

    fn post_latest(&mut self, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        let Some(report) = self.latest.clone() else {
            return;
        };
        if self.in_flight {
            self.again = true;
            return;
        }
        if let Some(handle) = self.retry_at.take() {
            ctx.cancel_future(handle);
        }
        self.in_flight = true;
        self.again = false;
        let (client, target) = (self.client.clone(), self.target.clone());
        let status = report.status.code();
        ctx.spawn(
            async move { post(&client, &target, &report).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.in_flight = false;
                    act.record(&result, status);
                    for waiter in act.idle_waiters.drain(..) {
                        let _ = waiter.send(());
                    }
                    if act.finished {
                        return;
                    }
                    match result {
                        Ok(()) => {
                            act.retry.reset();
                            if act.again {
                                act.post_latest(ctx);
                            }
                        }
                        Err(_) if act.again => act.post_latest(ctx),
                        Err(_) => {
                            let delay = act.retry.next_delay(rand::random::<f64>() * 0.5 + 0.5);
                            act.retry_at = Some(ctx.run_later(delay, |act, ctx| {
                                act.retry_at = None;
                                act.post_latest(ctx);
                            }));
                        }
                    }
                }),
        );
    }

    fn record(&self, result: &Result<(), String>, status: u8) {
        let mut stats = self.stats.write();
        match result {
            Ok(()) => {
                stats.connected = true;
                stats.posts_ok += 1;
                stats.consecutive_failures = 0;
                stats.last_success_time = Some(unix_now());
                stats.last_status_posted = Some(status);
            }
            Err(e) => {
                if stats.consecutive_failures == 0 {
                    log::warn!("report to {} failed: {e}", self.target.display_url());
                }
                stats.connected = false;
                stats.posts_failed += 1;
                stats.consecutive_failures += 1;
                stats.last_error = Some(e.clone());
            }
        }
    }
}

impl Actor for Poster {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |act, ctx| {
            // A pending retry will post the latest report anyway.
            if act.retry_at.is_none() {
                act.post_latest(ctx);
            }
        });
    }
}

impl Handler<ReportUpdated> for Poster {
    type Result = ();

    fn handle(&mut self, msg: ReportUpdated, ctx: &mut Context<Self>) {
        let first = self.latest.is_none();
        self.latest = Some(msg.report);
        if msg.urgent || first {
            self.retry.reset();
            self.post_latest(ctx);
        }
    }
}

impl Handler<PostFinalReport> for Poster {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    fn handle(&mut self, msg: PostFinalReport, ctx: &mut Context<Self>) -> Self::Result {
        self.finished = true;
        if let Some(handle) = self.retry_at.take() {
            ctx.cancel_future(handle);
        }
        let (client, target, timeout) = (self.client.clone(), self.target.clone(), self.timeout);
        let report = msg.0;
        let status = report.status.code();
        let in_flight = self.in_flight.then(|| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.idle_waiters.push(tx);
            rx
        });
        Box::pin(
            async move {
                if let Some(rx) = in_flight {
                    let _ = rx.await;
                }
                tokio::time::timeout(timeout, post(&client, &target, &report))
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()))
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                act.record(&result, status);
                ctx.stop();
                result
            }),
        )
    }
}
