//! Placement affinity for relayed plugins whose state lives in the backend, out of the proxy's
//! sight (`plugins.affinity`). A textroom room is a room of one Janus: two handles on two
//! backends "join room 1234" and never see each other, and the proxy cannot route by room as
//! `join` and `message` travel over the data channel straight to Janus. With `cluster`
//! affinity, every handle of the plugin goes to one backend (its *home*), chosen by the
//! selection policy at the first attach and kept, by every proxy (the home is in Redis with a
//! shared store); when that backend is lost its handles end as any relayed handle does
//! (`hangup`, `detached`) and the next attach chooses a new home.
//!
//! [`HomeSearch`] is the decision, a plain struct fed with what the registry and the store
//! answered; [`place_at_home`] carries it out.

use std::sync::Arc;

use janus_protocol::ApiError;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::ProxyError;
use crate::messages::cluster::SharedHomes;
use crate::messages::{LinkPhase, PlaceOn, Placement, PlacementEnded, SelectServer, ServersPort};

/// How a relayed plugin's handles are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affinity {
    /// Each handle on a server chosen by the selection policy.
    None,
    /// Every handle of the plugin on one server, the same for every proxy.
    Cluster,
}

/// The stock plugins that keep, in the backend, state that several handles share and reach
/// only there: textroom (rooms are joined over the data channel).
pub const CLUSTER_BY_DEFAULT: &[&str] = &["janus.plugin.textroom"];

/// Attempts at agreeing on a home before the attach fails (another proxy's claim, or a home
/// that went away, each cost one).
const TRIES: u8 = 3;

/// What to do next to place a handle at its plugin's home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Place the handle on this server (the home as known), if it is up.
    Try(String),
    /// Choose a server with the selection policy (not `dead`), and claim it as the home in
    /// place of `dead`.
    Choose { dead: Option<String> },
    /// The handle goes on the placement at hand.
    Use,
    /// No agreement after [`TRIES`]: the attach fails as with no server.
    GiveUp,
}

/// The search for a plugin's home, one placement long.
#[derive(Debug, Default)]
pub struct HomeSearch {
    tries: u8,
}

impl HomeSearch {
    /// The first step, from the home as known (the store's, else this proxy's).
    pub fn start(&mut self, known: Option<String>) -> Step {
        match known {
            Some(home) => self.next(Step::Try(home)),
            None => self.next(Step::Choose { dead: None }),
        }
    }

    /// The registry placed the handle on the known home (`up`: its link is not down), or does
    /// not know that server any more (`up` false).
    pub fn tried(&mut self, home: String, up: bool) -> Step {
        if up {
            return Step::Use;
        }
        self.next(Step::Choose { dead: Some(home) })
    }

    /// The claim of `chosen` answered: the home is now `home` (the store's, or without one
    /// this proxy's own claim; None: nobody claimed anything, `chosen` is used).
    pub fn claimed(&mut self, chosen: &str, home: Option<String>) -> Step {
        match home {
            Some(home) if home != chosen => self.next(Step::Try(home)),
            _ => Step::Use,
        }
    }

    fn next(&mut self, step: Step) -> Step {
        self.tries += 1;
        if self.tries > TRIES * 2 {
            return Step::GiveUp;
        }
        step
    }
}

/// A placement for a new handle of `package` at its home; the home is remembered in `local`
/// (what this proxy knows when the store is away, or without one).
pub async fn place_at_home(
    package: &str,
    servers: &ServersPort,
    homes: Option<Arc<dyn SharedHomes>>,
    local: &Mutex<Option<String>>,
) -> Result<Placement, ApiError> {
    let known = match &homes {
        Some(homes) => match homes.home(package).await {
            Ok(home) => home,
            Err(_) => local.lock().clone(),
        },
        None => local.lock().clone(),
    };
    let mut search = HomeSearch::default();
    let mut step = search.start(known);
    let mut at_hand: Option<Placement> = None;
    loop {
        step = match step {
            Step::Try(home) => {
                let placed = servers
                    .place_on
                    .send(PlaceOn {
                        server: home.clone(),
                    })
                    .await
                    .ok()
                    .flatten();
                let up = placed.as_ref().is_some_and(|p| {
                    !matches!(p.link.status.phase(), LinkPhase::Down | LinkPhase::Retiring)
                });
                if let Some(p) = placed {
                    if up {
                        at_hand = Some(p);
                    } else {
                        give_back(servers, p);
                    }
                }
                search.tried(home, up)
            }
            Step::Choose { dead } => {
                let chosen = select(servers, package, dead.iter().cloned().collect()).await?;
                let shared = match &homes {
                    Some(homes) => homes
                        .claim_home(package, &chosen.server, dead.as_deref())
                        .await
                        .ok(),
                    None => None,
                };
                // Without a store to agree in, this proxy's own claim decides: two attaches
                // that both found no home (the stock textroom demo's two users starting at
                // once) must still meet on one server.
                let home =
                    shared.unwrap_or_else(|| claim_locally(local, &chosen.server, dead.as_deref()));
                let step = search.claimed(&chosen.server, Some(home));
                if step == Step::Use {
                    if dead.is_some() {
                        log::info!(
                            "{package}: home moved from {} to {}",
                            dead.unwrap_or_default(),
                            chosen.server
                        );
                    }
                    at_hand = Some(chosen);
                } else {
                    give_back(servers, chosen);
                }
                step
            }
            Step::Use => {
                let Some(placement) = at_hand.take() else {
                    return Err(ProxyError::Unavailable.to_api_error());
                };
                *local.lock() = Some(placement.server.clone());
                return Ok(placement);
            }
            Step::GiveUp => return Err(ProxyError::Unavailable.to_api_error()),
        };
    }
}

