//! Plugins' homes in Redis: the one backend server of a plugin with cluster affinity
//! (`plugins.affinity`), so that every proxy puts that plugin's handles on the same server.

use crate::messages::cluster::{SharedHomes, StoreDown, StoreFuture};

use super::{scripts, StoreHandle};

impl SharedHomes for StoreHandle {
    fn home(&self, package: &str) -> StoreFuture<Result<Option<String>, StoreDown>> {
        let asked = self
            .conn
            .clone()
            .filter(|_| !self.is_degraded())
            .map(|conn| {
                let mut cmd = redis::cmd("GET");
                cmd.arg(self.keys.home(package));
                (conn, cmd)
            });
        Box::pin(async move {
            let (conn, cmd) = asked.ok_or(StoreDown)?;
            conn.query("read home", &cmd).await.map_err(|_| StoreDown)
        })
    }

    fn claim_home(
        &self,
        package: &str,
        server: &str,
        dead: Option<&str>,
    ) -> StoreFuture<Result<String, StoreDown>> {
        let asked = self
            .conn
            .clone()
            .filter(|_| !self.is_degraded())
            .map(|conn| {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(scripts::CLAIM_HOME)
                    .arg(1)
                    .arg(self.keys.home(package))
                    .arg(server)
                    .arg(dead.unwrap_or(""));
                (conn, cmd)
            });
        Box::pin(async move {
            let (conn, cmd) = asked.ok_or(StoreDown)?;
            conn.query("claim home", &cmd).await.map_err(|_| StoreDown)
        })
    }
}
