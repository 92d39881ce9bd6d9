//! One videoroom room as the proxy keeps it: its settings, as Janus's `list` shows them, and
//! how `edit` and `allowed` change them.

use std::collections::BTreeMap;

use janus_protocol::JsonMap;
use serde_json::Value;

use crate::messages::cluster::RoomOrigin;
use crate::plugin::{allowed, backend_mark};

/// Settings a backend room is never created with: the proxy owns the room and its lifetime.
pub const NOT_FORWARDED: [&str; 4] = ["request", "room", "permanent", "admin_key"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPlacement {
    pub server: String,
    /// The room exists on that server (the proxy created it, or found it there).
    pub created: bool,
}

#[derive(Debug, Clone)]
pub struct Room {
    pub id: u64,
    /// The `create` parameters (minus `request`, `room`, `permanent`, `admin_key`).
    pub settings: JsonMap,
    /// The servers the room lives on; the first is where room-wide requests go. Without
    /// spanning rooms (`plugins.videoroom_publishers_per_backend = 0`) only one is used.
    pub servers: Vec<RoomPlacement>,
    /// Client handles joined as publishers (Janus's `num_participants`): their server and
    /// publisher id.
    pub publishers: BTreeMap<u64, (String, u64)>,
    /// Publishers joined through other proxies (shared store), counted in `list`.
    pub remote_publishers: usize,
    /// Spanning rooms with a shared store: other proxies' publishers (as of the last sync round),
    /// by publisher id: their server. Counted when placing a publisher, and where a request
    /// about one of them goes.
    pub remote_feeds: BTreeMap<u64, String>,
    /// Spanning rooms: this proxy's handles by server, the mirrors there.
    pub seats: super::Seats,
    /// `permanent` as asked at `create` (kept in the shared store; not on the backends).
    pub permanent: bool,
    /// The proxy that created it (shared store; empty: this one, or the configuration).
    pub creator: String,
    /// Where it came from: only a client's room expires when it stays empty.
    pub origin: RoomOrigin,
}

impl Room {
    /// The room's first server (room-wide requests go there).
    pub fn placement(&self) -> Option<&RoomPlacement> {
        self.servers.first()
    }

    fn str_setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key).and_then(Value::as_str)
    }

    fn bool_setting(&self, key: &str, default: bool) -> bool {
        self.settings
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    fn int_setting(&self, key: &str, default: u64) -> u64 {
        self.settings
            .get(key)
            .and_then(Value::as_u64)
            .unwrap_or(default)
    }

    pub fn is_private(&self) -> bool {
        self.bool_setting("is_private", false)
    }

    pub fn secret(&self) -> Option<&str> {
        self.str_setting("secret")
    }

    /// The body of the backend `create` for this room, its description marked with `mark`
    /// (`plugins.backend_room_mark`) and its secret `backend_secret` when there is one
    /// (`plugins.backend_room_secret`; see [`backend_mark`]).
    pub fn create_request(&self, mark: &str, backend_secret: &str) -> JsonMap {
        let mut body = JsonMap::new();
        body.insert("request".into(), "create".into());
        body.insert("room".into(), self.id.into());
        body.insert("permanent".into(), false.into());
        for (k, v) in &self.settings {
            body.insert(k.clone(), v.clone());
        }
        backend_mark::mark_create(&mut body, mark);
        backend_mark::secure_create(&mut body, backend_secret);
        body
    }

    /// The room as Janus 1.1.2 describes it in a `list` reply (same keys, same order,
    /// same defaults).
    pub fn list_entry(&self) -> Value {
        let mut e = JsonMap::new();
        e.insert("room".into(), self.id.into());
        let description = self
            .str_setting("description")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Room {}", self.id));
        e.insert("description".into(), description.into());
        e.insert(
            "pin_required".into(),
            self.str_setting("pin").is_some().into(),
        );
        e.insert("is_private".into(), self.is_private().into());
        e.insert(
            "max_publishers".into(),
            self.int_setting("publishers", 3).into(),
        );
        e.insert("bitrate".into(), self.int_setting("bitrate", 0).into());
        if self.bool_setting("bitrate_cap", false) {
            e.insert("bitrate_cap".into(), true.into());
        }
        e.insert("fir_freq".into(), self.int_setting("fir_freq", 0).into());
        for key in [
            "require_pvtid",
            "require_e2ee",
            "dummy_publisher",
            "notify_joining",
        ] {
            e.insert(key.into(), self.bool_setting(key, false).into());
        }
        let audiocodec = self.str_setting("audiocodec").unwrap_or("opus");
        let videocodec = self.str_setting("videocodec").unwrap_or("vp8");
        e.insert("audiocodec".into(), audiocodec.into());
        e.insert("videocodec".into(), videocodec.into());
        if audiocodec.contains("opus") {
            if self.bool_setting("opus_fec", true) {
                e.insert("opus_fec".into(), true.into());
            }
            if self.bool_setting("opus_dtx", false) {
                e.insert("opus_dtx".into(), true.into());
            }
        }
        if self.bool_setting("video_svc", false) {
            e.insert("video_svc".into(), true.into());
        }
        e.insert("record".into(), self.bool_setting("record", false).into());
        if let Some(dir) = self.str_setting("rec_dir") {
            e.insert("rec_dir".into(), dir.into());
        }
        e.insert(
            "lock_record".into(),
            self.bool_setting("lock_record", false).into(),
        );
        e.insert(
            "num_participants".into(),
            (self.publishers.len() + self.remote_publishers).into(),
        );
        e.insert(
            "audiolevel_ext".into(),
            self.bool_setting("audiolevel_ext", true).into(),
        );
        let audiolevel_event = self.bool_setting("audiolevel_event", false);
        e.insert("audiolevel_event".into(), audiolevel_event.into());
        if audiolevel_event {
            e.insert(
                "audio_active_packets".into(),
                self.int_setting("audio_active_packets", 100).into(),
            );
            e.insert(
                "audio_level_average".into(),
                self.int_setting("audio_level_average", 25).into(),
            );
        }
        for key in [
            "videoorient_ext",
            "playoutdelay_ext",
            "transport_wide_cc_ext",
        ] {
            e.insert(key.into(), self.bool_setting(key, true).into());
        }
        Value::Object(e)
    }

    /// Applies a successful `edit` (its `new_*` elements) to the settings.
    pub fn apply_edit(&mut self, body: &JsonMap) {
        for (new, key) in [
            ("new_description", "description"),
            ("new_secret", "secret"),
            ("new_pin", "pin"),
            ("new_is_private", "is_private"),
            ("new_require_pvtid", "require_pvtid"),
            ("new_bitrate", "bitrate"),
            ("new_fir_freq", "fir_freq"),
            ("new_publishers", "publishers"),
            ("new_lock_record", "lock_record"),
            ("new_rec_dir", "rec_dir"),
        ] {
            if let Some(v) = body.get(new) {
                // Janus: an empty new pin or secret removes it.
                if v.as_str() == Some("") && (key == "pin" || key == "secret") {
                    self.settings.shift_remove(key);
                } else {
                    self.settings.insert(key.into(), v.clone());
                }
            }
        }
    }

    /// Applies a successful `allowed` request (see [`allowed::apply`]).
    pub fn apply_allowed(&mut self, body: &JsonMap) {
        allowed::apply(&mut self.settings, body);
    }
}

