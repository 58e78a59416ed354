//! The one seam for the store: [`Db`], whose named async methods are all
//! the rest of the server asks of a database, and the plain types they
//! answer with.
//!
//! Each backend lives in a folder of its own with its SQL as plain
//! functions, its migrations and its tailer's reader; `Db` picks the
//! backend and counts its busy errors for `/metrics`. No database type,
//! connection or transaction leaves this module.

mod postgres;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::{broadcast, Notify};

use crate::config::Database;
use crate::fixtures::DataSet;
use crate::metrics::Metrics;

/// A database failure, classified once for every caller.
#[derive(Debug, Clone)]
pub enum DbError {
    /// The database stayed locked past the busy timeout, or is away.
    Busy,
    /// A uniqueness rule was broken (such as a taken username).
    Conflict,
    /// The database cannot be used as configured (its schema is newer,
    /// its folder is missing, its file is not this user's, say); the
    /// message says what to do.
    Schema(String),
    /// Anything else: a bug or a broken file.
    Other(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Busy => write!(f, "database busy"),
            DbError::Conflict => write!(f, "uniqueness conflict"),
            DbError::Schema(message) => write!(f, "{message}"),
            DbError::Other(detail) => write!(f, "database error: {detail}"),
        }
    }
}

impl std::error::Error for DbError {}

pub type DbResult<T> = Result<T, DbError>;

/// A JSON document built by the database, passed to the client as it is.
pub type Json = Box<serde_json::value::RawValue>;

/// A user as every API response shows one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub role: Role,
    /// The ban in force on them, if any (never sent: a banned user is
    /// answered with an error that says so).
    #[serde(skip)]
    pub ban: Option<Ban>,
}

impl User {
    /// A new member, not banned.
    pub fn member(id: String, username: String) -> User {
        User {
            id,
            username,
            role: Role::Member,
            ban: None,
        }
    }

    /// Whether they may moderate: delete, edit, lock and pin anything.
    pub fn moderates(&self) -> bool {
        matches!(self.role, Role::Moderator | Role::Admin)
    }
}

/// What a user may do beyond their own posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Moderator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        match text {
            "member" => Ok(Role::Member),
            "moderator" => Ok(Role::Moderator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "{other:?} is not a role: use member, moderator or admin"
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A ban in force: why, and until when (`None`: until lifted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub reason: Option<String>,
    pub until: Option<String>,
}

/// Who is acting on a post: its author may, and so may a moderator.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub moderates: bool,
}

impl From<&User> for Actor {
    fn from(user: &User) -> Actor {
        Actor {
            id: user.id.clone(),
            moderates: user.moderates(),
        }
    }
}

/// The outcome of an edit.
#[derive(Debug)]
pub enum Edit {
    /// The object afterwards, as the actor sees it (edited or unchanged).
    Done(Json),
    Missing,
    NotYours,
}

/// The outcome of a new comment.
#[derive(Debug)]
pub enum Posted {
    Added(Json),
    /// No such thread.
    Missing,
    /// The thread is locked and the author does not moderate.
    Locked,
}

/// A thread's switch a moderator flips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Locked,
    Pinned,
}

impl Flag {
    /// The `threads` column that holds it.
    pub fn column(self) -> &'static str {
        match self {
            Flag::Locked => "locked",
            Flag::Pinned => "pinned",
        }
    }

    /// The `moderation_log` action for switching it on or off.
    pub fn action(self, on: bool) -> &'static str {
        match (self, on) {
            (Flag::Locked, true) => "lock",
            (Flag::Locked, false) => "unlock",
            (Flag::Pinned, true) => "pin",
            (Flag::Pinned, false) => "unpin",
        }
    }
}

/// The outcome of a ban.
#[derive(Debug, PartialEq, Eq)]
pub enum Banning {
    Done,
    Missing,
    /// Admins are not banned (change their role first).
    Admin,
}

/// A role change by `stoa role`: the user and their role before.
#[derive(Debug)]
pub struct RoleChange {
    pub user: User,
    pub before: Role,
}

/// Where a page of the list (pinned first, then by latest activity)
/// continues: the last thread shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub pinned: bool,
    /// Its `lastActivityAt`.
    pub active_at: String,
    pub id: String,
}

/// A page of the thread list and the outbox position it reflects, read in
/// one transaction.
#[derive(Debug)]
pub struct ThreadPage {
    /// Each thread with the cursor that continues after it.
    pub threads: Vec<(Cursor, Json)>,
    pub last_event_id: i64,
}

