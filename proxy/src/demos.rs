//! `[demos]`: Janus's own demo pages (Debian package `janus-demos`) served by the proxy, with
//! `/settings.js` written by the proxy so that the pages talk to it. For a quick start: a
//! browser call through the proxy without a web server of one's own. Off by default.
//!
//! The pages are static files under `demos.path`; what a request path names there is decided
//! by [`target`], a pure function, and anything it refuses is answered 404 like a missing file.
//! Symbolic links inside the folder are followed (the Debian package links
//! `javascript/` to `/usr/share/javascript`): they are the package's, not the client's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use actix_web::http::{header, Method};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};

use crate::error::ProxyError;

/// Where the Debian package `janus-demos` puts the pages.
pub const DEBIAN_DEMOS: &str = "/usr/share/janus/demos";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemosConfig {
    /// Address of the demo pages' listener, e.g. `127.0.0.1:8280`: HTTP, or HTTPS with the
    /// `ws` certificate when `ws` has TLS. Empty: off.
    pub listen: String,
    /// The folder of the demo pages.
    pub path: PathBuf,
}

impl Default for DemosConfig {
    fn default() -> Self {
        DemosConfig {
            listen: String::new(),
            path: PathBuf::from(DEBIAN_DEMOS),
        }
    }
}

impl DemosConfig {
    /// The listen address; None when the demos are off.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, String> {
        let listen = self.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        let addr = listen
            .parse()
            .map_err(|e| format!("demos.listen: {listen:?} is not an ip:port address ({e})"))?;
        if self.path.as_os_str().is_empty() {
            return Err("demos.path must name the folder of the demo pages".into());
        }
        Ok(Some(addr))
    }
}

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// `/settings.js`: written by the proxy.
    Settings,
    /// A file or folder of the demo folder, relative to it (empty: the folder itself);
    /// `folder` when the path ended with `/`.
    Path { relative: PathBuf, folder: bool },
    /// Not a path into the folder: a `.` or `..` segment, a hidden name, an empty segment, an
    /// encoded `/`, `\` or NUL, bad percent-encoding or UTF-8. Answered 404.
    Refused,
}

/// Decides what the raw (still percent-encoded) request path names. Every segment must be a
/// plain name: nothing is resolved lexically, so no spelling of `..` reaches a parent folder.
pub fn target(raw_path: &str) -> Target {
    let Some(rest) = raw_path.strip_prefix('/') else {
        return Target::Refused;
    };
    if rest == "settings.js" {
        return Target::Settings;
    }
    let (rest, folder) = match rest.strip_suffix('/') {
        Some(inner) => (inner, true),
        None => (rest, rest.is_empty()),
    };
    let mut relative = PathBuf::new();
    if rest.is_empty() {
        return Target::Path { relative, folder };
    }
    for segment in rest.split('/') {
        match decode_segment(segment) {
            Some(name) if !name.is_empty() && !name.starts_with('.') => relative.push(name),
            _ => return Target::Refused,
        }
    }
    Target::Path { relative, folder }
}

/// One path segment, percent-decoded; None if it is malformed or decodes to a separator or NUL.
fn decode_segment(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(out).ok()?;
    (!name.contains(['/', '\\', '\0'])).then_some(name)
}

/// The script answered for `/settings.js`, in the shape of the stock one (the same variable
/// names, which every demo page reads): the proxy's client WebSocket on the host the page came
/// from. `token` and `apisecret` are there because the pages pass them to janus.js and the
/// Debian package's settings.js lacks them (its pages stop with "token is not defined").
pub fn settings_js(ws_tls: bool, ws_port: u16) -> String {
    let scheme = if ws_tls { "wss" } else { "ws" };
    format!(
        "// Written by janus-proxy (the [demos] section of its configuration) in place of the\n\
         // demo pages' own settings.js: the pages use this proxy's Janus API, over WebSockets,\n\
         // on the host this page came from.\n\
         var server = \"{scheme}://\" + window.location.hostname + \":{ws_port}\";\n\
         \n\
         // No STUN/TURN servers, as in the stock settings.js: host candidates only.\n\
         var iceServers = null;\n\
         \n\
         // Neither an API secret nor a token: the demos are for a proxy without [auth].\n\
         var token = null;\n\
         var apisecret = null;\n"
    )
}

/// Start-up check: the folder must be there.
pub fn check_folder(path: &Path) -> Result<(), ProxyError> {
    if path.is_dir() {
        Ok(())
    } else {
        Err(ProxyError::Config(format!(
            "demos.path {}: no such folder. Install Janus's demo pages (Debian: apt-get install \
             janus-demos) or set demos.path to where they are, or turn the demos off \
             (demos.listen = \"\")",
            path.display()
        )))
    }
}

/// What the listener's handlers share.
struct Site {
    root: PathBuf,
    settings: String,
}

/// Binds the demo pages' listener (HTTPS when `tls` is given) and returns its server, to be
/// spawned, and its address.
pub fn serve(
    config: &DemosConfig,
    listener: std::net::TcpListener,
    settings: String,
    tls: Option<rustls::ServerConfig>,
) -> Result<(actix_web::dev::Server, SocketAddr), ProxyError> {
    check_folder(&config.path)?;
    let site = web::Data::new(Site {
        root: config.path.clone(),
        settings,
    });
    let listen = listener.local_addr().map_err(|source| ProxyError::Listen {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(site.clone())
            .default_service(web::route().to(page))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1);
    let listen_error = |source| ProxyError::Listen {
        addr: listen,
        source,
    };
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls),
        None => server.listen(listener),
    }
    .map_err(listen_error)?;
    Ok((server.run(), listen))
}

