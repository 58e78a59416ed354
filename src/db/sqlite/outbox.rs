//! The `outbox` table: reading events in id order, the retained range, and
//! pruning. Rows are only ever written by the triggers in `schema.sql`.

use tokio_rusqlite::rusqlite::{params, Connection};

use super::{cached_execute, cached_row};
use crate::db::{DbError, DbResult, Range, Row};

/// The columns of a [`Row`], as the queries below select them.
const ROW: &str = "id, type, thread_id, recipient_id, payload, created_at";

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
        kind: row.get(1)?,
        thread_id: row.get(2)?,
        recipient_id: row.get(3)?,
        payload: row.get(4)?,
        created_at: row.get(5)?,
    })
}

pub fn range(conn: &Connection) -> DbResult<Range> {
    let earliest: Option<i64> = cached_row(conn, "SELECT min(id) FROM outbox", [], |r| r.get(0))?;
    let mut statement = conn.prepare_cached("SELECT after, through FROM outbox_gaps")?;
    let gaps = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(Range {
        earliest,
        latest: latest(conn)?,
        gaps: gaps.collect::<Result<_, _>>()?,
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

/// The tailer's read connection. `PRAGMA data_version` changes only when
/// another connection commits, and is per connection, so this reader asks
/// it first and skips the query when nothing was written: a short poll
/// interval then costs next to nothing.
pub struct TailReader {
    conn: tokio_rusqlite::Connection,
    seen_version: Option<i64>,
}

impl TailReader {
    pub fn new(conn: tokio_rusqlite::Connection) -> TailReader {
        TailReader {
            conn,
            seen_version: None,
        }
    }

    /// Up to `limit` outbox rows after `after`, or none at once when no
    /// connection has committed since the last call that came up short.
    pub async fn new_rows(&mut self, after: i64, limit: usize) -> DbResult<Vec<Row>> {
        let seen = self.seen_version;
        let (version, rows) = self
            .conn
            .call(move |conn| {
                let version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
                if seen == Some(version) {
                    return Ok::<_, DbError>((version, Vec::new()));
                }
                Ok((version, self::after(conn, after, limit)?))
            })
            .await?;
        // A full batch may have more behind it: ask again without waiting.
        if rows.len() < limit {
            self.seen_version = Some(version);
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sqlite::threads::{self, tests::with_users};

    #[test]
    fn rows_carry_type_data_and_time() {
        let conn = with_users(&["alice"]);
        threads::insert(
            &conn,
            "t1",
            "id-alice",
            "title",
            "content",
            "<p>content</p>",
        )
        .unwrap();
        let rows = after(&conn, 0, 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].kind, "new_thread");
        let data: serde_json::Value = serde_json::from_str(&rows[0].payload).unwrap();
        assert_eq!(data["title"], "title");
        assert!(rows[0].created_at.ends_with('Z'));
        assert_eq!(rows[0].thread_id.as_deref(), Some("t1"));
    }

    #[test]
    fn pruning_never_lets_an_id_come_back() {
        let conn = with_users(&["alice"]);
        threads::insert(&conn, "t1", "id-alice", "a", "b", "<p>b</p>").unwrap();
        threads::insert(&conn, "t2", "id-alice", "a", "b", "<p>b</p>").unwrap();
        assert_eq!(prune(&conn, "9999", 10, 100).unwrap(), 2);
        let emptied = range(&conn).unwrap();
        assert_eq!(
            emptied,
            Range {
                earliest: None,
                latest: 2,
                gaps: Vec::new(),
            }
        );
        threads::insert(&conn, "t3", "id-alice", "a", "b", "<p>b</p>").unwrap();
        assert_eq!(after(&conn, 0, 10).unwrap()[0].id, 3);
    }

    #[test]
    fn pruning_by_count_keeps_the_newest() {
        let conn = with_users(&["alice"]);
        for n in 0..5 {
            threads::insert(&conn, &format!("t{n}"), "id-alice", "a", "b", "<p>b</p>").unwrap();
        }
        assert_eq!(prune(&conn, "0000", 2, 100).unwrap(), 3);
        let kept: Vec<i64> = after(&conn, 0, 10).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(kept, [4, 5]);
    }

    #[test]
    fn the_newest_events_come_in_id_order() {
        let conn = with_users(&["alice"]);
        for n in 0..5 {
            threads::insert(&conn, &format!("t{n}"), "id-alice", "a", "b", "<p>b</p>").unwrap();
        }
        let ids: Vec<i64> = newest(&conn, 3).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, [3, 4, 5]);
        assert_eq!(newest(&conn, 10).unwrap(), after(&conn, 0, 10).unwrap());
    }
}
