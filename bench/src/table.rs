//! `stoa-bench table FILE...`: the JSON lines of several runs as markdown,
//! one table per preset, stoa and Nchan side by side, each cell the median
//! of the rounds with their range.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

/// The metrics worth a row, per preset: (field, label).
fn metrics(preset: &str) -> &'static [(&'static str, &'static str)] {
    // A variant (`external-poll10ms`) shows what its preset shows.
    match preset.split('-').next().unwrap_or(preset) {
        "latency" | "external" => &[
            ("p50_ms", "latency p50 (ms)"),
            ("p99_ms", "latency p99 (ms)"),
            ("p999_ms", "latency p99.9 (ms)"),
            ("all_streams_p99_ms", "event reaches all streams, p99 (ms)"),
            ("cpu_us_per_delivery", "server CPU per delivery (µs)"),
            (
                "db_cpu_us_per_event",
                "PostgreSQL CPU per event written (µs)",
            ),
            ("lost", "lost"),
            ("dups", "duplicated"),
            ("connected", "streams connected"),
        ],
        "fanout" => &[
            ("publish_per_s", "events published/s"),
            ("deliveries_per_s", "deliveries/s"),
            ("cpu_us_per_delivery", "server CPU per delivery (µs)"),
            ("p50_ms", "latency p50 (ms)"),
            ("p99_ms", "latency p99 (ms)"),
            ("all_streams_p50_ms", "event reaches all streams, p50 (ms)"),
            ("all_streams_max_ms", "event reaches all streams, max (ms)"),
            ("lost", "lost"),
            ("dups", "duplicated"),
            ("hwm_kib", "server peak RSS (KiB)"),
            ("connected", "streams connected"),
        ],
        "idle" => &[
            ("held", "streams held"),
            ("rss_per_stream_kib", "RSS per stream (KiB)"),
            ("cpu_per_s", "server CPU per second, idle (s/s)"),
            ("ramp_cpu_s", "server CPU to accept the streams (s)"),
            ("hwm_kib", "server peak RSS (KiB)"),
        ],
        "writes" | "pubrate" => &[
            ("publish_per_s", "events published/s"),
            ("ack_p50_ms", "publish ack p50 (ms)"),
            ("ack_p99_ms", "publish ack p99 (ms)"),
            ("p50_ms", "delivery latency p50 (ms)"),
            ("p99_ms", "delivery latency p99 (ms)"),
            ("cpu_us_per_delivery", "server CPU per event delivered (µs)"),
            (
                "db_cpu_us_per_event",
                "PostgreSQL CPU per event written (µs)",
            ),
            ("lost", "lost"),
            ("publish_errors", "publish errors"),
        ],
        "replay" => &[
            ("replay_events_per_s", "events/s to one client"),
            ("seconds", "seconds for all events"),
            ("lost", "lost"),
            ("dups", "duplicated"),
            ("rss_before_kib", "server RSS before (KiB)"),
            ("hwm_kib", "server peak RSS (KiB)"),
            ("cpu_us_per_delivery", "server CPU per event (µs)"),
            ("db_cpu_s", "PostgreSQL CPU, whole run (s)"),
        ],
        "stalled" => &[
            ("p50_ms", "others' latency p50 (ms)"),
            ("p99_ms", "others' latency p99 (ms)"),
            ("lost", "lost (others)"),
            ("rss_kib", "server RSS (KiB)"),
            (
                "stalled_server_sendq_bytes",
                "stalled socket: server send queue (bytes)",
            ),
            (
                "stalled_client_recvq_bytes",
                "stalled socket: client receive queue (bytes)",
            ),
            ("streams_ended", "streams the server closed"),
        ],
        _ => &[
            ("p50_ms", "latency p50 (ms)"),
            ("p99_ms", "latency p99 (ms)"),
            ("deliveries_per_s", "deliveries/s"),
            ("cpu_us_per_delivery", "server CPU per delivery (µs)"),
            ("lost", "lost"),
        ],
    }
}

const ORDER: &[&str] = &[
    "latency", "fanout", "idle", "writes", "pubrate", "replay", "external", "stalled",
];

pub fn render(files: &[PathBuf]) -> Result<String, String> {
    // preset -> step -> target -> records
    let mut groups: BTreeMap<String, BTreeMap<u64, BTreeMap<String, Vec<Value>>>> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let record: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
            let preset = record["preset"].as_str().unwrap_or("?").to_string();
            let step = record["step"].as_u64().unwrap_or(0);
            // A run labelled with a binary's name (bench/versions.sh) gets a
            // column of its own, so builds compare side by side.
            let label = record["label"].as_str().unwrap_or("");
            let target = if label.starts_with("stoa-") {
                label.to_string()
            } else {
                record["target"].as_str().unwrap_or("?").to_string()
            };
            groups
                .entry(preset)
                .or_default()
                .entry(step)
                .or_default()
                .entry(target)
                .or_default()
                .push(record);
        }
    }
    let mut presets: Vec<&String> = groups.keys().collect();
    presets.sort_by_key(|p| {
        let family = p.split('-').next().unwrap_or(p);
        (
            ORDER
                .iter()
                .position(|o| *o == family)
                .unwrap_or(usize::MAX),
            p.len(),
        )
    });
    let mut out = String::new();
    for preset in presets {
        let steps = &groups[preset];
        let mut targets: Vec<String> = steps.values().flat_map(|s| s.keys().cloned()).collect();
        targets.sort_by_key(|t| (t == "nchan", t.clone()));
        targets.dedup();
        out.push_str(&format!("\n### {preset}\n\n| step | metric |"));
        for target in &targets {
            out.push_str(&format!(" {target} |"));
        }
        out.push_str("\n|---|---|");
        for _ in &targets {
            out.push_str("---|");
        }
        out.push('\n');
        for (step, by_target) in steps {
            let any = by_target.values().next().and_then(|v| v.first());
            let step_name = match any {
                Some(r) if r.get("rate").is_some() => {
                    let rate = r["rate"].as_f64().unwrap_or(0.0);
                    let rate = if rate == 0.0 {
                        "max".to_string()
                    } else {
                        format!("{rate}/s")
                    };
                    format!("{step}: {} × {rate}", r["events"])
                }
                _ => format!("{step}"),
            };
            for (field, label) in metrics(preset) {
                let mut row = format!("| {step_name} | {label} |");
                let mut any_value = false;
                for target in &targets {
                    let values: Vec<f64> = by_target
                        .get(target)
                        .map(|records| records.iter().filter_map(|r| r[field].as_f64()).collect())
                        .unwrap_or_default();
                    any_value |= !values.is_empty();
                    row.push_str(&format!(" {} |", cell(values)));
                }
                if any_value {
                    out.push_str(&row);
                    out.push('\n');
                }
            }
        }
        let rounds: Vec<String> = targets
            .iter()
            .map(|t| {
                let n = steps
                    .values()
                    .next()
                    .and_then(|s| s.get(t))
                    .map_or(0, Vec::len);
                format!("{t}: {n} runs")
            })
            .collect();
        out.push_str(&format!("\nMedian (min–max) of {}.\n", rounds.join(", ")));
    }
    Ok(out)
}

fn cell(mut values: Vec<f64>) -> String {
    if values.is_empty() {
        return "–".into();
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    if n == 1 || values[0] == values[n - 1] {
        fmt(median)
    } else {
        format!(
            "{} ({}–{})",
            fmt(median),
            fmt(values[0]),
            fmt(values[n - 1])
        )
    }
}

fn fmt(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
