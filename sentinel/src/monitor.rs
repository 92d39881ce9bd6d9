//! `JanusMonitor`: watches one Janus. It keeps a WebSocket to the Janus API (subprotocol
//! `janus-protocol`) and pings at an interval, measuring the round-trip time; it counts
//! sessions and handles over the Admin API; it samples CPU and memory; from all that it decides
//! the status ([`StatusRule`]) and the load figure, and pushes reports to the posters: at once
//! when the status changes, and as the latest state for their periodic posts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::io::{SinkWrite, WriteHandler};
use actix::prelude::*;
use actix_codec::Framed;
use actix_http::ws::ProtocolError;
use awc::ws::{Codec, Frame, Message as WsMessage};
use awc::BoxedSocket;
use futures_util::stream::{self, SplitSink, StreamExt};
use janus_protocol::{JsonMap, ServerReport, ServerStatus, JANUS_PROTOCOL};
use serde_json::Value;

use crate::config::{ProcessMode, SentinelConfig};
use crate::janus_ws::{admin_counts, Counts};
use crate::poster::ReportUpdated;
use crate::state::SharedState;
pub use crate::state::{JanusSnapshot, ProcessNews};
use crate::workload::{LoadFormula, Sampler, SystemSample, WorkloadInputs};
use janus_cloud_common::Backoff;

/// What decides the status.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HealthInputs {
    /// An operator put the server in maintenance.
    pub maintenance: bool,
    /// The managed Janus process is not running.
    pub process_down: bool,
    /// The socket is up and the last ping was answered in time.
    pub answering: bool,
    /// Round-trip time of the last answered ping.
    pub rtt: Option<Duration>,
    pub load: Option<f64>,
}

/// The status decision: maintenance (operator) wins; then abnormal when the process is down or
/// Janus does not answer; then high-water-mark when the ping RTT or the load is above its
/// threshold; else normal.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StatusRule {
    /// RTT above which the status is high-water-mark.
    pub hwm_rtt: Option<Duration>,
    /// Load at or above which the status is high-water-mark.
    pub hwm_load: Option<f64>,
}

impl StatusRule {
    pub fn from_config(config: &SentinelConfig) -> Self {
        StatusRule {
            hwm_rtt: (config.janus.hwm_rtt_ms > 0)
                .then(|| Duration::from_millis(config.janus.hwm_rtt_ms)),
            hwm_load: (config.janus.hwm_load > 0.0).then_some(config.janus.hwm_load),
        }
    }

    pub fn decide(&self, inputs: &HealthInputs) -> ServerStatus {
        if inputs.maintenance {
            return ServerStatus::Maintenance;
        }
        if inputs.process_down || !inputs.answering {
            return ServerStatus::Abnormal;
        }
        let slow = matches!((self.hwm_rtt, inputs.rtt), (Some(max), Some(rtt)) if rtt > max);
        let loaded = matches!((self.hwm_load, inputs.load), (Some(max), Some(load)) if load >= max);
        if slow || loaded {
            ServerStatus::HighWaterMark
        } else {
            ServerStatus::Normal
        }
    }
}

/// Operator: take the server out of service (status maintenance) until `StopMaintenance`.
#[derive(Message)]
#[rtype(result = "ServerStatus")]
pub struct StartMaintenance;

/// Operator: back in service; the status follows Janus again at once.
#[derive(Message)]
#[rtype(result = "ServerStatus")]
pub struct StopMaintenance;

/// Shutdown: stop watching, status abnormal; returns the final report to post.
#[derive(Message)]
#[rtype(result = "ServerReport")]
pub struct PrepareShutdown;

type WsSink = SplitSink<Framed<BoxedSocket, Codec>, WsMessage>;

/// Items of the ping socket's stream, tagged with the connection they belong to.
enum PingItem {
    Frame(u64, Result<Frame, ProtocolError>),
    Closed(u64),
}

struct Outstanding {
    transaction: String,
    sent: Instant,
}

