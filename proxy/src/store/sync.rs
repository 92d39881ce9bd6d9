//! The sync round, every `sync_interval_ms`: one script writes this proxy's heartbeat and
//! sessions record and reads the live and dead proxies and the version of the shared state
//! (see [`scripts::HEARTBEAT`]); then the shared registry's reports are read (a handful of
//! keys, through their index). Nothing else is read here: the rest of the shared state comes
//! by the change feed ([`super::follow`]), so an idle cluster costs Redis a few commands a
//! second per proxy whatever the number of users and rooms.
//!
//! The round also notices Redis coming back, or coming back without this proxy's keys (the
//! heartbeat `GET` finds nothing): everything this proxy holds is written again and the views
//! read again; for one heartbeat lifetime after that, what is missing is not taken for removed
//! or dead (the others need a round to write theirs again).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::conn::{Failed, StoreConn};
use super::follow::FollowEvent;
use super::keys::Keys;
use super::reaper::{self, DeadCleanup, SessionReaper, SessionsRecord};
use super::rooms::RoomStore;
use super::scripts;
use super::writer::WriterCommand;
use super::StoreHealth;
use crate::metrics::Metrics;
use crate::registry::{ServerRegistry, SharedReport, SyncShared};

pub struct Syncer {
    pub(super) conn: Arc<StoreConn>,
    pub(super) keys: Keys,
    pub(super) proxy_id: String,
    pub(super) interval: Duration,
    pub(super) heartbeat_ttl: u64,
    pub(super) registry: Addr<ServerRegistry>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) health: Arc<StoreHealth>,
    pub(super) writer: mpsc::UnboundedSender<WriterCommand>,
    pub(super) follow: mpsc::UnboundedSender<FollowEvent>,
    pub(super) rooms: Arc<RoomStore>,
    pub(super) topics: Vec<String>,
    pub(super) stop: oneshot::Receiver<oneshot::Sender<()>>,
    /// Started by [`Syncer::spawn`]: the writer, the follow task and the subscription.
    pub(super) tasks: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>>,
    /// When Redis last came back: removals wait a heartbeat lifetime after that.
    recovered_at: Option<Instant>,
    /// The proxies seen subscribed since Redis last came back: only they can be found dead by
    /// their silence (see [`scripts::HEARTBEAT`]).
    subscribed: HashSet<String>,
    /// No round has succeeded yet in this run: a sessions record under this proxy's id is an
    /// earlier run's.
    fresh: bool,
}

/// The heartbeat script's answer, in its order (see [`scripts::HEARTBEAT`]).
type BeatReply = (
    String,
    String,
    Vec<String>,
    Vec<String>,
    String,
    Vec<String>,
    Vec<String>,
);

/// What one heartbeat step read.
struct Beat {
    previous: String,
    previous_sessions: String,
    alive: HashSet<String>,
    dead: Vec<String>,
    version: u64,
    /// The proxies subscribed to their channels now.
    subscribed: Vec<String>,
    /// The proxies found dead by their silence (see [`scripts::HEARTBEAT`]): dead for sure,
    /// settling or not.
    silent: Vec<String>,
}

