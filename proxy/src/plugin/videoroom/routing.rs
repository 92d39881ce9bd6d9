//! What a videoroom request is, and where it goes: plain functions of the request and the
//! room book, unit-tested without a runtime (the handle carries their decisions out).
//!
//! * [`Verb`]: the request, parsed (Janus compares names case-insensitively).
//! * [`route_of`]: whether a room request is refused at once, merged over the room's servers,
//!   or goes to a server ([`Target`]: the room's, one more for a spanning room, or none yet).

use janus_protocol::JsonMap;
use serde_json::Value;

use super::checks;
use super::room_book::RoomBook;
use crate::plugin::kit::PluginError;

/// A videoroom request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    // Answered by the proxy.
    Create,
    List,
    Exists,
    // Room requests: to the room's server.
    Join,
    JoinAndConfigure,
    Edit,
    Destroy,
    Allowed,
    Kick,
    Moderate,
    EnableRecording,
    ListParticipants,
    ListForwarders,
    RtpForward,
    StopRtpForward,
    // A participant's requests: to the leg it joined with.
    Configure,
    Publish,
    Unpublish,
    Start,
    Pause,
    Switch,
    Update,
    Subscribe,
    Unsubscribe,
    Leave,
    /// Anything else (Janus: 423).
    Unknown,
}

const NAMES: [(&str, Verb); 25] = [
    ("create", Verb::Create),
    ("list", Verb::List),
    ("exists", Verb::Exists),
    ("join", Verb::Join),
    ("joinandconfigure", Verb::JoinAndConfigure),
    ("edit", Verb::Edit),
    ("destroy", Verb::Destroy),
    ("allowed", Verb::Allowed),
    ("kick", Verb::Kick),
    ("moderate", Verb::Moderate),
    ("enable_recording", Verb::EnableRecording),
    ("listparticipants", Verb::ListParticipants),
    ("listforwarders", Verb::ListForwarders),
    ("rtp_forward", Verb::RtpForward),
    ("stop_rtp_forward", Verb::StopRtpForward),
    ("configure", Verb::Configure),
    ("publish", Verb::Publish),
    ("unpublish", Verb::Unpublish),
    ("start", Verb::Start),
    ("pause", Verb::Pause),
    ("switch", Verb::Switch),
    ("update", Verb::Update),
    ("subscribe", Verb::Subscribe),
    ("unsubscribe", Verb::Unsubscribe),
    ("leave", Verb::Leave),
];

impl Verb {
    /// The request of a message body (429/430 when `request` is missing or not a string).
    pub fn of(body: &JsonMap) -> Result<Verb, PluginError> {
        let name = checks::request_of(body)?;
        Ok(NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(Verb::Unknown, |(_, v)| *v))
    }

    pub fn is_join(self) -> bool {
        matches!(self, Verb::Join | Verb::JoinAndConfigure)
    }

    /// A room request Janus answers at once, in the `success` reply.
    pub fn is_sync_room_request(self) -> bool {
        matches!(
            self,
            Verb::Edit
                | Verb::Destroy
                | Verb::Allowed
                | Verb::Kick
                | Verb::Moderate
                | Verb::EnableRecording
                | Verb::ListParticipants
                | Verb::ListForwarders
                | Verb::RtpForward
                | Verb::StopRtpForward
        )
    }

    /// An asynchronous request of a participant (after `join`).
    pub fn is_participant_request(self) -> bool {
        matches!(
            self,
            Verb::Configure
                | Verb::Publish
                | Verb::Unpublish
                | Verb::Start
                | Verb::Pause
                | Verb::Switch
                | Verb::Update
                | Verb::Subscribe
                | Verb::Unsubscribe
                | Verb::Leave
        )
    }

    /// A room-wide change the room book follows (and a spanning room's other servers repeat)
    /// once the room's server accepted it.
    pub fn changes_the_room(self) -> bool {
        matches!(
            self,
            Verb::Edit | Verb::Destroy | Verb::Allowed | Verb::EnableRecording
        )
    }

    /// `rtp_forward` and `stop_rtp_forward` (`lock_rtp_forward` puts them behind the admin key).
    pub fn forwards_rtp(self) -> bool {
        matches!(self, Verb::RtpForward | Verb::StopRtpForward)
    }
}

