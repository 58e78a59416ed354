//! PostgreSQL: the pool, its migrations, and the [`Store`] that runs each
//! of `Db`'s methods as plain queries (one submodule per table).
//!
//! Reads take a connection from a pool; writes go through one connection
//! per node that commits concurrent writes together (`writer.rs`), since
//! outbox appends are serialised until commit (see `stoa_append` in the
//! first migration) and transactions per second are the ceiling. Every
//! connection gets a lock timeout (a write waiting on another's lock gives
//! up as `Busy`, so the client gets 503) and an idle-in-transaction
//! timeout (a stuck connection never holds the outbox lock for long).

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

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Transaction,
};
use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, Notify};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, NoTls};

use super::{
    Actor, Banning, Cursor, DbError, DbResult, Edit, Flag, Json, Posted, Range, Removal, Role,
    RoleChange, Row, SearchHit, Target, ThreadPage, ThreadWithComments, User,
};
use crate::fixtures::DataSet;

/// Query parameters.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The rows `sql` gives. Statements are prepared once per connection,
/// through its cache.
async fn rows<C: GenericClient>(
    conn: &C,
    sql: &str,
    params: Params<'_>,
) -> DbResult<Vec<tokio_postgres::Row>> {
    let statement = conn.prepare_cached(sql).await?;
    Ok(conn.query(&statement, params).await?)
}

/// The one row `sql` gives, if any.
async fn optional<C: GenericClient>(
    conn: &C,
    sql: &str,
    params: Params<'_>,
) -> DbResult<Option<tokio_postgres::Row>> {
    let statement = conn.prepare_cached(sql).await?;
    Ok(conn.query_opt(&statement, params).await?)
}

/// The one row `sql` gives.
async fn one<C: GenericClient>(
    conn: &C,
    sql: &str,
    params: Params<'_>,
) -> DbResult<tokio_postgres::Row> {
    let statement = conn.prepare_cached(sql).await?;
    Ok(conn.query_one(&statement, params).await?)
}

/// Runs `sql`; how many rows it changed.
async fn execute<C: GenericClient>(conn: &C, sql: &str, params: Params<'_>) -> DbResult<u64> {
    let statement = conn.prepare_cached(sql).await?;
    Ok(conn.execute(&statement, params).await?)
}

fn json(text: String) -> DbResult<Json> {
    serde_json::value::RawValue::from_string(compact(text))
        .map_err(|e| DbError::Other(e.to_string()))
}

/// JSON as PostgreSQL's `json_build_object` writes it (`{"a" : 1, "b" : 2}`)
/// without the spaces between tokens, so both backends send the same
/// bytes. Spaces inside strings stay.
fn compact(text: String) -> String {
    if !text.contains(" : ") && !text.contains(", ") {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

/// The NOTIFY channel the outbox trigger signals after each commit.
pub const CHANNEL: &str = "stoa_outbox";
/// The NOTIFY channel of messages that are not stored (presence, typing).
pub const EPHEMERAL_CHANNEL: &str = "stoa_ephemeral";
/// Ephemeral messages a slow listener may fall behind by.
const EPHEMERAL_BACKLOG: usize = 1024;

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> DbError {
        let retry_later = [
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::QUERY_CANCELED,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ];
        match error.code() {
            Some(code) if *code == SqlState::UNIQUE_VIOLATION => DbError::Conflict,
            Some(code) if retry_later.contains(code) => DbError::Busy,
            Some(code) if code.code().starts_with("08") => DbError::Busy,
            Some(_) => DbError::Other(error.to_string()),
            // No SQL state: the connection failed or closed (the server is
            // away); a later try may well work.
            None => DbError::Busy,
        }
    }
}

impl From<PoolError> for DbError {
    fn from(error: PoolError) -> DbError {
        match error {
            PoolError::Backend(error) => error.into(),
            PoolError::Timeout(_) | PoolError::Closed => DbError::Busy,
            other => DbError::Other(other.to_string()),
        }
    }
}

/// The connection settings of every connection stoa makes: bounded
/// waits, so nothing hangs while the database is away or locked.
fn connection_config(url: &str, busy_timeout: Duration) -> DbResult<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| DbError::Schema(format!("--db is not a usable PostgreSQL URL: {e}")))?;
    let mut options = config.get_options().unwrap_or("").to_string();
    options.push_str(&format!(
        " -c lock_timeout={} -c idle_in_transaction_session_timeout=60000 -c statement_timeout=30000",
        busy_timeout.as_millis().max(1)
    ));
    config
        .options(options.trim())
        .connect_timeout(busy_timeout.max(Duration::from_secs(1)))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .application_name("stoa");
    Ok(config)
}

