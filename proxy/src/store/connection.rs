//! Where the shared store's Redis is, and connections to it.
//!
//! `store.url` names one Redis (`redis://host:port/db`, `rediss://…`) or the master of a
//! Redis Sentinel set (`redis+sentinel://host:port,host:port/<master>/db`; every form in
//! [`address`]). Every connection the store opens (the sync task's, the rooms', the
//! subscription, the exit's) asks [`RedisTarget`] for the Redis to use *now*: with Sentinel,
//! the master found last, checked with `ROLE` on every new connection; when a connection to
//! it cannot be made or it is not a master any more (a replica answers writes with
//! `READONLY`), the sentinels are asked again, and when the sentinels name another master
//! this proxy's connections to the old one are closed ([`sentinel`]). The store drops a
//! connection on any error, so after a failover the next round reconnects to the promoted
//! master.

mod address;
mod sentinel;

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use address::{RedisAddress, SentinelAddress, UrlError};
use sentinel::{Connection, SentinelSet};

/// The Redis of the shared store.
pub struct RedisTarget {
    target: Target,
}

enum Target {
    /// Always the same Redis.
    Fixed(redis::Client),
    /// The master of a sentinel set, as it is now.
    Sentinel(SentinelSet),
}

impl RedisTarget {
    /// The target `store.url` names; Err says what is wrong with it.
    pub fn parse(url: &str) -> Result<RedisTarget, UrlError> {
        let target = match RedisAddress::parse(url)? {
            RedisAddress::Single(info) => Target::Fixed(
                redis::Client::open(info).map_err(|e| UrlError::Redis(e.to_string()))?,
            ),
            RedisAddress::Sentinel(address) => {
                Target::Sentinel(SentinelSet::new(address).map_err(UrlError::Redis)?)
            }
        };
        Ok(RedisTarget { target })
    }

    /// The client of the Redis to connect to now, found within `timeout`.
    pub async fn client(&self, timeout: Duration) -> Result<redis::Client, String> {
        match &self.target {
            Target::Fixed(client) => Ok(client.clone()),
            Target::Sentinel(set) => Ok(set.master(timeout).await?.client),
        }
    }

    /// A connection (reconnecting by itself to the same server), each call and the connect
    /// bounded by `timeout`.
    pub async fn manager(&self, timeout: Duration) -> Result<ConnectionManager, String> {
        self.connect(
            timeout * 2,
            "connect timed out",
            |client, checked| async move {
                // No retry: the crate pauses 1 to 2 s before one (backon's least delay,
                // jittered), which outlasts the limit and turned every clear refusal (a dead
                // master, a bad certificate, a wrong password) into "connect timed out". The
                // store tries again at its next round, and asks the sentinels meanwhile.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout)
                    .set_number_of_retries(0);
                let mut conn = ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                let id = match checked {
                    true => Some(master_check(&mut conn).await?),
                    false => None,
                };
                Ok((conn, id))
            },
        )
        .await
    }

