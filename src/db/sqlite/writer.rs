//! The one writer: a thread that owns the write connection and commits
//! concurrent writes together (group commit).
//!
//! With `synchronous = FULL` every commit waits for the disk. Writes that
//! arrive while one commit is in progress are run together in the next
//! transaction, each inside its own savepoint so one that fails is undone
//! alone, and all are answered after the single commit that makes them
//! durable. A lone write still commits at once; under load the cost of a
//! sync is shared by a whole batch. Nothing is acknowledged before commit.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::{oneshot, Notify};
use tokio_rusqlite::rusqlite::Connection;

use super::{DbError, DbResult};

/// Most writes committed together.
const MAX_BATCH: usize = 512;

/// Runs one write on the connection (or, given an error, does not run and
/// fails with it); returns whether it succeeded and how to answer it once
/// the batch's commit is known.
type Job = Box<dyn FnOnce(Result<&Connection, DbError>) -> (bool, Answer) + Send>;
type Answer = Box<dyn FnOnce(Result<(), DbError>) + Send>;

/// The sending side, held by every clone of `Db`. The thread ends when the
/// last one is dropped.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    pub fn start(conn: Connection, written: Arc<Notify>) -> Writer {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("stoa-writer".into())
            .spawn(move || run(conn, queue, written))
            .expect("spawning the writer thread");
        Writer { jobs }
    }

    /// Runs `f` in a write transaction, answering after it is committed.
    pub async fn write<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<DbResult<T>>();
        let job: Job = Box::new(move |conn| {
            let result = conn.and_then(|conn| {
                catch_unwind(AssertUnwindSafe(|| f(conn)))
                    .unwrap_or_else(|_| Err(DbError::Other("a write panicked".into())))
            });
            let succeeded = result.is_ok();
            let answer: Answer = Box::new(move |committed| {
                let _ = reply.send(committed.and(result));
            });
            (succeeded, answer)
        });
        self.jobs
            .send(job)
            .map_err(|_| DbError::Other("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| DbError::Other("the writer dropped a write".into()))?
    }
}

fn run(conn: Connection, queue: mpsc::Receiver<Job>, written: Arc<Notify>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let committed = commit_batch(&conn, batch);
        if committed {
            written.notify_one();
        }
    }
}

/// Runs a batch in one transaction; returns whether it committed.
fn commit_batch(conn: &Connection, batch: Vec<Job>) -> bool {
    if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE") {
        let error = DbError::from(error);
        for job in batch {
            let (_, answer) = job(Err(error.clone()));
            answer(Err(error.clone()));
        }
        return false;
    }
    let mut answers = Vec::with_capacity(batch.len());
    for job in batch {
        let (succeeded, answer) = in_savepoint(conn, job);
        answers.push((succeeded, answer));
    }
    let commit = conn.execute_batch("COMMIT").map_err(DbError::from);
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let committed = commit.is_ok();
    for (_, answer) in answers {
        answer(commit.clone());
    }
    committed
}

/// Runs one job inside a savepoint, undoing just its changes if it fails.
fn in_savepoint(conn: &Connection, job: Job) -> (bool, Answer) {
    if let Err(error) = conn.execute_batch("SAVEPOINT write") {
        return job(Err(DbError::from(error)));
    }
    let (succeeded, answer) = job(Ok(conn));
    let end = if succeeded {
        "RELEASE write"
    } else {
        "ROLLBACK TO write; RELEASE write"
    };
    match conn.execute_batch(end) {
        Ok(()) => (succeeded, answer),
        Err(error) => {
            let error = DbError::from(error);
            (false, Box::new(move |_| answer(Err(error))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (Writer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        super::super::configure(&conn, std::time::Duration::from_secs(5)).unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .unwrap();
        (Writer::start(conn, Arc::new(Notify::new())), dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_commit_together_and_a_failing_one_is_undone_alone() {
        let (writer, _dir) = writer();
        let mut handles = Vec::new();
        for n in 0..200i64 {
            let writer = writer.clone();
            handles.push(tokio::spawn(async move {
                writer
                    .write(move |conn| {
                        conn.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                        if n % 50 == 7 {
                            return Err(DbError::Other("refused".into()));
                        }
                        Ok(n)
                    })
                    .await
            }));
        }
        for (n, handle) in handles.into_iter().enumerate() {
            let result = handle.await.unwrap();
            assert_eq!(result.is_ok(), n % 50 != 7, "write {n}: {result:?}");
        }
        let stored: Vec<i64> = writer
            .write(|conn| {
                let mut s = conn.prepare("SELECT n FROM t ORDER BY n")?;
                let rows = s.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
            .unwrap();
        let expected: Vec<i64> = (0..200).filter(|n| n % 50 != 7).collect();
        assert_eq!(stored, expected);
    }

    #[tokio::test]
    async fn a_uniqueness_conflict_is_reported_as_such() {
        let (writer, _dir) = writer();
        writer
            .write(|c| Ok(c.execute("INSERT INTO t (n) VALUES (1)", [])?))
            .await
            .unwrap();
        let again = writer
            .write(|c| Ok(c.execute("INSERT INTO t (n) VALUES (1)", [])?))
            .await;
        assert!(matches!(again, Err(DbError::Conflict)), "{again:?}");
    }
}