fn pool(config: tokio_postgres::Config, size: usize, busy_timeout: Duration) -> DbResult<Pool> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(busy_timeout))
        .create_timeout(Some(busy_timeout.max(Duration::from_secs(1))))
        .recycle_timeout(Some(busy_timeout))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Other(e.to_string()))
}

/// The PostgreSQL store: a pool for reads and the writer.
#[cfg(test)]
mod tests {
    #[test]
    fn json_loses_the_spaces_between_tokens_and_keeps_those_in_strings() {
        let built = r#"{"id" : "a b", "n" : 1, "s" : "x \" : , y", "o" : {"k" : [1, 2]}}"#;
        assert_eq!(
            super::compact(built.to_string()),
            r#"{"id":"a b","n":1,"s":"x \" : , y","o":{"k":[1,2]}}"#
        );
        assert_eq!(super::compact(r#"{"a":"b"}"#.into()), r#"{"a":"b"}"#);
    }
}

#[derive(Clone)]
pub struct Store {
    config: Arc<tokio_postgres::Config>,
    reads: Pool,
    writer: writer::Writer,
    written: Arc<Notify>,
    ephemeral: broadcast::Sender<Arc<str>>,
    busy_timeout: Duration,
}

impl Store {
    /// Connects, applies the migrations the database lacks (under an
    /// advisory lock, so nodes starting together migrate once) and starts
    /// the writer.
    pub async fn open(url: &str, pool_size: usize, busy_timeout: Duration) -> DbResult<Store> {
        let config = connection_config(url, busy_timeout)?;
        let reads = pool(config.clone(), pool_size, busy_timeout)?;
        let writes = pool(config.clone(), 1, busy_timeout)?;
        {
            let mut conn = reads.get().await?;
            migrate::apply(&mut conn).await?;
        }
        let written = Arc::new(Notify::new());
        Ok(Store {
            config: Arc::new(config),
            reads,
            writer: writer::Writer::start(writes, written.clone()),
            written,
            ephemeral: broadcast::channel(EPHEMERAL_BACKLOG).0,
            busy_timeout,
        })
    }

    pub fn written(&self) -> Arc<Notify> {
        self.written.clone()
    }

    pub async fn tail_reader(&self) -> DbResult<outbox::TailReader> {
        Ok(outbox::TailReader::start(
            self.config.clone(),
            pool((*self.config).clone(), 1, self.busy_timeout)?,
            self.written.clone(),
            self.ephemeral.clone(),
        ))
    }

    pub fn ephemeral_messages(&self) -> broadcast::Receiver<Arc<str>> {
        self.ephemeral.subscribe()
    }

    /// NOTIFY, heard by every node's LISTEN connection (this one's too).
    pub async fn publish_ephemeral(&self, message: String) -> DbResult<()> {
        execute(
            &self.conn().await?,
            "SELECT pg_notify($1, $2)",
            &[&EPHEMERAL_CHANNEL, &message],
        )
        .await?;
        Ok(())
    }

    pub async fn take_token(
        &self,
        key: String,
        per_second: f64,
        burst: f64,
    ) -> DbResult<Option<Duration>> {
        let row = one(
            &self.conn().await?,
            "SELECT stoa_take_token($1, $2, $3)",
            &[&key, &per_second, &burst],
        )
        .await?;
        let wait: f64 = row.get(0);
        Ok((wait > 0.0).then(|| Duration::from_secs_f64(wait)))
    }

    /// Forgets rate-limit buckets idle since `cutoff` (full again by then).
    pub async fn forget_idle_limits(&self, cutoff: String) -> DbResult<u64> {
        execute(
            &self.conn().await?,
            "DELETE FROM rate_limits WHERE updated_at < $1::text::timestamptz",
            &[&cutoff],
        )
        .await
    }

    /// Runs `f` in one read-only, repeatable-read transaction, so
    /// everything it reads is one consistent snapshot.
    /// (A transaction dropped unfinished, as when the client goes away,
    /// is rolled back before its connection is used again.)
    async fn snapshot<T, F>(&self, f: F) -> DbResult<T>
    where
        F: for<'t> FnOnce(&'t Transaction<'t>) -> BoxFuture<'t, DbResult<T>>,
    {
        let mut conn = self.reads.get().await?;
        let tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let value = f(&tx).await?;
        tx.commit().await?;
        Ok(value)
    }

    /// A connection for one statement (which is its own transaction).
    async fn conn(&self) -> DbResult<deadpool_postgres::Object> {
        Ok(self.reads.get().await?)
    }

    pub async fn register(
        &self,
        user: User,
        password_hash: String,
        token_hash: String,
        expires_at: String,
    ) -> DbResult<()> {
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    users::insert(conn, &user, &password_hash).await?;
                    sessions::insert(conn, &token_hash, &user.id, &expires_at).await
                })
            })
            .await
    }

    pub async fn credentials(&self, username: String) -> DbResult<Option<(User, String)>> {
        users::by_username(&self.conn().await?, &username).await
    }

    pub async fn start_session(
        &self,
        token_hash: String,
        user_id: String,
        expires_at: String,
    ) -> DbResult<()> {
        self.writer
            .write(move |conn| {
                Box::pin(
                    async move { sessions::insert(conn, &token_hash, &user_id, &expires_at).await },
                )
            })
            .await
    }

    pub async fn session_user(&self, token_hash: String, now: String) -> DbResult<Option<User>> {
        sessions::user_for(&self.conn().await?, &token_hash, &now).await
    }

    pub async fn end_session(&self, token_hash: String) -> DbResult<()> {
        self.writer
            .write(move |conn| Box::pin(async move { sessions::delete(conn, &token_hash).await }))
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
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    threads::insert(conn, &id, &author_id, &title, &content, &content_html).await
                })
            })
            .await
    }

    pub async fn thread_page(
        &self,
        viewer: Option<String>,
        limit: usize,
        before: Option<Cursor>,
    ) -> DbResult<ThreadPage> {
        self.snapshot(move |conn| {
            Box::pin(async move {
                Ok(ThreadPage {
                    threads: threads::page(conn, viewer.as_deref(), limit, before.as_ref()).await?,
                    last_event_id: outbox::latest(conn).await?,
                })
            })
        })
        .await
    }

    pub async fn thread_with_comments(
        &self,
        id: String,
        viewer: Option<String>,
    ) -> DbResult<Option<ThreadWithComments>> {
        self.snapshot(move |conn| {
            Box::pin(async move {
                let Some(thread) = threads::get(conn, &id, viewer.as_deref()).await? else {
                    return Ok(None);
                };
                Ok(Some(ThreadWithComments {
                    thread,
                    comments: comments::for_thread(conn, &id, viewer.as_deref()).await?,
                    last_event_id: outbox::latest(conn).await?,
                }))
            })
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
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    comments::insert(conn, &id, &thread_id, &author, &content, &content_html).await
                })
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
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let content = content
                        .as_ref()
                        .map(|(text, html)| (text.as_str(), html.as_str()));
                    threads::edit(conn, &id, &actor, title.as_deref(), content).await
                })
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
        self.writer
            .write(move |conn| {
                Box::pin(
                    async move { comments::edit(conn, &id, &actor, &content, &content_html).await },
                )
            })
            .await
    }

    pub async fn set_flag(
        &self,
        id: String,
        actor_id: String,
        flag: Flag,
        on: bool,
    ) -> DbResult<Option<Json>> {
        self.writer
            .write(move |conn| {
                Box::pin(async move { threads::set_flag(conn, &id, &actor_id, flag, on).await })
            })
            .await
    }

    pub async fn set_role(&self, username: String, role: Role) -> DbResult<Option<RoleChange>> {
        self.writer
            .write(move |conn| {
                Box::pin(async move { users::set_role(conn, &username, role).await })
            })
            .await
    }

    pub async fn ban(
        &self,
        user_id: String,
        actor_id: String,
        reason: Option<String>,
        until: Option<String>,
    ) -> DbResult<Banning> {
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    users::ban(
                        conn,
                        &user_id,
                        &actor_id,
                        reason.as_deref(),
                        until.as_deref(),
                    )
                    .await
                })
            })
            .await
    }

    pub async fn unban(&self, user_id: String, actor_id: String) -> DbResult<bool> {
        self.writer
            .write(move |conn| {
                Box::pin(async move { users::unban(conn, &user_id, &actor_id).await })
            })
            .await
    }

    pub async fn moderation_log(&self, limit: usize, before: Option<i64>) -> DbResult<Vec<Json>> {
        log::page(&self.conn().await?, limit, before).await
    }

    pub async fn search(
        &self,
        words: Vec<String>,
        viewer: Option<String>,
        limit: usize,
        offset: usize,
    ) -> DbResult<Vec<SearchHit>> {
        search::search(
            &self.conn().await?,
            &words,
            viewer.as_deref(),
            limit,
            offset,
        )
        .await
    }

    pub async fn registered_usernames(&self, names: Vec<String>) -> DbResult<Vec<String>> {
        users::registered(&self.conn().await?, &names).await
    }

    pub async fn set_like(
        &self,
        user_id: String,
        target: Target,
        liked: bool,
    ) -> DbResult<Option<i64>> {
        self.writer
            .write(move |conn| {
                Box::pin(async move { likes::set(conn, &user_id, &target, liked).await })
            })
            .await
    }

    pub async fn remove_thread(&self, id: String, actor: Actor) -> DbResult<Removal> {
        self.writer
            .write(move |conn| Box::pin(async move { threads::delete(conn, &id, &actor).await }))
            .await
    }

    pub async fn remove_comment(&self, id: String, actor: Actor) -> DbResult<Removal> {
        self.writer
            .write(move |conn| Box::pin(async move { comments::delete(conn, &id, &actor).await }))
            .await
    }

    pub async fn outbox_after(&self, after: i64, limit: usize) -> DbResult<Vec<Row>> {
        outbox::after(&self.conn().await?, after, limit).await
    }

    pub async fn outbox_range(&self) -> DbResult<Range> {
        outbox::range(&self.conn().await?).await
    }

    pub async fn outbox_newest(&self, limit: usize) -> DbResult<(i64, Vec<Row>)> {
        self.snapshot(move |conn| {
            Box::pin(async move {
                Ok((
                    outbox::latest(conn).await?,
                    outbox::newest(conn, limit).await?,
                ))
            })
        })
        .await
    }

    pub async fn prune_outbox(&self, cutoff: String, keep: u64, limit: usize) -> DbResult<usize> {
        self.writer
            .write(move |conn| {
                Box::pin(async move { outbox::prune(conn, &cutoff, keep, limit).await })
            })
            .await
    }

    pub async fn load_fixture(
        &self,
        data: DataSet,
        password_hashes: Vec<String>,
    ) -> DbResult<bool> {
        self.writer
            .write(move |conn| {
                Box::pin(async move { load_fixture(conn, &data, &password_hashes).await })
            })
            .await
    }

    /// Nothing to finish: every write has been committed and answered.
    pub async fn close(&self) -> DbResult<()> {
        self.reads.close();
        Ok(())
    }
}

/// The fixture's users (reusing any that exist), threads, comments and
/// likes, through the same queries as the API so every row has its event.
async fn load_fixture(conn: &Transaction<'_>, data: &DataSet, hashes: &[String]) -> DbResult<bool> {
    if threads::count(conn).await? > 0 {
        return Ok(false);
    }
    let mut ids = std::collections::HashMap::new();
    for (sample, hash) in data.users.iter().zip(hashes) {
        let id = match users::by_username(conn, &sample.username).await? {
            Some((user, _)) => user.id,
            None => {
                let user = User {
                    role: sample.role,
                    ..User::member(uuid::Uuid::now_v7().to_string(), sample.username.clone())
                };
                users::insert(conn, &user, hash).await?;
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
        )
        .await?;
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
            )
            .await?;
        }
        for liker in &sample.likes {
            let target = Target::Thread(thread_id.clone());
            likes::set(conn, &id_of(liker)?, &target, true).await?;
        }
    }
    Ok(true)
}
