//! The database under test, and what "another process" does to it.
//!
//! The suite runs on SQLite unless `STOA_TEST_POSTGRES` names a PostgreSQL
//! server (`postgres://user@host:port/db`, a database the tests may create
//! others from); then every test gets a database of its own on it, and the
//! same tests run on PostgreSQL. `bash .ci/run` runs the suite both ways.
//! Writes "from outside" go through the `sqlite3`-like connection of
//! rusqlite, or a plain tokio-postgres client as `psql` would make.

use std::path::Path;
use std::time::Duration;

use stoa::config::Database;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rusqlite::rusqlite;

/// The PostgreSQL server the suite runs on, if any.
pub fn postgres_server() -> Option<String> {
    std::env::var("STOA_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.is_empty())
}

/// A new, empty database for one test: a file in `dir`, or a database of
/// its own on the PostgreSQL server.
pub async fn fresh_database(dir: &Path) -> Database {
    match postgres_server() {
        None => Database::Sqlite(dir.join("stoa.db")),
        Some(server) => {
            let name = format!("stoa_test_{}", uuid::Uuid::now_v7().simple());
            let admin = connect(&server).await;
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("the test database is created");
            Database::Postgres(with_database(&server, &name))
        }
    }
}

/// `url` naming the database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|scheme| scheme + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A plain client, as `psql` would connect.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// How `--db` names the database on the command line.
pub fn db_arg(db: &Database) -> String {
    match db {
        Database::Sqlite(path) => path.display().to_string(),
        Database::Postgres(url) => url.clone(),
    }
}

/// A connection to a test server's SQLite file of its own, as the
/// `sqlite3` shell or a script would open it.
pub fn sqlite_connection(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("database opens");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    conn
}

/// Runs `sql` (statements without parameters) in one transaction from
/// outside the server.
pub async fn execute_outside(db: &Database, sql: &str) {
    match db {
        Database::Sqlite(path) => {
            let (path, sql) = (path.clone(), sql.to_string());
            tokio::task::spawn_blocking(move || {
                let mut conn = sqlite_connection(&path);
                let tx = conn.transaction().unwrap();
                tx.execute_batch(&sql).unwrap();
                tx.commit().unwrap();
            })
            .await
            .expect("the outside writer finishes");
        }
        Database::Postgres(url) => {
            let client = connect(url).await;
            client
                .batch_execute(&format!("BEGIN; {sql}; COMMIT"))
                .await
                .expect("the outside write commits");
        }
    }
}

/// Threads `(id, author_id, title, content)` inserted from outside the
/// server, in one transaction, each through a prepared insert as a script
/// would do it.
pub async fn insert_threads_from_outside<I>(db: &Database, threads: I)
where
    I: IntoIterator<Item = (String, String, String, String)> + Send + 'static,
{
    const INSERT: &str =
        "INSERT INTO threads (id, author_id, title, content) VALUES ($1, $2, $3, $4)";
    match db {
        Database::Sqlite(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let mut conn = sqlite_connection(&path);
                let tx = conn.transaction().unwrap();
                {
                    let mut insert = tx.prepare(&INSERT.replace('$', "?")).unwrap();
                    for (id, author, title, content) in threads {
                        insert.execute((id, author, title, content)).unwrap();
                    }
                }
                tx.commit().unwrap();
            })
            .await
            .expect("the outside writer finishes");
        }
        Database::Postgres(url) => {
            let mut client = connect(url).await;
            let tx = client.transaction().await.unwrap();
            let insert = tx.prepare(INSERT).await.unwrap();
            for (id, author, title, content) in threads {
                tx.execute(&insert, &[&id, &author, &title, &content])
                    .await
                    .unwrap();
            }
            tx.commit().await.expect("the outside write commits");
        }
    }
}

