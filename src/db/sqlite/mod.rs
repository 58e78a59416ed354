//! SQLite: opening the file with the right pragmas, its migrations, and
//! the [`Store`] that runs each of `Db`'s methods as plain synchronous
//! queries (one submodule per table) on tokio-rusqlite's threads: one
//! connection for writes (SQLite has a single writer anyway, see
//! `writer.rs`) and a few for reads, which WAL lets run beside the writer.

pub mod backup;
mod comments;
mod likes;
mod log;
mod migrate;
pub mod outbox;
mod search;
mod sessions;
mod threads;
mod users;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, Notify};
use tokio_rusqlite::rusqlite::{self, Connection, ErrorCode};

use super::{
    Actor, Banning, Cursor, DbError, DbResult, Edit, Flag, Json, Posted, Range, Removal, Role,
    RoleChange, Row, SearchHit, Target, ThreadPage, ThreadWithComments, User,
};
use crate::fixtures::DataSet;

const READERS: usize = 3;
/// Ephemeral messages a slow listener may fall behind by.
const EPHEMERAL_BACKLOG: usize = 1024;
/// Prepared statements kept per connection: more than stoa has.
const STATEMENT_CACHE: usize = 64;

impl From<rusqlite::Error> for DbError {
    fn from(error: rusqlite::Error) -> DbError {
        match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DbError::Busy,
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

/// Sets stoa's pragmas on a connection. `synchronous = FULL` makes every
/// acknowledged commit durable even through a power cut, not only a crash
/// of the process.
fn configure(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// Opens the file, refuses a schema newer than this binary's before
/// writing anything, switches it to WAL (which lets readers run beside the
/// writer) and applies the migrations it lacks.
fn open_and_migrate(path: &Path, busy_timeout: Duration) -> DbResult<Connection> {
    let mut conn = Connection::open(path).map_err(|error| unopenable(path, error))?;
    conn.busy_timeout(busy_timeout)?;
    migrate::refuse_newer(&conn, path).map_err(|error| match error {
        DbError::Other(_) => unopenable(path, error),
        schema => schema,
    })?;
    // Switching to WAL needs the file to itself for a moment; another
    // process migrating a new file at the same time can refuse that at
    // once ("database is locked") instead of through the busy handler.
    let started = std::time::Instant::now();
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Ok(()) => break,
            Err(error) => match DbError::from(error) {
                DbError::Busy if started.elapsed() < busy_timeout => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                DbError::Busy => return Err(DbError::Busy),
                other => return Err(unopenable(path, other)),
            },
        }
    }
    configure(&conn, busy_timeout)?;
    migrate::apply(&mut conn)?;
    Ok(conn)
}

/// Why the file at `path` could not be opened, in words that say what to
/// fix: SQLite itself only says "unable to open database file". Needs the
/// folder to exist and to be writable (the WAL and its index sit beside
/// the file) and the file to be readable and writable.
fn unopenable(path: &Path, error: impl std::fmt::Display) -> DbError {
    use std::io::ErrorKind;
    let shown = path.display();
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let reason = if !folder.is_dir() {
        format!(
            "the folder {} does not exist: create it (and give it to the user stoa runs as), \
             or point --db at a file in an existing folder",
            folder.display()
        )
    } else if path.is_dir() {
        "that is a folder: give --db a file's path, such as /var/lib/stoa/stoa.db".to_string()
    } else {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path);
        let file_denied =
            path.exists() && file.is_err_and(|e| e.kind() == ErrorKind::PermissionDenied);
        let probe = folder.join(format!(".stoa-write-check-{}", std::process::id()));
        let folder_denied = std::fs::File::create(&probe)
            .map(|_| std::fs::remove_file(&probe))
            .is_err_and(|e| e.kind() == ErrorKind::PermissionDenied);
        if file_denied {
            format!(
                "permission denied: the user stoa runs as may not read and write {shown} \
                 (chown it, and its folder, to that user)"
            )
        } else if folder_denied {
            format!(
                "permission denied: the user stoa runs as may not create files in {} \
                 (SQLite keeps stoa.db-wal and stoa.db-shm there; chown the folder to that user)",
                folder.display()
            )
        } else {
            error.to_string()
        }
    };
    DbError::Schema(format!("cannot open the database {shown}: {reason}"))
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

fn json(text: String) -> rusqlite::Result<Json> {
    serde_json::value::RawValue::from_string(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

/// The SQLite store: the writer and the readers.
#[derive(Clone)]
pub struct Store {
    path: Arc<Path>,
    busy_timeout: Duration,
    writer: writer::Writer,
    readers: Arc<[tokio_rusqlite::Connection]>,
    next_reader: Arc<AtomicUsize>,
    written: Arc<Notify>,
    ephemeral: broadcast::Sender<Arc<str>>,
}

impl Store {
    pub async fn open(path: &Path, busy_timeout: Duration) -> DbResult<Store> {
        let owned = path.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || open_and_migrate(&owned, busy_timeout))
            .await
            .map_err(|e| DbError::Other(e.to_string()))??;
        let written = Arc::new(Notify::new());
        let writer = writer::Writer::start(conn, written.clone());
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(open_async(path, busy_timeout).await?);
        }
        Ok(Store {
            path: path.into(),
            busy_timeout,
            writer,
            readers: readers.into(),
            next_reader: Arc::new(AtomicUsize::new(0)),
            written,
            ephemeral: broadcast::channel(EPHEMERAL_BACKLOG).0,
        })
    }

    pub fn written(&self) -> Arc<Notify> {
        self.written.clone()
    }

    pub fn ephemeral_messages(&self) -> broadcast::Receiver<Arc<str>> {
        self.ephemeral.subscribe()
    }

    /// One node: the message goes to this node's own listeners.
    pub async fn publish_ephemeral(&self, message: String) -> DbResult<()> {
        let _ = self.ephemeral.send(message.into());
        Ok(())
    }

    pub async fn tail_reader(&self) -> DbResult<outbox::TailReader> {
        Ok(outbox::TailReader::new(
            open_async(&self.path, self.busy_timeout).await?,
        ))
    }

    /// Runs `f` in a write transaction (possibly shared with other writes,
    /// see `writer.rs`); its changes are kept only if it returns `Ok`, and
    /// it returns only after they are committed.
    async fn write<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<T> + Send + 'static,
    {
        self.writer.write(f).await
    }

    /// Runs `f` in one read transaction, so everything it reads is one
    /// consistent snapshot.
    async fn read<T, F>(&self, f: F) -> DbResult<T>
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

    pub async fn register(
        &self,
        user: User,
        password_hash: String,
        token_hash: String,
        expires_at: String,
    ) -> DbResult<()> {
        self.write(move |conn| {
            users::insert(conn, &user, &password_hash)?;
            sessions::insert(conn, &token_hash, &user.id, &expires_at)
        })
        .await
    }

    pub async fn credentials(&self, username: String) -> DbResult<Option<(User, String)>> {
        self.read(move |tx| users::by_username(tx, &username)).await
    }

    pub async fn start_session(
        &self,
        token_hash: String,
        user_id: String,
        expires_at: String,
    ) -> DbResult<()> {
        self.write(move |conn| sessions::insert(conn, &token_hash, &user_id, &expires_at))
            .await
    }

    pub async fn session_user(&self, token_hash: String, now: String) -> DbResult<Option<User>> {
        self.read(move |tx| sessions::user_for(tx, &token_hash, &now))
            .await
    }

    pub async fn end_session(&self, token_hash: String) -> DbResult<()> {
        self.write(move |conn| sessions::delete(conn, &token_hash))
            .await
    }

    pub async fn create_thread(
        &self,
        id: String,
        author_id: String,
        title: String,
        content: String,
        content_html: String,
    ) -> DbResult<Json> {
        self.write(move |conn| {
            threads::insert(conn, &id, &author_id, &title, &content, &content_html)
        })
        .await
    }

    pub async fn thread_page(
        &self,
        viewer: Option<String>,
        limit: usize,
        before: Option<Cursor>,
    ) -> DbResult<ThreadPage> {
        self.read(move |tx| {
            Ok(ThreadPage {
                threads: threads::page(tx, viewer.as_deref(), limit, before.as_ref())?,
                last_event_id: outbox::latest(tx)?,
            })
        })
        .await
    }

    pub async fn thread_with_comments(
        &self,
        id: String,
        viewer: Option<String>,
    ) -> DbResult<Option<ThreadWithComments>> {
        self.read(move |tx| {
            let Some(thread) = threads::get(tx, &id, viewer.as_deref())? else {
                return Ok(None);
            };
            Ok(Some(ThreadWithComments {
                thread,
                comments: comments::for_thread(tx, &id, viewer.as_deref())?,
                last_event_id: outbox::latest(tx)?,
            }))
        })
        .await
    }

    pub async fn add_comment(
        &self,
        id: String,
        thread_id: String,
        author: Actor,
        content: String,
        content_html: String,
    ) -> DbResult<Posted> {
        self.write(move |conn| {
            comments::insert(conn, &id, &thread_id, &author, &content, &content_html)
        })
        .await
    }

    pub async fn edit_thread(
        &self,
        id: String,
        actor: Actor,
        title: Option<String>,
        content: Option<(String, String)>,
    ) -> DbResult<Edit> {
        self.write(move |conn| {
            let content = content
                .as_ref()
                .map(|(text, html)| (text.as_str(), html.as_str()));
            threads::edit(conn, &id, &actor, title.as_deref(), content)
        })
        .await
    }

    pub async fn edit_comment(
        &self,
        id: String,
        actor: Actor,
        content: String,
        content_html: String,
    ) -> DbResult<Edit> {
        self.write(move |conn| comments::edit(conn, &id, &actor, &content, &content_html))
            .await
    }

    pub async fn set_flag(
        &self,
        id: String,
        actor_id: String,
        flag: Flag,
        on: bool,
    ) -> DbResult<Option<Json>> {
        self.write(move |conn| threads::set_flag(conn, &id, &actor_id, flag, on))
            .await
    }

    pub async fn set_role(&self, username: String, role: Role) -> DbResult<Option<RoleChange>> {
        self.write(move |conn| users::set_role(conn, &username, role))
            .await
    }

    pub async fn ban(
        &self,
        user_id: String,
        actor_id: String,
        reason: Option<String>,
        until: Option<String>,
    ) -> DbResult<Banning> {
        self.write(move |conn| {
            users::ban(
                conn,
                &user_id,
                &actor_id,
                reason.as_deref(),
                until.as_deref(),
            )
        })
        .await
    }

    pub async fn unban(&self, user_id: String, actor_id: String) -> DbResult<bool> {
        self.write(move |conn| users::unban(conn, &user_id, &actor_id))
            .await
    }

    pub async fn moderation_log(&self, limit: usize, before: Option<i64>) -> DbResult<Vec<Json>> {
        self.read(move |tx| log::page(tx, limit, before)).await
    }

    pub async fn search(
        &self,
        words: Vec<String>,
        viewer: Option<String>,
        limit: usize,
        offset: usize,
    ) -> DbResult<Vec<SearchHit>> {
        self.read(move |tx| search::search(tx, &words, viewer.as_deref(), limit, offset))
            .await
    }

    pub async fn registered_usernames(&self, names: Vec<String>) -> DbResult<Vec<String>> {
        self.read(move |tx| users::registered(tx, &names)).await
    }

    pub async fn set_like(
        &self,
        user_id: String,
        target: Target,
        liked: bool,
    ) -> DbResult<Option<i64>> {
        self.write(move |conn| likes::set(conn, &user_id, &target, liked))
            .await
    }

    pub async fn remove_thread(&self, id: String, actor: Actor) -> DbResult<Removal> {
        self.write(move |conn| threads::delete(conn, &id, &actor))
            .await
    }

    pub async fn remove_comment(&self, id: String, actor: Actor) -> DbResult<Removal> {
        self.write(move |conn| comments::delete(conn, &id, &actor))
            .await
    }

    pub async fn outbox_after(&self, after: i64, limit: usize) -> DbResult<Vec<Row>> {
        self.read(move |tx| outbox::after(tx, after, limit)).await
    }

    pub async fn outbox_range(&self) -> DbResult<Range> {
        self.read(|tx| outbox::range(tx)).await
    }

    pub async fn outbox_newest(&self, limit: usize) -> DbResult<(i64, Vec<Row>)> {
        self.read(move |tx| Ok((outbox::latest(tx)?, outbox::newest(tx, limit)?)))
            .await
    }

    pub async fn prune_outbox(&self, cutoff: String, keep: u64, limit: usize) -> DbResult<usize> {
        self.write(move |conn| outbox::prune(conn, &cutoff, keep, limit))
            .await
    }

    pub async fn load_fixture(
        &self,
        data: DataSet,
        password_hashes: Vec<String>,
    ) -> DbResult<bool> {
        self.write(move |conn| load_fixture(conn, &data, &password_hashes))
            .await
    }

    /// Checkpoints the WAL into the main file. A checkpoint cannot run
    /// inside the writer's transactions, so it uses a connection of its
    /// own; every write has been answered by then.
    pub async fn close(&self) -> DbResult<()> {
        let (path, busy_timeout) = (self.path.to_path_buf(), self.busy_timeout);
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open(&path)?;
            configure(&conn, busy_timeout)?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await
        .map_err(|e| DbError::Other(e.to_string()))?
    }
}

async fn open_async(path: &Path, busy_timeout: Duration) -> DbResult<tokio_rusqlite::Connection> {
    let conn = tokio_rusqlite::Connection::open(path)
        .await
        .map_err(DbError::from)?;
    conn.call(move |conn| Ok::<_, DbError>(configure(conn, busy_timeout)?))
        .await?;
    Ok(conn)
}

/// The fixture's users (reusing any that exist), threads, comments and
/// likes, through the same queries as the API so every row has its event.
fn load_fixture(conn: &Connection, data: &DataSet, hashes: &[String]) -> DbResult<bool> {
    if threads::count(conn)? > 0 {
        return Ok(false);
    }
    let mut ids = std::collections::HashMap::new();
    for (sample, hash) in data.users.iter().zip(hashes) {
        let id = match users::by_username(conn, &sample.username)? {
            Some((user, _)) => user.id,
            None => {
                let user = User {
                    role: sample.role,
                    ..User::member(uuid::Uuid::now_v7().to_string(), sample.username.clone())
                };
                users::insert(conn, &user, hash)?;
                user.id
            }
        };
        ids.insert(sample.username.clone(), id);
    }
    let id_of = |name: &str| {
        ids.get(name)
            .cloned()
            .ok_or_else(|| DbError::Other(format!("fixture names unknown user {name:?}")))
    };
    for sample in &data.threads {
        let thread_id = uuid::Uuid::now_v7().to_string();
        let author = id_of(&sample.author)?;
        threads::insert(
            conn,
            &thread_id,
            &author,
            &sample.title,
            &sample.content,
            &sample.content_html,
        )?;
        for comment in &sample.comments {
            let id = uuid::Uuid::now_v7().to_string();
            let author = Actor {
                id: id_of(&comment.author)?,
                moderates: true,
            };
            comments::insert(
                conn,
                &id,
                &thread_id,
                &author,
                &comment.content,
                &comment.content_html,
            )?;
        }
        for liker in &sample.likes {
            let target = Target::Thread(thread_id.clone());
            likes::set(conn, &id_of(liker)?, &target, true)?;
        }
    }
    Ok(true)
}

/// An in-memory database with every migration applied, for unit tests of
/// queries.
#[cfg(test)]
pub fn test_connection() -> Connection {
    let mut conn = Connection::open_in_memory().expect("in-memory database");
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    migrate::apply(&mut conn).expect("migrations apply");
    conn
}
