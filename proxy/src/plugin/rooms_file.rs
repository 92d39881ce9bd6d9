//! `plugins.rooms_file`: where the proxy keeps the rooms created, edited or destroyed with
//! `permanent: true` — what Janus's VideoRoom and AudioBridge plugins write into their jcfg —
//! so that they outlive a restart of a proxy without a shared store. Loaded at start-up like
//! `plugins.videoroom_rooms` / `plugins.audiobridge_rooms`.
//!
//! The file is JSON, `{"videoroom": [settings…], "audiobridge": [settings…]}`, each entry the
//! room's `create` parameters with its `room` id (never `request`, `permanent` or
//! `admin_key`). It is rewritten whole at each change, into a temporary file in the same
//! folder renamed over the old one, so that a crash leaves the old or the new file, never
//! half of one.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use janus_protocol::JsonMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::messages::cluster::RoomKind;

/// The file, shared by every handle of the proxy. A plain lock: changes are rare and the
/// file small, and the handle needs to know at once whether it was saved (`"permanent"` in
/// Janus's answer says so).
pub type SharedRoomsFile = Arc<Mutex<RoomsFile>>;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Contents {
    #[serde(default)]
    videoroom: Vec<JsonMap>,
    #[serde(default)]
    audiobridge: Vec<JsonMap>,
}

#[derive(Debug)]
pub struct RoomsFile {
    path: PathBuf,
    videoroom: BTreeMap<u64, JsonMap>,
    audiobridge: BTreeMap<u64, JsonMap>,
}

/// Keys never written: they belong to one request, not to the room.
const NOT_SAVED: [&str; 3] = ["request", "permanent", "admin_key"];

