//! The forum API beyond the scenarios: paging, sessions by cookie and by
//! token, CORS, text kept as sent, health and metrics.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::expect::{assert_events, frame};
use crate::helpers::{paths, spawn_app, spawn_app_with, Page, Session, TestApp, PASSWORD};

#[tokio::test]
async fn the_thread_list_pages_newest_first_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    for n in 0..25 {
        app.create_thread(&alice, &format!("thread {n}"), "c").await;
    }
    let mut titles = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = Page {
            limit: Some(10),
            before: cursor.as_deref(),
        };
        let page = app.threads(None, page).await;
        assert_eq!(page["lastEventId"], 25);
        for thread in page["threads"].as_array().unwrap() {
            titles.push(thread["title"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|n| format!("thread {n}")).collect();
    assert_eq!(titles, expected);
}

#[tokio::test]
async fn a_new_comment_moves_its_thread_to_the_top_of_the_list() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut ids = Vec::new();
    for n in 0..12 {
        let thread = app.create_thread(&alice, &format!("thread {n}"), "c").await;
        assert_eq!(thread["lastActivityAt"], thread["createdAt"]);
        ids.push(thread["id"].as_str().unwrap().to_string());
    }
    // The oldest thread gets a comment, then the fifth: both move up, the
    // latest first, and the rest keep their order behind them.
    app.comment(&alice, &ids[0], "bump").await;
    let comment = app.comment(&alice, &ids[4], "bump again").await;

    let mut titles = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = Page {
            limit: Some(5),
            before: cursor.as_deref(),
        };
        let page = app.threads(None, page).await;
        for thread in page["threads"].as_array().unwrap() {
            titles.push(thread["title"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let mut expected = vec!["thread 4".to_string(), "thread 0".to_string()];
    expected.extend(
        (1..12)
            .rev()
            .filter(|n| *n != 4)
            .map(|n| format!("thread {n}")),
    );
    assert_eq!(titles, expected, "pages follow the latest activity");

    let shown = app.thread(None, &ids[4]).await;
    assert_eq!(shown["thread"]["lastActivityAt"], comment["createdAt"]);
    assert_ne!(
        shown["thread"]["lastActivityAt"],
        shown["thread"]["createdAt"]
    );
}

#[tokio::test]
async fn a_pinned_thread_stays_above_newer_activity() {
    let app = spawn_app().await;
    let admin = app.register("root").await;
    app.set_role("root", "moderator").await;
    let old = app.create_thread(&admin, "old, pinned", "c").await;
    let old = old["id"].as_str().unwrap();
    let busy = app.create_thread(&admin, "busy", "c").await;
    app.try_pin(&admin, old, true)
        .await
        .expect_status(StatusCode::OK);
    app.comment(&admin, busy["id"].as_str().unwrap(), "more")
        .await;
    let listed = app.threads(None, Page::default()).await;
    let titles: Vec<_> = listed["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["old, pinned", "busy"]);
}

#[tokio::test]
async fn a_thread_comes_with_its_comments_oldest_first() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "t", "c").await;
    let id = thread["id"].as_str().unwrap();
    app.comment(&bob, id, "first").await;
    app.comment(&alice, id, "second").await;
    let body = app.thread(None, id).await;
    let contents: Vec<_> = body["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["content"].clone())
        .collect();
    assert_eq!(contents, [json!("first"), json!("second")]);
    assert_eq!(body["thread"]["commentCount"], 2);
    assert_eq!(
        body["lastEventId"], 4,
        "two comments, one notification, one thread"
    );
}

#[tokio::test]
async fn text_is_stored_and_returned_exactly_as_sent() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let title = "<img src=x onerror=alert(1)> & \"quotes\" ünïcödé 🎉";
    let content = "line one\nline two\r\n\ttabbed </script>";
    let thread = app.create_thread(&alice, title, content).await;
    assert_eq!(thread["title"], title);
    assert_eq!(thread["content"], content);
    let listed = app.threads(None, Page::default()).await;
    assert_eq!(listed["threads"][0]["title"], title);
    assert_eq!(listed["threads"][0]["content"], content);
}

#[tokio::test]
async fn lengths_count_characters_not_bytes() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let two_hundred_emoji = "🎉".repeat(200);
    let thread = app.create_thread(&alice, &two_hundred_emoji, "c").await;
    assert_eq!(thread["title"], two_hundred_emoji);
    let refused = app.try_create_thread(&alice, &"🎉".repeat(201), "c").await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
}

#[tokio::test]
async fn a_cookie_session_signs_in_and_logging_out_ends_it_and_its_token() {
    let app = spawn_app().await;
    let jar_client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let response = jar_client
        .post(app.url(paths::REGISTER))
        .json(&json!({"username": "carol", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    let session = Session::from_body(&response.json().await.unwrap());

    let me = jar_client.get(app.url(paths::ME)).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(
        me.json::<serde_json::Value>().await.unwrap()["user"]["username"],
        "carol"
    );
    let posted = jar_client
        .post(app.url(paths::THREADS))
        .header("Origin", app.url(""))
        .json(&json!({"title": "by cookie", "content": "same origin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        posted.status(),
        StatusCode::CREATED,
        "a same-origin cookie write is allowed"
    );

    let logout = jar_client
        .post(app.url(paths::LOGOUT))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let me = jar_client.get(app.url(paths::ME)).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.try_me(Some(&session)).await.status,
        StatusCode::UNAUTHORIZED,
        "the token was the same session"
    );
}

#[tokio::test]
async fn login_gives_a_fresh_working_token() {
    let app = spawn_app().await;
    let signed_up = app.register("dave").await;
    let session = app.login("dave").await;
    assert_ne!(session.token, signed_up.token, "a fresh token");
    assert_eq!(session.id, signed_up.id);
    assert_eq!(app.me(&session).await["username"], "dave");
}

#[tokio::test]
async fn cors_headers_go_only_to_configured_origins() {
    let app = spawn_app_with(|c| c.cors_origins = vec!["https://friend.example".into()]).await;
    let client = reqwest::Client::new();
    let friend = client
        .get(app.url(paths::THREADS))
        .header("Origin", "https://friend.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        friend.headers()["access-control-allow-origin"],
        "https://friend.example"
    );
    let stranger = client
        .get(app.url(paths::THREADS))
        .header("Origin", "https://stranger.example")
        .send()
        .await
        .unwrap();
    assert!(stranger
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let preflight = client
        .request(Method::OPTIONS, app.url(paths::THREADS))
        .header("Origin", "https://friend.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert!(preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
}

#[tokio::test]
async fn health_and_metrics_report_on_the_server() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut stream = app.events("", &[]).await;
    let thread = app.create_thread(&alice, "t", "c").await;
    // Once the stream has the event, the tailer has counted it.
    assert_events!(
        stream.take_events(1).await,
        [frame(1, "new_thread", thread)]
    );
    let health = app.healthz().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(app.metric("stoa_open_streams").await, 1.0);
    assert_eq!(app.metric("stoa_streams_opened_total").await, 1.0);
    let created = [
        ("method", "POST"),
        ("route", paths::THREADS),
        ("status", "201"),
    ];
    assert_eq!(
        app.metric_with("stoa_http_requests_total", &created).await,
        1.0
    );
    assert_eq!(app.metric("stoa_events_published_total").await, 1.0);
    assert!(
        app.metric("stoa_events_sent_total").await >= 1.0,
        "the event went out on the stream"
    );
}

#[tokio::test]
async fn the_page_and_its_scripts_are_served_from_the_binary() {
    let app = spawn_app().await;
    let page = reqwest::get(app.url("/")).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("/assets/app.js"));
    for asset in ["app.js", "sse-client.js", "use-sse.js"] {
        let script = reqwest::get(app.url(&format!("/assets/{asset}")))
            .await
            .unwrap();
        assert_eq!(script.status(), StatusCode::OK, "{asset}");
        assert!(script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript"));
    }
    let missing = reqwest::get(app.url("/assets/nope.js")).await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

/// The `Set-Cookie` of a registration sent with `headers`.
async fn session_cookie_of(app: &TestApp, username: &str, headers: &[(&str, &str)]) -> String {
    let mut request = app
        .client
        .post(app.url(paths::REGISTER))
        .json(&json!({"username": username, "password": PASSWORD}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = app.send(request).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    answer
        .header("set-cookie")
        .expect("a session cookie")
        .to_string()
}

#[tokio::test]
async fn the_session_cookie_is_secure_behind_https_and_only_then() {
    let direct = spawn_app().await;
    let plain = session_cookie_of(&direct, "plain", &[("X-Forwarded-Proto", "https")]).await;
    assert!(
        !plain.contains("Secure"),
        "a client reaching stoa directly cannot make it believe in HTTPS: {plain}"
    );

    let proxied = spawn_app_with(|c| c.behind_proxy = true).await;
    let secure = session_cookie_of(&proxied, "proxied", &[("X-Forwarded-Proto", "https")]).await;
    assert!(secure.contains("; Secure"), "{secure}");
    let http = session_cookie_of(&proxied, "overhttp", &[("X-Forwarded-Proto", "http")]).await;
    assert!(!http.contains("Secure"), "{http}");

    let public = spawn_app_with(|c| c.public_url = Some("https://forum.example".into())).await;
    let secure = session_cookie_of(&public, "public", &[]).await;
    assert!(secure.contains("; Secure"), "{secure}");
}

#[tokio::test]
async fn a_cookie_post_from_the_public_url_passes_and_a_refusal_says_what_to_fix() {
    let app = spawn_app_with(|c| c.public_url = Some("https://forum.example".into())).await;
    let cookie = session_cookie_of(&app, "erin", &[]).await;
    let token = cookie.split(';').next().unwrap().to_string();
    let post = |origin: &'static str| {
        app.client
            .post(app.url(paths::THREADS))
            .header("Cookie", token.clone())
            .header("Origin", origin)
            .json(&json!({"title": "t", "content": "c"}))
    };
    app.send(post("https://forum.example"))
        .await
        .expect_status(StatusCode::CREATED);
    let refused = app.send(post("https://forum.example:8443")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("proxy_set_header Host $http_host") && message.contains("--public-url"),
        "{message}"
    );
}
