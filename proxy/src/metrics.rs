//! Prometheus metrics of one proxy. Counters on hot paths are resolved once, up front, so
//! counting a request is one atomic add; per-backend gauges are refreshed from the registry
//! at each scrape.

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Janus request types counted by name; anything else counts as `other`.
const VERBS: &[&str] = &[
    "create",
    "attach",
    "message",
    "trickle",
    "keepalive",
    "detach",
    "destroy",
    "hangup",
    "claim",
    "info",
    "ping",
    "other",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub janus: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoomServerLabels {
    pub room: String,
    pub server: String,
}

/// A videoroom room on one server, as this proxy sees it (see [`Metrics::set_videoroom`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomOnServer {
    pub room: u64,
    pub server: String,
    pub publishers: usize,
    pub mirrors: usize,
    pub subscribers: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub reason: &'static str,
}

/// Why a client connection was refused before it was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `limits.connections_per_ip` reached for the client's (real) address.
    ConnectionsPerIp,
    /// A PROXY protocol header where none is honoured, a malformed one, or none where one is
    /// required (see `transport::listener`).
    ProxyProtocol,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::ConnectionsPerIp => "connections_per_ip",
            Refusal::ProxyProtocol => "proxy_protocol",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~4 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

pub struct Metrics {
    registry: Registry,
    /// In the order of `VERBS`.
    requests: Vec<Counter>,
    errors: Family<ErrorLabels, Counter>,
    pub sessions: Gauge,
    pub handles: Gauge,
    pub client_connections: Gauge,
    refused: Family<RefusedLabels, Counter>,
    /// Client rooms destroyed because they stayed empty (`plugins.room_auto_destroy_s`).
    rooms_expired: Family<PluginLabels, Counter>,
    backend_latency: Family<BackendLabels, Histogram, fn() -> Histogram>,
    pub backend_up: Family<BackendLabels, Gauge>,
    pub backend_selectable: Family<BackendLabels, Gauge>,
    pub backend_breaker: Family<BackendLabels, Gauge>,
    pub backend_handles: Family<BackendLabels, Gauge>,
    pub backend_reconnects: Family<BackendLabels, Gauge>,
    /// The load the selection uses: reported, or handles over `registry.handle_capacity`.
    pub backend_load: Family<BackendLabels, Gauge<f64, AtomicU64>>,
    /// Sessions and handles the backend reported (all proxies'), when it reports them.
    pub backend_reported_sessions: Family<BackendLabels, Gauge>,
    pub backend_reported_handles: Family<BackendLabels, Gauge>,
    /// 1 while the shared store answers (always 1 without one).
    pub store_up: Gauge,
    /// Live proxies seen in the shared store (this one included).
    pub store_proxies: Gauge,
    /// Videoroom rooms per server (refilled at each scrape from the room book).
    videoroom_publishers: Family<RoomServerLabels, Gauge>,
    videoroom_mirrors: Family<RoomServerLabels, Gauge>,
    videoroom_subscribers: Family<RoomServerLabels, Gauge>,
    /// Serialises scrapes: the per-backend families are cleared and refilled by each.
    pub scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("janus_proxy");
        let requests_family = Family::<RequestLabels, Counter>::default();
        let requests = VERBS
            .iter()
            .map(|verb| {
                let counter = requests_family
                    .get_or_create(&RequestLabels {
                        janus: (*verb).to_owned(),
                    })
                    .clone();
                counter
            })
            .collect();
        registry.register(
            "client_requests",
            "Janus API requests from clients, by request type",
            requests_family,
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "client_errors",
            "Janus error replies sent to clients, by error code",
            errors.clone(),
        );
        let sessions = Gauge::default();
        registry.register("sessions", "Client sessions", sessions.clone());
        let handles = Gauge::default();
        registry.register("handles", "Client plugin handles", handles.clone());
        let client_connections = Gauge::default();
        registry.register(
            "client_connections",
            "Open client WebSocket connections",
            client_connections.clone(),
        );
        let refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "client_connections_refused",
            "Client connections refused before they were served, by reason",
            refused.clone(),
        );
        let rooms_expired = Family::<PluginLabels, Counter>::default();
        registry.register(
            "rooms_expired",
            "Client-created rooms destroyed after staying empty for plugins.room_auto_destroy_s, by plugin",
            rooms_expired.clone(),
        );
        let backend_latency = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "backend_request_duration_seconds",
            "Time from a request to a backend Janus until its first reply",
            backend_latency.clone(),
        );
        let backend_up = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_link_up",
            "1 while the link to the backend has a live backend session",
            backend_up.clone(),
        );
        let backend_selectable = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_selectable",
            "1 while new handles may be placed on the backend",
            backend_selectable.clone(),
        );
        let backend_breaker = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_breaker_state",
            "Circuit breaker of the backend: 0 closed, 1 half-open, 2 open",
            backend_breaker.clone(),
        );
        let backend_handles = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_handles",
            "Backend handles this proxy holds on the backend",
            backend_handles.clone(),
        );
        let backend_reconnects = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_link_reconnects",
            "Times the link to the backend was re-established",
            backend_reconnects.clone(),
        );
        let backend_load = Family::<BackendLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "backend_load",
            "Load of the backend as the selection sees it: 0 idle, 1 at capacity",
            backend_load.clone(),
        );
        let backend_reported_sessions = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_reported_sessions",
            "Sessions the backend reported (all proxies'); absent when it reports none",
            backend_reported_sessions.clone(),
        );
        let backend_reported_handles = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_reported_handles",
            "Handles the backend reported (all proxies'); absent when it reports none",
            backend_reported_handles.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "store_up",
            "1 while the shared state store (Redis) answers; 0 while degraded",
            store_up.clone(),
        );
        let store_proxies = Gauge::default();
        registry.register(
            "store_proxies",
            "Live proxies whose heartbeat is in the shared store",
            store_proxies.clone(),
        );
        let room_family = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<RoomServerLabels, Gauge>::default();
            registry.register(name, help, family.clone());
            family
        };
        let videoroom_publishers = room_family(
            &mut registry,
            "videoroom_room_publishers",
            "Publishers of a videoroom room on a server (this proxy's, and other proxies' with a shared store)",
        );
        let videoroom_mirrors = room_family(
            &mut registry,
            "videoroom_room_mirrors",
            "Publishers of a spanning videoroom room mirrored to a server",
        );
        let videoroom_subscribers = room_family(
            &mut registry,
            "videoroom_room_subscribers",
            "This proxy's subscribers of a videoroom room on a server",
        );
        Metrics {
            videoroom_publishers,
            videoroom_mirrors,
            videoroom_subscribers,
            registry,
            store_up,
            store_proxies,
            requests,
            errors,
            sessions,
            handles,
            client_connections,
            refused,
            rooms_expired,
            backend_latency,
            backend_up,
            backend_selectable,
            backend_breaker,
            backend_handles,
            backend_reconnects,
            backend_load,
            backend_reported_sessions,
            backend_reported_handles,
            scrape: Mutex::new(()),
        }
    }

    /// Counts one client request of type `janus` (matched case-insensitively, as Janus does).
    pub fn request(&self, janus: &str) {
        let index = VERBS
            .iter()
            .position(|v| v.eq_ignore_ascii_case(janus))
            .unwrap_or(VERBS.len() - 1);
        if let Some(counter) = self.requests.get(index) {
            counter.inc();
        }
    }

    /// Counts one refused client connection.
    pub fn refused(&self, why: Refusal) {
        self.refused
            .get_or_create(&RefusedLabels {
                reason: why.label(),
            })
            .inc();
    }

    /// Counts one room of `plugin` expired (destroyed by this proxy after staying empty).
    pub fn room_expired(&self, plugin: &'static str) {
        self.rooms_expired
            .get_or_create(&PluginLabels { plugin })
            .inc();
    }

    /// Counts one error reply to a client.
    pub fn error(&self, code: u16) {
        self.errors.get_or_create(&ErrorLabels { code }).inc();
    }

    /// The latency histogram of one backend, for its link to observe into.
    pub fn backend_latency(&self, backend: &str) -> Histogram {
        self.backend_latency
            .get_or_create(&BackendLabels {
                backend: backend.to_owned(),
            })
            .clone()
    }

    /// Forgets a backend that left the registry.
    pub fn forget_backend(&self, backend: &str) {
        let labels = BackendLabels {
            backend: backend.to_owned(),
        };
        self.backend_latency.remove(&labels);
    }

    /// The videoroom rooms per server, replacing the previous figures (rooms gone or moved
    /// leave the families).
    pub fn set_videoroom(&self, rows: impl IntoIterator<Item = RoomOnServer>) {
        self.videoroom_publishers.clear();
        self.videoroom_mirrors.clear();
        self.videoroom_subscribers.clear();
        for row in rows {
            let labels = RoomServerLabels {
                room: row.room.to_string(),
                server: row.server,
            };
            let set = |family: &Family<RoomServerLabels, Gauge>, n: usize| {
                family
                    .get_or_create(&labels)
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            };
            set(&self.videoroom_publishers, row.publishers);
            set(&self.videoroom_mirrors, row.mirrors);
            set(&self.videoroom_subscribers, row.subscribers);
        }
    }

    /// The OpenMetrics text of everything.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_text() {
        let m = Metrics::new();
        m.request("attach");
        m.request("attach");
        m.request("bogus");
        m.request("ATTACH");
        m.error(458);
        m.room_expired("videoroom");
        m.backend_latency("janus-1").observe(0.002);
        m.backend_up
            .get_or_create(&BackendLabels {
                backend: "janus-1".into(),
            })
            .set(1);
        let text = m.encode();
        assert!(
            text.contains("janus_proxy_client_requests_total{janus=\"attach\"} 3"),
            "{text}"
        );
        assert!(text.contains("janus_proxy_client_requests_total{janus=\"other\"} 1"));
        assert!(text.contains("janus_proxy_client_errors_total{code=\"458\"} 1"));
        assert!(text.contains("janus_proxy_rooms_expired_total{plugin=\"videoroom\"} 1"));
        assert!(text
            .contains("janus_proxy_backend_request_duration_seconds_count{backend=\"janus-1\"} 1"));
        assert!(text.contains("janus_proxy_backend_link_up{backend=\"janus-1\"} 1"));
    }
}
