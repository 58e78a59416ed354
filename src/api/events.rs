//! The event stream endpoint: reads the client's position, checks the
//! connection limits, and answers with the stream `sse.rs` opens, under
//! the headers browsers and proxies need.

use std::net::IpAddr;

use serde::Deserialize;
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::{respond, ApiError};
use super::id_field;
use super::identity;
use crate::auth::Viewer;
use crate::hub::{Audience, Refusal};
use crate::{sse, State};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventsQuery {
    last_event_id: Option<String>,
    thread: Option<String>,
}

/// The stream's path. The server answers a connection whose first request
/// asks for it without hyper (`server/streaming.rs`).
pub const PATH: &str = "/api/community/events";

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    events(state)
}

/// GET /api/community/events?lastEventId=&thread=
fn events(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path::full()
        .and_then(|path: warp::path::FullPath| async move {
            if path.as_str() == PATH {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .and(warp::get())
        .and(warp::query::<EventsQuery>())
        .and(warp::header::optional::<String>("last-event-id"))
        .and(super::client_ip(&state))
        .and(identity::viewer(state.clone()))
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
    let position = position(header.as_deref(), query.last_event_id.as_deref())?;
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
    let body = sse::open(state.streams(), guard, position, audience).await?;
    let mut response = warp::reply::stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        "cache-control",
        HeaderValue::from_static("no-cache, no-transform"),
    );
    // nginx and other proxies must pass each message on at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// A client's resume position: the `Last-Event-ID` header, else the
/// `lastEventId` query parameter. `None` means "from now on".
fn position(header: Option<&str>, query: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(raw) = header.or(query).map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match raw.parse::<i64>() {
        Ok(id) if id >= 0 && raw.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(id)),
        _ => Err(ApiError::bad_request(format!(
            "Last-Event-ID / lastEventId must be a non-negative integer event id, got {raw:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_wins_over_the_query() {
        assert_eq!(position(Some("7"), Some("3")).unwrap(), Some(7));
        assert_eq!(position(None, Some("3")).unwrap(), Some(3));
        assert_eq!(position(None, None).unwrap(), None);
    }

    proptest::proptest! {
        #[test]
        fn any_position_text_is_parsed_or_refused_never_misread(raw in "\\PC{0,24}") {
            let parsed = position(Some(&raw), None);
            let trimmed = raw.trim();
            let valid = !trimmed.is_empty()
                && trimmed.bytes().all(|b| b.is_ascii_digit())
                && trimmed.parse::<i64>().is_ok();
            match parsed {
                Ok(Some(id)) => proptest::prop_assert!(valid && trimmed.parse::<i64>() == Ok(id)),
                Ok(None) => proptest::prop_assert!(trimmed.is_empty()),
                Err(_) => proptest::prop_assert!(!valid),
            }
        }
    }

    #[test]
    fn a_malformed_position_is_refused() {
        for bad in ["-1", "abc", "1.5", "+3", "99999999999999999999"] {
            assert!(
                position(Some(bad), None).is_err(),
                "{bad} should be refused"
            );
        }
    }
}
