//! The server's own state: stats, health and metrics.

use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::{respond, ApiError};
use super::json_reply;
use crate::State;

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    stats(state.clone())
        .or(healthz(state.clone()))
        .unify()
        .or(metrics(state))
        .unify()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    connections: usize,
    online: usize,
    last_event_id: i64,
    outbox: OutboxRange,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutboxRange {
    earliest_id: Option<i64>,
    latest_id: i64,
}

/// GET /api/community/stats
fn stats(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "community" / "stats")
        .and(warp::get())
        .then(move || {
            let state = state.clone();
            async move {
                let result = state.db.outbox_range().await.map_err(ApiError::from);
                respond(result.map(|range| {
                    let (connections, online) = (state.hub.connections(), state.hub.online());
                    json_reply(
                        StatusCode::OK,
                        &Stats {
                            connections,
                            online,
                            last_event_id: state.hub.latest(),
                            outbox: OutboxRange {
                                earliest_id: range.earliest,
                                latest_id: range.latest,
                            },
                        },
                    )
                }))
            }
        })
}

/// GET /healthz: 200 when the database answers a query.
fn healthz(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("healthz").and(warp::get()).then(move || {
        let state = state.clone();
        async move {
            let result = state.db.outbox_range().await.map_err(ApiError::from);
            respond(
                result.map(|_| json_reply(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
            )
        }
    })
}

/// GET /metrics, in Prometheus text format.
fn metrics(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("metrics").and(warp::get()).map(move || {
        let text = state
            .metrics
            .render(state.hub.connections(), state.hub.latest());
        warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4").into_response()
    })
}
