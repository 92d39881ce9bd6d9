//! Who may use which admin route. Three kinds of route:
//!
//! * open: `/livez`, `/readyz`, `/ping`, `/openapi.json` and the console's static page and
//!   script (no state in them);
//! * scrape: `/metrics`, open unless `admin.metrics_token` is set;
//! * read: everything that shows sessions, servers, rooms or the console's data (a client
//!   session id is all it takes to use that session, and servers show the topology): the
//!   admin token or the read-only `admin.read_token`; with neither configured they are
//!   refused, whatever address the listener has;
//! * change: every POST and DELETE, and `GET /tokens` (stored client tokens are secrets):
//!   the admin token alone.
//!
//! The decision is a pure function of the configured tokens and the one the request gave;
//! handlers declare what they need with an extractor ([`CanRead`], [`CanChange`],
//! [`CanScrape`]), so a route's access is in its signature.

use std::future::{ready, Ready};
use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use serde_json::json;

use crate::auth::constant_time_eq;
use crate::config::AdminConfig;
use crate::state::ProxyState;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Scrape,
    Read,
    Change,
}

/// Why a request was refused: 401 when it lacks a valid token, 403 when its token (or the
/// configuration) does not allow the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this route needs a token: Authorization: Bearer <token>")]
    Missing,
    #[error("missing or wrong admin token")]
    Wrong,
    #[error("the read-only token (admin.read_token) cannot change anything; use admin.token")]
    ReadOnly,
    #[error("the metrics token (admin.metrics_token) only reads /metrics")]
    MetricsOnly,
    #[error("no admin token is configured (admin.token), so changes are refused")]
    NoAdminToken,
    #[error(
        "no admin token is configured (admin.token or admin.read_token), so reads of \
         sessions, servers and rooms are refused"
    )]
    NoReadToken,
}

impl Denied {
    fn status(self) -> StatusCode {
        match self {
            Denied::Missing | Denied::Wrong => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        }
    }
}

impl ResponseError for Denied {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        if self.status() == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"janus-proxy\""));
        }
        response.json(json!({"error": self.to_string()}))
    }
}

/// Whether a request that gave `given` may use a route that needs `need`. Every configured
/// token is compared, each in constant time, so the answer's timing says nothing about which
/// one (or how much of one) matched.
pub fn decide(config: &AdminConfig, need: Need, given: Option<&str>) -> Result<(), Denied> {
    let is = |expected: &str| {
        given.is_some_and(|g| {
            let same = constant_time_eq(g.as_bytes(), expected.as_bytes());
            same & !expected.is_empty()
        })
    };
    let (admin, read, metrics) = (
        is(&config.token),
        is(&config.read_token),
        is(&config.metrics_token),
    );
    let unknown = if given.is_some() {
        Denied::Wrong
    } else {
        Denied::Missing
    };
    match need {
        Need::Scrape if config.metrics_token.is_empty() || admin || read || metrics => Ok(()),
        Need::Scrape => Err(unknown),
        Need::Read if config.token.is_empty() && config.read_token.is_empty() => {
            Err(Denied::NoReadToken)
        }
        Need::Read if admin || read => Ok(()),
        Need::Read if metrics => Err(Denied::MetricsOnly),
        Need::Read => Err(unknown),
        Need::Change if config.token.is_empty() => Err(Denied::NoAdminToken),
        Need::Change if admin => Ok(()),
        Need::Change if read => Err(Denied::ReadOnly),
        Need::Change if metrics => Err(Denied::MetricsOnly),
        Need::Change => Err(unknown),
    }
}

/// The token a request gave: `Authorization: Bearer <token>`, else `?token=<token>` (for
/// janus-cloud sentinels, which can only be given a URL).
pub fn given_token(req: &HttpRequest) -> Option<String> {
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    from_header.or_else(|| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
            .ok()?
            .into_iter()
            .find_map(|(k, v)| (k == "token").then_some(v))
    })
}

