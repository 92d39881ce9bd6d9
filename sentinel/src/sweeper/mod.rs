//! The sweeper: destroys the rooms a proxy created on this Janus and left behind (it crashed,
//! or lost its state), as janus-cloud's sentinel does for videoroom rooms, for audiobridge
//! rooms too.
//!
//! Every `sweeper.interval_s` while Janus answers, over a Janus session of its own: it lists
//! the VideoRoom's and the AudioBridge's rooms (with their `admin_key`, private rooms too),
//! keeps those whose description starts with the proxies' mark, and lists each one's
//! participants. A room with nobody in it ([`idle::occupancy`]) for `sweeper.idle_s` is asked
//! about: every proxy the sentinel reports to lists the rooms it has ([`owners`]); if one does
//! not answer, nothing is destroyed this round; if none has the room on this Janus (its
//! `general.server_name`), the room is destroyed ([`idle::verdict`]). Never an unmarked room
//! (an operator's), never one with participants, never one a live proxy has.
//!
//! Janus 1.1.2 asks for a room's own secret to destroy it, whatever the `admin_key`: the
//! `destroy` carries `sweeper.room_secret`, the proxies' `plugins.backend_room_secret` (with
//! it set, they create every backend room with that secret and check the clients' themselves).
//! A room whose secret is another (or any, without `room_secret`) is logged once and left
//! (`janus_sentinel_sweeper_protected_rooms`).

pub mod config;
pub mod idle;
pub mod janus;
pub mod owners;
pub mod stats;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use self::idle::{
    destroy_outcome, marked_rooms, occupancy, verdict, DestroyOutcome, IdleRooms, Occupancy,
    Owners, RoomKey, RoomPlugin, Verdict,
};
use self::janus::{body, JanusError, JanusSession};
pub use self::stats::{register_metrics, SweeperStats};
use crate::config::{ResolvedTarget, SentinelConfig};
use crate::state::SharedState;

/// Starts the sweeper on the current actix system, unless it is off (`sweeper.idle_s = 0`,
/// no mark, no plugin) or has no proxy to ask (no report URL).
pub fn start(config: Arc<SentinelConfig>, shared: Arc<SharedState>) {
    let sweeper = &config.sweeper;
    if !sweeper.enabled() {
        log::info!("sweeper: off");
        return;
    }
    if config.report.resolved_targets().is_empty() {
        log::info!("sweeper: off (no report URL: no proxy to ask which rooms are in use)");
        return;
    }
    log::info!(
        "sweeper: rooms marked {:?} idle for {} s are destroyed when no proxy has them",
        sweeper.mark,
        sweeper.idle_s
    );
    actix_rt::spawn(run(config, shared));
}

/// What the sweeper remembers from round to round.
#[derive(Default)]
struct Memory {
    rooms: IdleRooms,
    /// The Janus the rooms were seen on (its start time, when known).
    janus_start: Option<f64>,
    janus_failing: bool,
    owners_failing: bool,
}

async fn run(config: Arc<SentinelConfig>, shared: Arc<SharedState>) {
    let mut memory = Memory::default();
    let mut ticker = tokio::time::interval(config.sweeper.interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: leave Janus (and the proxies) a round's time first.
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let (answering, start_time) = {
            let janus = shared.janus.read();
            (janus.answering, janus.start_time)
        };
        // A restarted Janus (another start time; unknown is no news) has other rooms.
        let restarted = matches!((memory.janus_start, start_time), (Some(a), Some(b)) if a != b);
        if !answering || restarted {
            memory.rooms.clear();
        }
        if start_time.is_some() {
            memory.janus_start = start_time;
        }
        let stats = &shared.sweeper;
        if answering {
            stats.rounds.fetch_add(1, Ordering::Relaxed);
            look(&config, &mut memory, stats).await;
        }
        for plugin in RoomPlugin::ALL {
            let idle = memory.rooms.idle_count(plugin) as u64;
            stats.idle(plugin).store(idle, Ordering::Relaxed);
        }
        let protected = memory.rooms.protected_count() as u64;
        stats.protected.store(protected, Ordering::Relaxed);
    }
}

