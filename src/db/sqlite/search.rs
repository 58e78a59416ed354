//! Full-text search: the FTS5 index `search_index` (kept by the triggers
//! of the rich-text migration), best match first, then newest.

use tokio_rusqlite::rusqlite::{named_params, params, Connection};

use super::{cached_row, comments, threads};
use crate::db::{DbError, DbResult, SearchHit};
use crate::search::{MARK_END, MARK_START, MAX_RANKED};

/// Words a snippet shows around the match.
const SNIPPET_WORDS: i64 = 24;

/// The FTS5 query for `words`: each a phrase (so no FTS5 syntax gets
/// through), all of them required, the last one as a prefix.
fn fts_query(words: &[String]) -> String {
    let mut query = String::new();
    for (n, word) in words.iter().enumerate() {
        if n > 0 {
            query.push(' ');
        }
        query.push('"');
        query.push_str(&word.replace('"', "\"\""));
        query.push('"');
        if n + 1 == words.len() {
            query.push('*');
        }
    }
    query
}

/// Up to `limit` hits for `words` after the first `offset`, as `viewer`
/// sees the threads and comments.
pub fn search(
    conn: &Connection,
    words: &[String],
    viewer: Option<&str>,
    limit: usize,
    offset: usize,
) -> DbResult<Vec<SearchHit>> {
    let query = fts_query(words);
    let found: Vec<(i64, String, Option<String>)> = {
        // The newest MAX_RANKED matches (index rows are numbered in the
        // order the posts were written, and FTS5 walks them newest first
        // without scoring the rest), ranked by bm25 with a title counting
        // twice a body; only the page is joined.
        let mut statement = conn.prepare_cached(
            "SELECT d.id, d.thread_id, d.comment_id
             FROM (SELECT doc, score FROM (
                       SELECT rowid AS doc, bm25(search_index, 2.0, 1.0) AS score
                       FROM search_index WHERE search_index MATCH :query
                       ORDER BY rowid DESC LIMIT :ranked)
                   ORDER BY score, doc DESC LIMIT :limit OFFSET :offset) AS hit
             JOIN search_docs d ON d.id = hit.doc
             ORDER BY hit.score, hit.doc DESC",
        )?;
        let rows = statement.query_map(
            named_params! {
                ":query": query,
                ":ranked": MAX_RANKED,
                ":limit": limit as i64,
                ":offset": offset as i64,
            },
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        rows.collect::<Result<_, _>>()?
    };
    let mut hits = Vec::with_capacity(found.len());
    for (doc, thread_id, comment_id) in found {
        let snippet: String = cached_row(
            conn,
            "SELECT snippet(search_index, -1, ?2, ?3, '…', ?4) FROM search_index
             WHERE search_index MATCH ?1 AND rowid = ?5",
            params![
                query,
                MARK_START.to_string(),
                MARK_END.to_string(),
                SNIPPET_WORDS,
                doc
            ],
            |row| row.get(0),
        )?;
        let thread = threads::get(conn, &thread_id, viewer)?
            .ok_or_else(|| DbError::Other(format!("search found missing thread {thread_id}")))?;
        let comment = match comment_id {
            None => None,
            Some(id) => Some(
                comments::get(conn, &id, viewer)?
                    .ok_or_else(|| DbError::Other(format!("search found missing comment {id}")))?,
            ),
        };
        hits.push(SearchHit {
            thread,
            comment,
            snippet,
        });
    }
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sqlite::threads::tests::with_users;

    #[test]
    fn the_query_is_phrases_with_the_last_a_prefix() {
        let words = vec!["rust".to_string(), "asy".to_string()];
        assert_eq!(fts_query(&words), "\"rust\" \"asy\"*");
    }

    #[test]
    fn every_word_must_match_in_any_order_and_the_last_as_a_prefix() {
        let conn = with_users(&["alice"]);
        threads::insert(&conn, "t1", "id-alice", "Async Rust", "tokio runtime", "").unwrap();
        threads::insert(&conn, "t2", "id-alice", "Gardening", "rust on tools", "").unwrap();
        let ids = |words: &[&str]| -> Vec<String> {
            let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            search(&conn, &words, None, 10, 0)
                .unwrap()
                .into_iter()
                .map(|hit| {
                    let thread: serde_json::Value = serde_json::from_str(hit.thread.get()).unwrap();
                    thread["id"].as_str().unwrap().to_string()
                })
                .collect()
        };
        assert_eq!(ids(&["runtime", "async"]), ["t1"]);
        assert_eq!(ids(&["rust", "tok"]), ["t1"]);
        assert_eq!(ids(&["garden"]), ["t2"]);
        assert!(ids(&["gard", "async"]).is_empty());
        // A title match outranks a body match.
        assert_eq!(ids(&["rust"]), ["t1", "t2"]);
    }
}