fn check(req: &HttpRequest, need: Need) -> Result<(), Denied> {
    // No state: the admin app was built without it; refuse rather than guess.
    let Some(state) = req.app_data::<web::Data<Arc<ProxyState>>>() else {
        return Err(Denied::NoAdminToken);
    };
    decide(&state.config.admin, need, given_token(req).as_deref())
}

macro_rules! access_extractor {
    ($name:ident, $need:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name;

        impl FromRequest for $name {
            type Error = Denied;
            type Future = Ready<Result<Self, Denied>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                ready(check(req, $need).map(|()| $name))
            }
        }
    };
}

access_extractor!(
    CanRead,
    Need::Read,
    "The request may read sessions, servers and rooms."
);
access_extractor!(CanChange, Need::Change, "The request may change something.");
access_extractor!(CanScrape, Need::Scrape, "The request may read `/metrics`.");

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token: &str, read: &str, metrics: &str) -> AdminConfig {
        AdminConfig {
            token: token.into(),
            read_token: read.into(),
            metrics_token: metrics.into(),
            ..AdminConfig::default()
        }
    }

    #[test]
    fn every_token_against_every_need() {
        use Denied::*;
        let all = config("admin", "reader", "scraper");
        // Scrape, read, change.
        type Row = [Result<(), Denied>; 3];
        let cases: [(Option<&str>, Row); 5] = [
            (None, [Err(Missing), Err(Missing), Err(Missing)]),
            (Some("admin"), [Ok(()), Ok(()), Ok(())]),
            (Some("reader"), [Ok(()), Ok(()), Err(ReadOnly)]),
            (
                Some("scraper"),
                [Ok(()), Err(MetricsOnly), Err(MetricsOnly)],
            ),
            (Some("admin2"), [Err(Wrong), Err(Wrong), Err(Wrong)]),
        ];
        for (given, expected) in cases {
            for (need, want) in [Need::Scrape, Need::Read, Need::Change]
                .into_iter()
                .zip(expected)
            {
                assert_eq!(decide(&all, need, given), want, "{given:?} {need:?}");
            }
        }
    }

    #[test]
    fn empty_settings_refuse_reads_and_changes_but_not_scrapes() {
        let none = config("", "", "");
        assert_eq!(decide(&none, Need::Scrape, None), Ok(()));
        assert_eq!(decide(&none, Need::Read, None), Err(Denied::NoReadToken));
        // An empty token given does not match an empty setting.
        assert_eq!(
            decide(&none, Need::Read, Some("")),
            Err(Denied::NoReadToken)
        );
        assert_eq!(
            decide(&none, Need::Change, Some("")),
            Err(Denied::NoAdminToken)
        );
        let admin_only = config("admin", "", "");
        assert_eq!(
            decide(&admin_only, Need::Read, Some("")),
            Err(Denied::Wrong)
        );
        assert_eq!(decide(&admin_only, Need::Read, Some("admin")), Ok(()));
        let read_only = config("", "reader", "");
        assert_eq!(decide(&read_only, Need::Read, Some("reader")), Ok(()));
        assert_eq!(
            decide(&read_only, Need::Change, Some("reader")),
            Err(Denied::NoAdminToken)
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(Denied::Missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Denied::Wrong.status(), StatusCode::UNAUTHORIZED);
        for d in [
            Denied::ReadOnly,
            Denied::MetricsOnly,
            Denied::NoAdminToken,
            Denied::NoReadToken,
        ] {
            assert_eq!(d.status(), StatusCode::FORBIDDEN);
        }
    }

    #[test]
    fn token_settings_are_checked() {
        assert!(config("a", "b", "c").validate().is_ok());
        assert!(config("", "", "").validate().is_ok());
        for (bad, why) in [
            (config("same", "same", ""), "must differ"),
            (config("a", "", "a"), "must differ"),
            (config("a b", "", ""), "spaces"),
            (config("a", "b\t", ""), "spaces"),
        ] {
            let err = bad.validate().expect_err(why);
            assert!(err.contains(why), "{err}");
        }
        let short = AdminConfig {
            history_interval_ms: 50,
            ..AdminConfig::default()
        };
        assert!(short.validate().is_err());
    }
}
