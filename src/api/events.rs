//! The event stream endpoint: checks the position and the connection
//! limits, then hands over to `sse.rs`.

use std::net::IpAddr;

use serde::Deserialize;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::error::{respond, ApiError};
use super::id_field;
use crate::auth::{self, Viewer};
use crate::hub::{Audience, Refusal};
use crate::{sse, State};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventsQuery {
    last_event_id: Option<String>,
    thread: Option<String>,
}

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    events(state)
}

/// GET /api/community/events?lastEventId=&thread=
fn events(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "community" / "events")
        .and(warp::get())
        .and(warp::query::<EventsQuery>())
        .and(warp::header::optional::<String>("last-event-id"))
        .and(super::client_ip(&state))
        .and(auth::viewer(state.clone()))
        .then(move |query, header, remote, viewer| {
            let state = state.clone();
            async move { respond(handle_events(state, query, header, remote, viewer).await) }
        })
}

async fn handle_events(
    state: State,
    query: EventsQuery,
    header: Option<String>,
    address: IpAddr,
    viewer: Viewer,
) -> Result<Response, ApiError> {
    let position = sse::position(header.as_deref(), query.last_event_id.as_deref())?;
    let thread = query
        .thread
        .map(|id| id_field("thread", Some(id)))
        .transpose()?;
    let guard = state.hub.open_stream(address).map_err(|refusal| {
        state.metrics.streams_refused.add(1);
        ApiError::unavailable(match refusal {
            Refusal::TooManyStreams => {
                "the server is at its limit of open event streams; retry shortly"
            }
            Refusal::TooManyFromAddress => "too many open event streams from your address",
        })
    })?;
    let audience = Audience {
        thread,
        user: viewer.user.map(|u| u.id),
    };
    sse::open(state.streams(), guard, position, audience).await
}
