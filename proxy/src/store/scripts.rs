//! The Lua scripts of the shared store. Redis runs a script atomically, so each one checks and
//! writes without another proxy's write in between, and publishes its notice (see [`feed`])
//! in the same step.
//!
//! Convention of the scripts that publish a notice: `KEYS[1]` is the version key; `ARGV[1]`
//! the changes channel, `ARGV[2]` the sender's id as a JSON string, `ARGV[3]` the changes as a
//! JSON list; the script's own keys and arguments follow. [`Notify::eval`] builds that start.
//!
//! [`feed`]: super::feed

use super::feed::{changes_json, Change};
use super::keys::Keys;

/// The notify step, a function of every script that publishes.
const NOTIFY_FN: &str = r#"
local function notify()
  local v = redis.call('INCR', KEYS[1])
  redis.call('PUBLISH', ARGV[1], '{"v":' .. v .. ',"from":' .. ARGV[2] .. ',"c":' .. ARGV[3] .. '}')
end
"#;

/// Only the notice (after plain commands in the same `MULTI`).
pub const NOTIFY: &str = "notify() return 1";

/// `KEYS[2]` a user's hash, `KEYS[3]` the topic's index; `ARGV[4]` this proxy, `ARGV[5]` the
/// heartbeat key prefix, `ARGV[6]` the name, `ARGV[7]` the time. The name is (re)written
/// unless another proxy owns it and that proxy's heartbeat is alive (a dead proxy's names are
/// free at once, before anyone cleans up after it), so of two proxies claiming one name at
/// once exactly one wins. 1: won; 0: taken.
pub const CLAIM_USER: &str = r"
local owner = redis.call('HGET', KEYS[2], 'proxy_uuid')
if owner and owner ~= ARGV[4] and redis.call('EXISTS', ARGV[5] .. owner) == 1 then
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'username', ARGV[6], 'proxy_uuid', ARGV[4], 'incall', '',
  'peer_name', '', 'ctime', ARGV[7])
redis.call('HSET', KEYS[3], ARGV[6], ARGV[4])
notify()
return 1";

/// `KEYS[2]` a user's hash, `KEYS[3]` the topic's index; `ARGV[4]` the owner, `ARGV[5]` the
/// name. Deleted only if still that owner's (a name registered again elsewhere stays).
pub const RELEASE_USER: &str = r"
if redis.call('HGET', KEYS[2], 'proxy_uuid') ~= ARGV[4] then return 0 end
redis.call('DEL', KEYS[2])
if redis.call('HGET', KEYS[3], ARGV[5]) == ARGV[4] then redis.call('HDEL', KEYS[3], ARGV[5]) end
notify()
return 1";

/// `KEYS[1]` a topic's index; `ARGV[1]` the name, `ARGV[2]` the heartbeat key prefix. The
/// proxy that has the name, if its heartbeat is alive; nil otherwise.
pub const LOOKUP_USER: &str = r"
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner and redis.call('EXISTS', ARGV[2] .. owner) == 1 then return owner end
return false";

/// A plugin's home server (cluster affinity). `KEYS[1]`: the home key. `ARGV`: the server
/// chosen, the home it replaces because it was found dead ('' for none). The home is set
/// unless there is one already that is not the dead one: of two proxies choosing at once,
/// the first wins. Returns the home now.
pub const CLAIM_HOME: &str = r"
local home = redis.call('GET', KEYS[1])
if home and home ~= ARGV[2] then return home end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]";

