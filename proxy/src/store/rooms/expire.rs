//! Expiring a client's room that stayed empty (`plugins.room_auto_destroy_s`): one script
//! decides, so that of two proxies whose clocks ran out together exactly one destroys it, and
//! a participant that joined through another proxy meanwhile keeps it.

use super::{Expired, RoomKind, RoomStore, StoreDown};

/// `KEYS[2]` a room, `KEYS[3]` its participants, `KEYS[4]` the index; `ARGV[4]` the id,
/// `ARGV[5]` the prefix of the proxies' heartbeat keys. Deleted (1) if it is a client's room
/// (`origin` `client`, not `permanent`: a room without `origin`, written by an older proxy, is
/// kept) in which no participant of a live proxy is recorded; 0: no such room; -1: kept.
pub const EXPIRE_ROOM: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
if redis.call('HGET', KEYS[2], 'origin') ~= 'client'
   or redis.call('HGET', KEYS[2], 'permanent') == '1' then
  return -1
end
for _, raw in ipairs(redis.call('HVALS', KEYS[3])) do
  local ok, p = pcall(cjson.decode, raw)
  if ok and type(p) == 'table' and p.proxy
     and redis.call('EXISTS', ARGV[5] .. tostring(p.proxy)) == 1 then
    return -1
  end
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SREM', KEYS[4], ARGV[4])
notify()
return 1";

impl RoomStore {
    /// Deletes client room `id` unless a live proxy's participant is recorded in it (see
    /// [`EXPIRE_ROOM`]). Every proxy hears of it through the change feed.
    pub async fn expire(&self, kind: RoomKind, id: u64) -> Result<Expired, StoreDown> {
        let (participants, index) = (self.keys.participants(kind, id), self.keys.room_index(kind));
        let mut cmd = self.room_eval(
            EXPIRE_ROOM,
            kind,
            id,
            &[participants.as_str(), index.as_str()],
            Self::room_change(kind, id),
        );
        cmd.arg(id).arg(self.keys.proxy(""));
        // A read that began before must not bring the room back.
        self.touch(kind, id);
        let outcome = match self.query::<i64>("expire room", &cmd).await? {
            1 => Expired::Now,
            0 => Expired::Gone,
            _ => Expired::Kept,
        };
        if outcome != Expired::Kept {
            self.participants
                .lock()
                .retain(|(k, room, _), _| !(*k == kind && *room == id));
        }
        Ok(outcome)
    }
}