#[cfg(test)]
mod tests {
    use super::super::RoomBook;
    use super::*;
    use serde_json::json;

    use crate::plugin::test_body as body;

    #[test]
    fn backend_create_request_carries_the_settings_not_the_proxy_ones() {
        let mut d = RoomBook::default();
        let b = body(
            json!({"request":"create","room":9,"permanent":true,"admin_key":"k",
            "description":"d","secret":"s","publishers":6}),
        );
        d.create(9, &b).expect("create");
        let req = d.get(9).expect("room").create_request("", "");
        assert_eq!(
            Value::Object(req),
            json!({"request":"create","room":9,"permanent":false,"description":"d",
                "secret":"s","publishers":6})
        );
        let marked = d.get(9).expect("room").create_request("mark-", "");
        assert_eq!(marked["description"], "mark-d");
        // The book keeps the client's description.
        assert_eq!(d.get(9).expect("room").list_entry()["description"], "d");
    }

    #[test]
    fn edit_and_allowed_update_the_settings() {
        let mut d = RoomBook::default();
        d.create(5, &body(json!({"secret":"s","pin":"p"})))
            .expect("create");
        let room = d.get_mut(5).expect("room");
        room.apply_edit(&body(
            json!({"new_description":"new","new_pin":"","new_publishers":9}),
        ));
        assert_eq!(room.settings.get("description"), Some(&json!("new")));
        assert_eq!(room.settings.get("pin"), None);
        assert_eq!(room.secret(), Some("s"));
        assert_eq!(room.list_entry()["max_publishers"], 9);
        room.apply_allowed(&body(json!({"action":"enable"})));
        room.apply_allowed(&body(json!({"action":"add","allowed":["a","b"]})));
        room.apply_allowed(&body(json!({"action":"remove","allowed":["a"]})));
        assert_eq!(room.settings.get("allowed"), Some(&json!(["b"])));
        room.apply_allowed(&body(json!({"action":"disable"})));
        assert_eq!(room.settings.get("allowed"), None);
    }
}
