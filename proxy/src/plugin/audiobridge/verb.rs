//! The audiobridge requests as the proxy tells them apart, and where each goes: pure
//! functions of what the handle knows, unit-tested without a runtime.

use super::book::Whereabouts;

/// The synchronous requests about one room (Janus answers them with a `success`): they go to
/// the room's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomVerb {
    Edit,
    Destroy,
    Allowed,
    Kick,
    KickAll,
    ListParticipants,
    ResetDecoder,
    RtpForward,
    StopRtpForward,
    ListForwarders,
    EnableRecording,
    EnableMjrs,
    PlayFile,
    IsPlaying,
    StopFile,
    Mute,
    Unmute,
    MuteRoom,
    UnmuteRoom,
    Suspend,
    Resume,
}

impl RoomVerb {
    const ALL: [(&'static str, RoomVerb); 21] = [
        ("edit", RoomVerb::Edit),
        ("destroy", RoomVerb::Destroy),
        ("allowed", RoomVerb::Allowed),
        ("kick", RoomVerb::Kick),
        ("kick_all", RoomVerb::KickAll),
        ("listparticipants", RoomVerb::ListParticipants),
        ("resetdecoder", RoomVerb::ResetDecoder),
        ("rtp_forward", RoomVerb::RtpForward),
        ("stop_rtp_forward", RoomVerb::StopRtpForward),
        ("listforwarders", RoomVerb::ListForwarders),
        ("enable_recording", RoomVerb::EnableRecording),
        ("enable_mjrs", RoomVerb::EnableMjrs),
        ("play_file", RoomVerb::PlayFile),
        ("is_playing", RoomVerb::IsPlaying),
        ("stop_file", RoomVerb::StopFile),
        ("mute", RoomVerb::Mute),
        ("unmute", RoomVerb::Unmute),
        ("mute_room", RoomVerb::MuteRoom),
        ("unmute_room", RoomVerb::UnmuteRoom),
        ("suspend", RoomVerb::Suspend),
        ("resume", RoomVerb::Resume),
    ];
}

/// A client's `request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Create,
    List,
    Exists,
    Join,
    ChangeRoom,
    Room(RoomVerb),
    /// `configure`, `leave`, `hangup`, and whatever Janus should refuse: about the handle's
    /// own participation, not about a room of the request.
    Other,
}

impl Verb {
    /// `request` as Janus reads it (case does not matter).
    pub fn parse(request: Option<&str>) -> Verb {
        let name = request.unwrap_or_default().to_ascii_lowercase();
        match name.as_str() {
            "create" => Verb::Create,
            "list" => Verb::List,
            "exists" => Verb::Exists,
            "join" => Verb::Join,
            "changeroom" => Verb::ChangeRoom,
            n => RoomVerb::ALL
                .iter()
                .find(|(name, _)| *name == n)
                .map_or(Verb::Other, |(_, v)| Verb::Room(*v)),
        }
    }

    /// Janus answers it synchronously (so the proxy's own errors are a `success` too).
    pub fn is_sync(self) -> bool {
        matches!(
            self,
            Verb::Create | Verb::List | Verb::Exists | Verb::Room(_)
        )
    }

    /// Its `room` names a room the proxy must know (another proxy's, read from the store).
    pub fn is_about_a_room(self) -> bool {
        matches!(
            self,
            Verb::Create | Verb::Exists | Verb::Join | Verb::ChangeRoom | Verb::Room(_)
        )
    }

    /// `rtp_forward` and `stop_rtp_forward` (locked by `lock_rtp_forward`).
    pub fn forwards_rtp(self) -> bool {
        matches!(
            self,
            Verb::Room(RoomVerb::RtpForward | RoomVerb::StopRtpForward)
        )
    }
}

