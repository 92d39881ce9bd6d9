//! What a stopping proxy removes from the shared store: its user names, its participant
//! entries, then its heartbeat, record and index entry, with a notice that it left, so that
//! every other proxy sees it gone at once. Runs on a connection of its own, after the sync
//! task has stopped (or with the runtime gone, from a thread of its own).

use std::sync::Arc;
use std::time::Duration;

use super::conn::StoreConn;
use super::connection::RedisTarget;
use super::forget::Forget;
use super::keys::Keys;
use super::scripts::Notify;

#[derive(Clone)]
pub struct StoreExit {
    target: Arc<RedisTarget>,
    keys: Keys,
    proxy_id: String,
    topics: Vec<String>,
    timeout: Duration,
}

impl StoreExit {
    pub(super) fn new(
        target: Arc<RedisTarget>,
        keys: Keys,
        proxy_id: String,
        topics: Vec<String>,
        timeout: Duration,
    ) -> Self {
        StoreExit {
            target,
            keys,
            proxy_id,
            topics,
            timeout,
        }
    }

    /// Each Redis call's bound (`store.timeout_ms`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A graceful stop that hands the sessions over (docs/adoption.md): only the heartbeat
    /// goes, so that the others find this proxy gone at their next round and one of them
    /// adopts its sessions from its records, as after a death.
    pub async fn hand_over(&self) -> Result<(), String> {
        let conn = StoreConn::new(self.target.clone(), self.timeout);
        let mut del = redis::cmd("DEL");
        del.arg(self.keys.proxy(&self.proxy_id));
        conn.query::<i64>("hand over", &del).await.map(|_| ())
    }

    pub async fn run(&self) -> Result<(), String> {
        let conn = StoreConn::new(self.target.clone(), self.timeout);
        let notify = Notify::new(&self.keys, &self.proxy_id);
        let forget = Forget {
            conn: &conn,
            keys: &self.keys,
            notify: &notify,
            topics: &self.topics,
            id: &self.proxy_id,
        };
        forget.users().await?;
        forget.participants().await?;
        // Last: never a record without a heartbeat, which a survivor would reap.
        forget.proxy().await
    }
}
