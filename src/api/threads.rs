//! Threads: the list (pinned first, then newest first), one thread with
//! its comments, creating, editing and deleting, and a moderator's lock
//! and pin.

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::{respond, ApiError};
use super::identity;
use super::{json_body, json_reply, render_content, text_field};
use crate::auth::Viewer;
use crate::db::{Actor, Cursor, DbError, Edit, Flag, Json, Removal};
use crate::State;

const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;
pub const MAX_TITLE: usize = 200;
pub const MAX_CONTENT: usize = 20_000;

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    list(state.clone())
        .or(get(state.clone()))
        .unify()
        .or(create(state.clone()))
        .unify()
        .or(edit(state.clone()))
        .unify()
        .or(delete(state.clone()))
        .unify()
        .or(flag(state, Flag::Locked))
        .unify()
}

/// The pin routes (kept apart from `routes` so no filter chain grows too
/// deep for the compiler).
pub fn pin_routes(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    flag(state, Flag::Pinned)
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    before: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThreadPage {
    threads: Vec<Json>,
    next_cursor: Option<String>,
    last_event_id: i64,
}

/// GET /api/community/threads?limit=&before=
fn list(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "community" / "threads")
        .and(warp::get())
        .and(warp::query::<ListQuery>())
        .and(identity::viewer(state.clone()))
        .then(move |query, viewer| {
            let state = state.clone();
            async move { respond(handle_list(state, query, viewer).await) }
        })
}

async fn handle_list(state: State, query: ListQuery, viewer: Viewer) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    let before = query.before.as_deref().map(decode_cursor).transpose()?;
    let viewer = viewer.user.map(|u| u.id);
    // The page and its position come from one read transaction: a client
    // that connects with `lastEventId` misses nothing and sees nothing twice.
    let page = state.db.thread_page(viewer, limit, before).await?;
    let (rows, last_event_id) = (page.threads, page.last_event_id);
    let next_cursor = (rows.len() == limit)
        .then(|| rows.last().map(|(cursor, _)| encode_cursor(cursor)))
        .flatten();
    let page = ThreadPage {
        threads: rows.into_iter().map(|(_, json)| json).collect(),
        next_cursor,
        last_event_id,
    };
    Ok(json_reply(StatusCode::OK, &page))
}

/// A cursor among the pinned threads starts with this.
const PINNED: &str = "pinned|";

fn encode_cursor(cursor: &Cursor) -> String {
    let pinned = if cursor.pinned { PINNED } else { "" };
    format!("{pinned}{}|{}", cursor.active_at, cursor.id)
}

fn decode_cursor(raw: &str) -> Result<Cursor, ApiError> {
    let split = |text: &str, pinned: bool| match text.split_once('|') {
        Some((active_at, id)) if !active_at.is_empty() && !id.is_empty() => Some(Cursor {
            pinned,
            active_at: active_at.to_string(),
            id: id.to_string(),
        }),
        _ => None,
    };
    raw.strip_prefix(PINNED)
        .and_then(|rest| split(rest, true))
        .or_else(|| split(raw, false))
        .ok_or_else(|| {
            ApiError::bad_request("before must be a nextCursor value from an earlier page")
        })
}

/// GET /api/community/threads/:id
fn get(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "community" / "threads" / String)
        .and(warp::get())
        .and(identity::viewer(state.clone()))
        .then(move |id, viewer| {
            let state = state.clone();
            async move { respond(handle_get(state, id, viewer).await) }
        })
}

async fn handle_get(state: State, id: String, viewer: Viewer) -> Result<Response, ApiError> {
    let viewer = viewer.user.map(|u| u.id);
    let found = state.db.thread_with_comments(id, viewer).await?;
    let found = found.ok_or_else(|| ApiError::not_found("no such thread"))?;
    Ok(json_reply(StatusCode::OK, &found))
}

#[derive(Deserialize)]
struct NewThread {
    title: Option<String>,
    content: Option<String>,
}

#[derive(Serialize)]
struct Created {
    thread: Json,
}

/// POST /api/community/threads
fn create(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "community" / "threads")
        .and(warp::post())
        .and(identity::author(state.clone()))
        .and(json_body())
        .then(move |author, body| {
            let state = state.clone();
            async move { respond(handle_create(state, author, body).await) }
        })
}

async fn handle_create(
    state: State,
    author: Viewer,
    body: NewThread,
) -> Result<Response, ApiError> {
    let title = text_field("title", body.title, 1, MAX_TITLE)?;
    let content = text_field("content", body.content, 1, MAX_CONTENT)?;
    let author_id = author.id().unwrap_or_default().to_string();
    let id = uuid::Uuid::now_v7().to_string();
    let content_html = render_content(&state, &content).await?;
    let thread = state
        .db
        .create_thread(id, author_id, title, content, content_html)
        .await?;
    Ok(json_reply(StatusCode::CREATED, &Created { thread }))
}