/// One thread, its comments oldest first, and the position they reflect
/// (serialised as `GET /api/community/threads/:id` answers).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadWithComments {
    pub thread: Json,
    pub comments: Vec<Json>,
    pub last_event_id: i64,
}

/// One search result: the thread, the comment when the match is in one,
/// and the matched text with the database's marks (see `crate::search`).
#[derive(Debug)]
pub struct SearchHit {
    pub thread: Json,
    pub comment: Option<Json>,
    pub snippet: String,
}

/// What a like is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Thread(String),
    Comment(String),
}

/// The outcome of removing something only its author (or a moderator)
/// may remove.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    Removed,
    Missing,
    NotYours,
}

/// One stored event, as the outbox holds it. The stream's bytes are built
/// from it in `wire.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: i64,
    /// The event's `type`.
    pub kind: String,
    pub thread_id: Option<String>,
    pub recipient_id: Option<String>,
    /// The event's `data`, a JSON document.
    pub payload: String,
    /// When it was written (RFC 3339 UTC, milliseconds).
    pub created_at: String,
}

/// What the outbox holds: the oldest retained id (`None` when empty) and
/// the newest id ever handed out (0 before the first event), which
/// survives pruning every row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub earliest: Option<i64>,
    pub latest: i64,
    /// Positions a restore took the events of (`outbox_gaps`): each
    /// `(after, through)` means positions above `after` up to `through`.
    pub gaps: Vec<(i64, i64)>,
}

impl Range {
    /// Whether every event after `position` is still stored, so a client
    /// at `position` can be replayed exactly what it missed.
    pub fn can_resume_from(&self, position: i64) -> bool {
        if position > self.latest || position < 0 {
            return false;
        }
        if self
            .gaps
            .iter()
            .any(|&(after, through)| position > after && position <= through)
        {
            return false;
        }
        match self.earliest {
            Some(earliest) => position >= earliest - 1,
            None => position == self.latest,
        }
    }
}

/// Times as stored and sent: RFC 3339 UTC with milliseconds, so they
/// compare as text.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// What `stoa restore` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The newest outbox id in the backup.
    pub backup_latest: i64,
    /// The id sequence after the restore: the next event gets the one after.
    pub latest: i64,
    /// Whether the replaced database was there to read its newest id from
    /// (if not, ids up to the backup's newest plus
    /// [`sqlite::backup::UNKNOWN_GAP`] are treated as possibly seen).
    pub replaced: bool,
}

/// On PostgreSQL the server's own tools do this (docs/operations.md).
fn sqlite_only(database: &Database, what: &str) -> DbResult<PathBuf> {
    match database {
        Database::Sqlite(path) => Ok(path.clone()),
        Database::Postgres(_) => Err(DbError::Schema(format!(
            "stoa {what} works on a SQLite file; on PostgreSQL use pg_dump and pg_restore, then \
             SELECT stoa_restored(...) after a restore (docs/operations.md, Backups)"
        ))),
    }
}

/// `stoa backup`: a consistent copy of the database at `to` while servers
/// run (mode 0600; an existing file only with `force`). Returns the newest
/// outbox id the copy holds.
pub async fn backup(database: &Database, to: &Path, force: bool) -> DbResult<i64> {
    let from = sqlite_only(database, "backup")?;
    let to = to.to_path_buf();
    tokio::task::spawn_blocking(move || sqlite::backup::backup(&from, &to, force))
        .await
        .map_err(|e| DbError::Other(e.to_string()))?
}

/// `stoa restore`: puts the backup at `from` in place of the database, with
/// the servers stopped, so that every position a client may hold from
/// before gets `resync`.
pub async fn restore(database: &Database, from: &Path) -> DbResult<Restored> {
    let to = sqlite_only(database, "restore")?;
    let from = from.to_path_buf();
    tokio::task::spawn_blocking(move || sqlite::backup::restore(&from, &to))
        .await
        .map_err(|e| DbError::Other(e.to_string()))?
}

/// How to open a database.
#[derive(Debug, Clone, Copy)]
pub struct OpenSettings {
    pub busy_timeout: Duration,
    /// PostgreSQL: connections kept for reads.
    pub pool_size: usize,
}

/// The cloneable handle to the database used by the API and the tailer.
#[derive(Clone)]
pub struct Db {
    backend: Backend,
    metrics: Arc<Metrics>,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Store),
    Postgres(postgres::Store),
}

/// The tailer's reader of new outbox rows, on a connection of its own.
pub struct TailReader(TailBackend);

enum TailBackend {
    Sqlite(sqlite::outbox::TailReader),
    Postgres(postgres::outbox::TailReader),
}

