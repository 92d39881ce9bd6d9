//! The proxy's audiobridge plugin against real Janus 1.1.2 servers: the whole API compared
//! frame by frame with a Janus.
//!
//! A scripted session covering every request of the AudioBridge API (create, edit, exists,
//! allowed, list, join with an offer, configure, mute/unmute, listparticipants, kick,
//! kick_all, resetdecoder, rtp_forward / listforwarders / stop_rtp_forward, enable_recording,
//! enable_mjrs, play_file / is_playing / stop_file, changeroom, leave, hangup, destroy) and its
//! error codes runs against one Janus directly and through the proxy in front of two Janus
//! servers; what each client receives, ids and SDPs normalised, must be the same step by step.
//!
//! Where rooms are placed and what a lost backend does: `audiobridge_rooms.rs`.

use actors_tests::audiobridge_client::{offer, room_ids, user, STEP_LIMIT};
use actors_tests::init_logging;
use actors_tests::plugin_script::{cluster_with, collect_step, compare, wait_handles, StepFrames};
use actors_tests::scenario::Peer as User;
use serde_json::{json, Value};

#[derive(Clone)]
enum Req {
    Msg(Value, bool),
    /// A Janus API `hangup` on the handle.
    CoreHangup,
}

#[derive(Clone)]
struct Step {
    name: &'static str,
    who: usize,
    req: Req,
    expect: [usize; 3],
    own_only: bool,
}

/// `plugins.backend_room_secret` of the cluster (a wrong secret for a Janus alone).
const BACKEND_SECRET: &str = "the-proxy's";

fn step(name: &'static str, who: usize, body: Value, expect: [usize; 3]) -> Step {
    Step {
        name,
        who,
        req: Req::Msg(body, false),
        expect,
        own_only: false,
    }
}

fn step_offer(name: &'static str, who: usize, body: Value, expect: [usize; 3]) -> Step {
    Step {
        name,
        who,
        req: Req::Msg(body, true),
        expect,
        own_only: false,
    }
}

fn own(mut s: Step) -> Step {
    s.own_only = true;
    s
}

/// Ids made up for one run: rooms and participants, replaced back when comparing.
struct Names {
    pairs: Vec<(u64, String)>,
}

impl Names {
    fn new(rooms: &[u64], users: &[User]) -> Self {
        let mut pairs = Vec::new();
        for (i, r) in rooms.iter().enumerate() {
            pairs.push((*r, format!("<room{i}>")));
        }
        for (i, u) in users.iter().enumerate() {
            pairs.push((u.session, format!("<session{i}>")));
            pairs.push((u.handle, format!("<handle{i}>")));
        }
        pairs.sort_by_key(|(id, _)| std::cmp::Reverse(id.to_string().len()));
        Names { pairs }
    }
}

fn normalise(frame: &Value, names: &Names) -> String {
    let mut frame = frame.clone();
    if let Some(sdp) = frame.pointer_mut("/jsep/sdp") {
        *sdp = json!("<sdp>");
    }
    let data = frame.pointer_mut("/plugindata/data");
    if let Some(Value::Object(data)) = data {
        // Random ids Janus makes.
        for key in ["stream_id", "file_id"] {
            if data.get(key).is_some_and(Value::is_number) {
                data.insert(key.into(), json!(format!("<{key}>")));
            }
        }
        if let Some(Value::Array(fwds)) = data.get_mut("rtp_forwarders") {
            for f in fwds.iter_mut() {
                if let Some(Value::Object(f)) = Some(f) {
                    f.insert("stream_id".into(), json!("<stream_id>"));
                    f.insert("ssrc".into(), json!("<ssrc>"));
                }
            }
        }
        // Hash-table order in Janus.
        for key in ["list", "participants"] {
            if let Some(Value::Array(list)) = data.get_mut(key) {
                list.sort_by_key(|v| v.to_string());
            }
        }
    }
    let mut text = frame.to_string();
    for (id, name) in &names.pairs {
        text = text.replace(&id.to_string(), name);
    }
    text
}

