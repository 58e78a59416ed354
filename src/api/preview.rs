//! Markdown preview: what a post would look like, rendered by the same
//! function as a real write, without storing anything.

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::error::{respond, ApiError};
use super::identity;
use super::threads::MAX_CONTENT;
use super::{json_body, json_reply, render_content, text_field};
use crate::auth::Viewer;
use crate::State;

#[derive(Deserialize)]
struct Draft {
    content: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Preview {
    content_html: String,
}

/// POST /api/community/preview
pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "community" / "preview")
        .and(warp::post())
        .and(identity::author(state.clone()))
        .and(json_body())
        .then(move |_: Viewer, draft: Draft| {
            let state = state.clone();
            async move { respond(handle(state, draft).await) }
        })
}

async fn handle(state: State, draft: Draft) -> Result<Response, ApiError> {
    let content = text_field("content", draft.content, 1, MAX_CONTENT)?;
    let content_html = render_content(&state, &content).await?;
    Ok(json_reply(StatusCode::OK, &Preview { content_html }))
}