/// One round, its failure logged once in a row.
async fn look(config: &SentinelConfig, memory: &mut Memory, stats: &SweeperStats) {
    match round(config, memory, stats).await {
        Ok(()) => {
            if memory.janus_failing {
                log::info!("sweeper: Janus answers again");
            }
            memory.janus_failing = false;
        }
        Err(why) => {
            stats.round_failures.fetch_add(1, Ordering::Relaxed);
            if !memory.janus_failing {
                log::warn!("sweeper: round failed: {why}");
            } else {
                log::debug!("sweeper: round failed: {why}");
            }
            memory.janus_failing = true;
        }
    }
}

/// One look at the rooms, over a session of its own.
async fn round(
    config: &SentinelConfig,
    memory: &mut Memory,
    stats: &SweeperStats,
) -> Result<(), String> {
    let s = &config.sweeper;
    let timeout = config.janus.request_timeout();
    let mut janus = JanusSession::open(&config.janus.ws_url, timeout, &s.api_secret, &s.auth_token)
        .await
        .map_err(|e| e.to_string())?;
    let result = sweep(config, &mut janus, memory, stats).await;
    janus.close().await;
    result.map_err(|e| e.to_string())
}

/// A plugin's handle and admin key for the round.
struct Attached {
    plugin: RoomPlugin,
    handle: u64,
    admin_key: String,
}

async fn sweep(
    config: &SentinelConfig,
    janus: &mut JanusSession,
    memory: &mut Memory,
    stats: &SweeperStats,
) -> Result<(), JanusError> {
    let s = &config.sweeper;
    let mut attached = Vec::new();
    let mut seen = Vec::new();
    for (plugin, on, admin_key) in [
        (RoomPlugin::VideoRoom, s.videoroom, &s.videoroom_admin_key),
        (
            RoomPlugin::AudioBridge,
            s.audiobridge,
            &s.audiobridge_admin_key,
        ),
    ] {
        if !on {
            continue;
        }
        let handle = match janus.attach(plugin.package()).await {
            Ok(handle) => handle,
            // Not loaded on this Janus: no room of it to sweep.
            Err(JanusError::NoSuchPlugin) => continue,
            Err(e) => return Err(e),
        };
        let one = Attached {
            plugin,
            handle,
            admin_key: admin_key.clone(),
        };
        seen.extend(survey(janus, &one, &s.mark).await?);
        attached.push(one);
    }
    let now = Instant::now();
    memory.rooms.observe(now, &seen);
    let due = memory.rooms.due(now, s.idle_for());
    if due.is_empty() {
        return Ok(());
    }
    let client =
        crate::janus_ws::client(std::time::Duration::from_millis(config.report.timeout_ms));
    let targets = config.report.resolved_targets();
    for one in &attached {
        let mine: Vec<u64> = due
            .iter()
            .filter(|(p, _)| *p == one.plugin)
            .map(|(_, id)| *id)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let owned = ask_owners(config, memory, stats, &client, &targets, one.plugin).await;
        for id in mine {
            let key = (one.plugin, id);
            let owners = match &owned {
                None => Owners::Unknown,
                Some(owned) if owned.contains(&id) => Owners::Owned,
                Some(_) => Owners::Nobody,
            };
            let idle_since = memory.rooms.idle_since(key);
            let protected = memory.rooms.is_protected(key);
            if verdict(idle_since, now, s.idle_for(), protected, owners) == Verdict::Destroy {
                let idle_for = idle_since.map(|t| now.saturating_duration_since(t));
                destroy(janus, one, key, idle_for, memory, stats, &s.room_secret).await?;
            }
        }
    }
    Ok(())
}