async fn run_steps(
    url: &str,
    users: &mut [User],
    names: &Names,
    steps: &[Step],
) -> anyhow::Result<Vec<StepFrames>> {
    let mut results = Vec::new();
    let offer = offer();
    for (n, st) in steps.iter().enumerate() {
        let transaction = format!("s{n}");
        let u = &mut users[st.who];
        let frame = match &st.req {
            Req::Msg(body, with_offer) => {
                let mut m = json!({"janus": "message", "session_id": u.session,
                    "handle_id": u.handle, "transaction": transaction, "body": body});
                if *with_offer {
                    m["jsep"] = json!({"type": "offer", "sdp": offer});
                }
                m
            }
            Req::CoreHangup => json!({"janus": "hangup", "session_id": u.session,
                "handle_id": u.handle, "transaction": transaction}),
        };
        u.client.send(&frame).await?;
        let only = st.own_only.then_some(transaction.as_str());
        let got = collect_step(url, users, st.name, st.expect, only, STEP_LIMIT, |f| {
            normalise(f, names)
        })
        .await?;
        results.push((st.name.to_owned(), got));
    }
    Ok(results)
}

fn session_script(rooms: [u64; 3]) -> Vec<Step> {
    let [r0, r1, r2] = rooms;
    vec![
        step("no request", 0, json!({}), [1, 0, 0]),
        step("request not a string", 0, json!({"request": 5}), [1, 0, 0]),
        step("unknown request", 0, json!({"request": "foo"}), [1, 0, 0]),
        step(
            "create without room id type",
            0,
            json!({"request": "create", "room": "x"}),
            [1, 0, 0],
        ),
        step(
            "create bad sampling rate",
            0,
            json!({"request": "create", "room": r2, "sampling_rate": 12345}),
            [1, 0, 0],
        ),
        step(
            "create bad description type",
            0,
            json!({"request": "create", "room": r2, "description": 5}),
            [1, 0, 0],
        ),
        step(
            "create",
            0,
            json!({"request": "create", "room": r0, "description": "zero",
                "secret": "s3cret", "pin": "1234", "sampling_rate": 16000,
                "audiolevel_event": true, "permanent": false}),
            [1, 0, 0],
        ),
        step(
            "create again: 486",
            1,
            json!({"request": "create", "room": r0}),
            [0, 1, 0],
        ),
        step(
            "create second room",
            1,
            json!({"request": "create", "room": r1, "description": "one", "is_private": false}),
            [0, 1, 0],
        ),
        step(
            "exists",
            2,
            json!({"request": "exists", "room": r0}),
            [0, 0, 1],
        ),
        step(
            "exists not",
            2,
            json!({"request": "exists", "room": r2}),
            [0, 0, 1],
        ),
        step(
            "exists missing room",
            2,
            json!({"request": "exists"}),
            [0, 0, 1],
        ),
        step("list", 2, json!({"request": "list"}), [0, 0, 1]),
        step(
            "edit wrong secret",
            0,
            json!({"request": "edit", "room": r0, "secret": "x", "new_description": "z"}),
            [1, 0, 0],
        ),
        step(
            "edit with the proxy's backend secret",
            0,
            json!({"request": "edit", "room": r0, "secret": BACKEND_SECRET,
                "new_description": "z"}),
            [1, 0, 0],
        ),
        step(
            "edit without a secret",
            0,
            json!({"request": "edit", "room": r0, "new_description": "z"}),
            [1, 0, 0],
        ),
        step(
            "edit",
            0,
            json!({"request": "edit", "room": r0, "secret": "s3cret", "new_description": "zero!"}),
            [1, 0, 0],
        ),
        step(
            "edit: a new secret",
            0,
            json!({"request": "edit", "room": r0, "secret": "s3cret", "new_secret": "n3w"}),
            [1, 0, 0],
        ),
        step(
            "edit with the old secret",
            0,
            json!({"request": "edit", "room": r0, "secret": "s3cret", "new_description": "z"}),
            [1, 0, 0],
        ),
        step(
            "edit with the new secret: the old one back",
            0,
            json!({"request": "edit", "room": r0, "secret": "n3w", "new_secret": "s3cret"}),
            [1, 0, 0],
        ),
        step(
            "edit no such room",
            0,
            json!({"request": "edit", "room": r2, "secret": "s3cret"}),
            [1, 0, 0],
        ),
        step(
            "allowed enable",
            0,
            json!({"request": "allowed", "room": r0, "secret": "s3cret", "action": "add",
                "allowed": ["tok-a", "tok-b"]}),
            [1, 0, 0],
        ),
        step(
            "allowed bad action",
            0,
            json!({"request": "allowed", "room": r0, "secret": "s3cret", "action": "x"}),
            [1, 0, 0],
        ),
        step(
            "configure before join",
            0,
            json!({"request": "configure", "muted": true}),
            [2, 0, 0],
        ),
        step(
            "leave before join",
            0,
            json!({"request": "leave"}),
            [2, 0, 0],
        ),
        step(
            "join no such room",
            0,
            json!({"request": "join", "room": r2}),
            [2, 0, 0],
        ),
        step(
            "join wrong pin",
            0,
            json!({"request": "join", "room": r0, "pin": "0000"}),
            [2, 0, 0],
        ),
        step_offer(
            "alice joins",
            0,
            json!({"request": "join", "room": r0, "pin": "1234", "id": r0 + 100,
                "display": "alice"}),
            [2, 0, 0],
        ),
        step_offer(
            "bob joins",
            1,
            json!({"request": "join", "room": r0, "pin": "1234", "id": r0 + 200,
                "display": "bob", "muted": true}),
            [1, 2, 0],
        ),
        step(
            "join again",
            1,
            json!({"request": "join", "room": r0, "pin": "1234"}),
            [0, 2, 0],
        ),
        step(
            "id taken",
            2,
            json!({"request": "join", "room": r0, "pin": "1234", "id": r0 + 100}),
            [0, 0, 2],
        ),
        step(
            "listparticipants",
            2,
            json!({"request": "listparticipants", "room": r0}),
            [0, 0, 1],
        ),
        step(
            "alice configures",
            0,
            json!({"request": "configure", "muted": true, "display": "Alice"}),
            [2, 1, 0],
        ),
        step(
            "unmute bob wrong secret",
            2,
            json!({"request": "unmute", "room": r0, "id": r0 + 200, "secret": "no"}),
            [0, 0, 1],
        ),
        step(
            "unmute bob",
            2,
            json!({"request": "unmute", "room": r0, "id": r0 + 200, "secret": "s3cret"}),
            [1, 1, 1],
        ),
        step(
            "mute no such user",
            2,
            json!({"request": "mute", "room": r0, "id": 1, "secret": "s3cret"}),
            [0, 0, 1],
        ),
        step(
            "mute_room",
            2,
            json!({"request": "mute_room", "room": r0, "secret": "s3cret"}),
            [1, 1, 1],
        ),
        step(
            "unmute_room",
            2,
            json!({"request": "unmute_room", "room": r0, "secret": "s3cret"}),
            [1, 1, 1],
        ),
        step(
            "resetdecoder",
            0,
            json!({"request": "resetdecoder"}),
            [1, 0, 0],
        ),
        step(
            "rtp_forward",
            2,
            json!({"request": "rtp_forward", "room": r0, "secret": "s3cret",
                "host": "127.0.0.1", "port": 5002}),
            [0, 0, 1],
        ),
        step(
            "listforwarders",
            2,
            json!({"request": "listforwarders", "room": r0, "secret": "s3cret"}),
            [0, 0, 1],
        ),
        step(
            "stop_rtp_forward no such stream",
            2,
            json!({"request": "stop_rtp_forward", "room": r0, "secret": "s3cret",
                "stream_id": 1}),
            [0, 0, 1],
        ),
        step(
            "rtp_forward missing port",
            2,
            json!({"request": "rtp_forward", "room": r0, "secret": "s3cret",
                "host": "127.0.0.1"}),
            [0, 0, 1],
        ),
        step(
            "enable_recording off",
            2,
            json!({"request": "enable_recording", "room": r0, "secret": "s3cret",
                "record": false}),
            [0, 0, 1],
        ),
        step(
            "enable_mjrs off",
            2,
            json!({"request": "enable_mjrs", "room": r0, "secret": "s3cret", "mjrs": false}),
            [0, 0, 1],
        ),
        step(
            "play_file missing file",
            2,
            json!({"request": "play_file", "room": r0, "secret": "s3cret",
                "filename": "/nonexistent/x.opus"}),
            [0, 0, 1],
        ),
        step(
            "is_playing",
            2,
            json!({"request": "is_playing", "room": r0, "secret": "s3cret", "file_id": "f1"}),
            [0, 0, 1],
        ),
        step(
            "stop_file",
            2,
            json!({"request": "stop_file", "room": r0, "secret": "s3cret", "file_id": "f1"}),
            [0, 0, 1],
        ),
        step(
            "kick wrong secret",
            2,
            json!({"request": "kick", "room": r0, "id": r0 + 200, "secret": "no"}),
            [0, 0, 1],
        ),
        step(
            "listparticipants no such room",
            2,
            json!({"request": "listparticipants", "room": r2}),
            [0, 0, 1],
        ),
        step(
            "bob changes room",
            1,
            json!({"request": "changeroom", "room": r1, "id": r1 + 200, "display": "bob"}),
            [1, 2, 0],
        ),
        step(
            "bob back",
            1,
            json!({"request": "changeroom", "room": r0, "pin": "1234", "id": r0 + 200,
                "display": "bob"}),
            [1, 2, 0],
        ),
        own(step(
            "kick bob",
            2,
            json!({"request": "kick", "room": r0, "id": r0 + 200, "secret": "s3cret"}),
            [0, 0, 1],
        )),
        own(step(
            "alice leaves",
            0,
            json!({"request": "leave"}),
            [2, 0, 0],
        )),
        own(step_offer(
            "carol joins room one",
            2,
            json!({"request": "join", "room": r1, "id": r1 + 300, "display": "carol"}),
            [0, 0, 2],
        )),
        own(step(
            "kick_all",
            0,
            json!({"request": "kick_all", "room": r1, "secret": "x"}),
            [1, 0, 0],
        )),
        own(step(
            "destroy wrong secret",
            0,
            json!({"request": "destroy", "room": r0, "secret": "x"}),
            [1, 0, 0],
        )),
        own(step(
            "destroy",
            0,
            json!({"request": "destroy", "room": r0, "secret": "s3cret"}),
            [1, 0, 0],
        )),
        own(step(
            "exists after destroy",
            0,
            json!({"request": "exists", "room": r0}),
            [1, 0, 0],
        )),
        own(Step {
            name: "core hangup",
            who: 2,
            req: Req::CoreHangup,
            expect: [0, 0, 1],
            own_only: true,
        }),
        own(step(
            "destroy room one",
            1,
            json!({"request": "destroy", "room": r1}),
            [0, 1, 0],
        )),
    ]
}

async fn run_session(url: &str, rooms: [u64; 3]) -> anyhow::Result<Vec<StepFrames>> {
    let mut users = vec![user(url).await?, user(url).await?, user(url).await?];
    let names = Names::new(&rooms, &users);
    let out = run_steps(url, &mut users, &names, &session_script(rooms)).await;
    for u in users {
        let _ = u.client.close().await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_api_same_as_janus_through_a_two_server_cluster() -> anyhow::Result<()> {
    init_logging();
    // The proxy checks the clients' secrets; the backend rooms have its own.
    let (a, _b, proxy) = cluster_with(|config| {
        config.plugins.backend_room_secret = BACKEND_SECRET.into();
    })
    .await?;
    let rooms = room_ids();
    let direct = run_session(&a.ws_url(), rooms).await?;
    let proxied = run_session(&proxy.ws_url(), rooms).await?;
    compare(&direct, &proxied)?;
    // Every backend handle is gone with the users.
    wait_handles(&proxy, STEP_LIMIT, |h| h.values().all(|n| *n == 0)).await?;
    Ok(())
}
