//! Search: threads and comments matching every word of a query, best
//! match first, then newest, each with a snippet of the matched text.

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::error::{respond, ApiError};
use super::identity;
use super::json_reply;
use crate::auth::Viewer;
use crate::db::Json;
use crate::search::{snippet_html, words, MAX_QUERY, MAX_WORDS};
use crate::State;

const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 50;
/// How deep paging goes: past this a query should be more precise.
const MAX_OFFSET: usize = 1_000;

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
    limit: Option<usize>,
    before: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Results {
    results: Vec<Result>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct Result {
    thread: Json,
    comment: Option<Json>,
    snippet: String,
}

/// GET /api/community/search?q=&limit=&before=
pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "community" / "search")
        .and(warp::get())
        .and(warp::query::<SearchQuery>())
        .and(identity::viewer(state.clone()))
        .then(move |query, viewer| {
            let state = state.clone();
            async move { respond(handle(state, query, viewer).await) }
        })
}

async fn handle(
    state: State,
    query: SearchQuery,
    viewer: Viewer,
) -> std::result::Result<Response, ApiError> {
    let q = query.q.unwrap_or_default();
    if q.trim().is_empty() {
        return Err(ApiError::bad_request("q must not be empty"));
    }
    if q.chars().count() > MAX_QUERY {
        return Err(ApiError::bad_request(format!(
            "q must be at most {MAX_QUERY} characters"
        )));
    }
    let words = words(&q);
    if words.is_empty() {
        return Err(ApiError::bad_request(
            "q must have a word (letters or digits) to search for",
        ));
    }
    if words.len() > MAX_WORDS {
        return Err(ApiError::bad_request(format!(
            "q must have at most {MAX_WORDS} words"
        )));
    }
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    let offset = match query.before.as_deref() {
        None => 0,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|offset| (1..=MAX_OFFSET).contains(offset))
            .ok_or_else(|| {
                ApiError::bad_request("before must be a nextCursor value from an earlier page")
            })?,
    };
    let viewer = viewer.user.map(|u| u.id);
    let hits = state.db.search(words, viewer, limit, offset).await?;
    let next = offset + hits.len();
    let next_cursor = (hits.len() == limit && next <= MAX_OFFSET).then(|| next.to_string());
    let results = hits
        .into_iter()
        .map(|hit| Result {
            thread: hit.thread,
            comment: hit.comment,
            snippet: snippet_html(&hit.snippet),
        })
        .collect();
    Ok(json_reply(
        StatusCode::OK,
        &Results {
            results,
            next_cursor,
        },
    ))
}