/// A join as a publisher (`joinandconfigure`, or `join` with `ptype: publisher`).
pub fn joins_as_publisher(verb: Verb, body: &JsonMap) -> bool {
    verb == Verb::JoinAndConfigure
        || (verb == Verb::Join && body.get("ptype").and_then(Value::as_str) == Some("publisher"))
}

/// The server a room request goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This server: the room's, or the one of the participant or publisher it is about.
    Server(String),
    /// A spanning room's join: the first of these servers (in this order) that can take one
    /// more handle; when none can (drained, full, unreachable, or none listed: all at their
    /// limit), one more server chosen by the policy, to which the room spans.
    Among(Vec<String>),
    /// The room has no server yet.
    Unplaced,
}

/// Who asks, for [`target_of`].
#[derive(Debug, Clone, Copy)]
pub struct Asker {
    /// The client session of the handle (its own participant's server takes its
    /// subscriptions).
    pub session: u64,
    /// `plugins.videoroom_spanning`: rooms may span servers.
    pub spans: bool,
    /// `plugins.videoroom_publishers_per_backend` (0: no fixed limit).
    pub publishers_per_backend: usize,
    /// `plugins.videoroom_subscribers_per_backend` (0: no fixed limit).
    pub subscribers_per_backend: usize,
}

/// Where a room request about `room` goes.
///
/// A room on one server (no spanning): there. A spanning room: a publisher's join among the
/// room's servers under the publisher limit, fewest publishers first; a subscriber's join
/// among those under the subscriber limit: its own participant's server (the publisher whose
/// `private_id` it sends, or one of the same client session), its first feed's server, then
/// the others, fewest subscribers first ([`Target::Among`]: the registry takes the first that
/// has room, else spans the room); a request about one publisher (`kick`, `moderate`,
/// `rtp_forward`, `stop_rtp_forward`) to that publisher's server; anything else to the room's
/// first server.
pub fn target_of(book: &RoomBook, room: u64, verb: Verb, body: &JsonMap, who: Asker) -> Target {
    let Some(first) = book.placement(room).map(|p| p.server) else {
        return Target::Unplaced;
    };
    if !who.spans {
        return Target::Server(first);
    }
    if joins_as_publisher(verb, body) {
        return Target::Among(book.publisher_preference(room, who.publishers_per_backend));
    }
    let first_feed = || {
        body.get("streams")
            .and_then(Value::as_array)
            .and_then(|s| s.first())
            .and_then(|s| s.get("feed"))
            .or_else(|| body.get("feed"))
            .and_then(Value::as_u64)
    };
    if verb == Verb::Join {
        let private_id = body.get("private_id").and_then(Value::as_u64);
        let own = book.own_server(room, who.session, private_id);
        let limit = who.subscribers_per_backend;
        return Target::Among(book.subscriber_preference(room, own, first_feed(), limit));
    }
    // Requests about one publisher go to its server.
    let about = match verb {
        Verb::Kick | Verb::Moderate => body.get("id").and_then(Value::as_u64),
        Verb::RtpForward | Verb::StopRtpForward => body.get("publisher_id").and_then(Value::as_u64),
        _ => None,
    };
    Target::Server(
        about
            .and_then(|f| book.feed_server(room, f))
            .unwrap_or(first),
    )
}

/// The feeds a subscriber's `join` names (`streams[].feed`, else `feed`).
pub fn feeds_of(body: &JsonMap) -> Vec<u64> {
    let streams = body.get("streams").and_then(Value::as_array);
    let mut feeds: Vec<u64> = streams
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("feed").and_then(Value::as_u64))
        .collect();
    if feeds.is_empty() {
        feeds.extend(body.get("feed").and_then(Value::as_u64));
    }
    feeds.dedup();
    feeds
}

/// What becomes of a room request (of a room the book has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomRoute {
    /// A spanning room: a publisher id is unique in the whole room, and this one is taken on
    /// another server (Janus's 436).
    IdTaken(u64),
    /// A spanning room on several servers: `listparticipants` merged over all of them.
    ListEverywhere,
    /// To a server; `ready` when the room exists there already.
    To { target: Target, ready: bool },
}

