//! Search queries and snippets, shared by both backends' full-text
//! indexes (SQLite FTS5, PostgreSQL tsvector): what a query's words are,
//! and how a snippet the database marked becomes the `<mark>`ed, escaped
//! text the API sends.

/// Most characters in a query.
pub const MAX_QUERY: usize = 200;
/// Most words in a query.
pub const MAX_WORDS: usize = 16;

/// Put around each matched word by the database's snippet function.
/// The most matches ranked: for a word in more posts than this, the best
/// of its newest this-many matches come first. Ranking every match of a
/// word found in most of a million posts takes seconds; the newest few
/// thousand take milliseconds, and in a forum they are the ones wanted.
pub const MAX_RANKED: i64 = 5_000;

/// Private-use characters, so no markup ever passes through it: the
/// snippet is escaped first, and only these become `<mark>`.
pub const MARK_START: char = '\u{E000}';
pub const MARK_END: char = '\u{E001}';

/// The words of a query, as both indexes split text: runs of letters and
/// digits. Everything else (quotes, operators, punctuation) only
/// separates words, so no query syntax of either database gets through.
pub fn words(query: &str) -> Vec<String> {
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Words a snippet shows around its first match.
const BEFORE: usize = 8;
const AFTER: usize = 16;

/// The passage of `text` around the first of `words` (the last one also
/// as a prefix), each match between [`MARK_START`] and [`MARK_END`], with
/// `…` where the text was cut: the snippet of a backend whose index has no
/// snippet function that keeps the text as written.
pub fn snippet(text: &str, words: &[String]) -> String {
    let tokens: Vec<(usize, usize)> = {
        let mut found = Vec::new();
        let mut start = None;
        for (at, c) in text.char_indices() {
            match (c.is_alphanumeric(), start) {
                (true, None) => start = Some(at),
                (false, Some(from)) => {
                    found.push((from, at));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(from) = start {
            found.push((from, text.len()));
        }
        found
    };
    let matches = |&(from, to): &(usize, usize)| {
        let token = text[from..to].to_lowercase();
        words.iter().enumerate().any(|(n, word)| {
            token == *word || (n + 1 == words.len() && token.starts_with(word.as_str()))
        })
    };
    let first = tokens.iter().position(matches).unwrap_or(0);
    let from = first.saturating_sub(BEFORE);
    let to = (first + AFTER).min(tokens.len().saturating_sub(1));
    let (start, end) = match (tokens.get(from), tokens.get(to)) {
        (Some(&(start, _)), Some(&(_, end))) => (
            if from == 0 { 0 } else { start },
            if to + 1 == tokens.len() {
                text.len()
            } else {
                end
            },
        ),
        _ => (0, text.len()),
    };
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut at = start;
    for token in &tokens[from..tokens.len().min(to + 1)] {
        if matches(token) {
            out.push_str(&text[at..token.0]);
            out.push(MARK_START);
            out.push_str(&text[token.0..token.1]);
            out.push(MARK_END);
            at = token.1;
        }
    }
    out.push_str(&text[at..end]);
    if end < text.len() {
        out.push('…');
    }
    out
}

/// A snippet as the API sends it: text with every character escaped for
/// HTML, and the database's marks as `<mark>`…`</mark>`.
pub fn snippet_html(marked: &str) -> String {
    let mut out = String::with_capacity(marked.len() + 32);
    for c in marked.chars() {
        match c {
            MARK_START => out.push_str("<mark>"),
            MARK_END => out.push_str("</mark>"),
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

    #[test]
    fn words_are_runs_of_letters_and_digits_in_lower_case() {
        assert_eq!(
            words("Rust's \"async\" OR -traits* NEAR(x) 2024 Ünïcode"),
            [
                "rust",
                "s",
                "async",
                "or",
                "traits",
                "near",
                "x",
                "2024",
                "ünïcode"
            ]
        );
        assert!(words(" ** () ").is_empty());
    }

    #[test]
    fn a_snippet_is_cut_around_the_first_match_with_every_match_marked() {
        let words = vec!["zebra".to_string(), "fri".to_string()];
        assert_eq!(
            snippet("<b>Zebra</b> & 'friends'", &words),
            format!("<b>{MARK_START}Zebra{MARK_END}</b> & '{MARK_START}friends{MARK_END}'")
        );
        let long: Vec<String> = (0..60).map(|n| format!("w{n}")).collect();
        let cut = snippet(&long.join(" "), &["w30".to_string()]);
        assert_eq!(
            cut,
            format!(
                "…w22 w23 w24 w25 w26 w27 w28 w29 {MARK_START}w30{MARK_END} w31 w32 w33 w34 w35 \
                 w36 w37 w38 w39 w40 w41 w42 w43 w44 w45 w46…"
            )
        );
    }

    #[test]
    fn a_snippet_is_escaped_and_only_the_marks_become_markup() {
        let marked = format!("a <b>{MARK_START}rust{MARK_END}</b> & \"q\"");
        assert_eq!(
            snippet_html(&marked),
            "a &lt;b&gt;<mark>rust</mark>&lt;/b&gt; &amp; &quot;q&quot;"
        );
    }
}
