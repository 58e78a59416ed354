//! Markdown to HTML, once, when a thread or comment is written: the HTML
//! is stored beside the source and sent as `contentHtml`.
//!
//! CommonMark (with strikethrough and tables) is parsed by pulldown-cmark;
//! the events are then rewritten before they become HTML:
//! - raw HTML in the source is turned into text, so it shows as typed;
//! - images become links to the image (no image is ever loaded from a post);
//! - bare `http(s)://` URLs and e-mail addresses become links;
//! - `@username` of an existing user becomes a link to the posts that
//!   mention them.
//!
//! Whatever comes out passes through ammonia with a short allow-list, so
//! only the markup Markdown makes survives, links keep only `http`,
//! `https` and `mailto` (and the forum's own relative links), and every
//! link carries `rel="nofollow ugc noopener"`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use linkify::{LinkFinder, LinkKind};
use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd, TextMergeStream};

/// The `rel` every link in a post gets.
pub const LINK_REL: &str = "nofollow ugc noopener";

static CLEANER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::empty();
    builder
        .tags(HashSet::from([
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
        ]))
        .tag_attributes(HashMap::from([
            ("a", HashSet::from(["href", "title"])),
            ("ol", HashSet::from(["start"])),
        ]))
        .allowed_classes(HashMap::from([("a", HashSet::from(["mention"]))]))
        .url_schemes(HashSet::from(["http", "https", "mailto"]))
        .url_relative(ammonia::UrlRelative::Custom(Box::new(on_this_site)))
        .link_rel(Some(LINK_REL))
        .strip_comments(true);
    builder
});

/// Keeps a relative link only when it stays on this site: a browser takes
/// `//host`, `/\host` and `\host` (tabs and newlines ignored) to another.
fn on_this_site(url: &str) -> Option<Cow<'_, str>> {
    let bare: String = url
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let bare = bare.trim_start();
    let elsewhere = bare.starts_with("//") || bare.starts_with("/\\") || bare.starts_with('\\');
    (!elsewhere).then_some(Cow::Borrowed(url))
}

static LINKS: LazyLock<LinkFinder> = LazyLock::new(|| {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url, LinkKind::Email]);
    finder.url_must_have_scheme(true);
    finder
});

/// The usernames `source` may mention (`@name`, in the form usernames
/// take), each once, in the order written. Which of them exist is for the
/// caller to find out; [`render`] links only those.
pub fn mentioned(source: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (_, name) in mentions_in(source) {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.to_string());
        }
    }
    names
}

/// `source` as sanitised HTML. `user` answers, for a mentioned name, the
/// existing user's name as registered (any letter case matches), or
/// `None` when there is no such user.
pub fn render(source: &str, user: &dyn Fn(&str) -> Option<String>) -> String {
    let options = Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES;
    let events = TextMergeStream::new(Parser::new_ext(source, options));
    let mut out: Vec<Event> = Vec::new();
    // Inside a link or code block nothing more is linked.
    let mut in_link = 0usize;
    let mut in_code = 0usize;
    // An image whose alt text is empty still needs visible link text.
    let mut image: Option<(CowStr, bool)> = None;
    for event in events {
        match event {
            Event::Html(raw) | Event::InlineHtml(raw) => out.push(Event::Text(raw)),
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                in_link += 1;
                image = Some((dest_url.clone(), false));
                out.push(Event::Start(Tag::Link {
                    link_type,
                    dest_url,
                    title,
                    id,
                }));
            }
            Event::End(TagEnd::Image) => {
                in_link -= 1;
                if let Some((url, false)) = image.take() {
                    out.push(Event::Text(url));
                }
                out.push(Event::End(TagEnd::Link));
            }
            Event::Start(Tag::Link { .. }) => {
                in_link += 1;
                out.push(event);
            }
            Event::End(TagEnd::Link) => {
                in_link -= 1;
                out.push(event);
            }
            Event::Start(Tag::CodeBlock(_)) => {
                in_code += 1;
                out.push(event);
            }
            Event::End(TagEnd::CodeBlock) => {
                in_code -= 1;
                out.push(event);
            }
            Event::Text(text) => {
                if let Some((_, seen)) = image.as_mut() {
                    *seen |= !text.is_empty();
                }
                if in_link > 0 || in_code > 0 {
                    out.push(Event::Text(text));
                } else {
                    linkify(&text, user, &mut out);
                }
            }
            other => {
                if let (Some((_, seen)), Event::Code(_)) = (image.as_mut(), &other) {
                    *seen = true;
                }
                out.push(other);
            }
        }
    }
    let mut html = String::with_capacity(source.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, out.into_iter());
    CLEANER.clean(&html).to_string()
}

/// Pushes `text` as text events, with its URLs, e-mail addresses and
/// mentions of existing users as links.
fn linkify<'a>(text: &str, user: &dyn Fn(&str) -> Option<String>, out: &mut Vec<Event<'a>>) {
    let mut plain_from = 0;
    let push_plain = |out: &mut Vec<Event<'a>>, until: usize, from: &mut usize| {
        if until > *from {
            out.push(Event::Text(CowStr::from(text[*from..until].to_string())));
        }
        *from = until;
    };
    let mentions_between = |out: &mut Vec<Event<'a>>, from: &mut usize, until: usize| {
        let start = *from;
        for (at, name) in mentions_in(&text[start..until]) {
            let Some(registered) = user(name) else {
                continue;
            };
            push_plain(out, start + at, from);
            out.push(Event::InlineHtml(CowStr::from(format!(
                "<a class=\"mention\" href=\"/?q=%40{}\">@{}</a>",
                escape(&registered),
                escape(&registered)
            ))));
            *from = start + at + 1 + name.len();
        }
        push_plain(out, until, from);
    };
    for link in LINKS.links(text) {
        mentions_between(out, &mut plain_from, link.start());
        let href = match link.kind() {
            LinkKind::Email => format!("mailto:{}", link.as_str()),
            _ => link.as_str().to_string(),
        };
        out.push(Event::InlineHtml(CowStr::from(format!(
            "<a href=\"{}\">{}</a>",
            escape(&href),
            escape(link.as_str())
        ))));
        plain_from = link.end();
    }
    mentions_between(out, &mut plain_from, text.len());
}