pub struct JanusMonitor {
    config: Arc<SentinelConfig>,
    shared: Arc<SharedState>,
    posters: Vec<Recipient<ReportUpdated>>,
    rule: StatusRule,
    formula: LoadFormula,
    sampler: Sampler,
    // Ping socket.
    sink: Option<SinkWrite<WsMessage, WsSink>>,
    generation: u64,
    connecting: bool,
    next_connect: Instant,
    reconnect: Backoff,
    outstanding: Option<Outstanding>,
    ping_seq: u64,
    last_ping: Instant,
    // State.
    answering: bool,
    rtt: Option<Duration>,
    maintenance: bool,
    managed: bool,
    process_down: bool,
    janus_pid: Option<u32>,
    start_time: Option<f64>,
    counts: Option<Counts>,
    counting: bool,
    last_stats: Option<Instant>,
    sample: SystemSample,
    status: ServerStatus,
    stopping: bool,
}

const TICK: Duration = Duration::from_millis(50);

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl JanusMonitor {
    pub fn new(
        config: Arc<SentinelConfig>,
        shared: Arc<SharedState>,
        posters: Vec<Recipient<ReportUpdated>>,
    ) -> Self {
        let managed = config.process.mode == ProcessMode::Managed;
        let reconnect_max = config.janus.ping_interval().min(Duration::from_secs(1));
        JanusMonitor {
            rule: StatusRule::from_config(&config),
            formula: LoadFormula::new(config.workload.clone()),
            sampler: Sampler::new(),
            sink: None,
            generation: 0,
            connecting: false,
            next_connect: Instant::now(),
            reconnect: Backoff::new(Duration::from_millis(50).min(reconnect_max), reconnect_max),
            outstanding: None,
            ping_seq: 0,
            last_ping: Instant::now(),
            answering: false,
            rtt: None,
            maintenance: false,
            managed,
            // A managed Janus counts as down until the process actor says it started.
            process_down: managed,
            janus_pid: None,
            start_time: None,
            counts: None,
            counting: false,
            last_stats: None,
            sample: SystemSample::default(),
            status: ServerStatus::Abnormal,
            stopping: false,
            config,
            shared,
            posters,
        }
    }

    fn load(&self) -> Option<f64> {
        self.formula.load(&WorkloadInputs {
            cpu_percent: self.sample.cpu_percent,
            memory_percent: self.sample.memory_percent,
            session_num: self.counts.map(|c| c.sessions),
            handle_num: self.counts.map(|c| c.handles),
        })
    }

    fn report(&self) -> ServerReport {
        let general = &self.config.general;
        let mut report = ServerReport::new(&general.server_name, &general.public_url, self.status);
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        report.location = non_empty(&general.location);
        report.isp = non_empty(&general.isp);
        report.rtp_host = non_empty(&general.rtp_host);
        report.expire = Some(self.config.report.expire);
        report.start_time = self.start_time;
        report.session_num = self.counts.map(|c| c.sessions);
        report.handle_num = self.counts.map(|c| c.handles);
        report.load = self.load().map(|l| (l * 10_000.0).round() / 10_000.0);
        report.cpu_percent = self.sample.cpu_percent.map(round2);
        report.memory_percent = self.sample.memory_percent.map(round2);
        report
    }

    /// Recomputes the status and publishes the state: to the posters (at once when the status
    /// changed) and to the shared snapshot.
    fn publish(&mut self) {
        self.publish_to(true);
    }

    /// As `publish`; `to_posters` false: the shared snapshot only.
    fn publish_to(&mut self, to_posters: bool) {
        if self.stopping {
            return;
        }
        let load = self.load();
        let status = self.rule.decide(&HealthInputs {
            maintenance: self.maintenance,
            process_down: self.process_down,
            answering: self.answering,
            rtt: self.rtt,
            load,
        });
        let changed = status != self.status;
        if changed {
            log::info!(
                server = self.config.general.server_name.as_str(), status = status.as_str();
                "janus {}: status {} -> {}",
                self.config.general.server_name,
                self.status.as_str(),
                status.as_str()
            );
            self.status = status;
        }
        let report = self.report();
        {
            let mut snap = self.shared.janus.write();
            snap.status = status;
            snap.status_name = status.as_str();
            snap.maintenance = self.maintenance;
            snap.answering = self.answering;
            snap.rtt_ms = self.rtt.map(|d| d.as_secs_f64() * 1000.0);
            snap.session_num = self.counts.map(|c| c.sessions);
            snap.handle_num = self.counts.map(|c| c.handles);
            snap.load = load;
            snap.sample = self.sample;
            snap.janus_pid = self.janus_pid;
            snap.start_time = self.start_time;
            if changed {
                snap.status_changes += 1;
            }
            snap.report = report.clone();
        }
        if !to_posters {
            return;
        }
        for poster in &self.posters {
            poster.do_send(ReportUpdated {
                report: report.clone(),
                urgent: changed,
            });
        }
    }

    // ---- ping socket ----

    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.connecting = true;
        self.generation += 1;
        let generation = self.generation;
        let timeout = self.config.janus.request_timeout();
        let request = crate::janus_ws::client(timeout)
            .ws(self.config.janus.ws_url.as_str())
            .protocols([JANUS_PROTOCOL]);
        ctx.spawn(async move { request.connect().await }.into_actor(self).map(
            move |result, act, ctx| {
                if generation != act.generation {
                    return;
                }
                act.connecting = false;
                match result {
                    Ok((_, framed)) => {
                        let (sink, stream) = framed.split();
                        let items = stream
                            .map(move |f| PingItem::Frame(generation, f))
                            .chain(stream::once(async move { PingItem::Closed(generation) }));
                        ctx.add_stream(items);
                        act.sink = Some(SinkWrite::new(sink, ctx));
                        log::debug!("monitor: connected to {}", act.config.janus.ws_url);
                        act.send_ping();
                    }
                    Err(e) => {
                        log::debug!("monitor: cannot connect to Janus: {e}");
                        act.failed(&format!("cannot connect: {e}"));
                    }
                }
            },
        ));
    }

    /// The ping socket failed (or a ping went unanswered): abnormal, reconnect with backoff.
    fn failed(&mut self, why: &str) {
        if let Some(mut sink) = self.sink.take() {
            sink.close();
        }
        self.generation += 1;
        self.connecting = false;
        if self.outstanding.take().is_some() || self.answering {
            self.shared.janus.write().pings_failed += 1;
        }
        if self.answering {
            log::warn!(
                server = self.config.general.server_name.as_str();
                "janus {}: not answering ({why})",
                self.config.general.server_name
            );
        }
        self.answering = false;
        self.next_connect = Instant::now() + self.reconnect.next_delay(1.0);
        self.publish();
    }

    fn send_ping(&mut self) {
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        self.ping_seq += 1;
        let transaction = format!("sentinel-ping-{}", self.ping_seq);
        let frame = serde_json::json!({"janus": "ping", "transaction": transaction});
        self.last_ping = Instant::now();
        if sink
            .write(WsMessage::Text(frame.to_string().into()))
            .is_ok()
        {
            self.outstanding = Some(Outstanding {
                transaction,
                sent: self.last_ping,
            });
        } else {
            self.failed("write failed");
        }
    }

    fn on_message(&mut self, data: &[u8]) {
        let Ok(frame) = serde_json::from_slice::<JsonMap>(data) else {
            log::debug!("monitor: unparsable frame from Janus");
            return;
        };
        let transaction = frame.get("transaction").and_then(Value::as_str);
        let Some(outstanding) = self.outstanding.as_ref() else {
            return;
        };
        if transaction != Some(outstanding.transaction.as_str()) {
            return;
        }
        let rtt = outstanding.sent.elapsed();
        self.outstanding = None;
        if frame.get("janus").and_then(Value::as_str) == Some("pong") {
            self.rtt = Some(rtt);
            self.reconnect.reset();
            self.shared.janus.write().pings_answered += 1;
            self.answering = true;
            self.publish();
        } else {
            self.failed("ping refused");
        }
    }

    // ---- stats ----

    fn collect_stats(&mut self, ctx: &mut Context<Self>) {
        self.last_stats = Some(Instant::now());
        if !self.managed {
            self.janus_pid = self.sampler.find_pid(
                &self.config.process.pid_file,
                std::path::Path::new(&self.config.process.binary)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("janus"),
            );
        }
        self.sample = self.sampler.sample(self.janus_pid);
        if !self.managed {
            self.start_time = self.sample.process_start_time.map(|t| t as f64);
        }
        let admin = &self.config.janus.admin_url;
        if admin.is_empty() || self.counting {
            self.publish();
            return;
        }
        self.counting = true;
        let (url, secret) = (admin.clone(), self.config.janus.admin_secret.clone());
        let timeout = self.config.janus.request_timeout();
        ctx.spawn(
            async move { admin_counts(&url, &secret, timeout).await }
                .into_actor(self)
                .map(|result, act, _| {
                    act.counting = false;
                    match result {
                        Ok(counts) => {
                            act.counts = Some(counts);
                            act.shared.janus.write().stats_error = None;
                        }
                        Err(e) => {
                            log::debug!("monitor: admin counts failed: {e}");
                            act.counts = None;
                            act.shared.janus.write().stats_error = Some(e);
                        }
                    }
                    act.publish();
                }),
        );
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let now = Instant::now();
        let janus = self.config.clone();
        let janus = &janus.janus;
        if let Some(outstanding) = &self.outstanding {
            if now.duration_since(outstanding.sent) > janus.request_timeout() {
                self.failed("ping not answered in time");
            }
        }
        if self.sink.is_some() {
            if self.outstanding.is_none()
                && now.duration_since(self.last_ping) >= janus.ping_interval()
            {
                self.send_ping();
            }
        } else if !self.connecting && now >= self.next_connect {
            self.connect(ctx);
        }
        let stats_due = match self.last_stats {
            Some(last) => now.duration_since(last) >= janus.stats_interval(),
            None => true,
        };
        if stats_due {
            self.collect_stats(ctx);
        }
    }
}

