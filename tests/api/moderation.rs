//! Editing, roles, moderation and bans beyond what the scenarios
//! (fixtures/scenarios/12-14) show: edits made from outside the server,
//! the `stoa role` command against a running server's database, the list
//! order with pinned threads, and who starts as what.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::backend::{db_arg, execute_outside};
use crate::expect::{assert_events, frame};
use crate::helpers::{spawn_app, Page, TestApp};

/// A thread or comment object with `editedAt` set, the rest as given.
fn edited(mut object: serde_json::Value) -> serde_json::Value {
    object["editedAt"] = json!("$timestamp");
    object
}

#[tokio::test]
async fn an_update_from_outside_the_server_produces_its_edit_event_and_a_no_op_produces_none() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "Title", "Body").await;
    let comment = app
        .comment(&alice, thread["id"].as_str().unwrap(), "Hi")
        .await;
    let mut stream = app.events("?lastEventId=2", &[]).await;

    let (thread_id, comment_id) = (
        thread["id"].as_str().unwrap(),
        comment["id"].as_str().unwrap(),
    );
    // The sqlite3 shell or psql: a real change, then one that changes nothing.
    execute_outside(
        &app.config.db,
        &format!(
            "UPDATE threads SET title = 'Edited by hand' WHERE id = '{thread_id}';
             UPDATE threads SET content = content WHERE id = '{thread_id}';
             UPDATE comments SET content = 'Hi!' WHERE id = '{comment_id}';
             UPDATE comments SET content = 'Hi!' WHERE id = '{comment_id}'"
        ),
    )
    .await;
    let mut thread_after = edited(thread.clone());
    thread_after["title"] = json!("Edited by hand");
    thread_after["commentCount"] = json!(1);
    thread_after["lastActivityAt"] = comment["createdAt"].clone();
    let mut comment_after = edited(comment.clone());
    comment_after["content"] = json!("Hi!");
    // The old HTML no longer shows the content: the page shows the text.
    comment_after["contentHtml"] = json!(null);
    assert_events!(
        stream.take_events(2).await,
        [
            frame(
                3,
                "thread_edited",
                json!({"threadId": thread_id, "thread": thread_after})
            ),
            frame(
                4,
                "comment_edited",
                json!({"threadId": thread_id, "comment": comment_after})
            ),
        ]
    );
    assert_events!(stream.drain_events(Duration::from_millis(300)).await, []);
    // The snapshot shows the edit too.
    let shown = app.thread(None, thread_id).await;
    assert_eq!(shown["thread"]["title"], "Edited by hand");
    assert!(shown["thread"]["editedAt"].is_string());
    assert!(shown["comments"][0]["editedAt"].is_string());
}