/// Calls the same method on whichever backend `db` has, counting the
/// busy errors it answers with.
macro_rules! on_backend {
    ($db:expr, $store:ident => $call:expr) => {{
        let result = match &$db.backend {
            Backend::Sqlite($store) => $call.await,
            Backend::Postgres($store) => $call.await,
        };
        $db.observed(result)
    }};
}

impl Db {
    /// Opens the database (creating a SQLite file if needed) and brings
    /// its schema up to date. `busy_timeout` is how long an operation
    /// waits for another connection's lock, or for a connection, before
    /// failing as [`DbError::Busy`].
    pub async fn open(
        database: &Database,
        settings: OpenSettings,
        metrics: Arc<Metrics>,
    ) -> DbResult<Db> {
        let backend = match database {
            Database::Sqlite(path) => {
                Backend::Sqlite(sqlite::Store::open(path, settings.busy_timeout).await?)
            }
            Database::Postgres(url) => Backend::Postgres(
                postgres::Store::open(url, settings.pool_size, settings.busy_timeout).await?,
            ),
        };
        Ok(Db { backend, metrics })
    }

    fn observed<T>(&self, result: DbResult<T>) -> DbResult<T> {
        if let Err(DbError::Busy) = result {
            self.metrics.database_busy.add(1);
        }
        result
    }

    /// Woken after every committed write made through this handle, so the
    /// tailer need not wait for its next poll.
    pub fn written(&self) -> Arc<Notify> {
        match &self.backend {
            Backend::Sqlite(store) => store.written(),
            Backend::Postgres(store) => store.written(),
        }
    }

    /// Messages that are not stored (presence, typing) sent by every node
    /// sharing this database, this one included, as they are published.
    pub fn ephemeral_messages(&self) -> broadcast::Receiver<Arc<str>> {
        match &self.backend {
            Backend::Sqlite(store) => store.ephemeral_messages(),
            Backend::Postgres(store) => store.ephemeral_messages(),
        }
    }

    /// Sends `message` to every node sharing this database (on PostgreSQL
    /// over NOTIFY; SQLite has one node, this one). Never stored.
    pub async fn publish_ephemeral(&self, message: String) -> DbResult<()> {
        on_backend!(self, store => store.publish_ephemeral(message))
    }

    /// Whether several nodes may share this database (PostgreSQL), so what
    /// must hold across them (rate limits) is kept in it.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Takes one token of `key`'s bucket (`burst` at once, refilled at
    /// `per_second`), kept in the database so every node sees the same;
    /// `Some(wait)` when it is empty.
    pub async fn take_token(
        &self,
        key: String,
        per_second: f64,
        burst: f64,
    ) -> DbResult<Option<Duration>> {
        match &self.backend {
            Backend::Sqlite(_) => Err(DbError::Other(
                "rate limits are kept in the process on SQLite".into(),
            )),
            Backend::Postgres(store) => {
                self.observed(store.take_token(key, per_second, burst).await)
            }
        }
    }