/// What the handle knows when a request comes.
#[derive(Debug)]
pub struct Facts<'a> {
    /// The body's `room`, when numeric.
    pub room: Option<u64>,
    /// The book has that room (one being created included).
    pub known: bool,
    /// Where the room is.
    pub whereabouts: Whereabouts,
    /// The server the handle is a participant on.
    pub joined_on: Option<&'a str>,
    /// `lock_rtp_forward` is on and the body lacks the right `admin_key`.
    pub rtp_locked: bool,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Validated by a server, then kept in the book.
    Create,
    /// The book's rooms, with their servers' entries.
    List,
    /// Answered from the book.
    Exists(u64),
    /// Refused for the admin key, after Janus's own checks.
    Locked,
    /// The room's server (the room placed first, on `prefer` if it has no server).
    Room { room: u64, prefer: Option<String> },
    /// `changeroom` to a room on another server than the participant's PeerConnection.
    Move { room: u64, from: String, to: String },
    /// Any server the handle has (Janus answers); `sync`: the shape of the proxy's own error.
    Any { sync: bool },
}

pub fn target_of(verb: Verb, facts: Facts<'_>) -> Target {
    let sync = verb.is_sync();
    let room = facts.room.filter(|_| facts.known);
    match verb {
        Verb::Create => Target::Create,
        Verb::List => Target::List,
        Verb::Exists => facts.room.map_or(Target::Any { sync }, Target::Exists),
        Verb::ChangeRoom => match (room, facts.joined_on) {
            (Some(room), Some(current)) => match facts.whereabouts {
                Whereabouts::On { server, .. } if server != current => Target::Move {
                    room,
                    from: server,
                    to: current.to_owned(),
                },
                _ => Target::Room {
                    room,
                    prefer: Some(current.to_owned()),
                },
            },
            _ => Target::Any { sync },
        },
        v if v.forwards_rtp() && facts.rtp_locked => Target::Locked,
        Verb::Join | Verb::Room(_) => match room {
            // Janus refuses a second join: the current server says so.
            Some(_) if verb == Verb::Join && facts.joined_on.is_some() => {
                Target::Any { sync: false }
            }
            Some(room) => Target::Room { room, prefer: None },
            None => Target::Any { sync },
        },
        Verb::Other => Target::Any { sync },
    }
}

/// The server a request for any server goes to without asking the registry: the participant's,
/// else the PeerConnection's (if the handle still has a leg there), else the first of its legs'
/// (by name).
pub fn known_server(joined_on: Option<&str>, media: Option<&str>, legs: &[&str]) -> Option<String> {
    joined_on
        .or(media)
        .filter(|s| legs.contains(s))
        .or_else(|| legs.iter().min().copied())
        .map(str::to_owned)
}

/// The next step of putting a room on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceStep {
    NoSuchRoom,
    /// On `server`, where the handle has a leg: use it (created there first unless `ready`).
    Use {
        server: String,
        ready: bool,
    },
    /// On `server`, where the handle has no leg: its link is looked at first (a room on a
    /// server that is down is placed again).
    Check {
        server: String,
        ready: bool,
    },
    /// Without a server: on this one.
    Claim(String),
    /// Without a server: on one the policy chooses.
    Select,
}

