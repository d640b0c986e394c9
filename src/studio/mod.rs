//! The Studio: a web page served by the binary at `/studio` where people try an image, read
//! their usage and manage keys. Its three files are compiled in (plain HTML, CSS and
//! JavaScript, no framework, nothing fetched from elsewhere) and are served with a strict
//! Content-Security-Policy. The page only calls the public and admin API; the key or admin
//! token a person types stays in the page's memory and travels in request headers only.
//! Nothing here reveals data: the files are the same for everyone.

use poem::http::{header, HeaderValue, StatusCode};
use poem::{endpoint::make_sync, get, Endpoint, EndpointExt, Response, Route};

/// The policy every Studio file is served with: scripts, styles and fetches from this origin
/// only, no inline script or style, images from this origin or from the picture being tried
/// (`blob:`), no framing, no forms posted anywhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Where it is served, under `/studio`.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

/// The Studio's files: the page and what it loads.
pub const ASSETS: [Asset; 3] = [
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_str!("index.html") },
    Asset {
        path: "/studio.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("studio.js"),
    },
    Asset { path: "/studio.css", content_type: "text/css; charset=utf-8", body: include_str!("studio.css") },
];

/// The routes of the Studio, to be nested at `/studio` (the page answers `/studio` and
/// `/studio/`). Other methods than `GET` and `HEAD` are answered 405 with `Allow`, as the
/// API's routes are.
pub fn routes() -> impl Endpoint<Output = Response> {
    ASSETS
        .iter()
        .fold(Route::new(), |route, asset| {
            let asset = *asset;
            let etag = format!("\"{}\"", &crate::forensics::sha256_hex(asset.body.as_bytes())[..16]);
            route.at(
                asset.path,
                get(make_sync(move |req| respond(asset, &etag, req.header(header::IF_NONE_MATCH)))),
            )
        })
        .map_to_response()
        .after(|result: poem::Result<Response>| async move {
            match result {
                Err(e) if e.status() == StatusCode::METHOD_NOT_ALLOWED => {
                    let mut response = e.into_response();
                    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                    Ok(response)
                }
                other => other,
            }
        })
}

/// A file with the security headers; `304 Not Modified` when the browser already has it.
fn respond(asset: Asset, etag: &str, if_none_match: Option<&str>) -> Response {
    let fresh = if_none_match.is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        Response::builder().status(StatusCode::NOT_MODIFIED).finish()
    } else {
        Response::builder().content_type(asset.content_type).body(asset.body)
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(tag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, tag);
    }
    response
}