    /// Forgets shared rate-limit buckets untouched since `cutoff`, so the
    /// table does not grow with every address ever seen; a no-op where the
    /// buckets live in the process.
    pub async fn forget_idle_limits(&self, cutoff: DateTime<Utc>) -> DbResult<u64> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(0),
            Backend::Postgres(store) => {
                self.observed(store.forget_idle_limits(timestamp(cutoff)).await)
            }
        }
    }

    /// A reader of new outbox rows for the tailer.
    pub async fn tail_reader(&self) -> DbResult<TailReader> {
        let reader = match &self.backend {
            Backend::Sqlite(store) => TailBackend::Sqlite(store.tail_reader().await?),
            Backend::Postgres(store) => TailBackend::Postgres(store.tail_reader().await?),
        };
        Ok(TailReader(reader))
    }

    /// Adds a user and signs them in, in one transaction; a taken username
    /// (in any letter case) is a `Conflict`.
    pub async fn register(
        &self,
        user: User,
        password_hash: String,
        token_hash: String,
        expires_at: DateTime<Utc>,
    ) -> DbResult<()> {
        let expires_at = timestamp(expires_at);
        on_backend!(self, store => store.register(user, password_hash, token_hash, expires_at))
    }

    /// A user and their password hash, for signing in.
    pub async fn credentials(&self, username: String) -> DbResult<Option<(User, String)>> {
        on_backend!(self, store => store.credentials(username))
    }

    pub async fn start_session(
        &self,
        token_hash: String,
        user_id: String,
        expires_at: DateTime<Utc>,
    ) -> DbResult<()> {
        let expires_at = timestamp(expires_at);
        on_backend!(self, store => store.start_session(token_hash, user_id, expires_at))
    }

    /// The user a live (unexpired) session belongs to; also the user of
    /// an ended session while they are banned, with `ban` set.
    pub async fn session_user(&self, token_hash: String) -> DbResult<Option<User>> {
        let now = timestamp(Utc::now());
        on_backend!(self, store => store.session_user(token_hash, now))
    }

    pub async fn end_session(&self, token_hash: String) -> DbResult<()> {
        on_backend!(self, store => store.end_session(token_hash))
    }

    /// Adds a thread, with the HTML its content renders to; returns it as
    /// the API shows it.
    pub async fn create_thread(
        &self,
        id: String,
        author_id: String,
        title: String,
        content: String,
        content_html: String,
    ) -> DbResult<Json> {
        on_backend!(self, store => store.create_thread(id, author_id, title, content, content_html))
    }

    /// Up to `limit` threads, newest first, strictly after `before`, as
    /// `viewer` sees them, with the position they reflect.
    pub async fn thread_page(
        &self,
        viewer: Option<String>,
        limit: usize,
        before: Option<Cursor>,
    ) -> DbResult<ThreadPage> {
        on_backend!(self, store => store.thread_page(viewer, limit, before))
    }

    /// One thread and its comments as `viewer` sees them; `None` when there
    /// is no such thread.
    pub async fn thread_with_comments(
        &self,
        id: String,
        viewer: Option<String>,
    ) -> DbResult<Option<ThreadWithComments>> {
        on_backend!(self, store => store.thread_with_comments(id, viewer))
    }

    /// Adds a comment with the HTML its content renders to, unless the
    /// thread is missing or locked (to those who do not moderate).
    pub async fn add_comment(
        &self,
        id: String,
        thread_id: String,
        author: Actor,
        content: String,
        content_html: String,
    ) -> DbResult<Posted> {
        on_backend!(self, store => store.add_comment(id, thread_id, author, content, content_html))
    }

    /// Changes a thread's title and/or content, if `actor` wrote it or
    /// moderates; an edit that changes nothing stores (and sends) nothing.
    pub async fn edit_thread(
        &self,
        id: String,
        actor: Actor,
        title: Option<String>,
        content: Option<(String, String)>,
    ) -> DbResult<Edit> {
        on_backend!(self, store => store.edit_thread(id, actor, title, content))
    }

    /// Changes a comment's content (and its HTML), if `actor` wrote it or
    /// moderates.
    pub async fn edit_comment(
        &self,
        id: String,
        actor: Actor,
        content: String,
        content_html: String,
    ) -> DbResult<Edit> {
        on_backend!(self, store => store.edit_comment(id, actor, content, content_html))
    }

    /// Locks or unlocks, pins or unpins a thread (by a moderator), and
    /// logs it when it changed; `None` when there is no such thread.
    pub async fn set_flag(
        &self,
        id: String,
        actor_id: String,
        flag: Flag,
        on: bool,
    ) -> DbResult<Option<Json>> {
        on_backend!(self, store => store.set_flag(id, actor_id, flag, on))
    }

    /// Sets the role of `username` (for `stoa role`), logged; `None` when
    /// there is no such user.
    pub async fn set_role(&self, username: String, role: Role) -> DbResult<Option<RoleChange>> {
        on_backend!(self, store => store.set_role(username, role))
    }

    /// Bans a user (ending their sessions and streams), logged.
    pub async fn ban(
        &self,
        user_id: String,
        actor_id: String,
        reason: Option<String>,
        until: Option<DateTime<Utc>>,
    ) -> DbResult<Banning> {
        let until = until.map(timestamp);
        on_backend!(self, store => store.ban(user_id, actor_id, reason, until))
    }

    /// Lifts a user's ban, logged; `false` when there is no such user.
    pub async fn unban(&self, user_id: String, actor_id: String) -> DbResult<bool> {
        on_backend!(self, store => store.unban(user_id, actor_id))
    }

    /// Up to `limit` moderation log entries, newest first, with ids below
    /// `before`.
    pub async fn moderation_log(&self, limit: usize, before: Option<i64>) -> DbResult<Vec<Json>> {
        on_backend!(self, store => store.moderation_log(limit, before))
    }

    /// Up to `limit` threads and comments matching every one of `words`
    /// (the last as a prefix), best match first, then newest, after the
    /// first `offset`, as `viewer` sees them. Deleted posts are never found.
    pub async fn search(
        &self,
        words: Vec<String>,
        viewer: Option<String>,
        limit: usize,
        offset: usize,
    ) -> DbResult<Vec<SearchHit>> {
        on_backend!(self, store => store.search(words, viewer, limit, offset))
    }

    /// Of `names`, those that are users, each as registered (any letter
    /// case matches): whom a post's `@name` mentions.
    pub async fn registered_usernames(&self, names: Vec<String>) -> DbResult<Vec<String>> {
        on_backend!(self, store => store.registered_usernames(names))
    }

    /// Sets or clears `user_id`'s like; the target's like count afterwards,
    /// or `None` when the target does not exist.
    pub async fn set_like(
        &self,
        user_id: String,
        target: Target,
        liked: bool,
    ) -> DbResult<Option<i64>> {
        on_backend!(self, store => store.set_like(user_id, target, liked))
    }

    /// Removes a thread (its comments and likes with it) if `actor` wrote
    /// it or moderates; a moderator's removal of another's thread is logged.
    pub async fn remove_thread(&self, id: String, actor: Actor) -> DbResult<Removal> {
        on_backend!(self, store => store.remove_thread(id, actor))
    }

    /// Removes a comment if `actor` wrote it or moderates (logged then).
    pub async fn remove_comment(&self, id: String, actor: Actor) -> DbResult<Removal> {
        on_backend!(self, store => store.remove_comment(id, actor))
    }

    /// Up to `limit` events with ids above `after`, in id order.
    pub async fn outbox_after(&self, after: i64, limit: usize) -> DbResult<Vec<Row>> {
        on_backend!(self, store => store.outbox_after(after, limit))
    }

    /// The oldest and newest outbox ids.
    pub async fn outbox_range(&self) -> DbResult<Range> {
        on_backend!(self, store => store.outbox_range())
    }

    /// The newest id handed out and the newest `limit` events, in id
    /// order, read together.
    pub async fn outbox_newest(&self, limit: usize) -> DbResult<(i64, Vec<Row>)> {
        on_backend!(self, store => store.outbox_newest(limit))
    }

    /// Deletes up to `limit` of the oldest events that are older than
    /// `cutoff` or not among the newest `keep`; returns how many went.
    pub async fn prune_outbox(
        &self,
        cutoff: DateTime<Utc>,
        keep: u64,
        limit: usize,
    ) -> DbResult<usize> {
        let cutoff = timestamp(cutoff);
        on_backend!(self, store => store.prune_outbox(cutoff, keep, limit))
    }

    /// Loads sample data into a forum that has no threads yet, in one
    /// transaction; `password_hashes` go with `data.users` in order.
    /// Returns whether it loaded (a forum with threads is left alone).
    pub async fn load_fixture(
        &self,
        data: DataSet,
        password_hashes: Vec<String>,
    ) -> DbResult<bool> {
        on_backend!(self, store => store.load_fixture(data, password_hashes))
    }

    /// Finishes with the database on shutdown, once every write has been
    /// answered (SQLite: checkpoints the WAL into the main file).
    pub async fn close(&self) -> DbResult<()> {
        on_backend!(self, store => store.close())
    }
}

