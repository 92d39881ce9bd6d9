//! Plugins' homes in Redis: the one backend server of a plugin with cluster affinity
//! (`plugins.affinity`), so that every proxy puts that plugin's handles on the same server.

use crate::messages::cluster::{SharedHomes, StoreDown, StoreFuture};

use super::{scripts, StoreHandle};

impl StoreHandle {
    /// One command to Redis, unless it is known to be away.
    fn ask<T: redis::FromRedisValue + 'static>(
        &self,
        what: &'static str,
        cmd: redis::Cmd,
    ) -> StoreFuture<Result<T, StoreDown>> {
        let conn = self.live_conn();
        Box::pin(async move {
            let conn = conn.ok_or(StoreDown)?;
            conn.query(what, &cmd).await.map_err(|_| StoreDown)
        })
    }
}

impl SharedHomes for StoreHandle {
    fn home(&self, package: &str) -> StoreFuture<Result<Option<String>, StoreDown>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.keys.home(package));
        self.ask("read home", cmd)
    }

    fn claim_home(
        &self,
        package: &str,
        server: &str,
        dead: Option<&str>,
    ) -> StoreFuture<Result<String, StoreDown>> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::CLAIM_HOME)
            .arg(1)
            .arg(self.keys.home(package))
            .arg(server)
            .arg(dead.unwrap_or(""));
        self.ask("claim home", cmd)
    }
}