impl Syncer {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        conn: Arc<StoreConn>,
        keys: Keys,
        proxy_id: String,
        interval: Duration,
        heartbeat_ttl: u64,
        registry: Addr<ServerRegistry>,
        metrics: Arc<Metrics>,
        health: Arc<StoreHealth>,
        writer: mpsc::UnboundedSender<WriterCommand>,
        follow: mpsc::UnboundedSender<FollowEvent>,
        rooms: Arc<RoomStore>,
        topics: Vec<String>,
        stop: oneshot::Receiver<oneshot::Sender<()>>,
    ) -> Syncer {
        Syncer {
            conn,
            keys,
            proxy_id,
            interval,
            heartbeat_ttl: heartbeat_ttl.max(1),
            registry,
            metrics,
            health,
            writer,
            follow,
            rooms,
            topics,
            stop,
            tasks: Vec::new(),
            recovered_at: None,
            subscribed: HashSet::new(),
            fresh: true,
        }
    }

    /// Starts syncing on the current runtime (the round, and the writer, follow and
    /// subscription tasks); the heartbeat names these addresses; `reaper` gives this proxy's
    /// backend sessions (recorded with it) and reaps dead proxies' ones.
    pub fn spawn(
        mut self,
        ws: SocketAddr,
        admin: SocketAddr,
        reaper: SessionReaper,
    ) -> tokio::task::JoinHandle<()> {
        for task in std::mem::take(&mut self.tasks) {
            actix_rt::spawn(task);
        }
        let heartbeat = json!({
            "id": self.proxy_id,
            "ws": ws.to_string(),
            "admin": admin.to_string(),
        })
        .to_string();
        actix_rt::spawn(self.run(heartbeat, reaper))
    }

    async fn run(mut self, heartbeat: String, reaper: SessionReaper) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                stop = &mut self.stop => {
                    if let Ok(done) = stop {
                        let _ = done.send(());
                    }
                    return;
                }
                _ = tick.tick() => {
                    if let Err(e) = self.round(&heartbeat, &reaper).await {
                        self.health.down(e);
                        self.health.show(&self.metrics);
                    }
                }
            }
        }
    }

    /// A proxy seen subscribed, now without a subscription and whose heartbeat is older than
    /// this (two rounds), died (see [`scripts::HEARTBEAT`]).
    fn silence_ms(&self) -> u64 {
        let two_rounds = (self.interval * 2).as_millis() as u64;
        if two_rounds >= self.heartbeat_ttl * 1000 {
            0
        } else {
            two_rounds
        }
    }

    /// Before the first round and for a heartbeat lifetime after each recovery: what is
    /// missing from Redis may only not be written again yet.
    fn settling(&self) -> bool {
        self.recovered_at
            .is_none_or(|at| at.elapsed() < Duration::from_secs(self.heartbeat_ttl))
    }

    async fn beat(&self, heartbeat: &str, reaper: &SessionReaper) -> Result<Beat, Failed> {
        let record = SessionsRecord {
            proxy: self.proxy_id.clone(),
            sessions: reaper.live(),
        };
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::HEARTBEAT)
            .arg(4)
            .arg(self.keys.proxy(&self.proxy_id))
            .arg(self.keys.sessions(&self.proxy_id))
            .arg(self.keys.proxy_index())
            .arg(self.keys.version())
            .arg(&self.proxy_id)
            .arg(heartbeat)
            .arg(self.heartbeat_ttl)
            .arg(record.to_json())
            .arg(self.heartbeat_ttl + reaper::RECORD_OUTLIVES_HEARTBEAT.as_secs())
            .arg(self.keys.proxy(""))
            .arg(self.keys.channel(""))
            .arg(self.silence_ms());
        for id in &self.subscribed {
            cmd.arg(id);
        }
        let (previous, previous_sessions, alive, dead, version, subscribed, silent): BeatReply =
            self.conn.query("heartbeat", &cmd).await?;
        Ok(Beat {
            subscribed,
            silent,
            previous,
            previous_sessions,
            alive: alive.into_iter().collect(),
            dead,
            version: version.parse().unwrap_or(0),
        })
    }

    /// One round: heartbeat, recovery if need be, liveness, dead proxies, reports.
    async fn round(&mut self, heartbeat: &str, reaper: &SessionReaper) -> Result<(), Failed> {
        if !self.health.up.load(Ordering::Relaxed) {
            // Coming back (maybe to a promoted replica, where nobody is subscribed yet): only
            // proxies seen subscribed from now on can be found dead by their silence.
            self.subscribed.clear();
        }
        let beat = self.beat(heartbeat, reaper).await?;
        if std::mem::take(&mut self.fresh) && !beat.previous_sessions.is_empty() {
            reaper::reap_previous_run(
                &beat.previous_sessions,
                &self.keys.sessions(&self.proxy_id),
                reaper,
            );
        }
        let was_up = self.health.up.load(Ordering::Relaxed);
        let lost = beat.previous.is_empty();
        if !was_up || lost {
            if was_up && lost {
                log::warn!("store: Redis lost this proxy's keys (restarted?); writing them again");
            } else {
                log::info!("store: Redis answers; shared state in sync");
            }
            self.recovered_at = Some(Instant::now());
            let _ = self.writer.send(WriterCommand::Recovered { lost: true });
            self.rooms.recover().await?;
            let _ = self.follow.send(FollowEvent::Recovered);
        }
        self.health.up.store(true, Ordering::Relaxed);
        self.health
            .proxies
            .store(beat.alive.len(), Ordering::Relaxed);
        self.metrics.store_proxies.set(beat.alive.len() as i64);
        self.health.set_peers(&beat.alive, &beat.subscribed);
        self.health.show(&self.metrics);
        self.subscribed.retain(|id| beat.alive.contains(id));
        self.subscribed.extend(beat.subscribed.iter().cloned());
        let settling = self.settling();
        let _ = self.follow.send(FollowEvent::Round {
            version: beat.version,
            alive: beat.alive.clone(),
            settling,
            gone: beat.silent.clone(),
        });
        for id in &beat.silent {
            log::info!("store: proxy {id} lost its subscription and stopped writing: dead");
        }
        let dead = if settling { &beat.silent } else { &beat.dead };
        if !dead.is_empty() {
            let cleanup = DeadCleanup {
                conn: self.conn.clone(),
                keys: self.keys.clone(),
                notify: scripts::Notify::new(&self.keys, &self.proxy_id),
                own_id: self.proxy_id.clone(),
                topics: self.topics.clone(),
                reaper: reaper.clone(),
                health: self.health.clone(),
                participants_grace: Duration::from_secs(self.heartbeat_ttl * 2),
            };
            reaper::reap_dead(dead, &cleanup).await?;
        }
        let reports = self.read_servers().await?;
        // Bounded: a busy registry must not stop the heartbeats.
        let synced = self.registry.send(SyncShared {
            reports,
            remove_missing: !settling,
        });
        tokio::time::timeout(self.conn.timeout(), synced)
            .await
            .map_err(|_| "registry: busy".to_string())?
            .map_err(|_| "registry stopped".to_string())
    }

    /// The reported servers, through their index (a hash gone: expired, and dropped from it).
    async fn read_servers(&self) -> Result<Vec<SharedReport>, Failed> {
        let mut members = redis::cmd("SMEMBERS");
        members.arg(self.keys.server_index());
        let mut names: Vec<String> = self.conn.query("servers", &members).await?;
        names.sort();
        let mut reports = Vec::with_capacity(names.len());
        let mut expired = Vec::new();
        for chunk in names.chunks(32) {
            let mut pipe = redis::pipe();
            for name in chunk {
                pipe.hgetall(self.keys.server(name));
            }
            let hashes: Vec<HashMap<String, String>> = self.conn.pipe("read", &pipe).await?;
            for (name, hash) in chunk.iter().zip(hashes) {
                if hash.is_empty() {
                    expired.push(name.clone());
                    continue;
                }
                reports.extend(super::parse_report(&self.keys.server(name), hash));
            }
        }
        if !expired.is_empty() {
            let mut srem = redis::cmd("SREM");
            srem.arg(self.keys.server_index()).arg(&expired);
            self.conn.query::<i64>("servers", &srem).await?;
        }
        Ok(reports)
    }
}
