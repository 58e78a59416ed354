//! The search benchmark: a forum's worth of generated text, and the
//! latency of `GET /api/community/search` over it.
//!
//! `search-data` writes users, threads and comments as tab-separated
//! files (bench/search.sh loads them with the sqlite3 shell or psql, so
//! the server's triggers index every row as they would a row written from
//! outside). `search` then asks the server queries of three kinds, one at
//! a time per connection, and reports the latency of each kind and of all.
//!
//! The text is words of a made-up vocabulary drawn with a skew (a few
//! words are common, most are rare), as in real text, so a query for a
//! common word matches a large share of the posts: the expensive case.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use serde_json::json;

use crate::http::{Conn, Url};
use crate::stats::Histogram;

/// Words in the vocabulary.
const VOCABULARY: usize = 5_000;
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "po", "da", "fi", "gu", "ha", "je", "bo",
    "ly", "mo", "nu", "ri", "se", "ta", "vi", "wo",
];

/// A small, fast, deterministic generator (xorshift64*): the same data
/// and queries on every run and for every binary compared.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// 0.0 ≤ x < 1.0
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Word `n` of the vocabulary: two to four syllables.
fn word(n: usize) -> String {
    let mut out = String::new();
    let mut rest = n + SYLLABLES.len() * 2;
    while rest > 0 {
        out.push_str(SYLLABLES[rest % SYLLABLES.len()]);
        rest /= SYLLABLES.len();
    }
    out
}

/// A word drawn with the skew of natural text: the cube of a uniform
/// number favours the start of the vocabulary.
fn skewed(rng: &mut Rng) -> usize {
    ((rng.unit().powi(3)) * VOCABULARY as f64) as usize
}

fn sentence(rng: &mut Rng, words: &[String], count: u64) -> String {
    let mut out = String::new();
    for n in 0..count {
        if n > 0 {
            out.push(' ');
        }
        out.push_str(&words[skewed(rng)]);
    }
    out
}

