//! What the coordinators of one room on two proxies say to each other on the bus (topic
//! `videoroom`), as an enum with its JSON form (`{"t": <kind>, "room": <id>, …}`, unchanged
//! from what proxies of the previous version send): parsed once on arrival, so that bad input
//! is one clear log line and the actor matches on variants.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::{Departure, RoomNotice};

/// What this proxy's own handles told the coordinator, whatever its role: what a new owner
/// is told again (`resync`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shadow {
    /// Participant handles: server, publisher id, display name.
    pub members: BTreeMap<u64, (String, u64, Option<String>)>,
    /// Active publishers: server, display name, streams.
    pub active: BTreeMap<u64, (String, Option<String>, Value)>,
    pub servers: BTreeSet<String>,
}

impl Shadow {
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.active.is_empty()
    }

    fn to_json(&self, room: u64) -> Value {
        let members: Vec<Value> = self
            .members
            .iter()
            .map(|(h, (server, id, display))| {
                json!({"handle": h, "server": server, "id": id, "display": display})
            })
            .collect();
        let active: Vec<Value> = self
            .active
            .iter()
            .map(|(id, (server, display, streams))| {
                json!({"id": id, "server": server, "display": display, "streams": streams})
            })
            .collect();
        json!({"t": "resync", "room": room, "members": members, "active": active,
            "servers": self.servers})
    }

    /// A follower's report (entries it cannot read are passed over).
    fn from_json(body: &Value) -> Shadow {
        let list = |key: &str| {
            body.get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let mut shadow = Shadow::default();
        for server in list("servers") {
            if let Some(server) = server.as_str() {
                shadow.servers.insert(server.to_owned());
            }
        }
        for m in list("members") {
            let handle = m.get("handle").and_then(Value::as_u64);
            let id = m.get("id").and_then(Value::as_u64);
            if let (Some(handle), Some(server), Some(id)) = (handle, text(&m, "server"), id) {
                let display = text(&m, "display");
                shadow.members.insert(handle, (server, id, display));
            }
        }
        for p in list("active") {
            let id = p.get("id").and_then(Value::as_u64);
            if let (Some(id), Some(server)) = (id, text(&p, "server")) {
                let streams = p.get("streams").cloned().unwrap_or(Value::Null);
                shadow
                    .active
                    .insert(id, (server, text(&p, "display"), streams));
            }
        }
        shadow
    }
}

/// A message of one room's coordinators.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    // To the owner, from a follower:
    /// A participant joined (asked: the answer is `{"attendees": [...]}`).
    Joined {
        handle: u64,
        server: String,
        id: u64,
        display: Option<String>,
    },
    Left {
        handle: u64,
        how: Departure,
    },
    Active {
        server: String,
        id: u64,
        display: Option<String>,
        streams: Value,
    },
    Gone {
        id: u64,
    },
    ServerJoined(String),
    ServerLost(String),
    /// The room's participants over every server (asked: `{"participants": [...]}`).
    List,
    /// Everything the follower's handles said (it sees a new owner).
    Resync(Shadow),
    // To a follower, from the owner:
    /// For one of its handles.
    Notice {
        handle: u64,
        notice: RoomNotice,
    },
}

fn departure_name(how: Departure) -> &'static str {
    match how {
        Departure::Left => "left",
        Departure::Kicked => "kicked",
        Departure::RoomDestroyed => "destroyed",
    }
}

impl Wire {
    pub fn to_json(&self, room: u64) -> Value {
        match self {
            Wire::Joined {
                handle,
                server,
                id,
                display,
            } => json!({"t": "joined", "room": room, "handle": handle, "server": server,
                "id": id, "display": display}),
            Wire::Left { handle, how } => {
                json!({"t": "left", "room": room, "handle": handle, "how": departure_name(*how)})
            }
            Wire::Active {
                server,
                id,
                display,
                streams,
            } => json!({"t": "active", "room": room, "server": server, "id": id,
                "display": display, "streams": streams}),
            Wire::Gone { id } => json!({"t": "gone", "room": room, "id": id}),
            Wire::ServerJoined(server) => {
                json!({"t": "server_joined", "room": room, "server": server})
            }
            Wire::ServerLost(server) => json!({"t": "server_lost", "room": room, "server": server}),
            Wire::List => json!({"t": "list", "room": room}),
            Wire::Resync(shadow) => shadow.to_json(room),
            Wire::Notice { handle, notice } => json!({"t": "notice", "room": room,
                "handle": handle, "notice": notice.to_json()}),
        }
    }

    /// A message as it came over the bus; why not, for the log.
    pub fn parse(body: &Value) -> Result<Wire, String> {
        let kind = body.get("t").and_then(Value::as_str).unwrap_or("");
        let number = |key: &str| body.get(key).and_then(Value::as_u64);
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
        let malformed = || format!("malformed {kind:?}");
        let wire = match kind {
            "joined" => Wire::Joined {
                handle: number("handle").ok_or_else(malformed)?,
                server: text("server").ok_or_else(malformed)?,
                id: number("id").ok_or_else(malformed)?,
                display: text("display"),
            },
            "left" => Wire::Left {
                handle: number("handle").ok_or_else(malformed)?,
                how: match text("how").as_deref() {
                    Some("kicked") => Departure::Kicked,
                    Some("destroyed") => Departure::RoomDestroyed,
                    _ => Departure::Left,
                },
            },
            "active" => Wire::Active {
                server: text("server").ok_or_else(malformed)?,
                id: number("id").ok_or_else(malformed)?,
                display: text("display"),
                streams: body.get("streams").cloned().unwrap_or(Value::Null),
            },
            "gone" => Wire::Gone {
                id: number("id").ok_or_else(malformed)?,
            },
            "server_joined" => Wire::ServerJoined(text("server").ok_or_else(malformed)?),
            "server_lost" => Wire::ServerLost(text("server").ok_or_else(malformed)?),
            "list" => Wire::List,
            "resync" => Wire::Resync(Shadow::from_json(body)),
            "notice" => Wire::Notice {
                handle: number("handle").ok_or_else(malformed)?,
                notice: body
                    .get("notice")
                    .and_then(RoomNotice::from_json)
                    .ok_or_else(malformed)?,
            },
            _ => return Err(format!("unknown message {kind:?}")),
        };
        Ok(wire)
    }