async fn page(req: HttpRequest, site: web::Data<Site>) -> HttpResponse {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "GET, HEAD"))
            .finish();
    }
    let (relative, folder) = match target(req.path()) {
        Target::Settings => {
            return HttpResponse::Ok()
                .content_type("text/javascript; charset=utf-8")
                .insert_header((header::CACHE_CONTROL, "no-cache"))
                .body(site.settings.clone())
        }
        Target::Refused => return not_found(&site, req.path()),
        Target::Path { relative, folder } => (relative, folder),
    };
    let root = site.root.clone();
    // File system calls block: on actix's blocking pool, not the listener's thread.
    let opened = web::block(move || open(&root.join(relative), folder)).await;
    match opened {
        Ok(Opened::File(file)) => file.into_response(&req),
        Ok(Opened::AddSlash) => {
            // Relative links in a folder's index page need the trailing slash.
            HttpResponse::PermanentRedirect()
                .insert_header((header::LOCATION, format!("{}/", req.path())))
                .finish()
        }
        Ok(Opened::Missing) | Err(_) => not_found(&site, req.path()),
    }
}

enum Opened {
    File(Box<actix_files::NamedFile>),
    /// A folder asked for without the trailing `/`.
    AddSlash,
    Missing,
}

/// Opens a file of the folder, or a folder's `index.html`.
fn open(path: &Path, folder: bool) -> Opened {
    let is_dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
    let file = match (is_dir, folder) {
        (true, false) => return Opened::AddSlash,
        (true, true) => actix_files::NamedFile::open(path.join("index.html")),
        (false, false) => actix_files::NamedFile::open(path),
        (false, true) => return Opened::Missing,
    };
    file.map_or(Opened::Missing, |f| Opened::File(Box::new(f)))
}

/// A plain-text 404 that says where the pages come from.
fn not_found(site: &Site, path: &str) -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(format!(
            "404 Not Found: {path}\n\nThis janus-proxy serves Janus's demo pages from {} \
             (demos.path). If they are missing, install them (Debian: apt-get install \
             janus-demos). The list of demos: /demos.html\n",
            site.root.display()
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(relative: &str, folder: bool) -> Target {
        Target::Path {
            relative: PathBuf::from(relative),
            folder,
        }
    }

    #[test]
    fn paths_name_files_under_the_folder() {
        assert_eq!(target("/settings.js"), Target::Settings);
        assert_eq!(target("/"), path("", true));
        assert_eq!(target("/echotest.html"), path("echotest.html", false));
        assert_eq!(
            target("/javascript/janus-gateway/janus.min.js"),
            path("javascript/janus-gateway/janus.min.js", false)
        );
        assert_eq!(target("/docs/"), path("docs", true));
        assert_eq!(target("/docs"), path("docs", false));
        assert_eq!(target("/a%20b.html"), path("a b.html", false));
        // Only the top-level settings.js is the proxy's.
        assert_eq!(target("/docs/settings.js"), path("docs/settings.js", false));
    }

    #[test]
    fn traversal_and_odd_segments_are_refused() {
        for raw in [
            "",
            "echotest.html",
            "/..",
            "/../etc/passwd",
            "/javascript/../../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/javascript%2f..%2f..%2fetc",
            "/./echotest.html",
            "/.hidden",
            "//etc/passwd",
            "/a//b",
            "/a%5c..%5cb",
            "/a%00.html",
            "/%zz",
            "/%4",
            "/%ff%fe",
        ] {
            assert_eq!(target(raw), Target::Refused, "{raw:?}");
        }
    }

    #[test]
    fn settings_point_at_the_proxy_from_the_pages_host() {
        let js = settings_js(false, 8288);
        assert!(
            js.contains("var server = \"ws://\" + window.location.hostname + \":8288\";"),
            "{js}"
        );
        assert!(js.contains("var iceServers = null;"));
        assert!(js.contains("var token = null;") && js.contains("var apisecret = null;"));
        assert!(settings_js(true, 443).contains("\"wss://\" + window.location.hostname + \":443\""));
    }

    #[test]
    fn listen_is_off_when_empty_and_checked_otherwise() {
        let mut config = DemosConfig::default();
        assert_eq!(config.listen_addr(), Ok(None));
        assert_eq!(config.path, PathBuf::from(DEBIAN_DEMOS));
        config.listen = "127.0.0.1:8280".into();
        assert_eq!(
            config.listen_addr(),
            Ok(Some(SocketAddr::from(([127, 0, 0, 1], 8280))))
        );
        config.listen = "localhost".into();
        assert!(config.listen_addr().unwrap_err().contains("demos.listen"));
        config.listen = "127.0.0.1:8280".into();
        config.path = PathBuf::new();
        assert!(config.listen_addr().unwrap_err().contains("demos.path"));
    }

    #[test]
    fn a_missing_folder_is_a_clear_start_up_error() {
        let err = check_folder(Path::new("/nonexistent/janus/demos")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/janus/demos") && text.contains("janus-demos"),
            "{text}"
        );
    }
}
