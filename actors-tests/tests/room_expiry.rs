//! Rooms that clients created and that stay empty go (`plugins.room_auto_destroy_s`, here 1 s),
//! against real Janus servers (and a real Redis for two proxies):
//!
//! * One proxy: a client's videoroom and audiobridge rooms, joined then left, and one never
//!   joined, are gone after the timeout — `exists` false, missing from `list`, and gone from
//!   the backend Janus (asked directly). Configured, permanent and admin-API rooms stay, and so
//!   do rooms whose participant stays longer than the timeout. A join of an expired room gets
//!   Janus's answer for a missing room. The metric counts them.
//! * Two proxies on one Redis: a room created on one, with its participant on the other, stays
//!   while the participant stays; once it leaves, the room is gone from both proxies, from
//!   Redis and from the backend.
//!
//! Time passing is proven by events, not sleeps: a room created *after* a participant joined
//! another one, and never joined itself, expiring shows that the timeout has passed for both.

use std::time::{Duration, Instant};

use actors_tests::audiobridge_client::AUDIOBRIDGE;
use actors_tests::scenario::Peer as User;
use actors_tests::shared_rooms::{
    answer, cluster, exists, join_videoroom, shared_config, skip, store_is, user, wait_readyz, WAIT,
};
use actors_tests::videoroom_client::VIDEOROOM;
use actors_tests::{http, init_logging, proxy_config, JanusServer, ProxyUnderTest};
use anyhow::{bail, ensure, Context as _};
use janus_protocol::JsonMap;
use serde_json::{json, Value};

const TIMEOUT_S: f64 = 1.0;

fn object(v: Value) -> JsonMap {
    match v {
        Value::Object(m) => m,
        _ => JsonMap::new(),
    }
}

/// Creates room `room` of the plugin on `u` (with `extra` settings); fails unless created.
async fn create(u: &mut User, plugin: &str, room: u64, extra: Value) -> anyhow::Result<()> {
    let mut body = json!({"request": "create", "room": room});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let data = answer(u, body, false).await?;
    let key = if plugin == VIDEOROOM {
        "videoroom"
    } else {
        "audiobridge"
    };
    ensure!(data[key] == "created", "create {room}: {data}");
    Ok(())
}

async fn join_audiobridge(u: &mut User, room: u64) -> anyhow::Result<()> {
    let data = answer(u, json!({"request": "join", "room": room}), false).await?;
    ensure!(data["audiobridge"] == "joined", "join {room}: {data}");
    Ok(())
}

async fn leave(u: &mut User) -> anyhow::Result<()> {
    let data = answer(u, json!({"request": "leave"}), false).await?;
    ensure!(
        data.get("error_code").is_none(),
        "leave answered an error: {data}"
    );
    Ok(())
}

/// The room ids `list` gives.
async fn listed(u: &mut User) -> anyhow::Result<Vec<u64>> {
    let data = answer(u, json!({"request": "list"}), false).await?;
    Ok(data["list"]
        .as_array()
        .with_context(|| format!("list: {data}"))?
        .iter()
        .filter_map(|r| r["room"].as_u64())
        .collect())
}