/// Writes users.tsv (id, username), threads.tsv (id, author, title,
/// content, seconds after the first) and comments.tsv (id, thread,
/// author, content, seconds) into `dir`.
pub fn write_data(dir: &Path, threads: u64, comments: u64) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let words: Vec<String> = (0..VOCABULARY).map(word).collect();
    let mut rng = Rng::new(0x5eed);
    let open = |name: &str| -> Result<BufWriter<File>, String> {
        let path = dir.join(name);
        File::create(&path)
            .map(BufWriter::new)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let io = |e: std::io::Error| e.to_string();
    const USERS: u64 = 1_000;
    let mut users = open("users.tsv")?;
    for n in 0..USERS {
        writeln!(users, "bench-user-{n}\tbench{n}").map_err(io)?;
    }
    users.flush().map_err(io)?;
    // Threads and comments share one clock, a post every few seconds.
    let span = (threads + comments).max(1);
    let mut out = open("threads.tsv")?;
    for n in 0..threads {
        let title_words = 3 + rng.below(6);
        let body_words = 15 + rng.below(50);
        writeln!(
            out,
            "bench-t-{n:07}\tbench-user-{}\t{}\t{}\t{}",
            rng.below(USERS),
            sentence(&mut rng, &words, title_words),
            sentence(&mut rng, &words, body_words),
            n * span / threads.max(1) * 3,
        )
        .map_err(io)?;
    }
    out.flush().map_err(io)?;
    let mut out = open("comments.tsv")?;
    for n in 0..comments {
        // Comments come after their thread: pick among the threads so far.
        let at = n * span / comments.max(1) * 3;
        let made = (at / 3 * threads / span).clamp(1, threads.max(1));
        let body_words = 5 + rng.below(40);
        writeln!(
            out,
            "bench-c-{n:08}\tbench-t-{:07}\tbench-user-{}\t{}\t{}",
            rng.below(made),
            rng.below(USERS),
            sentence(&mut rng, &words, body_words),
            at + 1,
        )
        .map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(())
}

/// The three kinds of query asked, each a third of the time.
const KINDS: [&str; 3] = ["one-word", "two-words", "typing"];

fn query(rng: &mut Rng, words: &[String], kind: &str) -> String {
    match kind {
        "one-word" => words[skewed(rng)].clone(),
        "two-words" => format!("{} {}", words[skewed(rng)], words[skewed(rng)]),
        // Typing a second word: the first whole, the second's first three
        // letters, matched as a prefix.
        _ => {
            let second = &words[skewed(rng)];
            format!("{} {}", words[skewed(rng)], &second[..3.min(second.len())])
        }
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asks `queries` queries over `connections` connections; appends one
/// JSON line per kind and one for all to `out`, and prints them.
pub async fn run(
    base: &Url,
    queries: u64,
    connections: usize,
    out: Option<&Path>,
    label: &str,
    pids: &[u32],
) -> Result<(), String> {
    let words: Vec<String> = (0..VOCABULARY).map(word).collect();
    let mut rng = Rng::new(0xfeed);
    let plan: Vec<(usize, String)> = (0..queries)
        .map(|n| {
            let kind = (n % 3) as usize;
            (kind, query(&mut rng, &words, KINDS[kind]))
        })
        .collect();
    let plan = std::sync::Arc::new(plan);
    let histograms: std::sync::Arc<[Histogram; 4]> = std::sync::Arc::new(Default::default());
    let results = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let cpu_before = crate::stats::total_cpu(pids);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections.max(1) {
        let (plan, histograms, results, base) = (
            plan.clone(),
            histograms.clone(),
            results.clone(),
            base.clone(),
        );
        let step = connections.max(1);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(&base);
            let mut n = c;
            while n < plan.len() {
                let (kind, q) = &plan[n];
                let path = format!("/api/community/search?limit=20&q={}", percent_encode(q));
                let sent = Instant::now();
                let (status, body) = conn
                    .request("GET", &path, "", b"")
                    .await
                    .map_err(|e| format!("search {q:?}: {e}"))?;
                let us = sent.elapsed().as_micros() as u64;
                if status != 200 {
                    return Err(format!(
                        "search {q:?}: {status} {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
                let found = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["results"].as_array().map(Vec::len))
                    .unwrap_or(0);
                results.fetch_add(found as u64, std::sync::atomic::Ordering::Relaxed);
                histograms[*kind].record(us);
                histograms[3].record(us);
                n += step;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = crate::stats::total_cpu(pids) - cpu_before;
    let mut lines = Vec::new();
    for (index, name) in KINDS.iter().chain(["all"].iter()).enumerate() {
        let snapshot = histograms[index].snapshot();
        let ms = |q: f64| snapshot.quantile(q) as f64 / 1000.0;
        lines.push(json!({
            "preset": "search",
            "target": "stoa",
            "label": label,
            "kind": name,
            "queries": snapshot.count(),
            "connections": connections,
            "p50_ms": ms(0.5),
            "p90_ms": ms(0.9),
            "p99_ms": ms(0.99),
            "max_ms": snapshot.max() as f64 / 1000.0,
            "queries_per_s": if index == 3 { snapshot.count() as f64 / seconds } else { 0.0 },
            "server_cpu_s": if index == 3 { cpu } else { 0.0 },
            "mean_results": if index == 3 {
                results.load(std::sync::atomic::Ordering::Relaxed) as f64 / queries.max(1) as f64
            } else { 0.0 },
        }));
    }
    let mut file = match out {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?,
        ),
        None => None,
    };
    for line in lines {
        println!("{line}");
        if let Some(file) = file.as_mut() {
            writeln!(file, "{line}").map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_distinct_and_made_of_letters() {
        let words: Vec<String> = (0..VOCABULARY).map(word).collect();
        let distinct: std::collections::HashSet<&String> = words.iter().collect();
        assert_eq!(distinct.len(), VOCABULARY);
        assert!(words
            .iter()
            .all(|w| w.len() >= 4 && w.chars().all(|c| c.is_ascii_lowercase())));
    }

    #[test]
    fn the_data_is_the_same_on_every_run() {
        let (a, b) = (tempdir("a"), tempdir("b"));
        write_data(&a, 20, 50).unwrap();
        write_data(&b, 20, 50).unwrap();
        for name in ["users.tsv", "threads.tsv", "comments.tsv"] {
            let left = std::fs::read(a.join(name)).unwrap();
            assert_eq!(left, std::fs::read(b.join(name)).unwrap(), "{name}");
            assert!(!left.is_empty());
        }
        let comments = std::fs::read_to_string(a.join("comments.tsv")).unwrap();
        assert_eq!(comments.lines().count(), 50);
        assert!(comments.lines().all(|l| l.split('\t').count() == 5));
    }

    fn tempdir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("stoa-bench-search-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}