#[derive(Deserialize)]
struct ThreadEdit {
    title: Option<String>,
    content: Option<String>,
}

/// PATCH /api/community/threads/:id
fn edit(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "community" / "threads" / String)
        .and(warp::patch())
        .and(identity::author(state.clone()))
        .and(json_body())
        .then(move |id, author, body| {
            let state = state.clone();
            async move { respond(handle_edit(state, id, author, body).await) }
        })
}

async fn handle_edit(
    state: State,
    id: String,
    author: Viewer,
    body: ThreadEdit,
) -> Result<Response, ApiError> {
    if body.title.is_none() && body.content.is_none() {
        return Err(ApiError::bad_request(
            "send title, content or both: the fields to change",
        ));
    }
    let title = body
        .title
        .map(|title| text_field("title", Some(title), 1, MAX_TITLE))
        .transpose()?;
    let content = match body.content {
        Some(content) => {
            let content = text_field("content", Some(content), 1, MAX_CONTENT)?;
            let content_html = render_content(&state, &content).await?;
            Some((content, content_html))
        }
        None => None,
    };
    let outcome = state
        .db
        .edit_thread(id, actor(&author), title, content)
        .await?;
    let thread = edited(outcome, "thread")?;
    Ok(json_reply(StatusCode::OK, &Created { thread }))
}

/// Who is acting, from a viewer `identity::author` let through.
pub fn actor(author: &Viewer) -> Actor {
    author.user.as_ref().map(Actor::from).unwrap_or(Actor {
        id: String::new(),
        moderates: false,
    })
}

/// The object an edit left, or why there was none.
pub fn edited(outcome: Edit, what: &str) -> Result<Json, ApiError> {
    match outcome {
        Edit::Done(json) => Ok(json),
        Edit::Missing => Err(ApiError::not_found(format!("no such {what}"))),
        Edit::NotYours => Err(ApiError::forbidden(format!(
            "only its author or a moderator may edit this {what}"
        ))),
    }
}

/// DELETE /api/community/threads/:id
fn delete(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "community" / "threads" / String)
        .and(warp::delete())
        .and(identity::author(state.clone()))
        .then(move |id: String, author: Viewer| {
            let state = state.clone();
            async move {
                let outcome = state.db.remove_thread(id, actor(&author)).await;
                respond(removal(outcome, "thread"))
            }
        })
}

/// The reply to a delete of something only its author or a moderator
/// may delete.
pub fn removal(outcome: Result<Removal, DbError>, what: &str) -> Result<Response, ApiError> {
    match outcome? {
        Removal::Removed => {
            Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
        }
        Removal::Missing => Err(ApiError::not_found(format!("no such {what}"))),
        Removal::NotYours => Err(ApiError::forbidden(format!(
            "only its author or a moderator may delete this {what}"
        ))),
    }
}

/// PUT and DELETE /api/community/threads/:id/lock (or `/pin`)
fn flag(state: State, flag: Flag) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let name = match flag {
        Flag::Locked => "lock",
        Flag::Pinned => "pin",
    };
    let on = warp::put()
        .map(|| true)
        .or(warp::delete().map(|| false))
        .unify();
    warp::path!("api" / "community" / "threads" / String / String)
        .and_then(move |id: String, tail: String| async move {
            if tail == name {
                Ok(id)
            } else {
                Err(warp::reject::not_found())
            }
        })
        .and(on)
        .and(identity::author(state.clone()))
        .then(move |id: String, on: bool, author: Viewer| {
            let state = state.clone();
            async move { respond(handle_flag(state, id, flag, on, author).await) }
        })
}

async fn handle_flag(
    state: State,
    id: String,
    flag: Flag,
    on: bool,
    author: Viewer,
) -> Result<Response, ApiError> {
    let Some(user) = author.user.filter(|user| user.moderates()) else {
        let what = match flag {
            Flag::Locked => "lock and unlock",
            Flag::Pinned => "pin and unpin",
        };
        return Err(ApiError::forbidden(format!(
            "only moderators and admins may {what} threads"
        )));
    };
    let thread = state
        .db
        .set_flag(id, user.id, flag, on)
        .await?
        .ok_or_else(|| ApiError::not_found("no such thread"))?;
    Ok(json_reply(StatusCode::OK, &Created { thread }))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_cursor_text_decodes_or_is_refused(raw in "\\PC{0,40}") {
            if let Ok(cursor) = decode_cursor(&raw) {
                proptest::prop_assert_eq!(encode_cursor(&cursor), raw);
            }
        }

        #[test]
        fn every_cursor_survives_the_round_trip(
            pinned: bool,
            at in "[0-9T:.Z-]{1,24}",
            id in "[^|]{1,36}",
        ) {
            let cursor = Cursor { pinned, active_at: at, id };
            proptest::prop_assert_eq!(decode_cursor(&encode_cursor(&cursor)).unwrap(), cursor);
        }
    }
}
