//! Where the shared store's Redis is, and connections to it.
//!
//! `store.url` names one Redis (`redis://host:port/db`, `rediss://…`). Every connection the
//! store opens (the sync task's, the rooms', the subscription, the exit's) asks
//! [`RedisTarget::client`] for the client of the Redis to use *now*, so that a target whose
//! address can change (a master promoted by Redis Sentinel) is looked up again at every
//! reconnection; the store drops a connection on any error, so a failover is followed at the
//! next round.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The Redis of the shared store.
pub struct RedisTarget {
    client: redis::Client,
}

impl RedisTarget {
    /// The target `store.url` names; Err names what is wrong with it.
    pub fn parse(url: &str) -> Result<RedisTarget, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        Ok(RedisTarget { client })
    }

    /// The client of the Redis to connect to now, found within `timeout`.
    pub async fn client(&self, _timeout: Duration) -> Result<redis::Client, String> {
        Ok(self.client.clone())
    }

    /// A connection (reconnecting by itself to the same server), each call and the connect
    /// bounded by `timeout`.
    pub async fn manager(&self, timeout: Duration) -> Result<ConnectionManager, String> {
        let client = self.client(timeout).await?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            // No retries of its own: a refused connect fails at once and the store's next
            // round (or command) connects again.
            .set_number_of_retries(0);
        tokio::time::timeout(
            timeout * 2,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))
    }

    /// A connection for publish/subscribe, within `timeout`.
    pub async fn pubsub(&self, timeout: Duration) -> Result<redis::aio::PubSub, String> {
        let client = self.client(timeout).await?;
        tokio::time::timeout(timeout * 2, client.get_async_pubsub())
            .await
            .map_err(|_| "subscribe: connect timed out".to_string())?
            .map_err(|e| format!("subscribe: {e}"))
    }

    /// A plain connection (no reconnection), within `timeout`.
    pub async fn multiplexed(
        &self,
        timeout: Duration,
    ) -> Result<redis::aio::MultiplexedConnection, String> {
        let client = self.client(timeout).await?;
        tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(RedisTarget::parse("redis://127.0.0.1:6379/0").is_ok());
        assert!(RedisTarget::parse("http://127.0.0.1").is_err());
        assert!(RedisTarget::parse("redis://127.0.0.1:notaport/0").is_err());
    }
}