/// Every row `sql` gives, read from outside, each column as text (`None`
/// for NULL).
pub async fn query_outside(db: &Database, sql: &str) -> Vec<Vec<Option<String>>> {
    match db {
        Database::Sqlite(path) => {
            let (path, sql) = (path.clone(), sql.to_string());
            tokio::task::spawn_blocking(move || {
                let conn = sqlite_connection(&path);
                let mut statement = conn.prepare(&sql).unwrap();
                let width = statement.column_count();
                statement
                    .query_map([], |row| {
                        (0..width)
                            .map(|i| {
                                Ok(match row.get::<_, rusqlite::types::Value>(i)? {
                                    rusqlite::types::Value::Null => None,
                                    rusqlite::types::Value::Integer(n) => Some(n.to_string()),
                                    rusqlite::types::Value::Real(x) => Some(x.to_string()),
                                    rusqlite::types::Value::Text(text) => Some(text),
                                    rusqlite::types::Value::Blob(_) => Some("<blob>".into()),
                                })
                            })
                            .collect()
                    })
                    .unwrap()
                    .map(Result::unwrap)
                    .collect()
            })
            .await
            .unwrap()
        }
        Database::Postgres(url) => {
            let client = connect(url).await;
            client
                .simple_query(sql)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|message| match message {
                    tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()
        }
    }
}

/// Another process holding what every write needs until `release`:
/// SQLite's write lock (`BEGIN IMMEDIATE`), or PostgreSQL's outbox
/// counter row (an open transaction that appended nothing but locked it).
/// Dropping it releases the lock too.
pub struct WriteLock {
    release: Option<oneshot::Sender<()>>,
    holder: Option<JoinHandle<()>>,
}

pub async fn hold_write_lock(db: &Database) -> WriteLock {
    let (locked, taken) = oneshot::channel();
    let (release, released) = oneshot::channel::<()>();
    let holder = match db.clone() {
        Database::Sqlite(path) => tokio::task::spawn_blocking(move || {
            let conn = sqlite_connection(&path);
            conn.execute_batch("BEGIN IMMEDIATE")
                .expect("the write lock is free");
            let _ = locked.send(());
            // Returns on `release`, or when the `WriteLock` is dropped.
            let _ = released.blocking_recv();
            conn.execute_batch("ROLLBACK").expect("rollback");
        }),
        Database::Postgres(url) => tokio::spawn(async move {
            let client = connect(&url).await;
            client
                .batch_execute("BEGIN; UPDATE outbox_counter SET last = last")
                .await
                .expect("the counter row is free");
            let _ = locked.send(());
            let _ = released.await;
            client.batch_execute("ROLLBACK").await.expect("rollback");
        }),
    };
    taken.await.expect("the write lock is taken");
    WriteLock {
        release: Some(release),
        holder: Some(holder),
    }
}

impl WriteLock {
    /// Rolls the outside transaction back and waits until it has.
    pub async fn release(mut self) {
        drop(self.release.take());
        if let Some(holder) = self.holder.take() {
            holder.await.expect("the lock holder ends cleanly");
        }
    }
}

#[test]
fn a_test_database_url_keeps_its_server_and_options() {
    assert_eq!(
        with_database("postgres://pg@127.0.0.1:5432/postgres", "t1"),
        "postgres://pg@127.0.0.1:5432/t1"
    );
    assert_eq!(
        with_database("postgres://pg@127.0.0.1:5432?sslmode=disable", "t1"),
        "postgres://pg@127.0.0.1:5432/t1?sslmode=disable"
    );
}

/// A backup of a test's database made while its server runs: `stoa
/// backup` on SQLite, `pg_dump` on PostgreSQL (docs/operations.md).
pub async fn back_up(db: &Database, file: &Path) {
    let status = match db {
        Database::Sqlite(path) => tokio::process::Command::new(env!("CARGO_BIN_EXE_stoa"))
            .arg("--db")
            .arg(path)
            .arg("backup")
            .arg(file)
            .status()
            .await
            .unwrap(),
        Database::Postgres(url) => tokio::process::Command::new("pg_dump")
            .args(["-Fc", "-f"])
            .arg(file)
            .arg(url)
            .status()
            .await
            .expect("pg_dump runs"),
    };
    assert!(status.success(), "the backup succeeds");
}

/// Restores `file` over a test's database with its server stopped, as
/// docs/operations.md tells an operator to: `stoa restore` on SQLite;
/// on PostgreSQL, note the counter, `pg_restore --clean`, then
/// `SELECT stoa_restored(noted)`.
pub async fn restore(db: &Database, file: &Path) {
    match db {
        Database::Sqlite(path) => {
            let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_stoa"))
                .arg("--db")
                .arg(path)
                .arg("restore")
                .arg(file)
                .output()
                .await
                .unwrap();
            assert!(
                output.status.success(),
                "stoa restore: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Database::Postgres(url) => {
            let client = connect(url).await;
            let last: i64 = client
                .query_one("SELECT last FROM outbox_counter", &[])
                .await
                .unwrap()
                .get(0);
            drop(client);
            let status = tokio::process::Command::new("pg_restore")
                .args(["--clean", "--if-exists", "--single-transaction", "-d"])
                .arg(url)
                .arg(file)
                .status()
                .await
                .expect("pg_restore runs");
            assert!(status.success(), "pg_restore succeeds");
            connect(url)
                .await
                .execute("SELECT stoa_restored($1)", &[&last])
                .await
                .unwrap();
        }
    }
}