impl RoomsFile {
    /// Reads `path`; a file that does not exist yet is an empty one. A file that cannot be
    /// read or parsed, or a room without a positive integer `room`, is an error naming it.
    pub fn load(path: &Path) -> Result<RoomsFile, String> {
        let mut file = RoomsFile {
            path: path.to_owned(),
            videoroom: BTreeMap::new(),
            audiobridge: BTreeMap::new(),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(file),
            Err(e) => return Err(format!("plugins.rooms_file {}: {e}", path.display())),
        };
        let contents: Contents = serde_json::from_str(&text).map_err(|e| {
            format!(
                "plugins.rooms_file {}: not a rooms file ({e})",
                path.display()
            )
        })?;
        for (kind, rooms) in [
            (RoomKind::VideoRoom, contents.videoroom),
            (RoomKind::AudioBridge, contents.audiobridge),
        ] {
            for settings in rooms {
                let id = settings
                    .get("room")
                    .and_then(Value::as_u64)
                    .filter(|id| *id > 0)
                    .ok_or_else(|| {
                        format!(
                            "plugins.rooms_file {}: a room without a positive integer `room`",
                            path.display()
                        )
                    })?;
                if file.rooms_mut(kind).insert(id, settings).is_some() {
                    return Err(format!(
                        "plugins.rooms_file {}: room {id} appears twice",
                        path.display()
                    ));
                }
            }
        }
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved rooms of one plugin, each with its `room`.
    pub fn rooms(&self, kind: RoomKind) -> Vec<(u64, JsonMap)> {
        let rooms = match kind {
            RoomKind::VideoRoom => &self.videoroom,
            RoomKind::AudioBridge => &self.audiobridge,
        };
        rooms.iter().map(|(id, s)| (*id, s.clone())).collect()
    }

    fn rooms_mut(&mut self, kind: RoomKind) -> &mut BTreeMap<u64, JsonMap> {
        match kind {
            RoomKind::VideoRoom => &mut self.videoroom,
            RoomKind::AudioBridge => &mut self.audiobridge,
        }
    }

    /// Saves (or replaces) room `id` with `settings` and rewrites the file. On a write error
    /// the file on disk is unchanged and so is what this struct holds.
    pub fn save(&mut self, kind: RoomKind, id: u64, settings: &JsonMap) -> std::io::Result<()> {
        let mut settings = settings.clone();
        for key in NOT_SAVED {
            settings.remove(key);
        }
        settings.insert("room".into(), id.into());
        let before = self.rooms_mut(kind).insert(id, settings);
        self.write().inspect_err(|_| {
            match before {
                Some(old) => self.rooms_mut(kind).insert(id, old),
                None => self.rooms_mut(kind).remove(&id),
            };
        })
    }

    /// Removes room `id` (if saved) and rewrites the file.
    pub fn forget(&mut self, kind: RoomKind, id: u64) -> std::io::Result<()> {
        let Some(old) = self.rooms_mut(kind).remove(&id) else {
            return Ok(());
        };
        self.write().inspect_err(|_| {
            self.rooms_mut(kind).insert(id, old);
        })
    }

    fn write(&self) -> std::io::Result<()> {
        let contents = Contents {
            videoroom: self.videoroom.values().cloned().collect(),
            audiobridge: self.audiobridge.values().cloned().collect(),
        };
        let text = serde_json::to_vec_pretty(&contents).map_err(std::io::Error::other)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "rooms".into());
        let temp = self
            .path
            .with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut f = std::fs::File::create(&temp)?;
            f.write_all(&text)?;
            f.write_all(b"\n")?;
            // On disk before the rename makes it the file.
            f.sync_all()?;
            std::fs::rename(&temp, &self.path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }
}

/// `save` / `forget` as a request asked (`permanent: true`), logged when the file cannot be
/// written. Whether the room is saved now — Janus's `"permanent"` in the answer.
pub fn apply(
    file: Option<&SharedRoomsFile>,
    kind: RoomKind,
    id: u64,
    settings: Option<&JsonMap>,
) -> bool {
    let Some(file) = file else {
        return false;
    };
    let mut file = file.lock();
    let done = match settings {
        Some(s) => file.save(kind, id, s),
        None => file.forget(kind, id),
    };
    match done {
        Ok(()) => true,
        Err(e) => {
            log::error!(
                "plugins.rooms_file {}: room {id} not saved: {e}",
                file.path().display()
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::plugin::test_body as map;

    #[test]
    fn saved_rooms_come_back_and_forgotten_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rooms.json");
        let mut file = RoomsFile::load(&path).unwrap();
        assert!(file.rooms(RoomKind::VideoRoom).is_empty());
        let settings = map(json!({"request": "create", "room": 9, "permanent": true,
            "admin_key": "k", "description": "nine"}));
        file.save(RoomKind::VideoRoom, 9, &settings).unwrap();
        file.save(RoomKind::AudioBridge, 9, &map(json!({"pin": "p"})))
            .unwrap();
        file.save(RoomKind::AudioBridge, 10, &JsonMap::new())
            .unwrap();
        file.forget(RoomKind::AudioBridge, 10).unwrap();
        let again = RoomsFile::load(&path).unwrap();
        assert_eq!(
            again.rooms(RoomKind::VideoRoom),
            vec![(9, map(json!({"room": 9, "description": "nine"})))]
        );
        assert_eq!(
            again.rooms(RoomKind::AudioBridge),
            vec![(9, map(json!({"pin": "p", "room": 9})))]
        );
        // Only the file itself is left in the folder (no temporary file).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_bad_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rooms.json");
        for (text, says) in [
            ("{not json", "not a rooms file"),
            (
                r#"{"videoroom": [{"description": "x"}]}"#,
                "positive integer",
            ),
            (
                r#"{"audiobridge": [{"room": 1}, {"room": 1}]}"#,
                "appears twice",
            ),
            (r#"{"textroom": []}"#, "not a rooms file"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = RoomsFile::load(&path).unwrap_err();
            assert!(e.contains(says) && e.contains("rooms.json"), "{text}: {e}");
        }
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-folder").join("rooms.json");
        let mut file = RoomsFile::load(&path).unwrap();
        assert!(file.save(RoomKind::VideoRoom, 1, &JsonMap::new()).is_err());
        assert!(file.rooms(RoomKind::VideoRoom).is_empty());
    }
}