/// This proxy's claim of `chosen` as the home, as the store's claim does it in Redis: the
/// first claim wins, a later one gets the home already claimed, unless that is `dead` (the
/// home being replaced). Returns the home.
fn claim_locally(local: &Mutex<Option<String>>, chosen: &str, dead: Option<&str>) -> String {
    let mut home = local.lock();
    match home.as_deref() {
        Some(current) if Some(current) != dead => current.to_owned(),
        _ => {
            *home = Some(chosen.to_owned());
            chosen.to_owned()
        }
    }
}

/// A server for a new handle of `package`, chosen by the selection policy (not one of `avoid`).
pub async fn select(
    servers: &ServersPort,
    package: &str,
    avoid: Vec<String>,
) -> Result<Placement, ApiError> {
    let select = SelectServer {
        package: package.to_owned(),
        avoid,
        ..SelectServer::default()
    };
    match servers.select.send(select).await {
        Ok(Ok(placement)) => Ok(placement),
        Ok(Err(e)) => Err(e.to_api_error()),
        Err(_) => Err(ProxyError::Unavailable.to_api_error()),
    }
}

fn give_back(servers: &ServersPort, placement: Placement) {
    servers.ended.do_send(PlacementEnded {
        server: placement.server,
        epoch: placement.epoch,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_home_that_is_up_is_used() {
        let mut search = HomeSearch::default();
        assert_eq!(search.start(Some("j1".into())), Step::Try("j1".into()));
        assert_eq!(search.tried("j1".into(), true), Step::Use);
    }

    #[test]
    fn no_home_yet_chooses_one_and_the_claim_makes_it_the_home() {
        let mut search = HomeSearch::default();
        assert_eq!(search.start(None), Step::Choose { dead: None });
        assert_eq!(search.claimed("j2", Some("j2".into())), Step::Use);
        // The store away: this proxy's choice stands, for this proxy.
        let mut search = HomeSearch::default();
        search.start(None);
        assert_eq!(search.claimed("j2", None), Step::Use);
    }

    #[test]
    fn a_lost_home_is_replaced_by_a_choice_that_avoids_it() {
        let mut search = HomeSearch::default();
        search.start(Some("j1".into()));
        assert_eq!(
            search.tried("j1".into(), false),
            Step::Choose {
                dead: Some("j1".into())
            }
        );
        assert_eq!(search.claimed("j2", Some("j2".into())), Step::Use);
    }

    #[test]
    fn another_proxy_claimed_first_and_its_home_is_used() {
        let mut search = HomeSearch::default();
        search.start(None);
        assert_eq!(
            search.claimed("j2", Some("j3".into())),
            Step::Try("j3".into())
        );
        assert_eq!(search.tried("j3".into(), true), Step::Use);
    }

    #[test]
    fn without_a_store_the_first_local_claim_wins() {
        // Two attaches found no home and chose j1 and j2 at once: both end on j1.
        let local = Mutex::new(None);
        assert_eq!(claim_locally(&local, "j1", None), "j1");
        assert_eq!(claim_locally(&local, "j2", None), "j1");
        let mut search = HomeSearch::default();
        search.start(None);
        assert_eq!(
            search.claimed("j2", Some(claim_locally(&local, "j2", None))),
            Step::Try("j1".into())
        );
        // Replacing a lost home: the first replacement wins, the dead one is not kept.
        assert_eq!(claim_locally(&local, "j2", Some("j1")), "j2");
        assert_eq!(claim_locally(&local, "j3", Some("j1")), "j2");
        assert_eq!(local.lock().as_deref(), Some("j2"));
    }

    #[test]
    fn homes_that_keep_going_away_end_the_search() {
        let mut search = HomeSearch::default();
        let mut step = search.start(Some("j1".into()));
        let mut steps = 0;
        while step != Step::GiveUp {
            step = match step {
                Step::Try(home) => search.tried(home, false),
                Step::Choose { .. } => search.claimed("jx", Some("jy".into())),
                other => panic!("unexpected {other:?}"),
            };
            steps += 1;
            assert!(steps < 20, "the search must be bounded");
        }
    }
}