impl Actor for JanusMonitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.shared.janus.write().report = self.report();
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
        self.tick(ctx);
    }
}

impl StreamHandler<PingItem> for JanusMonitor {
    fn handle(&mut self, item: PingItem, _: &mut Context<Self>) {
        match item {
            PingItem::Closed(g) if g == self.generation => self.failed("socket closed"),
            PingItem::Closed(_) => {}
            PingItem::Frame(g, _) if g != self.generation => {}
            PingItem::Frame(_, Err(e)) => self.failed(&format!("protocol error: {e}")),
            PingItem::Frame(_, Ok(frame)) => match frame {
                Frame::Text(data) | Frame::Binary(data) => self.on_message(&data),
                Frame::Ping(data) => {
                    if let Some(sink) = self.sink.as_mut() {
                        let _ = sink.write(WsMessage::Pong(data));
                    }
                }
                Frame::Close(reason) => self.failed(&format!("closed by Janus: {reason:?}")),
                // A pong is small: never split into continuation frames.
                Frame::Continuation(_) | Frame::Pong(_) => {}
            },
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl WriteHandler<ProtocolError> for JanusMonitor {
    fn error(&mut self, err: ProtocolError, _: &mut Self::Context) -> Running {
        self.failed(&format!("write failed: {err}"));
        Running::Continue
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Handler<StartMaintenance> for JanusMonitor {
    type Result = MessageResult<StartMaintenance>;

    fn handle(&mut self, _: StartMaintenance, _: &mut Context<Self>) -> Self::Result {
        if !self.maintenance {
            log::info!(
                server = self.config.general.server_name.as_str();
                "janus {}: maintenance started",
                self.config.general.server_name
            );
        }
        self.maintenance = true;
        self.publish();
        MessageResult(self.status)
    }
}

impl Handler<StopMaintenance> for JanusMonitor {
    type Result = MessageResult<StopMaintenance>;

    fn handle(&mut self, _: StopMaintenance, _: &mut Context<Self>) -> Self::Result {
        if self.maintenance {
            log::info!(
                server = self.config.general.server_name.as_str();
                "janus {}: maintenance stopped",
                self.config.general.server_name
            );
        }
        self.maintenance = false;
        self.publish();
        MessageResult(self.status)
    }
}

impl Handler<ProcessNews> for JanusMonitor {
    type Result = ();

    fn handle(&mut self, news: ProcessNews, ctx: &mut Context<Self>) {
        match news {
            ProcessNews::Started { pid, start_time } => {
                self.process_down = false;
                self.janus_pid = Some(pid);
                self.start_time = Some(start_time);
                // Try the new Janus soon, whatever the backoff said.
                self.reconnect.reset();
                self.next_connect = Instant::now();
                self.tick(ctx);
            }
            ProcessNews::Exited => {
                self.process_down = true;
                self.janus_pid = None;
                self.start_time = None;
                self.counts = None;
                self.failed("Janus process exited");
            }
        }
    }
}

impl Handler<PrepareShutdown> for JanusMonitor {
    type Result = MessageResult<PrepareShutdown>;

    fn handle(&mut self, _: PrepareShutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.answering = false;
        self.maintenance = false;
        self.process_down = true;
        // The posters get this report as their final one (`PostFinalReport`), not twice.
        self.publish_to(false);
        self.stopping = true;
        if let Some(mut sink) = self.sink.take() {
            sink.close();
        }
        self.generation += 1;
        let report = self.report();
        ctx.stop();
        MessageResult(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> HealthInputs {
        HealthInputs {
            answering: true,
            rtt: Some(Duration::from_millis(2)),
            load: Some(0.1),
            ..HealthInputs::default()
        }
    }

    #[test]
    fn normal_when_answering_fast_and_idle() {
        let rule = StatusRule {
            hwm_rtt: Some(Duration::from_millis(100)),
            hwm_load: Some(0.8),
        };
        assert_eq!(rule.decide(&healthy()), ServerStatus::Normal);
    }

    #[test]
    fn abnormal_when_not_answering_or_process_down() {
        let rule = StatusRule::default();
        let silent = HealthInputs {
            answering: false,
            ..healthy()
        };
        assert_eq!(rule.decide(&silent), ServerStatus::Abnormal);
        let down = HealthInputs {
            process_down: true,
            ..healthy()
        };
        assert_eq!(rule.decide(&down), ServerStatus::Abnormal);
    }

    #[test]
    fn maintenance_wins() {
        let rule = StatusRule::default();
        let inputs = HealthInputs {
            maintenance: true,
            answering: false,
            process_down: true,
            ..healthy()
        };
        assert_eq!(rule.decide(&inputs), ServerStatus::Maintenance);
    }

    #[test]
    fn high_water_mark_on_rtt_or_load() {
        let rule = StatusRule {
            hwm_rtt: Some(Duration::from_millis(100)),
            hwm_load: Some(0.8),
        };
        let slow = HealthInputs {
            rtt: Some(Duration::from_millis(101)),
            ..healthy()
        };
        assert_eq!(rule.decide(&slow), ServerStatus::HighWaterMark);
        let loaded = HealthInputs {
            load: Some(0.8),
            ..healthy()
        };
        assert_eq!(rule.decide(&loaded), ServerStatus::HighWaterMark);
        // Thresholds off: never high-water-mark.
        let off = StatusRule::default();
        let both = HealthInputs {
            rtt: Some(Duration::from_secs(9)),
            load: Some(9.0),
            ..healthy()
        };
        assert_eq!(off.decide(&both), ServerStatus::Normal);
        // Unknown load does not trigger it.
        let unknown = HealthInputs {
            load: None,
            ..healthy()
        };
        assert_eq!(rule.decide(&unknown), ServerStatus::Normal);
    }

    #[test]
    fn thresholds_from_config() {
        let mut config = SentinelConfig::default();
        assert_eq!(StatusRule::from_config(&config), StatusRule::default());
        config.janus.hwm_rtt_ms = 250;
        config.janus.hwm_load = 0.9;
        let rule = StatusRule::from_config(&config);
        assert_eq!(rule.hwm_rtt, Some(Duration::from_millis(250)));
        assert_eq!(rule.hwm_load, Some(0.9));
    }
}