/// `stoa role` run as a separate process on the database a server is
/// using: it prints what changed, and the server's next request sees it.
async fn stoa_role(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_stoa"))
        .arg("--db")
        .arg(db_arg(&app.config.db))
        .arg("role")
        .args(args)
        .output()
        .await
        .expect("stoa runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_role_command_works_on_a_running_servers_database() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&bob, "Heated", "…").await;
    let thread_id = thread["id"].as_str().unwrap();
    assert_eq!(app.me(&alice).await["role"], "member");
    assert_eq!(
        app.try_lock(&alice, thread_id, true).await.status,
        StatusCode::FORBIDDEN
    );

    let (code, stdout, stderr) = stoa_role(&app, &["Alice", "moderator"]).await;
    assert_eq!(
        (code, stdout.as_str()),
        (0, "alice: member -> moderator\n"),
        "{stderr}"
    );
    // The same session, its next request: now a moderator.
    assert_eq!(app.me(&alice).await["role"], "moderator");
    app.try_lock(&alice, thread_id, true)
        .await
        .expect_status(StatusCode::OK);

    let (code, stdout, _) = stoa_role(&app, &["alice", "moderator"]).await;
    assert_eq!(
        (code, stdout.as_str()),
        (0, "alice is already moderator: nothing changed\n")
    );
    let (code, stdout, stderr) = stoa_role(&app, &["nobody", "admin"]).await;
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(stderr.contains("no user named \"nobody\""), "{stderr}");
    let (code, _, stderr) = stoa_role(&app, &["alice", "wizard"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("\"wizard\" is not a role: use member, moderator or admin"),
        "{stderr}"
    );

    // The command's change is in the log, with no actor.
    stoa_role(&app, &["bob", "admin"]).await;
    let log = app
        .try_moderation_log(Some(&bob))
        .await
        .expect_status(StatusCode::OK);
    let entries = log["entries"].as_array().unwrap();
    let summary: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["detail"].as_str().unwrap_or("").to_string(),
                e["actor"]["username"]
                    .as_str()
                    .unwrap_or("(stoa role)")
                    .to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("role", "admin", "(stoa role)"),
        ("lock", "", "alice"),
        ("role", "moderator", "(stoa role)"),
    ]
    .iter()
    .map(|(a, d, w)| (a.to_string(), d.to_string(), w.to_string()))
    .collect();
    assert_eq!(summary, expected);
    assert_eq!(
        app.try_moderation_log(Some(&alice)).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn pinned_threads_lead_every_page_of_the_list() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut ids = Vec::new();
    for title in ["oldest", "middle", "newest"] {
        let thread = app.create_thread(&alice, title, "x").await;
        ids.push(thread["id"].as_str().unwrap().to_string());
    }
    app.set_role("alice", "moderator").await;
    for id in [&ids[0], &ids[1]] {
        app.try_pin(&alice, id, true)
            .await
            .expect_status(StatusCode::OK);
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = app
            .threads(
                None,
                Page {
                    limit: Some(1),
                    before: before.as_deref(),
                },
            )
            .await;
        for thread in page["threads"].as_array().unwrap() {
            seen.push(thread["title"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(cursor) => before = Some(cursor.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["middle", "oldest", "newest"]);
    app.try_pin(&alice, &ids[1], false)
        .await
        .expect_status(StatusCode::OK);
    let page = app.threads(None, Page::default()).await;
    let titles: Vec<_> = page["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["oldest", "newest", "middle"]);
}

#[tokio::test]
async fn nobody_becomes_admin_by_registering_first_and_the_demos_first_user_is_admin() {
    let app = spawn_app().await;
    let first = app.register("first").await;
    assert_eq!(app.me(&first).await["role"], "member");
    let demo = stoa::fixtures::parse(stoa::fixtures::DEMO).unwrap();
    let admin = demo.users[0].username.clone();
    let db = stoa::db::Db::open(
        &app.config.db,
        stoa::db::OpenSettings {
            busy_timeout: Duration::from_secs(5),
            pool_size: 1,
        },
        Default::default(),
    )
    .await
    .unwrap();
    stoa::fixtures::load(&db, demo).await.unwrap();
    db.close().await.unwrap();
    let signed_in = app
        .try_login(&admin, "demo-password")
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(signed_in["user"]["role"], "admin");
    let other = app
        .try_login("grace", "demo-password")
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(other["user"]["role"], "member");
}

#[tokio::test]
async fn a_threads_link_serves_the_page_with_its_title_and_opengraph_tags_escaped() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let thread = app
        .create_thread(
            &alice,
            "<script>alert(1)</script> & \"friends\"",
            "A 'quoted' <b>preview</b>",
        )
        .await;
    let id = thread["id"].as_str().unwrap();
    for path in [
        format!("/t/{id}"),
        format!("/t/{id}/script-alert-1-friends"),
    ] {
        let answer = app.send(app.client.get(app.url(&path))).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert!(answer
            .header("content-type")
            .unwrap()
            .starts_with("text/html"));
        let html = &answer.text;
        assert!(
            html.contains(
                "<title>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;friends&quot; — stoa</title>"
            ),
            "{html}"
        );
        assert!(html.contains(
            "<meta property=\"og:title\" content=\"&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;friends&quot;\">"
        ));
        assert!(html.contains(
            "<meta property=\"og:description\" content=\"A &#39;quoted&#39; &lt;b&gt;preview&lt;/b&gt;\">"
        ));
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("/assets/app.js"), "the page itself");
    }
    app.delete_thread(&alice, id).await;
    let gone = app.send(app.client.get(app.url(&format!("/t/{id}")))).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert!(gone.text.contains("<title>Thread not found — stoa</title>"));
    assert!(
        gone.text.contains("/assets/app.js"),
        "the page, which says so"
    );
}
