//! The follow task: keeps this proxy's views of the shared state (the users of the call
//! plugins, the rooms and their participants, the live proxies) in step with Redis, through the
//! change feed ([`super::feed`]), and reads everything again when it is out of step. It is the
//! only task that changes those views from what Redis says, one thing at a time, so a resync
//! and a notice never cross.
//!
//! The subscription ([`subscribe`]) runs beside it: the bus messages addressed to this proxy
//! go to the bus, the notices come here.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::bus::Bus;
use super::conn::{Failed, StoreConn};
use super::feed::{Change, Feed, Notice, Step};
use super::keys::Keys;
use super::rooms::{RoomKind, RoomStore};
use super::users::UserView;
use super::writer::{OwnUsers, WriterCommand};
use super::StoreHealth;
use crate::metrics::Metrics;

#[derive(Debug)]
pub(super) enum FollowEvent {
    /// A message on the changes channel.
    Notice(String),
    /// The subscription is up (again): notices may have been missed.
    Subscribed,
    /// The subscription is lost.
    Unsubscribed,
    /// A sync round read the version and the live proxies (`settling`: just after a gap,
    /// when a missing heartbeat is not yet a dead proxy).
    Round {
        version: u64,
        alive: HashSet<String>,
        settling: bool,
        /// Proxies found dead for sure (settling or not).
        gone: Vec<String>,
    },
    /// Redis answers again after a gap, or lost its data: read everything now, and again once
    /// the others have written theirs again (after `settle`).
    Recovered,
}

pub(super) struct Follow {
    pub conn: Arc<StoreConn>,
    pub keys: Keys,
    pub proxy_id: String,
    pub feed: Feed,
    pub bus: Arc<Bus>,
    pub users: Arc<UserView>,
    pub rooms: Arc<RoomStore>,
    pub topics: Vec<String>,
    pub own_users: OwnUsers,
    pub writer: mpsc::UnboundedSender<WriterCommand>,
    pub settle: Duration,
    pub subscribed: bool,
    /// The live proxies as last known.
    pub alive: Option<HashSet<String>>,
    /// A second resync is due then (after a gap).
    pub resync_at: Option<Instant>,
}