/// Polls `exists` of every room in `rooms` on `u` until each is false.
async fn wait_gone(u: &mut User, rooms: &[u64]) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    for room in rooms {
        while exists(u, *room).await? {
            if Instant::now() > deadline {
                bail!("room {room} never expired");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Does the Janus at `url` have `room` (asked directly, not through a proxy)?
async fn on_backend(url: &str, plugin: &str, room: u64) -> anyhow::Result<bool> {
    let mut direct = user(url, plugin).await?;
    let there = exists(&mut direct, room).await?;
    direct.client.close().await?;
    Ok(there)
}

/// The value of `janus_proxy_rooms_expired_total{plugin=…}` (0 when absent).
async fn expired_metric(proxy: &ProxyUnderTest, plugin: &str) -> anyhow::Result<u64> {
    let body = http::get(proxy.admin_addr, "/metrics").await?.body;
    let prefix = format!("janus_proxy_rooms_expired_total{{plugin=\"{plugin}\"}} ");
    Ok(body
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_client_rooms_expire_and_the_others_stay() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let mut config = proxy_config(&[("j1", janus.ws_url())]);
    config.plugins.room_auto_destroy_s = TIMEOUT_S;
    config.plugins.videoroom_rooms = vec![object(json!({"room": 9001, "description": "conf"}))];
    config.plugins.audiobridge_rooms = vec![object(json!({"room": 9101}))];
    let proxy = ProxyUnderTest::start(config).await?;
    let url = proxy.ws_url();

    // An admin-API room.
    let response = proxy
        .admin_post("/plugins/videoroom/rooms", &json!({"room": 9006}))
        .await?;
    ensure!(response.status == 200, "admin create: {}", response.body);

    let mut vr = user(&url, VIDEOROOM).await?;
    let mut ab = user(&url, AUDIOBRIDGE).await?;
    // Each client room is joined right after its creation (a room never joined for the
    // timeout goes, as 9004 and 9105 below show).
    // Participants that stay: 9005 and 9104.
    let mut stays = user(&url, VIDEOROOM).await?;
    create(&mut vr, VIDEOROOM, 9005, json!({"secret": "s"})).await?;
    join_videoroom(&mut stays, 9005, 55, "stays").await?;
    let mut stays_ab = user(&url, AUDIOBRIDGE).await?;
    create(&mut ab, AUDIOBRIDGE, 9104, json!({})).await?;
    join_audiobridge(&mut stays_ab, 9104).await?;
    create(&mut vr, VIDEOROOM, 9003, json!({"permanent": true})).await?;
    create(&mut ab, AUDIOBRIDGE, 9103, json!({"permanent": true})).await?;

    // Joined then left: 9002 and 9102, with a secret (which their backend destroy needs);
    // the kept rooms 9001, 9003, 9101, 9103 too, so that they live on the backend. A
    // videoroom handle that left cannot join again: one handle each.
    for (room, client) in [(9002, true), (9001, false), (9003, false)] {
        let mut passer = user(&url, VIDEOROOM).await?;
        if client {
            create(&mut vr, VIDEOROOM, room, json!({"secret": "s"})).await?;
        }
        join_videoroom(&mut passer, room, room, "passer").await?;
        leave(&mut passer).await?;
        passer.client.close().await?;
    }
    for (room, client) in [(9102, true), (9101, false), (9103, false)] {
        let mut passer = user(&url, AUDIOBRIDGE).await?;
        if client {
            create(&mut ab, AUDIOBRIDGE, room, json!({"secret": "s"})).await?;
        }
        join_audiobridge(&mut passer, room).await?;
        leave(&mut passer).await?;
        passer.client.close().await?;
    }

    // Never joined, created after the stayers joined: once they are gone, the stayers have
    // been in their rooms for longer than the timeout.
    create(&mut vr, VIDEOROOM, 9004, json!({})).await?;
    create(&mut ab, AUDIOBRIDGE, 9105, json!({})).await?;

    wait_gone(&mut vr, &[9002, 9004]).await?;
    wait_gone(&mut ab, &[9102, 9105]).await?;

    let vr_list = listed(&mut vr).await?;
    for room in [9001, 9003, 9005, 9006] {
        ensure!(exists(&mut vr, room).await?, "videoroom {room} kept");
        ensure!(
            vr_list.contains(&room),
            "videoroom {room} listed: {vr_list:?}"
        );
    }
    ensure!(
        !vr_list.contains(&9002) && !vr_list.contains(&9004),
        "{vr_list:?}"
    );
    let ab_list = listed(&mut ab).await?;
    for room in [9101, 9103, 9104] {
        ensure!(exists(&mut ab, room).await?, "audiobridge {room} kept");
        ensure!(
            ab_list.contains(&room),
            "audiobridge {room} listed: {ab_list:?}"
        );
    }
    ensure!(
        !ab_list.contains(&9102) && !ab_list.contains(&9105),
        "{ab_list:?}"
    );

    // The backend: the expired rooms are gone there (with their secret), the others not.
    let j = janus.ws_url();
    let deadline = Instant::now() + WAIT;
    while on_backend(&j, VIDEOROOM, 9002).await? || on_backend(&j, AUDIOBRIDGE, 9102).await? {
        ensure!(
            Instant::now() < deadline,
            "expired rooms left on the backend"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for room in [9001, 9003, 9005] {
        ensure!(
            on_backend(&j, VIDEOROOM, room).await?,
            "{room} on the backend"
        );
    }
    for room in [9101, 9103, 9104] {
        ensure!(
            on_backend(&j, AUDIOBRIDGE, room).await?,
            "{room} on the backend"
        );
    }

    // A join of an expired room: Janus's answer for a missing room.
    let data = answer(
        &mut vr,
        json!({"request": "join", "room": 9002, "ptype": "publisher"}),
        false,
    )
    .await?;
    ensure!(data["error_code"] == 426, "join of an expired room: {data}");
    let data = answer(&mut ab, json!({"request": "join", "room": 9102}), false).await?;
    ensure!(
        data["error_code"] == 485,
        "join of an expired audiobridge room: {data}"
    );

    ensure!(expired_metric(&proxy, "videoroom").await? == 2);
    ensure!(expired_metric(&proxy, "audiobridge").await? == 2);

    // The stayers leave: their rooms go too.
    leave(&mut stays).await?;
    leave(&mut stays_ab).await?;
    wait_gone(&mut vr, &[9005]).await?;
    wait_gone(&mut ab, &[9104]).await?;
    ensure!(exists(&mut vr, 9003).await? && exists(&mut vr, 9006).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_expire_a_room_once_its_last_participant_anywhere_left() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let c = cluster().await?;
    let config = |id: &str| {
        let mut config = shared_config(&c.redis, &c.janus, id);
        config.plugins.room_auto_destroy_s = TIMEOUT_S;
        config
    };
    let a = ProxyUnderTest::start(config("a")).await?;
    let b = ProxyUnderTest::start(config("b")).await?;
    for admin in [a.admin_addr, b.admin_addr] {
        wait_readyz(admin, "two live proxies", store_is("ok", 2)).await?;
    }
    let (a_url, b_url) = (a.ws_url(), b.ws_url());

    let mut on_a = user(&a_url, VIDEOROOM).await?;
    let mut ab_on_a = user(&a_url, AUDIOBRIDGE).await?;
    create(&mut on_a, VIDEOROOM, 9201, json!({})).await?;
    create(&mut ab_on_a, AUDIOBRIDGE, 9301, json!({})).await?;
    let vr_key = "januscloud:videoroom_rooms:9201";
    let ab_key = "januscloud:audiobridge_rooms:9301";
    ensure!(c.redis.cli(&["HGET", vr_key, "origin"])?.trim() == "client");

    // Their participants are on B.
    let mut on_b = user(&b_url, VIDEOROOM).await?;
    join_videoroom(&mut on_b, 9201, 21, "on-b").await?;
    let mut ab_on_b = user(&b_url, AUDIOBRIDGE).await?;
    join_audiobridge(&mut ab_on_b, 9301).await?;

    // A control room created on A after the joins expires: the timeout has passed for the
    // joined rooms too, which both proxies keep.
    create(&mut on_a, VIDEOROOM, 9202, json!({})).await?;
    wait_gone(&mut on_a, &[9202]).await?;
    let mut ab_on_b2 = user(&b_url, AUDIOBRIDGE).await?;
    for u in [&mut on_a, &mut on_b] {
        ensure!(
            exists(u, 9201).await?,
            "9201 kept while its participant stays"
        );
    }
    for u in [&mut ab_on_a, &mut ab_on_b2] {
        ensure!(
            exists(u, 9301).await?,
            "9301 kept while its participant stays"
        );
    }
    ensure!(c.redis.cli(&["EXISTS", vr_key])?.trim() == "1");
    ensure!(c.redis.cli(&["EXISTS", ab_key])?.trim() == "1");

    // The participants leave: the rooms go everywhere.
    leave(&mut on_b).await?;
    leave(&mut ab_on_b).await?;
    wait_gone(&mut on_a, &[9201]).await?;
    wait_gone(&mut on_b, &[9201]).await?;
    wait_gone(&mut ab_on_a, &[9301]).await?;
    wait_gone(&mut ab_on_b2, &[9301]).await?;
    for u in [&mut on_a, &mut on_b] {
        let list = listed(u).await?;
        ensure!(!list.contains(&9201), "{list:?}");
    }
    for u in [&mut ab_on_a, &mut ab_on_b2] {
        let list = listed(u).await?;
        ensure!(!list.contains(&9301), "{list:?}");
    }
    for key in [vr_key, ab_key] {
        ensure!(
            c.redis.cli(&["EXISTS", key])?.trim() == "0",
            "{key} in Redis"
        );
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let mut left = Vec::new();
        for (name, url) in &c.janus {
            if on_backend(url, VIDEOROOM, 9201).await? {
                left.push(format!("videoroom on {name}"));
            }
            if on_backend(url, AUDIOBRIDGE, 9301).await? {
                left.push(format!("audiobridge on {name}"));
            }
        }
        if left.is_empty() {
            break;
        }
        ensure!(Instant::now() < deadline, "left on the backends: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Exactly one proxy expired each room.
    let total = |plugin: &'static str| {
        let (a, b) = (&a, &b);
        async move {
            Ok::<u64, anyhow::Error>(
                expired_metric(a, plugin).await? + expired_metric(b, plugin).await?,
            )
        }
    };
    ensure!(
        total("videoroom").await? == 2,
        "9201 and 9202 expired once each"
    );
    ensure!(total("audiobridge").await? == 1);
    Ok(())
}