/// A sync round's write and read, in one step. `KEYS`: this proxy's heartbeat, its sessions
/// record, the proxy index, the version. `ARGV`: this proxy's id, the heartbeat, its lifetime
/// (s), the sessions record, its lifetime (s), the heartbeat key prefix, the proxies' channel
/// prefix, the silence (ms) after which a proxy without a subscription is dead (0: never),
/// then the proxies this one saw subscribed since it last came back to Redis. Returns the
/// previous heartbeat (nil: Redis lost it), the previous record, the live proxies, the dead
/// ones (in the index without a heartbeat), the version, the proxies subscribed now, the
/// proxies found dead by their silence in this step.
///
/// A proxy whose process died has no subscription any more (its sockets closed with it): once
/// its heartbeat is also older than the silence, it is dead at once rather than when its
/// heartbeat expires, and its heartbeat is deleted (so that everything that waits for its
/// heartbeat to go — the clean-up, its names — goes on). Only a proxy seen subscribed before
/// counts (after a failover nobody is subscribed to the new master until they come back). A
/// proxy that is only slow keeps its subscription, and one cut off from Redis keeps it on
/// Redis's side until TCP notices: both count as alive until their heartbeat expires.
pub const HEARTBEAT: &str = r"
local previous = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
local previous_sessions = redis.call('GET', KEYS[2])
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[5])
redis.call('SADD', KEYS[3], ARGV[1])
local alive, dead, subscribed, silent = {}, {}, {}, {}
local silence = tonumber(ARGV[8])
local lifetime = tonumber(ARGV[3]) * 1000
local seen = {}
for i = 9, #ARGV do seen[ARGV[i]] = true end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local heartbeat = ARGV[6] .. id
  local left = redis.call('PTTL', heartbeat)
  local subscribers = redis.call('PUBSUB', 'NUMSUB', ARGV[7] .. id)[2]
  if subscribers > 0 then table.insert(subscribed, id) end
  if left >= 0 and id ~= ARGV[1] and silence > 0 and seen[id] and subscribers == 0
     and lifetime - left > silence then
    redis.call('DEL', heartbeat)
    table.insert(silent, id)
    left = -2
  end
  if left ~= -2 then
    table.insert(alive, id)
  else
    table.insert(dead, id)
  end
end
return {previous or '', previous_sessions or '', alive, dead, redis.call('GET', KEYS[4]) or '0',
  subscribed, silent}";

/// `KEYS`: a proxy's heartbeat, the reaping lock, its sessions record; `ARGV`: this proxy's
/// id, the lock's lifetime (s). `{1, record}` (record `''` when none) if the heartbeat is
/// absent and this proxy took the lock: it cleans up after the dead proxy; 0 otherwise (alive
/// again, or another survivor does it).
pub const TAKE_DEAD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
return {1, redis.call('GET', KEYS[3]) or ''}";

/// `KEYS[1]` the proxy index; `ARGV[1]` the prefix of the proxies' client session records
/// (`<prefix>:proxy_client_sessions:`), `ARGV[2]` a client session id: the proxy whose record
/// has the session, or nil.
pub const WHOSE_SESSION: &str = r"
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('HEXISTS', ARGV[1] .. id, ARGV[2]) == 1 then return id end
end
return false";

/// `KEYS[2]` a room, `KEYS[3]` its plugin's room index; `ARGV[4]` the id, then field/value
/// pairs: written if the room does not exist. 1: written; 0: the id is taken.
pub const CREATE_ROOM: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
redis.call('SADD', KEYS[3], ARGV[4])
notify()
return 1";

/// `KEYS[2]` a room, known here as `ARGV[5..]` pairs while Redis was away, `KEYS[3]` the
/// index, `ARGV[4]` the id: written as it is here, except its `server` when another proxy placed
/// it meanwhile (that placement stays).
pub const REWRITE_ROOM: &str = r"
local current = redis.call('HGET', KEYS[2], 'server')
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
if current then redis.call('HSET', KEYS[2], 'server', current) end
redis.call('SADD', KEYS[3], ARGV[4])
notify()
return 1";

/// `KEYS[2]` a room: placed on `ARGV[4]` unless placed already (on a server other than
/// `ARGV[5]`, the server the caller found dead). Returns where the room lives, nil when the
/// room is gone.
pub const PLACE_ROOM: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
local current = redis.call('HGET', KEYS[2], 'server')
if (not current) or (ARGV[5] ~= '' and current == ARGV[5]) then
  redis.call('HSET', KEYS[2], 'server', ARGV[4])
  notify()
  return ARGV[4]
end
return current";

/// `KEYS[2]` a room's `settings` set to `ARGV[4]` if the room exists.
pub const ROOM_SETTINGS: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'settings', ARGV[4])
notify()
return 1";

