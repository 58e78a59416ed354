//! The community page and its assets, embedded in the binary: no build
//! step, no CDN, works offline. A thread's link (`/t/:id`, `/t/:id/:slug`)
//! serves the same page with the thread's title and OpenGraph tags in the
//! HTML, so a link pasted into a chat gets a preview.

use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::State;

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

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    index().or(asset()).unify().or(thread_page(state)).unify()
}

/// The `<title>` of the page as shipped, replaced on a thread's page.
const TITLE: &str = "<title>stoa — community</title>";
/// Characters of a thread's content in its `og:description`.
const DESCRIPTION_CHARS: usize = 200;

/// GET /t/:id and /t/:id/:slug (the slug is for people; only the id counts)
fn thread_page(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let id = warp::path!("t" / String)
        .or(warp::path!("t" / String / String).map(|id, _slug: String| id))
        .unify();
    id.and(warp::get()).then(move |id: String| {
        let state = state.clone();
        async move {
            match state.db.thread_with_comments(id, None).await {
                Ok(Some(found)) => {
                    let thread: serde_json::Value =
                        serde_json::from_str(found.thread.get()).unwrap_or_default();
                    let text = |key: &str| thread[key].as_str().unwrap_or("").to_string();
                    page_with_head(
                        StatusCode::OK,
                        &thread_head(&text("title"), &text("content")),
                    )
                }
                // The page itself says the thread is gone, with a 404.
                Ok(None) => page_with_head(
                    StatusCode::NOT_FOUND,
                    "<title>Thread not found — stoa</title>",
                ),
                Err(error) => crate::api::error::ApiError::from(error).into_response(),
            }
        }
    })
}

/// `<title>` and the OpenGraph tags of a thread, escaped.
fn thread_head(title: &str, content: &str) -> String {
    let mut description: String = content.chars().take(DESCRIPTION_CHARS).collect();
    if content.chars().count() > DESCRIPTION_CHARS {
        description.push('…');
    }
    let (title, description) = (escape(title), escape(&description));
    format!(
        "<title>{title} — stoa</title>\n  \
         <meta property=\"og:type\" content=\"article\">\n  \
         <meta property=\"og:title\" content=\"{title}\">\n  \
         <meta property=\"og:description\" content=\"{description}\">\n  \
         <meta name=\"description\" content=\"{description}\">"
    )
}

fn page_with_head(status: StatusCode, head: &str) -> Response {
    let page = warp::reply::html(INDEX.replacen(TITLE, head, 1));
    let page = warp::reply::with_status(page, status);
    warp::reply::with_header(page, "cache-control", "no-cache").into_response()
}

/// Text made safe inside HTML text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_as_shipped_has_the_title_a_thread_page_replaces() {
        assert!(INDEX.contains(TITLE));
    }

    #[test]
    fn a_threads_head_is_escaped_and_its_description_shortened() {
        let long = "x".repeat(300);
        let head = thread_head("<b>\"Hi\" & 'bye'</b>", &long);
        assert!(head.starts_with(
            "<title>&lt;b&gt;&quot;Hi&quot; &amp; &#39;bye&#39;&lt;/b&gt; — stoa</title>"
        ));
        assert!(head.contains(&format!("content=\"{}…\"", "x".repeat(200))));
        assert!(!head.contains(&"x".repeat(201)));
    }
}