impl TailReader {
    /// Up to `limit` outbox rows after `after`; cheap when nothing is new.
    pub async fn new_rows(&mut self, after: i64, limit: usize) -> DbResult<Vec<Row>> {
        match &mut self.0 {
            TailBackend::Sqlite(reader) => reader.new_rows(after, limit).await,
            TailBackend::Postgres(reader) => reader.new_rows(after, limit).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_resumes_only_while_everything_after_it_is_kept() {
        let range = Range {
            earliest: Some(5),
            latest: 9,
            gaps: Vec::new(),
        };
        assert!(range.can_resume_from(4));
        assert!(range.can_resume_from(9));
        assert!(!range.can_resume_from(3));
        assert!(!range.can_resume_from(10));
        let empty = Range {
            earliest: None,
            latest: 0,
            gaps: Vec::new(),
        };
        assert!(empty.can_resume_from(0));
        assert!(!empty.can_resume_from(1));
    }

    #[test]
    fn a_position_whose_events_a_restore_took_away_must_resync() {
        let restored = Range {
            earliest: Some(1),
            latest: 12,
            gaps: vec![(5, 10)],
        };
        assert!(restored.can_resume_from(5), "the backup's own newest");
        assert!(!restored.can_resume_from(6));
        assert!(!restored.can_resume_from(10));
        assert!(restored.can_resume_from(11), "handed out after the restore");
    }
}