/// The marked rooms of a plugin and whether anyone is in each.
async fn survey(
    janus: &mut JanusSession,
    one: &Attached,
    mark: &str,
) -> Result<Vec<(RoomKey, Occupancy)>, JanusError> {
    let list = janus
        .message(one.handle, body(json!({"request": "list"}), &one.admin_key))
        .await?;
    let Some(entries) = list.get("list").and_then(Value::as_array) else {
        return Err(JanusError::Failed(format!(
            "{} list: {}",
            one.plugin.name(),
            list.get("error")
                .and_then(Value::as_str)
                .unwrap_or("no list")
        )));
    };
    let mut seen = Vec::new();
    for id in marked_rooms(entries, mark) {
        if let Some(occupancy) = occupancy_of(janus, one, id).await? {
            seen.push(((one.plugin, id), occupancy));
        }
    }
    Ok(seen)
}

/// A room's occupancy; None: the room is gone (or unreadable: not swept this round).
async fn occupancy_of(
    janus: &mut JanusSession,
    one: &Attached,
    id: u64,
) -> Result<Option<Occupancy>, JanusError> {
    let request = json!({"request": "listparticipants", "room": id});
    let answer = janus.message(one.handle, request).await?;
    Ok(answer
        .get("participants")
        .and_then(Value::as_array)
        .map(|list| occupancy(one.plugin, list)))
}

/// The rooms of `plugin` the proxies have here; None when one of them could not be asked.
async fn ask_owners(
    config: &SentinelConfig,
    memory: &mut Memory,
    stats: &SweeperStats,
    client: &awc::Client,
    targets: &[ResolvedTarget],
    plugin: RoomPlugin,
) -> Option<std::collections::BTreeSet<u64>> {
    let server = &config.general.server_name;
    match owners::owned_by_any(client, targets, plugin, server).await {
        Ok(owned) => {
            if memory.owners_failing {
                log::info!("sweeper: every proxy answers again");
            }
            memory.owners_failing = false;
            Some(owned)
        }
        Err(why) => {
            stats.owner_checks_failed.fetch_add(1, Ordering::Relaxed);
            if !memory.owners_failing {
                log::warn!(
                    "sweeper: idle {} rooms kept: a proxy did not say which it has ({why})",
                    plugin.name()
                );
            } else {
                log::debug!("sweeper: a proxy did not answer: {why}");
            }
            memory.owners_failing = true;
            None
        }
    }
}

/// Destroys an orphan room, unless someone joined it meanwhile.
async fn destroy(
    janus: &mut JanusSession,
    one: &Attached,
    key: RoomKey,
    idle_for: Option<std::time::Duration>,
    memory: &mut Memory,
    stats: &SweeperStats,
    room_secret: &str,
) -> Result<(), JanusError> {
    let (plugin, id) = key;
    // The proxies were asked after the survey: look once more, just before.
    match occupancy_of(janus, one, id).await? {
        None => {
            memory.rooms.forget(key);
            return Ok(());
        }
        Some(Occupancy::Occupied) => {
            // Someone joined: idle from zero again.
            memory.rooms.forget(key);
            return Ok(());
        }
        Some(Occupancy::Empty) => {}
    }
    let mut request = json!({"request": "destroy", "room": id});
    if !room_secret.is_empty() {
        request["secret"] = Value::from(room_secret);
    }
    let answer = janus.message(one.handle, request).await?;
    match destroy_outcome(plugin, &answer) {
        DestroyOutcome::Destroyed => {
            memory.rooms.forget(key);
            stats.swept(plugin).fetch_add(1, Ordering::Relaxed);
            log::info!(
                "sweeper: destroyed {} room {id}: marked, nobody in it for {:.0} s, no proxy has it",
                plugin.name(),
                idle_for.map_or(0.0, |d| d.as_secs_f64())
            );
        }
        DestroyOutcome::Gone => memory.rooms.forget(key),
        DestroyOutcome::NeedsSecret => {
            if memory.rooms.protect(key) {
                log::warn!(
                    "sweeper: {} room {id} is an orphan but has a secret other than \
                     sweeper.room_secret: not destroyed (destroy it with its secret)",
                    plugin.name()
                );
            }
        }
        DestroyOutcome::Failed(why) => {
            log::warn!(
                "sweeper: {} room {id}: destroy failed: {why}",
                plugin.name()
            );
        }
    }
    Ok(())
}
