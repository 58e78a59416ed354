//! Markdown rendered once when written: `contentHtml` beside `content` in
//! every answer, snapshot and event; mentions of users linked; rows
//! written from outside shown as text.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::backend::execute_outside;
use crate::expect::{assert_events, frame};
use crate::helpers::{spawn_app, Page};

const REL: &str = "nofollow ugc noopener";

#[tokio::test]
async fn a_threads_markdown_is_rendered_once_and_sent_beside_its_source() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut stream = app.events("", &[]).await;
    let source = "# Heading\n\n**bold**, [a link](https://example.org/?a=1&b=2) and <b>raw</b>\n\n```\nlet x = 1 < 2;\n```";
    let html = format!(
        "<h1>Heading</h1>\n<p><strong>bold</strong>, \
         <a href=\"https://example.org/?a=1&amp;b=2\" rel=\"{REL}\">a link</a> and &lt;b&gt;raw&lt;/b&gt;</p>\n\
         <pre><code>let x = 1 &lt; 2;\n</code></pre>\n"
    );
    let thread = app.create_thread(&alice, "Markdown", source).await;
    assert_eq!(thread["content"], source, "the source is kept as sent");
    assert_eq!(thread["contentHtml"], html.as_str());

    let id = thread["id"].as_str().unwrap();
    assert_eq!(
        app.thread(None, id).await["thread"]["contentHtml"],
        html.as_str()
    );
    let listed = app.threads(None, Page::default()).await;
    assert_eq!(listed["threads"][0]["contentHtml"], html.as_str());
    let event = stream.take_events(1).await.remove(0).json();
    assert_eq!(event["data"]["contentHtml"], html.as_str());
}

#[tokio::test]
async fn a_comments_markdown_reaches_the_stream_and_the_thread_rendered() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "t", "c").await;
    let id = thread["id"].as_str().unwrap().to_string();
    let mut stream = app.events(&format!("?thread={id}"), &[]).await;
    let comment = app
        .comment(
            &alice,
            &id,
            "- one\n- *two*\n\n![a cat](https://example.org/cat.png)",
        )
        .await;
    let html = format!(
        "<ul>\n<li>one</li>\n<li><em>two</em></li>\n</ul>\n\
         <p><a href=\"https://example.org/cat.png\" rel=\"{REL}\">a cat</a></p>\n"
    );
    assert_eq!(comment["contentHtml"], html.as_str());
    let event = stream.take_events(1).await.remove(0).json();
    assert_eq!(event["type"], "new_comment");
    assert_eq!(event["data"]["comment"]["contentHtml"], html.as_str());
    let shown = app.thread(None, &id).await;
    assert_eq!(shown["comments"][0]["contentHtml"], html.as_str());
}

#[tokio::test]
async fn a_mention_of_an_existing_user_links_to_posts_mentioning_them() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    app.register("Bob_1").await;
    let thread = app
        .create_thread(
            &alice,
            "t",
            "thanks @bob_1, and @nobody; mail bob@example.org",
        )
        .await;
    assert_eq!(
        thread["contentHtml"],
        format!(
            "<p>thanks <a class=\"mention\" href=\"/?q=%40Bob_1\" rel=\"{REL}\">@Bob_1</a>, \
             and @nobody; mail <a href=\"mailto:bob@example.org\" rel=\"{REL}\">bob@example.org</a></p>\n"
        )
    );
}

#[tokio::test]
async fn only_http_https_and_mailto_links_survive() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    for (source, href) in [
        ("[x](javascript:alert(1))", None),
        ("[x](JaVaScRiPt:alert(1))", None),
        ("[x](vbscript:msgbox)", None),
        ("[x](data:text/html;base64,PHNjcmlwdD4=)", None),
        ("[x](ftp://example.org/)", None),
        ("[x](http://example.org/)", Some("http://example.org/")),
        ("[x](mailto:a@example.org)", Some("mailto:a@example.org")),
    ] {
        let thread = app.create_thread(&alice, "t", source).await;
        let expected = match href {
            Some(href) => format!("<p><a href=\"{href}\" rel=\"{REL}\">x</a></p>\n"),
            None => format!("<p><a rel=\"{REL}\">x</a></p>\n"),
        };
        assert_eq!(thread["contentHtml"], expected.as_str(), "{source}");
    }
}

