//! The plain parts of mirroring a spanning room: where a server's mirrored RTP goes, the
//! streams a remote publisher is added with, and the participant lists of several servers
//! merged into one.

use janus_protocol::JsonMap;
use serde_json::{json, Value};

/// Merges the participant lists of several servers: each participant once, its own server's
/// entry rather than a mirror's, without Janus's `remote` mark.
pub fn merge_participants(entries: Vec<Value>) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::new();
    for mut e in entries {
        let remote = e.get("remote").and_then(Value::as_bool) == Some(true);
        if let Some(m) = e.as_object_mut() {
            m.shift_remove("remote");
        }
        let id = e.get("id").cloned();
        match merged.iter_mut().find(|m| m.get("id").cloned() == id) {
            Some(existing) if !remote => *existing = e,
            Some(_) => {}
            None => merged.push(e),
        }
    }
    merged
}

/// The host part of a `ws://host:port/path` URL.
pub fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority
        .rsplit_once('@')
        .map(|(_, a)| a)
        .unwrap_or(authority);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_owned();
    }
    authority.split(':').next().unwrap_or(authority).to_owned()
}

/// Where the room's other Janus servers send a server mirrored RTP (`publish_remotely`'s
/// `host`): its `rtp_host` (from `backend.servers` or its reports) when it has one, else the
/// host of its WebSocket URL `url`.
pub fn rtp_host(rtp_host: Option<&str>, url: &str) -> String {
    rtp_host.map_or_else(|| url_host(url), str::to_owned)
}

/// The id of the audio-level RTP header extension (`ssrc-audio-level`) negotiated in `sdp`:
/// the mirrors' target Janus needs it to find the levels in the relayed audio (its
/// `talking` events and `listparticipants`' `talking`).
pub fn audio_level_ext_id(sdp: &str) -> Option<u64> {
    sdp.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("a=extmap:")?;
        let (id, uri) = rest.split_once(' ')?;
        if uri.trim() != "urn:ietf:params:rtp-hdrext:ssrc-audio-level" {
            return None;
        }
        // `<id>` or `<id>/<direction>`.
        id.split('/')
            .next()?
            .parse()
            .ok()
            .filter(|id| (1..=14).contains(id))
    })
}

/// `remote_streams` with the audio-level extension id on the audio streams, when known.
pub fn remote_streams_with_levels(streams: &Value, audio_level_ext: Option<u64>) -> Value {
    let mut list = remote_streams(streams);
    if let (Some(id), Some(list)) = (audio_level_ext, list.as_array_mut()) {
        for s in list.iter_mut().filter_map(Value::as_object_mut) {
            if s.get("type").and_then(Value::as_str) == Some("audio") {
                s.insert("audiolevel_ext_id".into(), id.into());
            }
        }
    }
    list
}

/// The streams of a publisher as `add_remote_publisher` takes them, from the `streams` of its
/// `configured` / `joined` event (the keys the target needs; unknown ones dropped).
pub fn remote_streams(streams: &Value) -> Value {
    const KEYS: [&str; 12] = [
        "type",
        "mindex",
        "mid",
        "disabled",
        "codec",
        "description",
        "stereo",
        "fec",
        "dtx",
        "h264-profile",
        "vp9-profile",
        "simulcast",
    ];
    let list = streams
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_object)
                .map(|s| {
                    let mut out = JsonMap::new();
                    for k in KEYS {
                        if let Some(v) = s.get(k) {
                            out.insert(k.into(), v.clone());
                        }
                    }
                    // Janus's events say h264_profile / vp9_profile.
                    for (from, to) in [
                        ("h264_profile", "h264-profile"),
                        ("vp9_profile", "vp9-profile"),
                    ] {
                        if let Some(v) = s.get(from) {
                            out.insert(to.into(), v.clone());
                        }
                    }
                    Value::Object(out)
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    json!(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participants_are_merged_once_each_without_remote_marks() {
        let merged = merge_participants(vec![
            json!({"id": 1, "display": "alice", "publisher": true}),
            json!({"id": 2, "display": "bob", "remote": true, "publisher": true}),
            json!({"id": 3, "publisher": false}),
            json!({"id": 1, "display": "alice", "remote": true, "publisher": true}),
            json!({"id": 2, "display": "bob", "publisher": true, "talking": false}),
        ]);
        assert_eq!(
            merged,
            [
                json!({"id": 1, "display": "alice", "publisher": true}),
                json!({"id": 2, "display": "bob", "publisher": true, "talking": false}),
                json!({"id": 3, "publisher": false}),
            ]
        );
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(url_host("ws://127.0.0.1:8188"), "127.0.0.1");
        assert_eq!(url_host("wss://janus.example.com/ws"), "janus.example.com");
        assert_eq!(url_host("ws://[::1]:8188/"), "::1");
        assert_eq!(url_host("ws://user:pw@10.0.0.2:8188"), "10.0.0.2");
    }

    #[test]
    fn mirrored_rtp_goes_to_the_rtp_host_when_set() {
        // Set (configured or reported): used, whatever the URL says.
        assert_eq!(
            rtp_host(Some("10.0.0.1"), "ws://127.0.0.1:8188"),
            "10.0.0.1"
        );
        assert_eq!(rtp_host(Some("fd00::1"), "ws://127.0.0.1:8188"), "fd00::1");
        // Unset: the host of the URL.
        assert_eq!(
            rtp_host(None, "wss://janus-b.example.com:8989/ws"),
            "janus-b.example.com"
        );
        assert_eq!(rtp_host(None, "ws://[fd00::2]:8188"), "fd00::2");
    }

    #[test]
    fn the_audio_level_extension_is_found_and_given_to_audio_streams() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
            a=extmap:1/sendonly urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n";
        assert_eq!(audio_level_ext_id(sdp), Some(1));
        assert_eq!(
            audio_level_ext_id("a=extmap:x urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
            None
        );
        assert_eq!(
            audio_level_ext_id("a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid"),
            None
        );
        let s = json!([{"type":"audio","mindex":0,"mid":"0","codec":"opus"},
            {"type":"video","mindex":1,"mid":"1","codec":"vp8"}]);
        assert_eq!(
            remote_streams_with_levels(&s, Some(1)),
            json!([{"type":"audio","mindex":0,"mid":"0","codec":"opus","audiolevel_ext_id":1},
                {"type":"video","mindex":1,"mid":"1","codec":"vp8"}])
        );
        assert_eq!(remote_streams_with_levels(&s, None), remote_streams(&s));
    }

    #[test]
    fn remote_streams_keep_what_the_target_needs() {
        let s = json!([{"type":"video","mindex":1,"mid":"1","codec":"h264","h264_profile":"42e01f",
            "talking":true,"moderated":false}]);
        assert_eq!(
            remote_streams(&s),
            json!([{"type":"video","mindex":1,"mid":"1","codec":"h264","h264-profile":"42e01f"}])
        );
    }
}
