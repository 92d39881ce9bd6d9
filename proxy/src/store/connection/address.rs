//! The forms of `store.url`, parsed without connecting anywhere.
//!
//! * One Redis: `redis://[[user]:password@]host[:port][/db]`, `rediss://…` (TLS; the server's
//!   certificate is checked against the system's trusted roots, or those of the PEM file the
//!   environment variable `SSL_CERT_FILE` names), `redis+unix:///path.sock` (`?db=…&pass=…`).
//!   These are the `redis` crate's own forms.
//! * A master watched by Redis Sentinel:
//!   `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/<master>[/<db>][?sentinel_username=…&sentinel_password=…]`
//!   — the sentinels (port 26379 when not given), the name they monitor the master under
//!   (`sentinel monitor <master> …`), the database. The user and password are the *data*
//!   nodes' (`requirepass`/ACL of the master and its replicas), as in a `redis://` URL; the
//!   sentinels' own, when they have one, go in the query. `rediss+sentinel://` speaks TLS to
//!   the sentinels and to the master. Reserved characters in a password or name are
//!   percent-encoded (`%40` for `@`, `%2C` for `,`, …).

use std::fmt;

use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo};

/// Where a sentinel listens when its URL gives no port.
pub const SENTINEL_PORT: u16 = 26379;

/// What is wrong with `store.url`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "unknown scheme {0:?}: expected redis://, rediss://, redis+unix://, \
         redis+sentinel:// or rediss+sentinel://"
    )]
    Scheme(String),
    #[error("{0}")]
    Redis(String),
    #[error(
        "rediss://…#insecure (no certificate check) is not supported: give Redis a certificate \
         the system trusts, or name its CA's PEM file in SSL_CERT_FILE"
    )]
    Insecure,
    #[error("sentinel URL: no sentinel listed before the master name")]
    NoSentinel,
    #[error("sentinel URL: bad sentinel address {0:?} (host[:port], [ipv6][:port])")]
    SentinelAddress(String),
    #[error("sentinel URL: sentinel {0} listed twice")]
    DuplicateSentinel(String),
    #[error("sentinel URL: the master name is missing (…/<master>[/<db>])")]
    NoMaster,
    #[error("sentinel URL: bad master name {0:?} (letters, digits, '.', '-', '_')")]
    MasterName(String),
    #[error("sentinel URL: bad database {0:?} (a number ≥ 0)")]
    Database(String),
    #[error("sentinel URL: unexpected {0:?} after the database")]
    TrailingPath(String),
    #[error("sentinel URL: bad percent-encoding in {0}")]
    Encoding(&'static str),
    #[error("sentinel URL: unknown parameter {0:?} (known: sentinel_username, sentinel_password)")]
    Parameter(String),
    #[error("sentinel URL: parameter {0} given twice or empty")]
    ParameterValue(String),
    #[error("sentinel URL: a #fragment is not supported")]
    Fragment,
}

/// What `store.url` names.
#[derive(Debug)]
pub enum RedisAddress {
    /// One Redis, always the same.
    Single(ConnectionInfo),
    /// The master of a set watched by Redis Sentinel, found through the sentinels.
    Sentinel(SentinelAddress),
}

/// A master watched by Redis Sentinel.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelAddress {
    /// (host, port) of every sentinel, in the URL's order.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the master under.
    pub master: String,
    /// TLS to the sentinels and to the data nodes.
    pub tls: bool,
    /// Database on the master.
    pub db: i64,
    /// The data nodes' credentials.
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sentinels' own credentials.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
}

// Passwords stay out of logs and error messages.
impl fmt::Debug for SentinelAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |p: &Option<String>| p.as_ref().map(|_| "***");
        f.debug_struct("SentinelAddress")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("tls", &self.tls)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &hidden(&self.sentinel_password))
            .finish()
    }
}

impl RedisAddress {
    pub fn parse(url: &str) -> Result<RedisAddress, UrlError> {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        match scheme {
            "redis+sentinel" | "rediss+sentinel" => {
                SentinelAddress::parse(url).map(RedisAddress::Sentinel)
            }
            "redis" | "rediss" | "redis+unix" | "unix" => {
                // Not echoed: it may hold a password.
                let parsed = redis::parse_redis_url(url)
                    .ok_or_else(|| UrlError::Redis("not a valid URL".into()))?;
                // Without the `tls-rustls-insecure` feature the crate would accept this and
                // fail at every connection.
                if scheme == "rediss" && parsed.fragment() == Some("insecure") {
                    return Err(UrlError::Insecure);
                }
                redis::IntoConnectionInfo::into_connection_info(parsed)
                    .map(RedisAddress::Single)
                    .map_err(|e| UrlError::Redis(e.to_string()))
            }
            _ => Err(UrlError::Scheme(scheme.to_owned())),
        }
    }
}