/// A row an operator inserts with the sqlite3 shell or psql has no HTML:
/// it is sent with `contentHtml` null, and the page shows its text.
#[tokio::test]
async fn a_comment_written_from_outside_has_no_html() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "t", "c").await;
    let id = thread["id"].as_str().unwrap().to_string();
    let mut stream = app.events(&format!("?thread={id}"), &[]).await;
    execute_outside(
        &app.config.db,
        &format!(
            "INSERT INTO comments (id, thread_id, author_id, content) \
             VALUES ('from-outside', '{id}', '{}', '**not** <i>html</i>')",
            alice.id
        ),
    )
    .await;
    let comment = json!({
        "id": "from-outside",
        "threadId": id,
        "content": "**not** <i>html</i>",
        "contentHtml": Value::Null,
        "author": {"id": alice.id, "username": "alice"},
        "createdAt": "$timestamp",
        "likeCount": 0,
        "likedByMe": false,
        "editedAt": Value::Null,
    });
    let data = json!({"threadId": id, "comment": comment, "commentCount": 1});
    assert_events!(stream.take_events(1).await, [frame(2, "new_comment", data)]);
    let shown = app.thread(None, &id).await;
    assert_eq!(shown["comments"][0]["contentHtml"], Value::Null);
}

#[tokio::test]
async fn a_preview_renders_a_draft_as_posting_would_and_stores_nothing() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let preview = app
        .try_preview(Some(&alice), "**hi** @alice <script>x</script>")
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(
        preview["contentHtml"],
        format!(
            "<p><strong>hi</strong> <a class=\"mention\" href=\"/?q=%40alice\" rel=\"{REL}\">@alice</a> \
             &lt;script&gt;x&lt;/script&gt;</p>\n"
        )
    );
    assert_eq!(
        app.stats().await["lastEventId"],
        0,
        "no event: nothing was written"
    );
    let signed_out = app.try_preview(None, "x").await;
    assert_eq!(signed_out.status, StatusCode::UNAUTHORIZED);
    let empty = app.try_preview(Some(&alice), "").await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(empty.body["error"]["field"], "content");
}

#[tokio::test]
async fn an_edit_from_outside_drops_the_html_of_the_old_content() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "t", "**old**").await;
    let id = thread["id"].as_str().unwrap().to_string();
    let comment = app.comment(&alice, &id, "*old*").await;
    let comment_id = comment["id"].as_str().unwrap().to_string();
    let mut stream = app.events(&format!("?thread={id}"), &[]).await;
    for sql in [
        format!("UPDATE threads SET content = 'new <b>text</b>' WHERE id = '{id}'"),
        format!("UPDATE comments SET content = 'new *text*' WHERE id = '{comment_id}'"),
    ] {
        execute_outside(&app.config.db, &sql).await;
    }
    let events = stream.take_events(2).await;
    let (edited_thread, edited_comment) = (events[0].json(), events[1].json());
    assert_eq!(edited_thread["type"], "thread_edited");
    assert_eq!(
        edited_thread["data"]["thread"]["content"],
        "new <b>text</b>"
    );
    assert_eq!(edited_thread["data"]["thread"]["contentHtml"], Value::Null);
    assert!(edited_thread["data"]["thread"]["editedAt"].is_string());
    assert_eq!(edited_comment["type"], "comment_edited");
    assert_eq!(
        edited_comment["data"]["comment"]["contentHtml"],
        Value::Null
    );
    assert!(edited_comment["data"]["comment"]["editedAt"].is_string());

    let shown = app.thread(None, &id).await;
    assert_eq!(shown["thread"]["contentHtml"], Value::Null, "shown as text");
    assert_eq!(shown["comments"][0]["contentHtml"], Value::Null);

    // Edited through the API again, it is rendered again.
    let thread = app
        .edit_thread(&alice, &id, json!({"content": "**again**"}))
        .await;
    assert_eq!(thread["contentHtml"], "<p><strong>again</strong></p>\n");
    let comment = app.edit_comment(&alice, &comment_id, "*again*").await;
    assert_eq!(comment["contentHtml"], "<p><em>again</em></p>\n");
}

#[tokio::test]
async fn an_edit_through_the_api_that_renders_the_same_html_keeps_it() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "t", "**same**").await;
    let id = thread["id"].as_str().unwrap().to_string();
    let comment = app.comment(&alice, &id, "*same*").await;
    let comment_id = comment["id"].as_str().unwrap().to_string();
    let html = "<p><strong>same</strong></p>\n";
    assert_eq!(thread["contentHtml"], html);
    // Quick edits back and forth, each source rendering the same HTML.
    for content in ["__same__", "**same**", "__same__"] {
        let edited = app
            .edit_thread(&alice, &id, json!({"content": content}))
            .await;
        assert_eq!(edited["content"], content);
        assert_eq!(edited["contentHtml"], html, "{content} keeps its HTML");
    }
    for content in ["_same_", "*same*", "_same_"] {
        let edited = app.edit_comment(&alice, &comment_id, content).await;
        assert_eq!(edited["contentHtml"], "<p><em>same</em></p>\n");
    }
    let shown = app.thread(None, &id).await;
    assert_eq!(shown["thread"]["contentHtml"], html);
    assert_eq!(
        shown["comments"][0]["contentHtml"],
        "<p><em>same</em></p>\n"
    );
}
