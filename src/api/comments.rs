//! Comments: adding one to a thread, editing and deleting one (one's own,
//! or any as a moderator).

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::error::{respond, ApiError};
use super::identity;
use super::threads::{actor, edited, removal, MAX_CONTENT};
use super::{id_field, json_body, json_reply, render_content, text_field};
use crate::auth::Viewer;
use crate::db::{Json, Posted};
use crate::State;

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    create(state.clone())
        .or(edit(state.clone()))
        .unify()
        .or(delete(state))
        .unify()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewComment {
    thread_id: Option<String>,
    content: Option<String>,
}

#[derive(Serialize)]
struct Created {
    comment: Json,
}

/// POST /api/community/comment
fn create(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "community" / "comment")
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
    body: NewComment,
) -> Result<Response, ApiError> {
    let thread_id = id_field("threadId", body.thread_id)?;
    let content = text_field("content", body.content, 1, MAX_CONTENT)?;
    let id = uuid::Uuid::now_v7().to_string();
    let content_html = render_content(&state, &content).await?;
    let comment = match state
        .db
        .add_comment(id, thread_id, actor(&author), content, content_html)
        .await?
    {
        Posted::Added(comment) => comment,
        Posted::Missing => return Err(ApiError::not_found("no such thread")),
        Posted::Locked => {
            return Err(ApiError::forbidden_as(
                "locked",
                "this thread is locked: it takes no new comments",
            ))
        }
    };
    Ok(json_reply(StatusCode::CREATED, &Created { comment }))
}

#[derive(Deserialize)]
struct CommentEdit {
    content: Option<String>,
}

/// PATCH /api/community/comments/:id
fn edit(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "community" / "comments" / String)
        .and(warp::patch())
        .and(identity::author(state.clone()))
        .and(json_body())
        .then(move |id: String, author: Viewer, body: CommentEdit| {
            let state = state.clone();
            async move {
                respond(
                    async move {
                        let content = text_field("content", body.content, 1, MAX_CONTENT)?;
                        let content_html = render_content(&state, &content).await?;
                        let outcome = state
                            .db
                            .edit_comment(id, actor(&author), content, content_html)
                            .await?;
                        let comment = edited(outcome, "comment")?;
                        Ok(json_reply(StatusCode::OK, &Created { comment }))
                    }
                    .await,
                )
            }
        })
}

/// DELETE /api/community/comments/:id
fn delete(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "community" / "comments" / String)
        .and(warp::delete())
        .and(identity::author(state.clone()))
        .then(move |id: String, author: Viewer| {
            let state = state.clone();
            async move {
                let outcome = state.db.remove_comment(id, actor(&author)).await;
                respond(removal(outcome, "comment"))
            }
        })
}
