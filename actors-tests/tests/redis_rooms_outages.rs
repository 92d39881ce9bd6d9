//! Outages under rooms shared by two proxies through Redis (`[store] url`): a real Redis, two
//! real Janus servers (`j1`, `j2`, configured on both proxies), both proxies in-process.
//!
//! * Redis stopped: both proxies keep serving their rooms; restarted (empty): they write them
//!   again and see each other's.
//! * A room's Janus dies: both proxies' participants are told, the placement is cleared once,
//!   and the next join places the room on the surviving server for both proxies.
//!
//! Rooms shared by the two proxies, and kill -9 of one: `redis_rooms.rs`.

use std::time::{Duration, Instant};

use actors_tests::redis_server::RedisServer;
use actors_tests::shared_rooms::{
    answer, cluster, event, exists, join_videoroom, participant_ids, present, redis_field,
    shared_config, skip, store_is, user, wait_exists, wait_readyz, WAIT,
};
use actors_tests::videoroom_client::VIDEOROOM;
use actors_tests::{init_logging, ProxyUnderTest};
use anyhow::ensure;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_proxies_serve_their_rooms_and_resync_when_it_returns() -> anyhow::Result<()>
{
    init_logging();
    if skip() {
        return Ok(());
    }
    let mut c = cluster().await?;
    let a = ProxyUnderTest::start(shared_config(&c.redis, &c.janus, "a")).await?;
    let b = ProxyUnderTest::start(shared_config(&c.redis, &c.janus, "b")).await?;
    for admin in [a.admin_addr, b.admin_addr] {
        wait_readyz(admin, "two live proxies", store_is("ok", 2)).await?;
    }
    let room = 9001;
    let mut alice = user(&a.ws_url(), VIDEOROOM).await?;
    let created = answer(
        &mut alice,
        json!({"request": "create", "room": room, "notify_joining": true}),
        false,
    )
    .await?;
    ensure!(created["videoroom"] == "created", "{created}");
    join_videoroom(&mut alice, room, 1, "alice").await?;
    let mut bob = user(&b.ws_url(), VIDEOROOM).await?;
    join_videoroom(&mut bob, room, 2, "bob").await?;
    event(&mut alice, "bob joining", |d| d["joining"]["id"] == 2).await?;
    let key = format!("januscloud:videoroom_rooms:{room}");
    let placed = redis_field(&c.redis, &key, "server")?;

    // Redis goes away: both proxies keep serving the room they know.
    let port = c.redis.port;
    c.redis.kill();
    for admin in [a.admin_addr, b.admin_addr] {
        wait_readyz(admin, "a degraded store", |b| {
            b["store"]["state"] == "degraded"
        })
        .await?;
    }
    let mut carol = user(&b.ws_url(), VIDEOROOM).await?;
    ensure!(exists(&mut carol, room).await?);
    join_videoroom(&mut carol, room, 3, "carol").await?;
    event(&mut alice, "carol joining", |d| d["joining"]["id"] == 3).await?;
    // A room created on A meanwhile is A's alone until Redis returns.
    let lonely = 9002;
    let created = answer(
        &mut alice,
        json!({"request": "create", "room": lonely, "description": "made without Redis",
            "notify_joining": true}),
        false,
    )
    .await?;
    ensure!(created["videoroom"] == "created", "{created}");
    let mut dave = user(&a.ws_url(), VIDEOROOM).await?;
    join_videoroom(&mut dave, lonely, 4, "dave").await?;
    ensure!(!exists(&mut carol, lonely).await?);

    // Redis returns, empty: the proxies write their rooms again and see each other's.
    c.redis = RedisServer::start_on(port).await?;
    for admin in [a.admin_addr, b.admin_addr] {
        wait_readyz(admin, "the store back", store_is("ok", 2)).await?;
    }
    wait_exists(&mut carol, lonely, true).await?;
    let deadline = Instant::now() + WAIT;
    while redis_field(&c.redis, &key, "server")? != placed
        || redis_field(
            &c.redis,
            &format!("januscloud:videoroom_rooms:{lonely}"),
            "server",
        )?
        .is_empty()
    {
        ensure!(Instant::now() < deadline, "placements not written again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both still in one room, and a newcomer on B joins it there.
    let mut erin = user(&b.ws_url(), VIDEOROOM).await?;
    join_videoroom(&mut erin, room, 5, "erin").await?;
    event(&mut alice, "erin joining", |d| d["joining"]["id"] == 5).await?;
    ensure!(participant_ids(&mut erin, room).await? == [1, 2, 3, 5]);
    let mut frank = user(&b.ws_url(), VIDEOROOM).await?;
    join_videoroom(&mut frank, lonely, 6, "frank").await?;
    event(&mut dave, "frank joining", |d| d["joining"]["id"] == 6).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_server_is_cleared_once_and_the_room_placed_again_for_both_proxies(
) -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let mut c = cluster().await?;
    let a = ProxyUnderTest::start(shared_config(&c.redis, &c.janus, "a")).await?;
    let b = ProxyUnderTest::start(shared_config(&c.redis, &c.janus, "b")).await?;
    for admin in [a.admin_addr, b.admin_addr] {
        wait_readyz(admin, "two live proxies", store_is("ok", 2)).await?;
    }
    let room = 9101;
    let key = format!("januscloud:videoroom_rooms:{room}");
    let mut alice = user(&a.ws_url(), VIDEOROOM).await?;
    let created = answer(
        &mut alice,
        json!({"request": "create", "room": room, "notify_joining": true}),
        false,
    )
    .await?;
    ensure!(created["videoroom"] == "created", "{created}");
    join_videoroom(&mut alice, room, 1, "alice").await?;
    let mut bob = user(&b.ws_url(), VIDEOROOM).await?;
    join_videoroom(&mut bob, room, 2, "bob").await?;
    let placed = redis_field(&c.redis, &key, "server")?;
    let survivor = if placed == "j1" { "j2" } else { "j1" };

    // The room's Janus dies: both proxies' participants are told, the placement goes.
    if placed == "j1" {
        c.j1.kill();
    } else {
        c.j2.kill();
    }
    for (u, name) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        event(u, &format!("{name} leaving"), |d| {
            d["leaving"] == "ok" && d["reason"] == "Backend server unavailable"
        })
        .await?;
    }
    let deadline = Instant::now() + WAIT;
    while !redis_field(&c.redis, &key, "server")?.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "placement on {placed} never cleared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The next join (on B) places it on the survivor, and A's next join follows.
    join_videoroom(&mut bob, room, 2, "bob").await?;
    ensure!(redis_field(&c.redis, &key, "server")? == survivor);
    let joined = join_videoroom(&mut alice, room, 1, "alice").await?;
    ensure!(present(&joined) == [2], "alice does not see bob: {joined}");
    event(&mut bob, "alice joining", |d| d["joining"]["id"] == 1).await?;
    Ok(())
}
