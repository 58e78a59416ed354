//! The node's one writer: a task that owns the write connection and
//! commits concurrent writes together.
//!
//! Outbox appends are serialised until commit (the counter row in
//! `stoa_append`), so a transaction per write would make one disk sync per
//! write the ceiling. Writes that arrive while a commit is in progress run
//! together in the next transaction, each inside its own savepoint so one
//! that fails is undone alone, and all are answered after the one commit
//! that makes them durable. Nothing is acknowledged before commit.

use std::sync::Arc;

use deadpool_postgres::{Pool, Transaction};
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::db::{DbError, DbResult};

/// Most writes committed together. Each runs in a subtransaction, and
/// PostgreSQL tracks up to 64 of a transaction's subtransactions cheaply;
/// beyond that every snapshot taken meanwhile, on any connection, pays for
/// the overflow.
const MAX_BATCH: usize = 64;

/// Runs one write in the transaction (or, given an error, does not run and
/// fails with it); returns whether it succeeded and how to answer it once
/// the batch's commit is known.
type Job = Box<
    dyn for<'t> FnOnce(Result<&'t Transaction<'t>, DbError>) -> BoxFuture<'t, (bool, Answer)>
        + Send,
>;
type Answer = Box<dyn FnOnce(Result<(), DbError>) + Send>;

/// The sending side, held by every clone of the store. The task ends when
/// the last one is dropped.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Writer {
    /// `connections` is a pool of one: it reconnects after the database
    /// went away.
    pub fn start(connections: Pool, written: Arc<Notify>) -> Writer {
        let (jobs, queue) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(run(connections, queue, written));
        Writer { jobs }
    }

    /// Runs `f` in a write transaction, answering after it is committed.
    pub async fn write<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t Transaction<'t>) -> BoxFuture<'t, DbResult<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<DbResult<T>>();
        let job: Job = Box::new(move |tx| {
            Box::pin(async move {
                let result = match tx {
                    Ok(tx) => f(tx).await,
                    Err(error) => Err(error),
                };
                let succeeded = result.is_ok();
                let answer: Answer = Box::new(move |committed| {
                    let _ = reply.send(committed.and(result));
                });
                (succeeded, answer)
            })
        });
        self.jobs
            .send(job)
            .map_err(|_| DbError::Other("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| DbError::Other("the writer dropped a write".into()))?
    }
}

async fn run(connections: Pool, mut queue: mpsc::UnboundedReceiver<Job>, written: Arc<Notify>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if commit_batch(&connections, batch).await {
            written.notify_one();
        }
    }
}

/// Runs a batch in one transaction; returns whether it committed.
async fn commit_batch(connections: &Pool, batch: Vec<Job>) -> bool {
    let mut conn = match connections.get().await {
        Ok(conn) => conn,
        Err(error) => return refuse(batch, error.into()).await,
    };
    let tx = match conn.transaction().await {
        Ok(tx) => tx,
        Err(error) => return refuse(batch, error.into()).await,
    };
    let mut answers = Vec::with_capacity(batch.len());
    for job in batch {
        answers.push(in_savepoint(&tx, job).await);
    }
    let commit = tx.commit().await.map_err(DbError::from);
    let committed = commit.is_ok();
    for answer in answers {
        answer(commit.clone());
    }
    committed
}

/// Answers every write of a batch that could not start with `error`.
async fn refuse(batch: Vec<Job>, error: DbError) -> bool {
    for job in batch {
        let (_, answer) = job(Err(error.clone())).await;
        answer(Err(error.clone()));
    }
    false
}

/// Runs one job inside a savepoint, undoing just its changes if it fails.
/// The `SAVEPOINT` is pipelined with the job's first statement, and never
/// released (the commit releases them all), so a write costs the round
/// trips of its own statements only.
async fn in_savepoint(tx: &Transaction<'_>, job: Job) -> Answer {
    // `biased`: the savepoint is polled, and so sent, before the job's
    // first statement.
    let (savepoint, (succeeded, answer)) =
        tokio::join!(biased; tx.batch_execute("SAVEPOINT write"), job(Ok(tx)));
    let end = match (savepoint, succeeded) {
        (Err(error), _) => Err(error),
        (Ok(()), true) => Ok(()),
        (Ok(()), false) => tx.batch_execute("ROLLBACK TO SAVEPOINT write").await,
    };
    match end {
        Ok(()) => answer,
        Err(error) => {
            let error = DbError::from(error);
            Box::new(move |_| answer(Err(error)))
        }
    }
}