    /// A connection for publish/subscribe, within `timeout`.
    pub async fn pubsub(&self, timeout: Duration) -> Result<redis::aio::PubSub, String> {
        self.connect(
            timeout * 2,
            "subscribe: connect timed out",
            |client, checked| async move {
                if !checked {
                    let pubsub = client
                        .get_async_pubsub()
                        .await
                        .map_err(|e| format!("subscribe: {e}"))?;
                    return Ok((pubsub, None));
                }
                // A subscribed connection takes no other command: the role is asked on a
                // connection of its own, and the subscription is known by its address.
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| format!("subscribe: connect: {e}"))?;
                master_check(&mut conn).await?;
                let info = client.get_connection_info();
                match &info.addr {
                    redis::ConnectionAddr::Tcp(host, port) => {
                        let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                            .await
                            .map_err(|e| format!("subscribe: connect: {e}"))?;
                        let _ = stream.set_nodelay(true);
                        let local = stream.local_addr().ok();
                        let pubsub = redis::aio::PubSub::new(&info.redis, stream)
                            .await
                            .map_err(|e| format!("subscribe: {e}"))?;
                        Ok((pubsub, local.map(|a| Connection::Addr(a.to_string()))))
                    }
                    // TLS: the crate's own connection, not known by its address (left when
                    // Sentinel turns a replaced master into a replica).
                    _ => {
                        let pubsub = client
                            .get_async_pubsub()
                            .await
                            .map_err(|e| format!("subscribe: {e}"))?;
                        Ok((pubsub, None))
                    }
                }
            },
        )
        .await
    }

    /// A plain connection (no reconnection), within `timeout`.
    pub async fn multiplexed(
        &self,
        timeout: Duration,
    ) -> Result<redis::aio::MultiplexedConnection, String> {
        let limit = match self.target {
            Target::Fixed(_) => timeout,
            // The master may have to be looked up first.
            Target::Sentinel(_) => timeout * 2,
        };
        self.connect(limit, "connect timed out", |client, checked| async move {
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let id = match checked {
                true => Some(master_check(&mut conn).await?),
                false => None,
            };
            Ok((conn, id))
        })
        .await
    }

    /// `open` on the Redis to use now, all within `limit` (beyond: Err `timed_out`). `open`
    /// is told whether to check that the server is a master (Sentinel only: a fixed Redis is
    /// what it is), and returns how the server knows the connection if it can. With
    /// Sentinel, a master kept from an earlier lookup that fails is forgotten and the
    /// sentinels are asked again, once, within the same limit.
    async fn connect<C, F, Fut>(
        &self,
        limit: Duration,
        timed_out: &'static str,
        open: F,
    ) -> Result<C, String>
    where
        F: Fn(redis::Client, bool) -> Fut,
        Fut: Future<Output = Result<(C, Option<Connection>), String>>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        let timed_out = || timed_out.to_string();
        let set = match &self.target {
            Target::Fixed(client) => {
                return tokio::time::timeout_at(deadline, open(client.clone(), false))
                    .await
                    .map_err(|_| timed_out())?
                    .map(|(conn, _)| conn);
            }
            Target::Sentinel(set) => set,
        };
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let master = tokio::time::timeout_at(deadline, set.master(left))
                .await
                .map_err(|_| timed_out())??;
            let error = match tokio::time::timeout_at(deadline, open(master.client, true)).await {
                Ok(Ok((conn, known))) => {
                    if let Some(known) = known {
                        set.opened(master.generation, known);
                    }
                    return Ok(conn);
                }
                Ok(Err(e)) => e,
                Err(_) => timed_out(),
            };
            set.forget(master.generation, &error).await;
            if master.fresh || tokio::time::Instant::now() >= deadline {
                return Err(error);
            }
        }
    }
}

/// Err unless the server on `conn` is a master (`ROLE`): a demoted master (a replica now)
/// would answer reads and refuse every write with `READONLY`. Ok: how the server knows this
/// connection (`CLIENT ID`), to close it should this master be replaced while alive.
async fn master_check(conn: &mut impl redis::aio::ConnectionLike) -> Result<Connection, String> {
    let (role, id): (Vec<redis::Value>, u64) = redis::pipe()
        .cmd("ROLE")
        .cmd("CLIENT")
        .arg("ID")
        .query_async(conn)
        .await
        .map_err(|e| format!("role: {e}"))?;
    match role.first().map(redis::from_redis_value::<String>) {
        Some(Ok(role)) if role == "master" => Ok(Connection::Id(id)),
        Some(Ok(role)) => Err(format!("not a master any more (role {role})")),
        Some(Err(e)) => Err(format!("role: {e}")),
        None => Err("role: empty answer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(RedisTarget::parse("redis://127.0.0.1:6379/0").is_ok());
        assert!(RedisTarget::parse("rediss://127.0.0.1:6380/0").is_ok());
        assert!(RedisTarget::parse("redis+sentinel://127.0.0.1:26379/mymaster").is_ok());
        assert!(RedisTarget::parse("http://127.0.0.1").is_err());
        assert!(RedisTarget::parse("redis://127.0.0.1:notaport/0").is_err());
        assert!(RedisTarget::parse("redis+sentinel://127.0.0.1:26379").is_err());
    }

    /// Nothing listens on the sentinels' ports: the lookup fails within the time limit and
    /// names every sentinel.
    #[tokio::test]
    async fn no_sentinel_answers() {
        let ports: Vec<u16> = (0..2)
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
                    .expect("free port")
            })
            .collect();
        let target = RedisTarget::parse(&format!(
            "redis+sentinel://127.0.0.1:{},127.0.0.1:{}/mymaster",
            ports[0], ports[1]
        ))
        .expect("url");
        let started = std::time::Instant::now();
        let error = match target.manager(Duration::from_millis(500)).await {
            Ok(_) => panic!("connected to nothing"),
            Err(e) => e,
        };
        assert!(started.elapsed() < Duration::from_secs(2), "{error}");
        for port in ports {
            assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
        }
    }
}