impl SentinelAddress {
    fn parse(url: &str) -> Result<SentinelAddress, UrlError> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        // The user information ends at the last '@' before the path (a password is
        // percent-encoded, but be lenient with an '@' in it).
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (
                    non_empty(percent_decode(user, "the user name")?),
                    Some(percent_decode(password, "the password")?),
                ),
                None => (non_empty(percent_decode(info, "the user name")?), None),
            },
        };
        let mut sentinels: Vec<(String, u16)> = Vec::new();
        for item in hosts.split(',') {
            if item.is_empty() {
                if hosts.is_empty() {
                    return Err(UrlError::NoSentinel);
                }
                return Err(UrlError::SentinelAddress(item.to_owned()));
            }
            let sentinel = host_port(item)?;
            if sentinels.contains(&sentinel) {
                return Err(UrlError::DuplicateSentinel(item.to_owned()));
            }
            sentinels.push(sentinel);
        }
        let mut segments = path.split('/');
        let master = segments.next().unwrap_or("");
        if master.is_empty() {
            return Err(UrlError::NoMaster);
        }
        if !master
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(UrlError::MasterName(master.to_owned()));
        }
        let db = match segments.next() {
            None | Some("") => 0,
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| UrlError::Database(text.to_owned()))?,
        };
        let trailing: Vec<&str> = segments.collect();
        if trailing.iter().any(|s| !s.is_empty()) {
            return Err(UrlError::TrailingPath(trailing.join("/")));
        }
        let mut address = SentinelAddress {
            sentinels,
            master: master.to_owned(),
            tls: scheme == "rediss+sentinel",
            db,
            username,
            password,
            sentinel_username: None,
            sentinel_password: None,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "sentinel_username" => &mut address.sentinel_username,
                "sentinel_password" => &mut address.sentinel_password,
                _ => return Err(UrlError::Parameter(key.to_owned())),
            };
            if slot.is_some() || value.is_empty() {
                return Err(UrlError::ParameterValue(key.to_owned()));
            }
            *slot = Some(percent_decode(value, "a parameter")?);
        }
        Ok(address)
    }

    /// How to reach sentinel `index` (with the sentinels' credentials).
    pub fn sentinel_info(&self, index: usize) -> Option<ConnectionInfo> {
        let (host, port) = self.sentinels.get(index)?.clone();
        Some(ConnectionInfo {
            addr: self.addr(host, port),
            redis: RedisConnectionInfo {
                db: 0,
                username: self.sentinel_username.clone(),
                password: self.sentinel_password.clone(),
                ..RedisConnectionInfo::default()
            },
        })
    }

    /// How to talk to the data nodes, once a sentinel named one.
    pub fn node_info(&self) -> redis::sentinel::SentinelNodeConnectionInfo {
        redis::sentinel::SentinelNodeConnectionInfo {
            tls_mode: self.tls.then_some(redis::TlsMode::Secure),
            redis_connection_info: Some(RedisConnectionInfo {
                db: self.db,
                username: self.username.clone(),
                password: self.password.clone(),
                ..RedisConnectionInfo::default()
            }),
        }
    }

    fn addr(&self, host: String, port: u16) -> ConnectionAddr {
        if self.tls {
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, port)
        }
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn host_port(item: &str) -> Result<(String, u16), UrlError> {
    let bad = || UrlError::SentinelAddress(item.to_owned());
    let (host, port) = if let Some(bracketed) = item.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or_else(bad)?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match item.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (item, None),
        }
    };
    let host_ok = !host.is_empty()
        && (item.starts_with('[')
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
    if !host_ok {
        return Err(bad());
    }
    let port = match port {
        None => SENTINEL_PORT,
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(bad)?,
    };
    Ok((host.to_owned(), port))
}