impl Follow {
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<FollowEvent>) {
        loop {
            let event = match self.resync_at {
                Some(at) => tokio::select! {
                    event = rx.recv() => event,
                    // The settling time is over: the others have written theirs again.
                    _ = tokio::time::sleep_until(at.into()) => {
                        self.resync_at = None;
                        self.feed.out_of_step();
                        self.resync().await;
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(event) = event else { return };
            self.on_event(event, &mut rx).await;
        }
    }

    async fn on_event(
        &mut self,
        event: FollowEvent,
        rx: &mut mpsc::UnboundedReceiver<FollowEvent>,
    ) {
        match event {
            FollowEvent::Notice(text) => {
                // This notice and every one already waiting: one batch of reads.
                let mut changes = Vec::new();
                let mut resync = false;
                let mut next = Some(text);
                let mut later = Vec::new();
                while let Some(text) = next.take() {
                    match Notice::parse(&text) {
                        Some(notice) => match self.feed.on_notice(notice) {
                            Step::Apply(c) => changes.extend(c),
                            Step::Resync => resync = true,
                            Step::Nothing => {}
                        },
                        None => log::warn!("store: unreadable notice: {text:.200}"),
                    }
                    match rx.try_recv() {
                        Ok(FollowEvent::Notice(text)) => next = Some(text),
                        Ok(other) => later.push(other),
                        Err(_) => {}
                    }
                }
                self.apply(changes).await;
                if resync {
                    self.resync().await;
                }
                for event in later {
                    Box::pin(self.on_event(event, rx)).await;
                }
            }
            FollowEvent::Subscribed => {
                self.subscribed = true;
                self.feed.out_of_step();
                self.resync().await;
            }
            FollowEvent::Unsubscribed => {
                self.subscribed = false;
                self.feed.out_of_step();
            }
            FollowEvent::Round {
                version,
                alive,
                settling,
                gone,
            } => {
                self.proxies_alive(alive, settling, &gone);
                if !self.feed.in_step() {
                    // A resync failed or waits for the subscription: try again.
                    self.resync().await;
                } else if self.feed.on_round(version, Instant::now()) == Step::Resync {
                    log::warn!(
                        "store: a change notice was lost (the store is at version {version}); \
                         reading the shared state again"
                    );
                    self.resync().await;
                }
            }
            FollowEvent::Recovered => {
                self.feed.out_of_step();
                self.resync().await;
                self.resync_at = Some(Instant::now() + self.settle);
            }
        }
    }

    /// The live proxies from a round. Just after a gap a missing heartbeat may only be one
    /// not written again yet: then proxies are only added.
    fn proxies_alive(&mut self, mut alive: HashSet<String>, settling: bool, gone: &[String]) {
        if settling {
            if let Some(known) = &self.alive {
                alive.extend(known.iter().cloned());
            }
            for id in gone {
                alive.remove(id);
            }
        }
        if self.alive.as_ref() == Some(&alive) {
            return;
        }
        self.users.set_alive(&alive);
        self.rooms.set_alive(&alive);
        self.bus.proxies_alive(&alive);
        self.alive = Some(alive);
    }

    async fn apply(&mut self, changes: Vec<Change>) {
        let mut rooms = BTreeSet::new();
        let mut participants = BTreeSet::new();
        for change in changes {
            match change {
                Change::User { topic, name, proxy } => {
                    self.users.set(&topic, &name, proxy.as_deref());
                }
                Change::Room { plugin, id } => {
                    if let Some(kind) = RoomKind::from_name(&plugin) {
                        rooms.insert((kind, id));
                    }
                }
                Change::Participants { plugin, id } => {
                    if let Some(kind) = RoomKind::from_name(&plugin) {
                        participants.insert((kind, id));
                    }
                }
                Change::ProxyGone { id } => {
                    if id == self.proxy_id {
                        continue;
                    }
                    self.users.proxy_gone(&id);
                    self.rooms.proxy_gone(&id);
                    if let Some(alive) = &mut self.alive {
                        if alive.remove(&id) {
                            self.bus.proxies_alive(alive);
                        }
                    }
                }
            }
        }
        if rooms.is_empty() && participants.is_empty() {
            return;
        }
        if let Err(e) = self.rooms.reread(&rooms, &participants).await {
            log::warn!("store: rooms not read again ({e}); reading everything at the next round");
            self.feed.out_of_step();
        }
    }

    /// Reads the version, then every user and room; then applies the notices that came
    /// meanwhile. Fails quietly (the next round tries again).
    async fn resync(&mut self) {
        if !self.subscribed {
            return;
        }
        // Bounded: kept notices with a hole ask for another read, at most a few times.
        for _ in 0..3 {
            let version = match self.read_all().await {
                Ok(version) => version,
                Err(e) => {
                    log::warn!("store: shared state not read ({e}); trying again next round");
                    return;
                }
            };
            match self.feed.on_resynced(version) {
                Step::Apply(changes) => {
                    self.apply(changes).await;
                    return;
                }
                Step::Resync | Step::Nothing => continue,
            }
        }
    }

    async fn read_all(&mut self) -> Result<u64, Failed> {
        let mut get = redis::cmd("GET");
        get.arg(self.keys.version());
        let version: Option<u64> = self.conn.query("version", &get).await?;
        for topic in &self.topics {
            let mut all = redis::cmd("HGETALL");
            all.arg(self.keys.user_index(topic));
            let users: HashMap<String, String> = self.conn.query("users", &all).await?;
            let users: BTreeMap<String, String> = users.into_iter().collect();
            self.users.replace(topic, users);
            // Names of this proxy's id that it does not hold: an earlier run's.
            let own = self.own_users.lock().clone();
            for name in self.users.own(topic) {
                if !own.contains(&(topic.clone(), name.clone())) {
                    let _ = self.writer.send(WriterCommand::UserDown {
                        topic: topic.clone(),
                        name,
                    });
                }
            }
        }
        self.rooms.resync().await?;
        Ok(version.unwrap_or(0))
    }
}

/// Receives what other proxies send this one (its channel: bus messages) and the notices of
/// everyone (the changes channel), for as long as the proxy runs; resubscribes after a gap.
pub(super) async fn subscribe(
    conn: Arc<StoreConn>,
    keys: Keys,
    bus: Arc<Bus>,
    follow: mpsc::UnboundedSender<FollowEvent>,
    health: Arc<StoreHealth>,
    metrics: Arc<Metrics>,
    retry: Duration,
) {
    use futures_util::StreamExt;
    let (mine, changes) = (bus.channel(), keys.changes());
    let timeout = conn.timeout();
    loop {
        let connected = async {
            let mut pubsub = conn.target().pubsub(timeout).await?;
            // One channel a call: each call waits for its own confirmation, so both are
            // subscribed before the view is read (a notice in between would be lost).
            for channel in [&changes, &mine] {
                tokio::time::timeout(timeout, pubsub.subscribe(channel))
                    .await
                    .map_err(|_| "subscribe: timed out".to_string())?
                    .map_err(|e| format!("subscribe: {e}"))?;
            }
            Ok::<_, String>(pubsub)
        }
        .await;
        match connected {
            Ok(mut pubsub) => {
                health.subscribed.store(true, Ordering::Relaxed);
                health.show(&metrics);
                let _ = follow.send(FollowEvent::Subscribed);
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let payload = match message.get_payload::<String>() {
                        Ok(payload) => payload,
                        Err(e) => {
                            log::warn!("store: unreadable message: {e}");
                            continue;
                        }
                    };
                    if message.get_channel_name() == changes {
                        let _ = follow.send(FollowEvent::Notice(payload));
                    } else {
                        bus.deliver(&payload);
                    }
                }
                health.subscribed.store(false, Ordering::Relaxed);
                health.show(&metrics);
                let _ = follow.send(FollowEvent::Unsubscribed);
                log::warn!("store: subscription lost; subscribing again");
            }
            Err(e) => log::debug!("store: not subscribed: {e}"),
        }
        // Reconnect pace while Redis is away (not a synchronisation).
        tokio::time::sleep(retry).await;
    }
}
