//! The database: opening the file with the right pragmas, applying
//! `schema.sql`, and the [`Db`] handle the rest of the server uses.
//!
//! Only this module imports rusqlite. Each submodule holds the plain,
//! synchronous queries for one table; `Db` runs them on tokio-rusqlite's
//! background threads: one connection for writes (SQLite has a single writer
//! anyway) and a few for reads, which WAL lets run beside the writer.

pub mod comments;
pub mod likes;
pub mod outbox;
pub mod sessions;
pub mod threads;
pub mod users;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_rusqlite::rusqlite::{self, Connection, ErrorCode};

/// The schema, embedded in the binary.
pub const SCHEMA: &str = include_str!("../../schema.sql");

const READERS: usize = 3;
/// Prepared statements kept per connection: more than stoa has.
const STATEMENT_CACHE: usize = 64;

/// A database failure, classified once for every caller.
#[derive(Debug, Clone)]
pub enum DbError {
    /// The database stayed locked past the busy timeout.
    Busy,
    /// A uniqueness rule was broken (such as a taken username).
    Conflict,
    /// Anything else: a bug or a broken file.
    Other(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Busy => write!(f, "database busy"),
            DbError::Conflict => write!(f, "uniqueness conflict"),
            DbError::Other(detail) => write!(f, "database error: {detail}"),
        }
    }
}

impl std::error::Error for DbError {}

static BUSY_ERRORS: AtomicU64 = AtomicU64::new(0);

/// How many database operations have given up on a lock (for `/metrics`).
pub fn busy_errors() -> u64 {
    BUSY_ERRORS.load(Ordering::Relaxed)
}

impl From<rusqlite::Error> for DbError {
    fn from(error: rusqlite::Error) -> DbError {
        match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                BUSY_ERRORS.fetch_add(1, Ordering::Relaxed);
                DbError::Busy
            }
            Some(ErrorCode::ConstraintViolation)
                if error.to_string().contains("UNIQUE constraint") =>
            {
                DbError::Conflict
            }
            _ => DbError::Other(error.to_string()),
        }
    }
}

impl From<tokio_rusqlite::Error<DbError>> for DbError {
    fn from(error: tokio_rusqlite::Error<DbError>) -> DbError {
        match error {
            tokio_rusqlite::Error::Error(inner) => inner,
            other => DbError::Other(other.to_string()),
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// Opens a connection with stoa's pragmas. WAL lets readers run beside the
/// writer; `synchronous = FULL` makes every acknowledged commit durable even
/// through a power cut, not only a crash of the process.
pub fn open_connection(path: &Path, busy_timeout: Duration) -> DbResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// `execute` through the connection's statement cache. Preparing an insert
/// compiles its triggers into it, which costs more than running it, so the
/// hot statements are prepared once per connection.
fn cached_execute(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// `query_row` through the connection's statement cache.
fn cached_row<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

/// Applies the schema (every statement is idempotent).
pub fn apply_schema(conn: &Connection) -> DbResult<()> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// The cloneable handle to the database used by the API and the tailer.
#[derive(Clone)]
pub struct Db {
    path: Arc<Path>,
    busy_timeout: Duration,
    writer: writer::Writer,
    readers: Arc<[tokio_rusqlite::Connection]>,
    next_reader: Arc<AtomicUsize>,
    written: Arc<Notify>,
}

impl Db {
    /// Opens (creating if needed) the database file and applies the schema.
    /// `busy_timeout` is how long an operation waits for another
    /// connection's lock before failing as [`DbError::Busy`].
    pub async fn open(path: &Path, busy_timeout: Duration) -> DbResult<Db> {
        let conn = open_connection(path, busy_timeout)?;
        apply_schema(&conn)?;
        let written = Arc::new(Notify::new());
        let writer = writer::Writer::start(conn, written.clone());
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(Self::open_async(path, busy_timeout).await?);
        }
        Ok(Db {
            path: path.into(),
            busy_timeout,
            writer,
            readers: readers.into(),
            next_reader: Arc::new(AtomicUsize::new(0)),
            written,
        })
    }

    async fn open_async(
        path: &Path,
        busy_timeout: Duration,
    ) -> DbResult<tokio_rusqlite::Connection> {
        let path = path.to_path_buf();
        let conn = tokio_rusqlite::Connection::open(&path)
            .await
            .map_err(DbError::from)?;
        conn.call(move |conn| {
            conn.busy_timeout(busy_timeout)?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            Ok::<_, DbError>(())
        })
        .await?;
        Ok(conn)
    }

    /// A connection of its own for the outbox tailer.
    pub async fn tail_reader(&self) -> DbResult<TailReader> {
        Ok(TailReader {
            conn: Self::open_async(&self.path, self.busy_timeout).await?,
            seen_version: None,
        })
    }

    /// Woken after every committed write made through this handle, so the
    /// tailer need not wait for its next poll.
    pub fn written(&self) -> Arc<Notify> {
        self.written.clone()
    }

    /// Runs `f` in a write transaction (possibly shared with other writes,
    /// see `writer.rs`); its changes are kept only if it returns `Ok`, and
    /// it returns only after they are committed.
    pub async fn write<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<T> + Send + 'static,
    {
        self.writer.write(f).await
    }

    /// Runs `f` in one read transaction, so everything it reads is one
    /// consistent snapshot.
    pub async fn read<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction) -> DbResult<T> + Send + 'static,
    {
        let index = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[index]
            .call(move |conn| {
                let tx = conn.transaction()?;
                let value = f(&tx)?;
                tx.commit()?;
                Ok::<_, DbError>(value)
            })
            .await
            .map_err(DbError::from)
    }

    /// Checkpoints the WAL into the main file (on shutdown).
    /// (A checkpoint cannot run inside the writer's transactions, so it
    /// uses a connection of its own; every write has been answered by then.)
    pub async fn checkpoint(&self) -> DbResult<()> {
        let (path, busy_timeout) = (self.path.to_path_buf(), self.busy_timeout);
        tokio::task::spawn_blocking(move || {
            let conn = open_connection(&path, busy_timeout)?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await
        .map_err(|e| DbError::Other(e.to_string()))?
    }
}

/// An in-memory database with the schema applied, for unit tests of queries.
#[cfg(test)]
pub fn test_connection() -> Connection {
    let conn = Connection::open_in_memory().expect("in-memory database");
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    apply_schema(&conn).expect("schema applies");
    conn
}

/// The outcome of removing something only its author may remove.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    Removed,
    Missing,
    NotYours,
}

/// A JSON document built by SQL, passed to the client as it is.
pub type Json = Box<serde_json::value::RawValue>;

fn json(text: String) -> rusqlite::Result<Json> {
    serde_json::value::RawValue::from_string(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
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
    /// Up to `limit` outbox rows after `after`, or none at once when no
    /// connection has committed since the last call that came up short.
    pub async fn new_rows(&mut self, after: i64, limit: usize) -> DbResult<Vec<outbox::Row>> {
        let seen = self.seen_version;
        let (version, rows) = self
            .conn
            .call(move |conn| {
                let version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
                if seen == Some(version) {
                    return Ok::<_, DbError>((version, Vec::new()));
                }
                Ok((version, outbox::after(conn, after, limit)?))
            })
            .await?;
        // A full batch may have more behind it: ask again without waiting.
        if rows.len() < limit {
            self.seen_version = Some(version);
        }
        Ok(rows)
    }
}