pub fn place_step(whereabouts: Whereabouts, has_leg: bool, prefer: Option<&str>) -> PlaceStep {
    match whereabouts {
        Whereabouts::Unknown => PlaceStep::NoSuchRoom,
        Whereabouts::On { server, ready } if has_leg => PlaceStep::Use { server, ready },
        Whereabouts::On { server, ready } => PlaceStep::Check { server, ready },
        Whereabouts::Unplaced => prefer.map_or(PlaceStep::Select, |s| PlaceStep::Claim(s.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed_as_janus_reads_them() {
        assert_eq!(Verb::parse(Some("JOIN")), Verb::Join);
        assert_eq!(Verb::parse(Some("kick_all")), Verb::Room(RoomVerb::KickAll));
        assert_eq!(Verb::parse(Some("configure")), Verb::Other);
        assert_eq!(Verb::parse(None), Verb::Other);
        for r in [
            "create",
            "list",
            "exists",
            "kick_all",
            "rtp_forward",
            "stop_file",
        ] {
            assert!(Verb::parse(Some(r)).is_sync(), "{r}");
        }
        for r in [
            "join",
            "configure",
            "changeroom",
            "leave",
            "hangup",
            "foo",
            "",
        ] {
            assert!(!Verb::parse(Some(r)).is_sync(), "{r}");
        }
        assert!(Verb::parse(Some("stop_rtp_forward")).forwards_rtp());
        assert!(!Verb::parse(Some("list")).is_about_a_room());
        assert!(Verb::parse(Some("exists")).is_about_a_room());
    }

    fn facts(room: Option<u64>, known: bool, on: Option<&str>) -> Facts<'static> {
        Facts {
            room,
            known,
            whereabouts: match on {
                Some(s) => Whereabouts::On {
                    server: s.into(),
                    ready: true,
                },
                None if known => Whereabouts::Unplaced,
                None => Whereabouts::Unknown,
            },
            joined_on: None,
            rtp_locked: false,
        }
    }

    #[test]
    fn room_requests_go_to_their_room_and_others_anywhere() {
        let join = Verb::Join;
        assert_eq!(
            target_of(join, facts(Some(1), true, None)),
            Target::Room {
                room: 1,
                prefer: None
            }
        );
        assert_eq!(
            target_of(join, facts(Some(1), false, None)),
            Target::Any { sync: false }
        );
        let joined = Facts {
            joined_on: Some("a"),
            ..facts(Some(1), true, Some("b"))
        };
        assert_eq!(target_of(join, joined), Target::Any { sync: false });
        let kick = Verb::Room(RoomVerb::Kick);
        assert_eq!(
            target_of(kick, facts(None, false, None)),
            Target::Any { sync: true }
        );
        assert_eq!(
            target_of(Verb::Exists, facts(Some(3), false, None)),
            Target::Exists(3)
        );
        assert_eq!(
            target_of(Verb::Exists, facts(None, false, None)),
            Target::Any { sync: true }
        );
        assert_eq!(
            target_of(Verb::Other, facts(Some(1), true, None)),
            Target::Any { sync: false }
        );
        let locked = Facts {
            rtp_locked: true,
            ..facts(Some(1), true, None)
        };
        assert_eq!(
            target_of(Verb::Room(RoomVerb::RtpForward), locked),
            Target::Locked
        );
        let open = facts(Some(1), true, None);
        assert!(matches!(
            target_of(Verb::Room(RoomVerb::RtpForward), open),
            Target::Room { room: 1, .. }
        ));
    }

    #[test]
    fn changeroom_stays_on_the_participants_server() {
        let change = Verb::ChangeRoom;
        let elsewhere = Facts {
            joined_on: Some("a"),
            ..facts(Some(2), true, Some("b"))
        };
        assert_eq!(
            target_of(change, elsewhere),
            Target::Move {
                room: 2,
                from: "b".into(),
                to: "a".into()
            }
        );
        for on in [Some("a"), None] {
            let here = Facts {
                joined_on: Some("a"),
                ..facts(Some(2), true, on)
            };
            assert_eq!(
                target_of(change, here),
                Target::Room {
                    room: 2,
                    prefer: Some("a".into())
                }
            );
        }
        // Not in a room yet, or an unknown room: the server answers as Janus does.
        assert_eq!(
            target_of(change, facts(Some(2), true, Some("b"))),
            Target::Any { sync: false }
        );
    }

    #[test]
    fn the_known_server_is_the_participants_then_the_media_then_the_first_leg() {
        assert_eq!(
            known_server(Some("b"), Some("c"), &["c", "b"]).as_deref(),
            Some("b")
        );
        assert_eq!(
            known_server(None, Some("c"), &["c", "b"]).as_deref(),
            Some("c")
        );
        // Its leg there is gone: the first of the others.
        assert_eq!(
            known_server(Some("x"), None, &["c", "b"]).as_deref(),
            Some("b")
        );
        assert_eq!(known_server(None, None, &[]), None);
    }

    #[test]
    fn placing_a_room() {
        let on = |ready| Whereabouts::On {
            server: "a".into(),
            ready,
        };
        assert_eq!(
            place_step(Whereabouts::Unknown, false, None),
            PlaceStep::NoSuchRoom
        );
        assert_eq!(
            place_step(on(true), true, Some("b")),
            PlaceStep::Use {
                server: "a".into(),
                ready: true
            }
        );
        assert_eq!(
            place_step(on(false), false, None),
            PlaceStep::Check {
                server: "a".into(),
                ready: false
            }
        );
        assert_eq!(
            place_step(Whereabouts::Unplaced, false, Some("b")),
            PlaceStep::Claim("b".into())
        );
        assert_eq!(
            place_step(Whereabouts::Unplaced, true, None),
            PlaceStep::Select
        );
    }
}
