//! The script-injection corpus (`fixtures/xss/script-injection.txt`, from
//! the Big List of Naughty Strings) through every place a person types
//! text: no payload survives as markup in `contentHtml`, titles and
//! contents come back exactly as sent, and no payload is a username.

use crate::helpers::spawn_app;
use reqwest::StatusCode;

pub fn payloads() -> Vec<&'static str> {
    include_str!("../../fixtures/xss/script-injection.txt")
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

/// The elements Markdown makes, and the only ones `contentHtml` may hold.
const ELEMENTS: &[&str] = &[
    "p",
    "br",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "strong",
    "em",
    "del",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
];

/// Checks that `html` (as the sanitiser writes it: every `<` of text is
/// escaped, attribute values are double-quoted) holds only Markdown's
/// elements, with no attribute but a link's safe `href`, its `title`,
/// the fixed `rel`, a mention's class and a list's `start`.
fn assert_only_markdown_markup(html: &str, payload: &str) {
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let tag = rest.trim_start_matches('/');
        let name_end = tag
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(tag.len());
        let name = &tag[..name_end];
        assert!(
            ELEMENTS.contains(&name),
            "<{name}> from payload {payload:?}: {html}"
        );
        let mut attributes = &tag[name_end..];
        loop {
            attributes = attributes.trim_start();
            if let Some(after) = attributes.strip_prefix('>') {
                rest = after;
                break;
            }
            if let Some(after) = attributes.strip_prefix("/>") {
                rest = after;
                break;
            }
            let eq = attributes
                .find('=')
                .unwrap_or_else(|| panic!("attribute without a value in {html}"));
            let attribute = attributes[..eq].trim();
            let value_start = &attributes[eq + 1..];
            assert!(value_start.starts_with('"'), "unquoted value in {html}");
            let close = value_start[1..].find('"').expect("closing quote") + 1;
            let value = &value_start[1..close];
            attributes = &value_start[close + 1..];
            let allowed = match (name, attribute) {
                ("a", "href") => {
                    let lower = value.to_ascii_lowercase();
                    let bare: String = lower.chars().filter(|c| !c.is_whitespace()).collect();
                    let on_this_site = !bare.contains(':')
                        && !bare.starts_with("//")
                        && !bare.starts_with("/\\")
                        && !bare.starts_with('\\');
                    lower.starts_with("http://")
                        || lower.starts_with("https://")
                        || lower.starts_with("mailto:")
                        || on_this_site
                }
                ("a", "title") => true,
                ("a", "rel") => value == "nofollow ugc noopener",
                ("a", "class") => value == "mention",
                ("ol", "start") => value.chars().all(|c| c.is_ascii_digit()),
                _ => false,
            };
            assert!(
                allowed,
                "{attribute}=\"{value}\" on <{name}> from payload {payload:?}: {html}"
            );
        }
    }
}

#[tokio::test]
async fn no_payload_survives_as_markup_in_threads_comments_or_titles() {
    let payloads = payloads();
    assert!(
        payloads.len() > 200,
        "the corpus is there: {}",
        payloads.len()
    );
    let app = spawn_app().await;
    let mallory = app.register("mallory").await;
    let holder = app.create_thread(&mallory, "comments", "under here").await;
    let holder = holder["id"].as_str().unwrap().to_string();
    for payload in &payloads {
        let title: String = payload.chars().take(200).collect();
        let thread = app.create_thread(&mallory, &title, payload).await;
        assert_eq!(thread["title"], title.as_str(), "titles stay text, as sent");
        assert_eq!(thread["content"], *payload);
        assert_only_markdown_markup(thread["contentHtml"].as_str().unwrap(), payload);
        let comment = app.comment(&mallory, &holder, payload).await;
        assert_eq!(comment["content"], *payload);
        assert_only_markdown_markup(comment["contentHtml"].as_str().unwrap(), payload);
    }
    // The stored copies, as a snapshot sends them, hold the same.
    let shown = app.thread(None, &holder).await;
    let comments = shown["comments"].as_array().unwrap();
    assert_eq!(comments.len(), payloads.len());
    for (comment, payload) in comments.iter().zip(&payloads) {
        assert_only_markdown_markup(comment["contentHtml"].as_str().unwrap(), payload);
    }
}

#[tokio::test]
async fn no_payload_is_accepted_as_a_username() {
    let app = spawn_app().await;
    for payload in payloads() {
        let answer = app.try_register(payload, "correct horse").await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{payload:?}"
        );
        assert_eq!(answer.body["error"]["field"], "username", "{payload:?}");
    }
}

#[test]
fn the_checker_catches_what_it_is_for() {
    for bad in [
        "<p><img src=\"x\"></p>",
        "<p><a href=\"javascript:alert(1)\">x</a></p>",
        "<p onclick=\"x\">x</p>",
        "<script>x</script>",
        "<a href=\"//evil.example\">x</a>",
    ] {
        let caught = std::panic::catch_unwind(|| assert_only_markdown_markup(bad, "test"));
        assert!(caught.is_err(), "{bad} passed the checker");
    }
    assert_only_markdown_markup(
        "<p><a href=\"https://example.org\" rel=\"nofollow ugc noopener\">x</a> &lt;img&gt;</p>",
        "test",
    );
}