pub fn route_of(book: &RoomBook, room: u64, verb: Verb, body: &JsonMap, who: Asker) -> RoomRoute {
    if who.spans {
        if let Some(id) = body.get("id").and_then(Value::as_u64) {
            if verb.is_join()
                && (verb == Verb::JoinAndConfigure
                    || body.get("ptype").and_then(Value::as_str) == Some("publisher"))
                && book.feed_server(room, id).is_some()
            {
                return RoomRoute::IdTaken(id);
            }
        }
        if verb == Verb::ListParticipants && book.servers(room).len() > 1 {
            return RoomRoute::ListEverywhere;
        }
    }
    let target = target_of(book, room, verb, body, who);
    let ready = matches!(&target, Target::Server(s) if book.is_created_on(room, s));
    RoomRoute::To { target, ready }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::plugin::test_body as body;

    const ONE: Asker = Asker {
        session: 100,
        spans: false,
        publishers_per_backend: 0,
        subscribers_per_backend: 0,
    };

    fn spanning(per_backend: usize) -> Asker {
        Asker {
            session: 100,
            spans: true,
            publishers_per_backend: per_backend,
            subscribers_per_backend: 0,
        }
    }

    fn among(servers: &[&str]) -> Target {
        Target::Among(servers.iter().map(|s| s.to_string()).collect())
    }

    fn to(server: &str, ready: bool) -> RoomRoute {
        RoomRoute::To {
            target: Target::Server(server.into()),
            ready,
        }
    }

    #[test]
    fn requests_are_parsed_case_insensitively() {
        let verb = |v| Verb::of(&body(v));
        assert_eq!(
            verb(json!({"request": "JoinAndConfigure"})),
            Ok(Verb::JoinAndConfigure)
        );
        assert_eq!(
            verb(json!({"request": "listparticipants"})),
            Ok(Verb::ListParticipants)
        );
        assert_eq!(verb(json!({"request": "dance"})), Ok(Verb::Unknown));
        assert_eq!(
            verb(json!({})).map_err(|e| e.code),
            Err(checks::MISSING_ELEMENT)
        );
        assert_eq!(
            verb(json!({"request": 1})).map_err(|e| e.code),
            Err(checks::INVALID_ELEMENT)
        );
        for (name, v) in NAMES {
            assert_eq!(verb(json!({ "request": name })), Ok(v));
            let kinds = [
                matches!(v, Verb::Create | Verb::List | Verb::Exists),
                v.is_join(),
                v.is_sync_room_request(),
                v.is_participant_request(),
            ];
            assert_eq!(kinds.iter().filter(|k| **k).count(), 1, "{name}: one kind");
        }
        assert!(Verb::Edit.changes_the_room() && !Verb::Kick.changes_the_room());
        assert!(joins_as_publisher(Verb::JoinAndConfigure, &JsonMap::new()));
        assert!(joins_as_publisher(
            Verb::Join,
            &body(json!({"ptype": "publisher"}))
        ));
        assert!(!joins_as_publisher(
            Verb::Join,
            &body(json!({"ptype": "subscriber"}))
        ));
    }

    #[test]
    fn a_room_on_one_server_takes_everything_there() {
        let mut book = RoomBook::default();
        book.create(1, &JsonMap::new()).expect("create");
        let join = body(json!({"ptype": "publisher"}));
        assert_eq!(
            route_of(&book, 1, Verb::Join, &join, ONE),
            RoomRoute::To {
                target: Target::Unplaced,
                ready: false
            }
        );
        book.place(1, "a");
        assert_eq!(route_of(&book, 1, Verb::Join, &join, ONE), to("a", false));
        book.mark_created(1, "a");
        assert_eq!(
            route_of(&book, 1, Verb::Kick, &body(json!({"id": 5})), ONE),
            to("a", true)
        );
        // Several servers mean nothing without spanning rooms.
        book.add_server(1, "b");
        book.publisher_joined(1, 10, "b", 5);
        let list = JsonMap::new();
        assert_eq!(
            route_of(&book, 1, Verb::ListParticipants, &list, ONE),
            to("a", true)
        );
        let taken = body(json!({"ptype": "publisher", "id": 5}));
        assert_eq!(route_of(&book, 1, Verb::Join, &taken, ONE), to("a", true));
    }

    #[test]
    fn publishers_fill_a_server_before_the_room_spans_one_more() {
        let mut book = RoomBook::default();
        book.create(1, &JsonMap::new()).expect("create");
        book.place(1, "a");
        book.mark_created(1, "a");
        let join = body(json!({"ptype": "publisher"}));
        assert_eq!(
            route_of(&book, 1, Verb::Join, &join, spanning(1)),
            RoomRoute::To {
                target: among(&["a"]),
                ready: false
            }
        );
        book.seat_taken(1, 10, "a", true);
        book.publisher_joined(1, 10, "a", 5);
        assert_eq!(
            target_of(
                &book,
                1,
                Verb::JoinAndConfigure,
                &JsonMap::new(),
                spanning(1)
            ),
            among(&[])
        );
        // With room left on a (or no limit), a again.
        assert_eq!(
            target_of(&book, 1, Verb::Join, &join, spanning(2)),
            among(&["a"])
        );
        assert_eq!(
            target_of(&book, 1, Verb::Join, &join, spanning(0)),
            among(&["a"])
        );
        // A publisher id is the room's, not one server's.
        let taken = body(json!({"ptype": "publisher", "id": 5}));
        assert_eq!(
            route_of(&book, 1, Verb::Join, &taken, spanning(2)),
            RoomRoute::IdTaken(5)
        );
        let subscriber = body(json!({"ptype": "subscriber", "id": 5}));
        assert_ne!(
            route_of(&book, 1, Verb::Join, &subscriber, spanning(2)),
            RoomRoute::IdTaken(5)
        );
    }

    #[test]
    fn requests_about_someone_go_to_their_server() {
        let mut book = RoomBook::default();
        book.create(1, &JsonMap::new()).expect("create");
        book.place(1, "a");
        book.mark_created(1, "a");
        book.add_server(1, "b");
        // Handle 10 of session 100 (private id 7) publishes 5 on b; 6 publishes on a.
        book.publisher_joined(1, 10, "b", 5);
        book.participant_owner(1, 10, 100, Some(7));
        book.publisher_joined(1, 11, "a", 6);
        book.participant_owner(1, 11, 101, Some(8));
        let who = spanning(2);
        let b = Target::Server("b".into());
        let a = Target::Server("a".into());
        // A subscriber: its own participant's server first (private id, then session), then
        // its feed's, then the others.
        let feed_on_a = json!({"ptype": "subscriber", "streams": [{"feed": 6}]});
        assert_eq!(
            target_of(&book, 1, Verb::Join, &body(feed_on_a.clone()), who),
            among(&["b", "a"])
        );
        let mut pvt = body(feed_on_a.clone());
        pvt.insert("private_id".into(), 8.into());
        assert_eq!(
            target_of(&book, 1, Verb::Join, &pvt, who),
            among(&["a", "b"])
        );
        // Nobody of its own: its first feed's server (`streams`, else `feed`), then the
        // servers with the fewest subscribers.
        let stranger = Asker {
            session: 555,
            ..who
        };
        assert_eq!(
            target_of(&book, 1, Verb::Join, &body(json!({"feed": 5})), stranger),
            among(&["b", "a"])
        );
        assert_eq!(
            target_of(&book, 1, Verb::Join, &body(feed_on_a), stranger),
            among(&["a", "b"])
        );
        book.seat_taken(1, 30, "a", false);
        assert_eq!(
            target_of(&book, 1, Verb::Join, &body(json!({"feed": 99})), stranger),
            among(&["b", "a"])
        );
        // A server at the subscriber limit is left out.
        let limited = Asker {
            subscribers_per_backend: 1,
            ..stranger
        };
        assert_eq!(
            target_of(&book, 1, Verb::Join, &body(json!({"feed": 6})), limited),
            among(&["b"])
        );
        // About one publisher: its server.
        assert_eq!(
            target_of(&book, 1, Verb::Kick, &body(json!({"id": 5})), who),
            b
        );
        assert_eq!(
            target_of(&book, 1, Verb::Moderate, &body(json!({"id": 6})), who),
            a
        );
        let forward = body(json!({"publisher_id": 5}));
        assert_eq!(target_of(&book, 1, Verb::StopRtpForward, &forward, who), b);
        // Room-wide: the first server; listing several servers: merged.
        assert_eq!(target_of(&book, 1, Verb::Edit, &forward, who), a);
        let list = JsonMap::new();
        assert_eq!(
            route_of(&book, 1, Verb::ListParticipants, &list, who),
            RoomRoute::ListEverywhere
        );
        assert_eq!(
            route_of(&book, 1, Verb::Kick, &body(json!({"id": 5})), who),
            to("b", false)
        );
    }
}
