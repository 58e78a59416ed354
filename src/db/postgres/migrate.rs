//! The PostgreSQL schema's history: numbered migrations, each applied once,
//! in order, in its own transaction under an advisory lock (so nodes
//! starting together migrate once), and recorded in `schema_migrations`.

use deadpool_postgres::{Object, Transaction};

use crate::db::{DbError, DbResult};

/// Every migration, in order: version `n` is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[(&str, &str)] = &[
    ("initial", include_str!("migrations/0001_initial.sql")),
    (
        "shared rate limits",
        include_str!("migrations/0002_shared_rate_limits.sql"),
    ),
    (
        "cached plans for the JSON builders",
        include_str!("migrations/0003_cached_json_plans.sql"),
    ),
    ("moderation", include_str!("migrations/0004_moderation.sql")),
    ("richtext", include_str!("migrations/0005_richtext.sql")),
    ("self-hosting", include_str!("migrations/0006_selfhost.sql")),
    ("activity", include_str!("migrations/0007_activity.sql")),
    #[cfg(feature = "test-migration")]
    ("a no-op for the rolling-restart test", "SELECT 1"),
];

/// Rows rendered between two progress lines in the log.
const PROGRESS_EVERY: usize = 10_000;

/// Renders the HTML of every stored thread and comment (the rich-text
/// migration), in the migration's transaction. Only `content_html`
/// changes, which no trigger watches, so no event is written and no outbox
/// id moves.
async fn render_stored_posts(tx: &Transaction<'_>) -> DbResult<()> {
    let mut users = std::collections::HashMap::new();
    for row in tx.query("SELECT username FROM users", &[]).await? {
        let name: String = row.get(0);
        users.insert(name.to_lowercase(), name);
    }
    let user = |name: &str| users.get(&name.to_lowercase()).cloned();
    let total: i64 = tx
        .query_one(
            "SELECT (SELECT count(*) FROM threads) + (SELECT count(*) FROM comments)",
            &[],
        )
        .await?
        .get(0);
    let mut rendered = 0usize;
    for table in ["threads", "comments"] {
        let read = format!("SELECT id, content FROM {table} WHERE id > $1 ORDER BY id LIMIT 1000");
        let write = format!(
            "UPDATE {table} t SET content_html = r.html
             FROM unnest($1::text[], $2::text[]) AS r(id, html) WHERE t.id = r.id"
        );
        let mut after = String::new();
        loop {
            let batch = tx.query(&read, &[&after]).await?;
            let Some(last) = batch.last() else {
                break;
            };
            after = last.get(0);
            let ids: Vec<String> = batch.iter().map(|row| row.get(0)).collect();
            let html: Vec<String> = batch
                .iter()
                .map(|row| crate::markdown::render(row.get(1), &user))
                .collect();
            tx.execute(&write, &[&ids, &html]).await?;
            let before = rendered;
            rendered += ids.len();
            if rendered / PROGRESS_EVERY > before / PROGRESS_EVERY {
                tracing::info!(rendered, total, "rendering the HTML of stored posts");
            }
        }
    }
    tracing::info!(rendered, "rendered the HTML of every stored post");
    Ok(())
}

/// The schema version this binary brings a database to.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// The advisory lock every node takes to migrate ("stoa" in ASCII).
const LOCK: i64 = 0x73_74_6f_61;

/// Applies every migration the database lacks; returns the versions
/// applied. A database migrated by a newer stoa is refused, and nothing is
/// written to it.
pub async fn apply(conn: &mut Object) -> DbResult<Vec<i64>> {
    let mut applied = Vec::new();
    loop {
        let tx = conn.transaction().await?;
        // A migration may take a while, and another node may be running
        // one: wait for the lock far longer than a request would.
        tx.batch_execute("SET LOCAL lock_timeout = '10min'; SET LOCAL statement_timeout = 0")
            .await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        let current: i64 = tx
            .query_one(
                "SELECT coalesce(max(version), 0)::bigint FROM schema_migrations",
                &[],
            )
            .await?
            .get(0);
        if current > LATEST {
            return Err(DbError::Schema(format!(
                "the database has schema version {current}, but this stoa knows versions up to \
                 {LATEST}: run a stoa at least as new as the one that wrote it (nothing was changed)"
            )));
        }
        let Some((name, sql)) = MIGRATIONS.get(current as usize) else {
            tx.commit().await?;
            return Ok(applied);
        };
        let next = current + 1;
        tx.batch_execute(sql).await?;
        // Work beyond the SQL, in the same transaction, by the migration's
        // name (which stays when migrations are renumbered).
        if *name == "richtext" {
            render_stored_posts(&tx).await?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&(next as i32), name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version = next, name, "applied database migration");
        applied.push(next);
    }
}
