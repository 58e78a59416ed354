//! Likes on threads and comments. Liking twice, or unliking what was not
//! liked, changes nothing and answers the same.

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::error::{respond, ApiError};
use super::identity;
use super::{id_field, json_body, json_reply};
use crate::auth::Viewer;
use crate::db::Target;
use crate::State;

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    like(state.clone(), true).or(like(state, false)).unify()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LikeBody {
    thread_id: Option<String>,
    comment_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LikeState {
    liked: bool,
    like_count: i64,
}

/// POST /api/community/like (liked = true), DELETE /api/community/like
fn like(
    state: State,
    liked: bool,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let method = if liked {
        warp::post().boxed()
    } else {
        warp::delete().boxed()
    };
    warp::path!("api" / "community" / "like")
        .and(method)
        .and(identity::author(state.clone()))
        .and(json_body())
        .then(move |author, body| {
            let state = state.clone();
            async move { respond(handle_like(state, author, body, liked).await) }
        })
}

async fn handle_like(
    state: State,
    author: Viewer,
    body: LikeBody,
    liked: bool,
) -> Result<Response, ApiError> {
    let target = match (body.thread_id, body.comment_id) {
        (Some(id), None) => Target::Thread(id_field("threadId", Some(id))?),
        (None, Some(id)) => Target::Comment(id_field("commentId", Some(id))?),
        _ => {
            return Err(ApiError::invalid(
                "threadId",
                "give exactly one of threadId or commentId",
            ))
        }
    };
    let user = author.id().unwrap_or_default().to_string();
    let what = match target {
        Target::Thread(_) => "thread",
        Target::Comment(_) => "comment",
    };
    let like_count = state
        .db
        .set_like(user, target, liked)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no such {what}")))?;
    Ok(json_reply(StatusCode::OK, &LikeState { liked, like_count }))
}
