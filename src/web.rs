//! The community page and its assets, embedded in the binary: no build
//! step, no CDN, works offline.

use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

const INDEX: &str = include_str!("../web/index.html");

/// The files under `/assets/`, with their content types.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/app.js"),
    ),
    (
        "sse-client.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/sse-client.js"),
    ),
    (
        "use-sse.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/use-sse.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../web/style.css"),
    ),
];

pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    index().or(asset()).unify()
}

/// GET /
fn index() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path::end().and(warp::get()).map(|| {
        let page = warp::reply::html(INDEX);
        warp::reply::with_header(page, "cache-control", "no-cache").into_response()
    })
}

/// GET /assets/:name
fn asset() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("assets" / String)
        .and(warp::get())
        .and_then(|name: String| async move {
            let (_, content_type, body) = ASSETS
                .iter()
                .find(|(file, _, _)| *file == name)
                .ok_or_else(warp::reject::not_found)?;
            let reply = warp::reply::with_header(*body, "content-type", *content_type);
            Ok::<_, Rejection>(
                warp::reply::with_header(reply, "cache-control", "no-cache").into_response(),
            )
        })
}
