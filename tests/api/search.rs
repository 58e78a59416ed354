//! `GET /api/community/search`: every word in any order, the last as a
//! prefix; best match first, then newest; snippets escaped but for
//! `<mark>`; deleted posts never found; rows written from outside found;
//! cursor paging; 400 for a query that is empty or too long.

use reqwest::StatusCode;
use serde_json::Value;

use crate::backend::execute_outside;
use crate::helpers::spawn_app;

/// `(thread id, comment id or null)` of each result.
fn hits(body: &Value) -> Vec<(String, Option<String>)> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["thread"]["id"].as_str().unwrap().to_string(),
                r["comment"]["id"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn id(post: &Value) -> String {
    post["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn threads_and_comments_are_found_by_every_word_in_any_order_the_last_as_a_prefix() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let rust = app
        .create_thread(&alice, "Async Rust", "Which runtime do you use?")
        .await;
    let garden = app
        .create_thread(&alice, "Gardening", "Tomatoes and basil")
        .await;
    let reply = app
        .comment(&alice, &id(&garden), "My tokio plant is thriving")
        .await;

    assert_eq!(hits(&app.search("runtime rust").await), [(id(&rust), None)]);
    assert_eq!(hits(&app.search("RUST async").await), [(id(&rust), None)]);
    assert_eq!(
        hits(&app.search("rust runt").await),
        [(id(&rust), None)],
        "prefix"
    );
    assert_eq!(
        hits(&app.search("thriv").await),
        [(id(&garden), Some(id(&reply)))],
        "a comment hit names its thread and the comment"
    );
    assert!(
        hits(&app.search("runt rust").await).is_empty(),
        "only the last word is a prefix"
    );
    assert!(
        hits(&app.search("rust basil").await).is_empty(),
        "every word must match"
    );
    let result = &app.search("thriving").await["results"][0];
    assert_eq!(result["thread"]["title"], "Gardening");
    assert_eq!(result["comment"]["content"], "My tokio plant is thriving");
    assert_eq!(result["thread"]["likedByMe"], false);
}

#[tokio::test]
async fn the_best_match_comes_first_then_the_newest() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let older = app
        .create_thread(&alice, "Notes", "a word about kites")
        .await;
    let newer = app
        .create_thread(&alice, "Notes", "a word about kites")
        .await;
    let titled = app.create_thread(&alice, "Kites", "flying them").await;
    assert_eq!(
        hits(&app.search("kites").await),
        [(id(&titled), None), (id(&newer), None), (id(&older), None)]
    );
}

#[tokio::test]
async fn snippets_mark_the_matched_words_and_escape_everything_else() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "t", "c").await;
    app.comment(
        &alice,
        &id(&thread),
        "<b onclick=\"x\">Zebra</b> & 'friends'",
    )
    .await;
    let snippet = app.search("zebra").await["results"][0]["snippet"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        snippet,
        "&lt;b onclick=&quot;x&quot;&gt;<mark>Zebra</mark>&lt;/b&gt; &amp; &#39;friends&#39;"
    );
}

#[tokio::test]
async fn deleted_posts_are_never_found() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let kept = app.create_thread(&alice, "Walrus kept", "x").await;
    let gone = app.create_thread(&alice, "Walrus gone", "x").await;
    app.comment(&alice, &id(&gone), "walrus under a removed thread")
        .await;
    let comment = app
        .comment(&alice, &id(&kept), "walrus removed alone")
        .await;
    app.delete_thread(&alice, &id(&gone)).await;
    app.delete_comment(&alice, &id(&comment)).await;
    assert_eq!(hits(&app.search("walrus").await), [(id(&kept), None)]);
}

#[tokio::test]
async fn rows_written_from_outside_are_found() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    execute_outside(
        &app.config.db,
        &format!(
            "INSERT INTO threads (id, author_id, title, content) \
             VALUES ('from-outside', '{}', 'Announcement', 'maintenance tonight')",
            alice.id
        ),
    )
    .await;
    assert_eq!(
        hits(&app.search("maintenance").await),
        [("from-outside".to_string(), None)]
    );
}

#[tokio::test]
async fn pages_follow_the_cursor_without_repeats_to_the_end() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut made = Vec::new();
    for n in 0..25 {
        made.push(id(&app
            .create_thread(&alice, &format!("Ocelot {n}"), "x")
            .await));
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = app
            .try_search(None, "ocelot", Some(10), cursor.as_deref())
            .await
            .expect_status(StatusCode::OK);
        seen.extend(hits(&page).into_iter().map(|(thread, _)| thread));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    made.reverse();
    assert_eq!(seen, made, "equally good matches, newest first, each once");
}

#[tokio::test]
async fn a_query_that_is_empty_too_long_or_wordless_is_a_400() {
    let app = spawn_app().await;
    for (q, says) in [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("\"*\" ()", "must have a word"),
        (&"a".repeat(201), "at most 200 characters"),
    ] {
        let answer = app.try_search(None, q, None, None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{q:?}");
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{q:?}: {message}");
    }
    let no_q = app
        .send(app.client.get(app.url("/api/community/search")))
        .await;
    assert_eq!(no_q.status, StatusCode::BAD_REQUEST);
    let bad_cursor = app.try_search(None, "x", None, Some("nope")).await;
    assert_eq!(bad_cursor.status, StatusCode::BAD_REQUEST);
    let bad_limit = app.try_search(None, "x", Some(0), None).await;
    assert_eq!(bad_limit.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_limit.body["error"]["field"], "limit");
    // Query syntax of either database is only text.
    let syntax = app
        .try_search(None, "a OR b NEAR(c) d:* !e & f|g", None, None)
        .await;
    assert_eq!(syntax.status, StatusCode::OK);
}
