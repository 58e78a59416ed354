//! The PostgreSQL schema's history: numbered migrations, each applied once,
//! in order, in its own transaction under an advisory lock (so nodes
//! starting together migrate once), and recorded in `schema_migrations`.

use deadpool_postgres::Object;

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
    ("self-hosting", include_str!("migrations/0006_selfhost.sql")),
    #[cfg(feature = "test-migration")]
    ("a no-op for the rolling-restart test", "SELECT 1"),
];

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
