//! Full-text search: the `search` tsvector of threads and comments (kept
//! by triggers, GIN-indexed), best match first, then newest.

use deadpool_postgres::GenericClient;

use super::{json, rows};
use crate::db::{DbResult, SearchHit};

/// The tsquery for `words`: all of them required, the last as a prefix.
/// Words are letters and digits only (`crate::search::words`), so no
/// tsquery syntax gets through; each is quoted all the same.
fn ts_query(words: &[String]) -> String {
    let mut query = String::new();
    for (n, word) in words.iter().enumerate() {
        if n > 0 {
            query.push_str(" & ");
        }
        query.push('\'');
        query.push_str(&word.replace('\'', "''").replace('\\', "\\\\"));
        query.push('\'');
        if n + 1 == words.len() {
            query.push_str(":*");
        }
    }
    query
}

/// Up to `limit` hits for `words` after the first `offset` (the best of
/// the newest `MAX_RANKED` matches, then newest), as `viewer`
/// sees the threads and comments. The snippet is cut from the matched
/// text here (`crate::search::snippet`): ts_headline would leave out
/// whatever looks like an HTML tag, and a snippet shows the text as written.
pub async fn search<C: GenericClient>(
    conn: &C,
    words: &[String],
    viewer: Option<&str>,
    limit: usize,
    offset: usize,
) -> DbResult<Vec<SearchHit>> {
    let found = rows(
        conn,
        "WITH q AS (SELECT to_tsquery('simple', $1) AS query),
         matched AS (
             SELECT * FROM (
                 SELECT t.id AS thread_id, NULL::text AS comment_id, t.search, t.created_at
                 FROM threads t, q WHERE t.search @@ q.query
                 UNION ALL
                 SELECT c.thread_id, c.id, c.search, c.created_at
                 FROM comments c, q WHERE c.search @@ q.query
             ) m ORDER BY created_at DESC LIMIT $5
         ),
         hits AS (
             SELECT thread_id, comment_id, ts_rank(m.search, q.query) AS score, created_at
             FROM matched m, q
         ),
         page AS (
             SELECT * FROM hits
             ORDER BY score DESC, created_at DESC, coalesce(comment_id, thread_id) DESC
             LIMIT $2 OFFSET $3
         )
         SELECT stoa_thread_json(t, $4)::text,
                CASE WHEN p.comment_id IS NULL THEN NULL ELSE stoa_comment_json(c, $4)::text END,
                CASE WHEN p.comment_id IS NULL THEN t.title || E'\\n' || t.content
                     ELSE c.content END
         FROM page p CROSS JOIN q
         JOIN threads t ON t.id = p.thread_id
         LEFT JOIN comments c ON c.id = p.comment_id
         ORDER BY p.score DESC, p.created_at DESC, coalesce(p.comment_id, p.thread_id) DESC",
        &[
            &ts_query(words),
            &(limit as i64),
            &(offset as i64),
            &viewer,
            &crate::search::MAX_RANKED,
        ],
    )
    .await?;
    found
        .into_iter()
        .map(|row| {
            Ok(SearchHit {
                thread: json(row.get(0))?,
                comment: row.get::<_, Option<String>>(1).map(json).transpose()?,
                snippet: crate::search::snippet(row.get(2), words),
            })
        })
        .collect()
}