/// `%XX` sequences decoded (as UTF-8); `what` names the part for the error.
fn percent_decode(text: &str, what: &'static str) -> Result<String, UrlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(UrlError::Encoding(what))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::Encoding(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> SentinelAddress {
        match RedisAddress::parse(url) {
            Ok(RedisAddress::Sentinel(address)) => address,
            other => panic!("{url}: {other:?}"),
        }
    }

    fn error(url: &str) -> UrlError {
        match RedisAddress::parse(url) {
            Err(e) => e,
            Ok(address) => panic!("{url} accepted: {address:?}"),
        }
    }

    #[test]
    fn single_redis_urls_are_the_crates() {
        match RedisAddress::parse("redis://:secret@10.0.0.5:6380/2") {
            Ok(RedisAddress::Single(info)) => {
                assert_eq!(info.addr.to_string(), "10.0.0.5:6380");
                assert_eq!(info.redis.db, 2);
                assert_eq!(info.redis.password.as_deref(), Some("secret"));
                assert!(matches!(info.addr, ConnectionAddr::Tcp(..)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            RedisAddress::parse("redis+unix:///run/redis.sock?db=1"),
            Ok(RedisAddress::Single(_))
        ));
        assert!(matches!(
            error("http://127.0.0.1:6379"),
            UrlError::Scheme(_)
        ));
        assert!(matches!(error("127.0.0.1:6379"), UrlError::Scheme(_)));
        assert!(matches!(
            error("redis://127.0.0.1:notaport/0"),
            UrlError::Redis(_)
        ));
        assert!(matches!(
            error("redis://127.0.0.1:6379/notadb"),
            UrlError::Redis(_)
        ));
    }

    #[test]
    fn rediss_is_tls_with_a_checked_certificate() {
        match RedisAddress::parse("rediss://user:pw@redis.example.org:6380/1") {
            Ok(RedisAddress::Single(info)) => {
                assert!(
                    matches!(
                        &info.addr,
                        ConnectionAddr::TcpTls { host, port: 6380, insecure: false, .. }
                            if host == "redis.example.org"
                    ),
                    "{:?}",
                    info.addr
                );
                assert_eq!(info.redis.username.as_deref(), Some("user"));
                assert_eq!(info.redis.db, 1);
            }
            other => panic!("{other:?}"),
        }
        // A client can be made of it (the TLS feature is built in).
        assert!(redis::Client::open("rediss://127.0.0.1:6380/0").is_ok());
        assert_eq!(
            error("rediss://127.0.0.1:6380/0#insecure"),
            UrlError::Insecure
        );
    }

    #[test]
    fn a_sentinel_set_with_its_master_name() {
        let a = sentinel("redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,sentinel-3/mymaster");
        assert_eq!(
            a.sentinels,
            vec![
                ("10.0.0.1".to_owned(), 26379),
                ("10.0.0.2".to_owned(), 26380),
                ("sentinel-3".to_owned(), SENTINEL_PORT),
            ]
        );
        assert_eq!(a.master, "mymaster");
        assert_eq!(a.db, 0);
        assert!(!a.tls);
        assert_eq!((&a.username, &a.password), (&None, &None));
        let info = a.sentinel_info(1).expect("second sentinel");
        assert_eq!(info.addr.to_string(), "10.0.0.2:26380");
        assert!(a.sentinel_info(3).is_none());
        assert!(a.node_info().tls_mode.is_none());
    }

    #[test]
    fn data_node_and_sentinel_credentials_and_database() {
        let a = sentinel(
            "rediss+sentinel://app:p%40ss%3Aw0rd@[::1]:26379,127.0.0.1/cache-1.eu/3\
             ?sentinel_password=s3cret&sentinel_username=watcher",
        );
        assert!(a.tls);
        assert_eq!(
            a.sentinels,
            vec![("::1".to_owned(), 26379), ("127.0.0.1".to_owned(), 26379)]
        );
        assert_eq!(a.master, "cache-1.eu");
        assert_eq!(a.db, 3);
        assert_eq!(a.username.as_deref(), Some("app"));
        assert_eq!(a.password.as_deref(), Some("p@ss:w0rd"));
        assert_eq!(a.sentinel_username.as_deref(), Some("watcher"));
        assert_eq!(a.sentinel_password.as_deref(), Some("s3cret"));
        let node = a.node_info();
        assert!(matches!(node.tls_mode, Some(redis::TlsMode::Secure)));
        let redis = node.redis_connection_info.expect("node credentials");
        assert_eq!(
            (redis.db, redis.password.as_deref()),
            (3, Some("p@ss:w0rd"))
        );
        let info = a.sentinel_info(0).expect("sentinel");
        assert!(matches!(
            info.addr,
            ConnectionAddr::TcpTls {
                insecure: false,
                ..
            }
        ));
        assert_eq!(info.redis.password.as_deref(), Some("s3cret"));
        assert_eq!(info.redis.db, 0);
        // A password alone, and a trailing slash.
        let a = sentinel("redis+sentinel://:pw@h1/m/");
        assert_eq!(
            (a.username, a.password.as_deref(), a.db),
            (None, Some("pw"), 0)
        );
        // Passwords never reach a log line through Debug.
        let shown = format!(
            "{:?}",
            sentinel("redis+sentinel://:hunter2@h1/m?sentinel_password=x9")
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("x9"),
            "{shown}"
        );
    }

    /// The variant's name, to compare errors without their text.
    fn variant(e: &UrlError) -> &'static str {
        match e {
            UrlError::Scheme(_) => "Scheme",
            UrlError::Redis(_) => "Redis",
            UrlError::Insecure => "Insecure",
            UrlError::NoSentinel => "NoSentinel",
            UrlError::SentinelAddress(_) => "SentinelAddress",
            UrlError::DuplicateSentinel(_) => "DuplicateSentinel",
            UrlError::NoMaster => "NoMaster",
            UrlError::MasterName(_) => "MasterName",
            UrlError::Database(_) => "Database",
            UrlError::TrailingPath(_) => "TrailingPath",
            UrlError::Encoding(_) => "Encoding",
            UrlError::Parameter(_) => "Parameter",
            UrlError::ParameterValue(_) => "ParameterValue",
            UrlError::Fragment => "Fragment",
        }
    }

    #[test]
    fn bad_sentinel_urls_say_what_is_wrong() {
        let cases = [
            ("redis+sentinel:///mymaster", "NoSentinel"),
            ("redis+sentinel://h1,,h2/m", "SentinelAddress"),
            ("redis+sentinel://h1:0/m", "SentinelAddress"),
            ("redis+sentinel://h1:70000/m", "SentinelAddress"),
            ("redis+sentinel://h1:x/m", "SentinelAddress"),
            ("redis+sentinel://[::1/m", "SentinelAddress"),
            ("redis+sentinel://[nothost]:1/m", "SentinelAddress"),
            ("redis+sentinel://h 1/m", "SentinelAddress"),
            ("redis+sentinel://h1,h1:26379/m", "DuplicateSentinel"),
            ("redis+sentinel://h1", "NoMaster"),
            ("redis+sentinel://h1/", "NoMaster"),
            ("redis+sentinel://h1/my master", "MasterName"),
            ("redis+sentinel://h1/m/-1", "Database"),
            ("redis+sentinel://h1/m/x", "Database"),
            ("redis+sentinel://h1/m/0/extra", "TrailingPath"),
            ("redis+sentinel://:%zz@h1/m", "Encoding"),
            ("redis+sentinel://:%ff@h1/m", "Encoding"),
            ("redis+sentinel://h1/m?password=x", "Parameter"),
            ("redis+sentinel://h1/m?sentinel_password=", "ParameterValue"),
            (
                "redis+sentinel://h1/m?sentinel_password=a&sentinel_password=b",
                "ParameterValue",
            ),
            ("redis+sentinel://h1/m#frag", "Fragment"),
            ("sentinel://h1/m", "Scheme"),
        ];
        for (url, expected) in cases {
            let e = error(url);
            assert_eq!(variant(&e), expected, "{url}: {e}");
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn errors_never_show_a_password() {
        for url in [
            "http://user:hunter2@h1:6379/0",
            "redis://user:hunter2@h1:notaport/0",
            "redis+sentinel://user:hunter2@h1/bad name",
            "redis+sentinel://user:hunter2@/m",
        ] {
            let shown = error(url).to_string();
            assert!(!shown.contains("hunter2"), "{url}: {shown}");
        }
    }

    #[test]
    fn the_config_check_accepts_every_form() {
        let mut cfg = crate::config::ProxyConfig::default();
        for url in [
            "redis://127.0.0.1:6379/0",
            "rediss://127.0.0.1:6380/0",
            "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/0",
        ] {
            cfg.store.url = url.into();
            assert!(cfg.validate().is_ok(), "{url}");
        }
        cfg.store.url = "redis+sentinel://127.0.0.1:26379".into();
        let e = cfg.validate().expect_err("no master name");
        assert!(e.to_string().contains("master name"), "{e}");
    }
}