    /// For the owner (anything but a notice).
    pub fn is_for_the_owner(&self) -> bool {
        !matches!(self, Wire::Notice { .. })
    }
}

/// A notice for a participant handle, as the bus carries it.
impl RoomNotice {
    fn to_json(&self) -> Value {
        match self {
            RoomNotice::Event(data) => json!({ "event": data }),
            RoomNotice::Rename { id, as_key } => json!({"rename": id, "as": as_key}),
            RoomNotice::Display { id, display } => json!({"display": display, "id": id}),
        }
    }

    fn from_json(v: &Value) -> Option<RoomNotice> {
        if let Some(data) = v.get("event") {
            return Some(RoomNotice::Event(data.clone()));
        }
        if let Some(id) = v.get("rename").and_then(Value::as_u64) {
            let as_key = match v.get("as").and_then(Value::as_str)? {
                "unpublished" => "unpublished",
                "kicked" => "kicked",
                _ => return None,
            };
            return Some(RoomNotice::Rename { id, as_key });
        }
        Some(RoomNotice::Display {
            id: v.get("id")?.as_u64()?,
            display: v.get("display")?.as_str()?.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shadow_is_what_a_new_owner_needs() {
        let mut shadow = Shadow::default();
        assert!(shadow.is_empty());
        shadow
            .members
            .insert(11, ("j1".into(), 1, Some("alice".into())));
        shadow.active.insert(
            1,
            ("j1".into(), Some("alice".into()), json!([{"mid": "0"}])),
        );
        shadow.servers.insert("j1".into());
        assert!(!shadow.is_empty());
        let sent = Wire::Resync(shadow.clone()).to_json(5);
        assert_eq!(
            sent,
            json!({"t": "resync", "room": 5,
                "members": [{"handle": 11, "server": "j1", "id": 1, "display": "alice"}],
                "active": [{"id": 1, "server": "j1", "display": "alice",
                    "streams": [{"mid": "0"}]}],
                "servers": ["j1"]})
        );
        assert_eq!(Wire::parse(&sent), Ok(Wire::Resync(shadow)));
    }

    #[test]
    fn messages_cross_the_bus_unchanged() {
        let messages = [
            Wire::Joined {
                handle: 1,
                server: "j1".into(),
                id: 7,
                display: None,
            },
            Wire::Left {
                handle: 1,
                how: Departure::Kicked,
            },
            Wire::Left {
                handle: 1,
                how: Departure::RoomDestroyed,
            },
            Wire::Active {
                server: "j2".into(),
                id: 7,
                display: Some("alice".into()),
                streams: json!([{"mid": "0"}]),
            },
            Wire::Gone { id: 7 },
            Wire::ServerJoined("j3".into()),
            Wire::ServerLost("j3".into()),
            Wire::List,
            Wire::Notice {
                handle: 4,
                notice: RoomNotice::Event(json!({"videoroom": "event", "room": 1, "leaving": 7})),
            },
            Wire::Notice {
                handle: 4,
                notice: RoomNotice::Rename {
                    id: 7,
                    as_key: "unpublished",
                },
            },
            Wire::Notice {
                handle: 4,
                notice: RoomNotice::Rename {
                    id: 8,
                    as_key: "kicked",
                },
            },
            Wire::Notice {
                handle: 4,
                notice: RoomNotice::Display {
                    id: 9,
                    display: "new".into(),
                },
            },
        ];
        for m in messages {
            let sent = m.to_json(3);
            assert_eq!(sent["room"], 3);
            assert_eq!(Wire::parse(&sent), Ok(m));
        }
    }

    #[test]
    fn bad_messages_are_refused_clearly() {
        let parse = |v: Value| Wire::parse(&v);
        assert_eq!(
            parse(json!({"t": "dance", "room": 1})),
            Err("unknown message \"dance\"".into())
        );
        assert_eq!(
            parse(json!({"t": "joined", "room": 1, "handle": "x", "server": "j1", "id": 1})),
            Err("malformed \"joined\"".into())
        );
        assert!(parse(json!({"t": "gone"})).is_err());
        assert!(parse(json!(3)).is_err());
        // An unknown departure is a plain leave, as before.
        assert_eq!(
            parse(json!({"t": "left", "room": 1, "handle": 2, "how": "?"})),
            Ok(Wire::Left {
                handle: 2,
                how: Departure::Left
            })
        );
        // Nothing but Janus's own keys becomes a rename; garbage is dropped.
        let notice = |n: Value| parse(json!({"t": "notice", "room": 1, "handle": 2, "notice": n}));
        assert!(notice(json!({"rename": 1, "as": "destroyed"})).is_err());
        assert!(notice(json!({"id": "x"})).is_err());
        assert!(notice(json!(3)).is_err());
        // A report with entries it cannot read keeps the others.
        let Ok(Wire::Resync(shadow)) = parse(json!({"t": "resync", "room": 1,
            "members": [{"handle": 1}, {"handle": 2, "server": "j1", "id": 5}],
            "servers": ["j1", 7]}))
        else {
            panic!("a resync")
        };
        assert_eq!(shadow.members.len(), 1);
        assert_eq!(shadow.servers.len(), 1);
    }
}
