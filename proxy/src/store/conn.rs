//! One Redis connection shared by the store's tasks (a multiplexed connection: their commands
//! interleave without waiting for each other), each command bounded by `timeout_ms`. Any
//! failure drops the connection: the next command connects again, through
//! [`RedisTarget::client`], so a Redis that moved (a failover) is followed.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::ConnectionManager;

use super::connection::RedisTarget;

pub struct StoreConn {
    target: Arc<RedisTarget>,
    conn: Mutex<Option<ConnectionManager>>,
    timeout: Duration,
}

/// What went wrong, for logs and `/readyz`.
pub type Failed = String;

impl StoreConn {
    pub fn new(target: Arc<RedisTarget>, timeout: Duration) -> StoreConn {
        StoreConn {
            target,
            conn: Mutex::new(None),
            timeout,
        }
    }

    pub fn target(&self) -> &Arc<RedisTarget> {
        &self.target
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn connection(&self) -> Result<ConnectionManager, Failed> {
        if let Some(conn) = self.conn.lock().clone() {
            return Ok(conn);
        }
        let conn = self.target.manager(self.timeout).await?;
        *self.conn.lock() = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection (after a failure: the next command connects again).
    pub fn reset(&self) {
        *self.conn.lock() = None;
    }

    /// One command.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, Failed> {
        let mut conn = self.connection().await?;
        let result = tokio::time::timeout(self.timeout, cmd.query_async(&mut conn)).await;
        self.outcome(what, result)
    }

    /// A pipeline (atomic if built so).
    pub async fn pipe<T: redis::FromRedisValue>(
        &self,
        what: &str,
        pipe: &redis::Pipeline,
    ) -> Result<T, Failed> {
        let mut conn = self.connection().await?;
        let result = tokio::time::timeout(self.timeout, pipe.query_async(&mut conn)).await;
        self.outcome(what, result)
    }

    fn outcome<T>(
        &self,
        what: &str,
        result: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, Failed> {
        let failed = match result {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => format!("{what}: {e}"),
            Err(_) => format!("{what}: timed out"),
        };
        self.reset();
        Err(failed)
    }
}
