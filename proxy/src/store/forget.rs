//! Removing a proxy from the shared store: what it held (user names, participant entries,
//! its index entry and records), each removal with its notice so that every view follows at
//! once. Done by a stopping proxy for itself ([`super::exit`]) and by the survivor that cleans
//! up after a dead one ([`super::reaper`]).

use std::collections::HashMap;

use super::conn::{Failed, StoreConn};
use super::feed::Change;
use super::keys::Keys;
use super::scripts::{self, Notify};
use crate::messages::cluster::RoomKind;

/// Who is forgotten, and how to write about it.
pub struct Forget<'a> {
    pub conn: &'a StoreConn,
    pub keys: &'a Keys,
    /// The notices are this (the writing) proxy's.
    pub notify: &'a Notify,
    /// The topics with users (`videocall`, `p2pcall`).
    pub topics: &'a [String],
    /// The proxy forgotten.
    pub id: &'a str,
}

impl Forget<'_> {
    /// Releases every user name `id` holds (only those still its own).
    pub async fn users(&self) -> Result<usize, Failed> {
        let mut released = 0;
        for topic in self.topics {
            let mut all = redis::cmd("HGETALL");
            all.arg(self.keys.user_index(topic));
            let users: HashMap<String, String> = self.conn.query("users", &all).await?;
            let names: Vec<&String> = users
                .iter()
                .filter(|(_, proxy)| proxy.as_str() == self.id)
                .map(|(name, _)| name)
                .collect();
            for chunk in names.chunks(64) {
                let mut pipe = redis::pipe();
                for name in chunk {
                    pipe.add_command(release_user(self.keys, self.notify, topic, name, self.id));
                }
                let _: Vec<i64> = self.conn.pipe("release users", &pipe).await?;
            }
            released += names.len();
        }
        Ok(released)
    }

    /// Deletes `id`'s participant entries, in the rooms where it recorded some.
    pub async fn participants(&self) -> Result<usize, Failed> {
        let mut members = redis::cmd("SMEMBERS");
        members.arg(self.keys.proxy_rooms(self.id));
        let rooms: Vec<String> = self.conn.query("proxy rooms", &members).await?;
        let prefix = format!("{}:", self.id);
        let mut deleted = 0;
        for entry in rooms {
            let Some((kind, room)) = entry
                .split_once(':')
                .and_then(|(k, r)| Some((RoomKind::from_name(k)?, r.parse::<u64>().ok()?)))
            else {
                continue;
            };
            let mut fields = redis::cmd("HKEYS");
            fields.arg(self.keys.participants(kind, room));
            let fields: Vec<String> = self.conn.query("participants", &fields).await?;
            for field in fields.iter().filter(|f| f.starts_with(&prefix)) {
                let cmd = participant_down(self.keys, self.notify, kind, room, field);
                deleted += self.conn.query::<i64>("participants", &cmd).await?;
            }
        }
        let mut del = redis::cmd("DEL");
        del.arg(self.keys.proxy_rooms(self.id));
        self.conn.query::<i64>("proxy rooms", &del).await?;
        Ok(deleted as usize)
    }

    /// Its heartbeat, sessions records and index entry gone, and every proxy told.
    pub async fn proxy(&self) -> Result<(), Failed> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(self.keys.sessions(self.id))
            .ignore()
            .del(self.keys.adoptable(self.id))
            .ignore()
            .del(self.keys.backend_handles(self.id))
            .ignore()
            .del(self.keys.proxy(self.id))
            .ignore()
            .srem(self.keys.proxy_index(), self.id)
            .ignore()
            .add_command(self.notify.eval(
                scripts::NOTIFY,
                &[],
                &[Change::ProxyGone {
                    id: self.id.to_owned(),
                }],
            ))
            .ignore();
        self.conn.pipe::<()>("leave", &pipe).await
    }
}

/// `RELEASE_USER` of `name` of `topic` held by `owner`, with its notice.
pub fn release_user(
    keys: &Keys,
    notify: &Notify,
    topic: &str,
    name: &str,
    owner: &str,
) -> redis::Cmd {
    let (user, index) = (keys.user(topic, name), keys.user_index(topic));
    let mut cmd = notify.eval(
        scripts::RELEASE_USER,
        &[user.as_str(), index.as_str()],
        &[Change::User {
            topic: topic.to_owned(),
            name: name.to_owned(),
            proxy: None,
        }],
    );
    cmd.arg(owner).arg(name);
    cmd
}

/// `PARTICIPANT_DOWN` of entry `field` of room `room`, with its notice.
pub fn participant_down(
    keys: &Keys,
    notify: &Notify,
    kind: RoomKind,
    room: u64,
    field: &str,
) -> redis::Cmd {
    let participants = keys.participants(kind, room);
    let mut cmd = notify.eval(
        scripts::PARTICIPANT_DOWN,
        &[participants.as_str()],
        &[Change::Participants {
            plugin: kind.name().to_owned(),
            id: room,
        }],
    );
    cmd.arg(field);
    cmd
}