/// Each `@name` in `text` with the byte offset of its `@`: the name is 3
/// to 32 of `[A-Za-z0-9_-]`, not preceded by a word character (so an
/// e-mail address is no mention) and not followed by another name
/// character.
fn mentions_in(text: &str) -> Vec<(usize, &str)> {
    let bytes = text.as_bytes();
    let name_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'@' && (i == 0 || !(name_char(bytes[i - 1]) || bytes[i - 1] == b'@')) {
            let end = (i + 1..bytes.len())
                .find(|&j| !name_char(bytes[j]))
                .unwrap_or(bytes.len());
            let length = end - i - 1;
            if (3..=32).contains(&length) {
                found.push((i, &text[i + 1..end]));
            }
            i = end;
        } else {
            i += 1;
        }
    }
    found
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nobody(_: &str) -> Option<String> {
        None
    }

    fn plain(source: &str) -> String {
        render(source, &nobody)
    }

    #[test]
    fn markdown_becomes_its_html() {
        assert_eq!(
            plain("**bold** and *em* and `code`"),
            "<p><strong>bold</strong> and <em>em</em> and <code>code</code></p>\n"
        );
        assert_eq!(
            plain("```\nfn main() {}\n```"),
            "<pre><code>fn main() {}\n</code></pre>\n"
        );
        assert_eq!(
            plain("- one\n- two"),
            "<ul>\n<li>one</li>\n<li>two</li>\n</ul>\n"
        );
        assert_eq!(
            plain("> quoted"),
            "<blockquote>\n<p>quoted</p>\n</blockquote>\n"
        );
    }

    #[test]
    fn raw_html_shows_as_the_text_that_was_typed() {
        assert_eq!(
            plain("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(
            plain("a <b onclick=x>b</b>"),
            "<p>a &lt;b onclick=x&gt;b&lt;/b&gt;</p>\n"
        );
    }

    #[test]
    fn links_get_rel_and_keep_only_safe_schemes() {
        assert_eq!(
            plain("[x](https://example.org/a?b=1&c=2)"),
            "<p><a href=\"https://example.org/a?b=1&amp;c=2\" rel=\"nofollow ugc noopener\">x</a></p>\n"
        );
        assert_eq!(
            plain("[x](javascript:alert(1))"),
            "<p><a rel=\"nofollow ugc noopener\">x</a></p>\n"
        );
        assert_eq!(
            plain("[x](data:text/html,hi)"),
            "<p><a rel=\"nofollow ugc noopener\">x</a></p>\n"
        );
        assert_eq!(
            plain("[x](/t/1) [y](//elsewhere.example) [z](</\\elsewhere.example>)"),
            // A backslash is percent-encoded, which no browser reads as a slash.
            "<p><a href=\"/t/1\" rel=\"nofollow ugc noopener\">x</a> <a rel=\"nofollow ugc noopener\">y</a> \
             <a href=\"/%5Celsewhere.example\" rel=\"nofollow ugc noopener\">z</a></p>\n"
        );
        assert_eq!(
            plain("mail [me](mailto:a@example.org)"),
            "<p>mail <a href=\"mailto:a@example.org\" rel=\"nofollow ugc noopener\">me</a></p>\n"
        );
    }

    #[test]
    fn bare_urls_and_addresses_become_links() {
        assert_eq!(
            plain("see https://example.org/x, or write to a@example.org"),
            "<p>see <a href=\"https://example.org/x\" rel=\"nofollow ugc noopener\">https://example.org/x</a>, \
             or write to <a href=\"mailto:a@example.org\" rel=\"nofollow ugc noopener\">a@example.org</a></p>\n"
        );
        assert_eq!(
            plain("`https://example.org`"),
            "<p><code>https://example.org</code></p>\n"
        );
    }

    #[test]
    fn images_become_links_to_the_image() {
        assert_eq!(
            plain("![a cat](https://example.org/cat.png)"),
            "<p><a href=\"https://example.org/cat.png\" rel=\"nofollow ugc noopener\">a cat</a></p>\n"
        );
        assert_eq!(
            plain("![](https://example.org/cat.png)"),
            "<p><a href=\"https://example.org/cat.png\" rel=\"nofollow ugc noopener\">https://example.org/cat.png</a></p>\n"
        );
    }

    #[test]
    fn mentions_of_existing_users_link_to_their_mentions() {
        let known = |name: &str| name.eq_ignore_ascii_case("ada").then(|| "Ada".to_string());
        assert_eq!(
            render("hi @ada and @nobody, mail ada@example.org", &known),
            "<p>hi <a class=\"mention\" href=\"/?q=%40Ada\" rel=\"nofollow ugc noopener\">@Ada</a> and @nobody, \
             mail <a href=\"mailto:ada@example.org\" rel=\"nofollow ugc noopener\">ada@example.org</a></p>\n"
        );
        assert_eq!(render("`@ada`", &known), "<p><code>@ada</code></p>\n");
    }

    #[test]
    fn mention_candidates_are_names_in_the_username_form() {
        assert_eq!(
            mentioned("@ada @Ada @bo @bob_1 x@eve @@zed a@b.org (@carol)"),
            ["ada", "bob_1", "carol"]
        );
    }
}