/// `KEYS[2]` room on `ARGV[4]` is not any more, unless participants of other live proxies
/// (`ARGV[5]` is this proxy, `ARGV[6]` the prefix of heartbeat keys) are recorded there in
/// `KEYS[3]`. 1: cleared; 0: not on that server; -1: kept for the others.
pub const CLEAR_PLACEMENT: &str = r"
if redis.call('HGET', KEYS[2], 'server') ~= ARGV[4] then return 0 end
for _, raw in ipairs(redis.call('HVALS', KEYS[3])) do
  local ok, p = pcall(cjson.decode, raw)
  if ok and type(p) == 'table' and p.server == ARGV[4] and p.proxy ~= ARGV[5]
     and redis.call('EXISTS', ARGV[6] .. tostring(p.proxy)) == 1 then
    return -1
  end
end
redis.call('HDEL', KEYS[2], 'server')
notify()
return 1";

/// `KEYS[2]` a room, `KEYS[3]` its participants, `KEYS[4]` the proxy's rooms; `ARGV[4]` the
/// field, `ARGV[5]` the entry, `ARGV[6]` `<plugin>:<room>`: written only while the room exists
/// (a late write after a destroy would leave an orphan).
pub const PARTICIPANT_UP: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
redis.call('SADD', KEYS[4], ARGV[6])
notify()
return 1";

/// `KEYS[2]` a room's participants; `ARGV[4]` the field.
pub const PARTICIPANT_DOWN: &str = r"
if redis.call('HDEL', KEYS[2], ARGV[4]) == 0 then return 0 end
notify()
return 1";

/// `KEYS[2]` a room, `KEYS[3]` its participants, `KEYS[4]` the index; `ARGV[4]` the id.
pub const DESTROY_ROOM: &str = r"
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SREM', KEYS[4], ARGV[4])
notify()
return 1";

/// `KEYS[1]` (a room's coordinating proxy) becomes `ARGV[1]` (expiring after `ARGV[3]` ms)
/// unless another proxy holds it whose heartbeat (`ARGV[2]` .. id) is alive; the holder's
/// own claim renews it. Returns the holder. (No notice: nobody keeps a view of owners.)
pub const CLAIM_OWNER: &str = r"
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return current
end
if current and redis.call('EXISTS', ARGV[2] .. current) == 1 then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return ARGV[1]";

/// `KEYS[1]` deleted if it holds `ARGV[1]`.
pub const RELEASE_OWNER: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// What every notice of one proxy carries: the version key, the channel and the sender.
#[derive(Clone, Debug)]
pub struct Notify {
    version: String,
    channel: String,
    from: String,
}

impl Notify {
    pub fn new(keys: &Keys, proxy_id: &str) -> Notify {
        Notify {
            version: keys.version(),
            channel: keys.changes(),
            // A string always serialises.
            from: serde_json::to_string(proxy_id).unwrap_or_else(|_| "\"\"".into()),
        }
    }

    /// `EVAL <script with the notify step> <n keys> <version key> <keys…> <channel> <from>
    /// <changes>`: the script's own keys and arguments are added by the caller, keys first
    /// (`keys` is their number).
    pub fn eval(&self, script: &str, keys: &[&str], changes: &[Change]) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(format!("{NOTIFY_FN}{script}"))
            .arg(keys.len() + 1)
            .arg(&self.version);
        for key in keys {
            cmd.arg(*key);
        }
        cmd.arg(&self.channel)
            .arg(&self.from)
            .arg(changes_json(changes));
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notifying_script_starts_with_the_notify_step() {
        let notify = Notify::new(&Keys::new("jc"), "p\"1");
        let cmd = notify.eval(NOTIFY, &["k"], &[Change::ProxyGone { id: "x".into() }]);
        let args: Vec<String> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                redis::Arg::Cursor => String::new(),
            })
            .collect();
        assert_eq!(args[0], "EVAL");
        assert!(args[1].contains("local function notify()") && args[1].ends_with(NOTIFY));
        assert_eq!(args[2..5], ["2", "jc:version", "k"]);
        assert_eq!(args[5], "jc:changes");
        // The sender is a JSON string, quotes escaped.
        assert_eq!(args[6], r#""p\"1""#);
        assert_eq!(args[7], r#"[{"k":"proxy_gone","id":"x"}]"#);
    }
}
