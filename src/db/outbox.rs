//! The `outbox` table: reading events in id order, the retained range, and
//! pruning. Rows are only ever written by the triggers in `schema.sql`.

use tokio_rusqlite::rusqlite::{params, Connection};

use super::{cached_execute, cached_row, DbResult};

/// One stored event, with its stream message already built by SQL:
/// `{"type": ..., "data": <payload>, "timestamp": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: i64,
    pub thread_id: Option<String>,
    pub recipient_id: Option<String>,
    pub message: String,
}

/// The columns of a [`Row`], as the queries below select them.
const ROW: &str = "id, thread_id, recipient_id,
    json_object('type', type, 'data', json(payload), 'timestamp', created_at)";

/// Up to `limit` events with ids above `after`, in id order.
pub fn after(conn: &Connection, after: i64, limit: usize) -> DbResult<Vec<Row>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {ROW} FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    let rows = statement.query_map(params![after, limit as i64], read_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest `limit` events, in id order.
pub fn newest(conn: &Connection, limit: usize) -> DbResult<Vec<Row>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT * FROM (SELECT {ROW} FROM outbox ORDER BY id DESC LIMIT ?1) ORDER BY 1"
    ))?;
    let rows = statement.query_map([limit as i64], read_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn read_row(row: &tokio_rusqlite::rusqlite::Row<'_>) -> tokio_rusqlite::rusqlite::Result<Row> {
    Ok(Row {
        id: row.get(0)?,
        thread_id: row.get(1)?,
        recipient_id: row.get(2)?,
        message: row.get(3)?,
    })
}

/// What the outbox holds: the oldest retained id (`None` when empty) and
/// the newest id ever handed out (0 before the first event). The latter
/// comes from `sqlite_sequence`, so it survives pruning every row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub earliest: Option<i64>,
    pub latest: i64,
}

impl Range {
    /// Whether every event after `position` is still stored, so a client
    /// at `position` can be replayed exactly what it missed.
    pub fn can_resume_from(&self, position: i64) -> bool {
        if position > self.latest || position < 0 {
            return false;
        }
        match self.earliest {
            Some(earliest) => position >= earliest - 1,
            None => position == self.latest,
        }
    }
}

pub fn range(conn: &Connection) -> DbResult<Range> {
    let earliest: Option<i64> = cached_row(conn, "SELECT min(id) FROM outbox", [], |r| r.get(0))?;
    Ok(Range {
        earliest,
        latest: latest(conn)?,
    })
}

/// The newest id handed out; read inside a snapshot's transaction it is the
/// position that snapshot reflects.
pub fn latest(conn: &Connection) -> DbResult<i64> {
    let latest: Option<i64> = cached_row(
        conn,
        "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'",
        [],
        |r| r.get(0),
    )
    .or_else(|e| match e {
        tokio_rusqlite::rusqlite::Error::QueryReturnedNoRows => Ok(None),
        other => Err(other),
    })?;
    Ok(latest.unwrap_or(0))
}

/// Deletes up to `limit` of the oldest events that were created before
/// `cutoff` (RFC 3339) or are not among the newest `keep`; returns how many
/// went. Small batches keep each write short.
pub fn prune(conn: &Connection, cutoff: &str, keep: u64, limit: usize) -> DbResult<usize> {
    let newest_to_drop = latest(conn)? - keep as i64;
    Ok(cached_execute(
        conn,
        "DELETE FROM outbox WHERE id IN (
             SELECT id FROM outbox WHERE created_at < ?1 OR id <= ?2 ORDER BY id LIMIT ?3)",
        params![cutoff, newest_to_drop, limit as i64],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::threads::{self, tests::with_users};

    #[test]
    fn messages_carry_type_data_and_timestamp() {
        let conn = with_users(&["alice"]);
        threads::insert(&conn, "t1", "id-alice", "title", "content").unwrap();
        let rows = after(&conn, 0, 10).unwrap();
        assert_eq!(rows.len(), 1);
        let message: serde_json::Value = serde_json::from_str(&rows[0].message).unwrap();
        assert_eq!(message["type"], "new_thread");
        assert_eq!(message["data"]["title"], "title");
        assert!(message["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(rows[0].thread_id.as_deref(), Some("t1"));
    }

    #[test]
    fn pruning_never_lets_an_id_come_back() {
        let conn = with_users(&["alice"]);
        threads::insert(&conn, "t1", "id-alice", "a", "b").unwrap();
        threads::insert(&conn, "t2", "id-alice", "a", "b").unwrap();
        assert_eq!(prune(&conn, "9999", 10, 100).unwrap(), 2);
        let emptied = range(&conn).unwrap();
        assert_eq!(
            emptied,
            Range {
                earliest: None,
                latest: 2
            }
        );
        threads::insert(&conn, "t3", "id-alice", "a", "b").unwrap();
        assert_eq!(after(&conn, 0, 10).unwrap()[0].id, 3);
    }

    #[test]
    fn pruning_by_count_keeps_the_newest() {
        let conn = with_users(&["alice"]);
        for n in 0..5 {
            threads::insert(&conn, &format!("t{n}"), "id-alice", "a", "b").unwrap();
        }
        assert_eq!(prune(&conn, "0000", 2, 100).unwrap(), 3);
        let kept: Vec<i64> = after(&conn, 0, 10).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(kept, [4, 5]);
    }

    #[test]
    fn the_newest_events_come_in_id_order() {
        let conn = with_users(&["alice"]);
        for n in 0..5 {
            threads::insert(&conn, &format!("t{n}"), "id-alice", "a", "b").unwrap();
        }
        let ids: Vec<i64> = newest(&conn, 3).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, [3, 4, 5]);
        assert_eq!(newest(&conn, 10).unwrap(), after(&conn, 0, 10).unwrap());
    }

    #[test]
    fn a_position_resumes_only_while_everything_after_it_is_kept() {
        let range = Range {
            earliest: Some(5),
            latest: 9,
        };
        assert!(range.can_resume_from(4));
        assert!(range.can_resume_from(9));
        assert!(!range.can_resume_from(3));
        assert!(!range.can_resume_from(10));
        let empty = Range {
            earliest: None,
            latest: 0,
        };
        assert!(empty.can_resume_from(0));
        assert!(!empty.can_resume_from(1));
    }
}
