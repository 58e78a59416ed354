//! The `outbox` table: reading events in id order, the retained range,
//! pruning, and the tailer's reader, woken by `LISTEN`. Rows are only ever
//! written by `stoa_append`, called from the triggers.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{execute, one, rows, CHANNEL, EPHEMERAL_CHANNEL};
use crate::db::{DbResult, Range, Row};

/// The columns of a [`Row`], as the queries below select them.
const ROW: &str = "id, type, thread_id, recipient_id, payload::text, stoa_time(created_at)";

fn read_row(row: tokio_postgres::Row) -> Row {
    Row {
        id: row.get(0),
        kind: row.get(1),
        thread_id: row.get(2),
        recipient_id: row.get(3),
        payload: super::compact(row.get(4)),
        created_at: row.get(5),
    }
}

/// Up to `limit` events with ids above `after`, in id order.
pub async fn after<C: GenericClient>(conn: &C, after: i64, limit: usize) -> DbResult<Vec<Row>> {
    let sql = format!("SELECT {ROW} FROM outbox WHERE id > $1 ORDER BY id LIMIT $2");
    let found = rows(conn, &sql, &[&after, &(limit as i64)]).await?;
    Ok(found.into_iter().map(read_row).collect())
}

/// The newest `limit` events, in id order.
pub async fn newest<C: GenericClient>(conn: &C, limit: usize) -> DbResult<Vec<Row>> {
    let sql = format!(
        "SELECT * FROM (SELECT {ROW} FROM outbox ORDER BY id DESC LIMIT $1) newest ORDER BY 1"
    );
    let found = rows(conn, &sql, &[&(limit as i64)]).await?;
    Ok(found.into_iter().map(read_row).collect())
}

pub async fn range<C: GenericClient>(conn: &C) -> DbResult<Range> {
    // One statement, so one snapshot and one round trip per stream opened.
    let row = one(
        conn,
        "SELECT (SELECT min(id) FROM outbox), (SELECT last FROM outbox_counter),
                ARRAY(SELECT after FROM outbox_gaps ORDER BY after),
                ARRAY(SELECT through FROM outbox_gaps ORDER BY after)",
        &[],
    )
    .await?;
    let (after, through): (Vec<i64>, Vec<i64>) = (row.get(2), row.get(3));
    Ok(Range {
        earliest: row.get(0),
        latest: row.get(1),
        gaps: after.into_iter().zip(through).collect(),
    })
}

/// The newest id handed out (the counter `stoa_append` takes ids from);
/// read inside a snapshot's transaction it is the position that snapshot
/// reflects, since ids become visible in id order.
pub async fn latest<C: GenericClient>(conn: &C) -> DbResult<i64> {
    Ok(one(conn, "SELECT last FROM outbox_counter", &[])
        .await?
        .get(0))
}

/// Deletes up to `limit` of the oldest events that were created before
/// `cutoff` (RFC 3339) or are not among the newest `keep`; returns how many
/// went.
pub async fn prune<C: GenericClient>(
    conn: &C,
    cutoff: &str,
    keep: u64,
    limit: usize,
) -> DbResult<usize> {
    let newest_to_drop = latest(conn).await? - keep as i64;
    let deleted = execute(
        conn,
        "DELETE FROM outbox WHERE id IN (
             SELECT id FROM outbox WHERE created_at < $1::text::timestamptz OR id <= $2
             ORDER BY id LIMIT $3)",
        &[&cutoff, &newest_to_drop, &(limit as i64)],
    )
    .await?;
    Ok(deleted as usize)
}

/// The tailer's reader: a connection of its own for reading new rows, and
/// a task holding another that `LISTEN`s, waking the tailer on every
/// committed append anywhere. A lost notification (or a lost LISTEN
/// connection, until it is back) costs at most one poll interval, and the
/// tailer always reads by id, so nothing is missed either way.
pub struct TailReader {
    reads: Pool,
    listener: JoinHandle<()>,
}

impl TailReader {
    pub fn start(
        config: Arc<tokio_postgres::Config>,
        reads: Pool,
        wake: Arc<Notify>,
        ephemeral: broadcast::Sender<Arc<str>>,
    ) -> TailReader {
        TailReader {
            reads,
            listener: tokio::spawn(listen(config, wake, ephemeral)),
        }
    }

    /// Up to `limit` outbox rows after `after`.
    pub async fn new_rows(&mut self, after: i64, limit: usize) -> DbResult<Vec<Row>> {
        self::after(&self.reads.get().await?, after, limit).await
    }
}

impl Drop for TailReader {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Holds a `LISTEN` connection for as long as the node runs, reconnecting
/// when it is lost. Losing it is logged once, and so is getting it back;
/// after each (re)connection the tailer is woken to catch up by id. The
/// same connection hears the nodes' ephemeral messages and passes them on.
async fn listen(
    config: Arc<tokio_postgres::Config>,
    wake: Arc<Notify>,
    ephemeral: broadcast::Sender<Arc<str>>,
) {
    const RETRY: Duration = Duration::from_millis(250);
    let mut lost = false;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (notified, heard) = (wake.clone(), ephemeral.clone());
                let driver = tokio::spawn(async move {
                    while let Some(message) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        match message {
                            Ok(AsyncMessage::Notification(note))
                                if note.channel() == EPHEMERAL_CHANNEL =>
                            {
                                let _ = heard.send(note.payload().into());
                            }
                            Ok(AsyncMessage::Notification(_)) => notified.notify_one(),
                            Ok(_) => {}
                            Err(error) => return Some(error),
                        }
                    }
                    None
                });
                let listening = format!("LISTEN {CHANNEL}; LISTEN {EPHEMERAL_CHANNEL}");
                match client.batch_execute(&listening).await {
                    Ok(()) => {
                        if lost {
                            tracing::info!("the LISTEN connection is back; catching up by id");
                        }
                        wake.notify_one();
                        let ended = driver.await.ok().flatten();
                        tracing::warn!(
                            error = ended.map(|e| e.to_string()),
                            "lost the LISTEN connection; polling until it is back"
                        );
                        lost = true;
                        wake.notify_one();
                    }
                    Err(error) => {
                        driver.abort();
                        if !lost {
                            tracing::warn!(%error, "could not LISTEN; polling until it works");
                            lost = true;
                        }
                    }
                }
            }
            Err(error) => {
                if !lost {
                    tracing::warn!(%error, "could not open the LISTEN connection; polling until it works");
                    lost = true;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}
