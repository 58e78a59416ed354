//! stoa-bench: opens many Server-Sent Events streams, publishes marked
//! events through a server's real API, and measures what arrives: latency
//! from each write's send time, lost and duplicated deliveries, and the
//! server's CPU and memory from /proc. The same run can target Nchan (or
//! any server that publishes a POST body to its SSE subscribers), so the
//! two are compared on one machine.
//!
//! Load only ever goes to loopback addresses, and every run is bounded in
//! events and time (`--max-seconds`).

mod http;
mod search;
mod sse;
mod stats;
mod table;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};

use http::{connect_from, Conn, Url};
use sse::{parse_head, parse_marker, Body, ChunkState};
use stats::Histogram;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// stoa: streams at /api/community/events, publishes as signed-in
    /// users through POST /api/community/threads.
    Stoa,
    /// Nchan (bench/nchan/nginx.conf): streams at /sub?id=, publishes by
    /// POST /pub?id=.
    Nchan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Publish {
    /// Register users and create threads through stoa's API.
    Stoa,
    /// POST the body to the publish URL (Nchan and the like).
    Post,
    /// Insert threads with the `sqlite3` shell into `--db` (stoa only), or
    /// with `psql` when `--db` is a postgres:// URL.
    Sqlite,
    /// Publish nothing (idle, replay).
    None,
}

#[derive(Debug, Parser)]
#[command(
    name = "stoa-bench",
    about = "Load benchmark for stoa's event stream (and Nchan, for comparison)",
    after_help = "Presets: latency, fanout, idle, writes, pubrate, replay, external, stalled.\n\
                  `stoa-bench search-data --data-dir DIR` writes a forum of generated text \
                  (--threads, --comments) for bench/search.sh to load; `stoa-bench search` \
                  times --queries searches over --writers connections.\n\
                  `stoa-bench table FILE.jsonl` prints a markdown table of saved results."
)]
struct Args {
    /// A preset (sets the defaults below), or `table` to summarise results.
    preset: Option<String>,
    /// With `table`: the JSON-lines results file(s).
    files: Vec<PathBuf>,

    #[arg(long, value_enum, default_value = "stoa")]
    target: Target,
    /// The server's base URL (stoa default http://127.0.0.1:8080, nchan
    /// http://127.0.0.1:8090).
    #[arg(long)]
    base: Option<String>,
    /// The stream URL (overrides the target's default). Repeat it to
    /// spread the streams over several servers, in turn (a cluster's nodes).
    #[arg(long = "stream-url")]
    stream_urls: Vec<String>,
    /// The publish URL for `--publish post` (overrides the target's default).
    #[arg(long)]
    publish_url: Option<String>,
    #[arg(long, value_enum)]
    publish: Option<Publish>,

    /// Streams to open.
    #[arg(long)]
    streams: Option<usize>,
    /// Publishing steps, `RATE:COUNT,...` (events/s, 0 = as fast as the
    /// writers go).
    #[arg(long)]
    steps: Option<String>,
    /// Concurrent writers.
    #[arg(long)]
    writers: Option<usize>,
    /// Extra bytes of padding in each event body.
    #[arg(long)]
    payload: Option<usize>,
    /// Readers that stop reading from the second step on.
    #[arg(long)]
    stall: Option<usize>,
    /// Seconds to hold the streams with nothing published (idle).
    #[arg(long)]
    hold: Option<u64>,
    /// Resume every stream from this event id (`?lastEventId=`), expecting
    /// `--expect` pre-filled events with markers 0..N.
    #[arg(long)]
    resume_from: Option<u64>,
    #[arg(long)]
    expect: Option<u64>,
    /// The database file, or a postgres:// URL, for `--publish sqlite`.
    #[arg(long)]
    db: Option<PathBuf>,

    /// Server process ids (several for nginx: master and workers).
    #[arg(long = "pid", value_delimiter = ',')]
    pids: Vec<u32>,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1+N) for the streams.
    #[arg(long, default_value_t = 16)]
    source_addrs: u8,
    /// Stream connections opened per second.
    #[arg(long, default_value_t = 4000.0)]
    ramp: f64,
    /// Give up waiting for deliveries of a step after this many seconds
    /// without progress.
    #[arg(long, default_value_t = 5)]
    drain_idle: u64,
    /// Stop the whole run after this many seconds, whatever happens.
    #[arg(long, default_value_t = 900)]
    max_seconds: u64,
    /// Append one JSON line per step to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The name stored with the results instead of the preset's (for a
    /// variant such as `external-poll10ms`).
    #[arg(long)]
    name: Option<String>,
    /// Free-form label stored with the results (e.g. the round).
    #[arg(long, default_value = "")]
    label: String,

    /// search-data: threads to generate.
    #[arg(long, default_value_t = 100_000)]
    threads: u64,
    /// search-data: comments to generate.
    #[arg(long, default_value_t = 1_000_000)]
    comments: u64,
    /// search-data: where the files go.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// search: queries to ask.
    #[arg(long, default_value_t = 3_000)]
    queries: u64,
}

/// What a run does, after the preset and the flags are combined.
#[derive(Debug, Clone)]
struct Plan {
    preset: String,
    target: Target,
    /// Where the streams connect, taken in turn.
    stream: Vec<Url>,
    publish: Publish,
    publish_url: Option<Url>,
    base: Url,
    streams: usize,
    steps: Vec<(f64, u64)>,
    writers: usize,
    payload: usize,
    stall: usize,
    hold: u64,
    expect: u64,
    db: Option<PathBuf>,
}

fn plan(args: &Args) -> Result<Plan, String> {
    let preset = args.preset.clone().unwrap_or_else(|| "custom".into());
    // (streams, steps, writers, payload, stall, hold)
    let (streams, steps, writers, payload, stall, hold): (usize, &str, usize, usize, usize, u64) =
        match preset.as_str() {
            "latency" => (1000, "50:1000", 4, 0, 0, 0),
            "fanout" => (10_000, "1:10,5:50,10:100,0:100", 4, 0, 0, 0),
            "idle" => (19_500, "", 1, 0, 0, 30),
            "writes" => (1, "0:10000", 16, 0, 0, 0),
            "pubrate" => (100, "0:10000", 8, 0, 0, 0),
            "replay" => (1, "", 1, 0, 0, 0),
            "external" => (100, "20:300", 1, 0, 0, 0),
            "stalled" => (10_000, "2:40,2:40", 4, 4000, 1, 0),
            "custom" => (100, "10:100", 4, 0, 0, 0),
            other => return Err(format!("unknown preset {other:?}")),
        };
    let base_default = match args.target {
        Target::Stoa => "http://127.0.0.1:8080",
        Target::Nchan => "http://127.0.0.1:8090",
    };
    let base = Url::parse(args.base.as_deref().unwrap_or(base_default))?;
    let nonce = unix_us() % 1_000_000_007;
    let resume_from = args.resume_from.or((preset == "replay").then_some(0));
    let stream = match (args.stream_urls.is_empty(), args.target) {
        (false, _) => args
            .stream_urls
            .iter()
            .map(|url| Url::parse(url))
            .collect::<Result<Vec<_>, _>>()?,
        (true, Target::Stoa) => vec![base.with_path(&match resume_from {
            Some(id) => format!("/api/community/events?lastEventId={id}"),
            None => "/api/community/events".into(),
        })],
        (true, Target::Nchan) => vec![base.with_path(&format!("/sub?id=bench{nonce}"))],
    };
    let publish_url = match (&args.publish_url, args.target) {
        (Some(url), _) => Some(Url::parse(url)?),
        (None, Target::Nchan) => Some(base.with_path(&format!("/pub?id=bench{nonce}"))),
        (None, Target::Stoa) => None,
    };
    let publish = args
        .publish
        .unwrap_or(match (preset.as_str(), args.target) {
            ("idle" | "replay", _) => Publish::None,
            ("external", _) => Publish::Sqlite,
            (_, Target::Stoa) => Publish::Stoa,
            (_, Target::Nchan) => Publish::Post,
        });
    if publish == Publish::Sqlite && args.db.is_none() {
        return Err("--publish sqlite needs --db".into());
    }
    if publish == Publish::Post && publish_url.is_none() {
        return Err("--publish post needs --publish-url".into());
    }
    let steps = parse_steps(args.steps.as_deref().unwrap_or(steps))?;
    Ok(Plan {
        preset: preset.clone(),
        target: args.target,
        stream,
        publish,
        publish_url,
        base,
        streams: args.streams.unwrap_or(streams),
        steps,
        writers: if publish == Publish::Sqlite {
            1
        } else {
            args.writers.unwrap_or(writers).max(1)
        },
        payload: args.payload.unwrap_or(payload),
        stall: args.stall.unwrap_or(stall),
        hold: args.hold.unwrap_or(hold),
        expect: args
            .expect
            .unwrap_or(if preset == "replay" { 1_000_000 } else { 0 }),
        db: args.db.clone(),
    })
}

fn parse_steps(text: &str) -> Result<Vec<(f64, u64)>, String> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|step| {
            let (rate, count) = step
                .split_once(':')
                .ok_or_else(|| format!("step {step:?} is not RATE:COUNT"))?;
            Ok((
                rate.trim()
                    .parse()
                    .map_err(|_| format!("bad rate {rate:?}"))?,
                count
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad count {count:?}"))?,
            ))
        })
        .collect()
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The search presets, which publish nothing and open no stream; `None`
/// for every other preset.
async fn run_search(args: &Args) -> Option<Result<(), String>> {
    match args.preset.as_deref() {
        Some("search-data") => Some(match &args.data_dir {
            Some(dir) => search::write_data(dir, args.threads, args.comments),
            None => Err("search-data needs --data-dir".into()),
        }),
        Some("search") => {
            let base = match Url::parse(args.base.as_deref().unwrap_or("http://127.0.0.1:8080")) {
                Ok(base) => base,
                Err(error) => return Some(Err(error)),
            };
            Some(
                search::run(
                    &base,
                    args.queries,
                    args.writers.unwrap_or(1),
                    args.out.as_deref(),
                    &args.label,
                    &args.pids,
                )
                .await,
            )
        }
        _ => None,
    }
}

/// One publishing step's shared counters.
struct StepStats {
    start: u64,
    end: u64,
    latency: Histogram,
    unique: AtomicU64,
    dups: AtomicU64,
    /// Events the server accepted.
    published_ok: AtomicU64,
    publish_errors: AtomicU64,
    ack: Histogram,
    /// A reader recorded a delivery (for drain detection).
    last_delivery_us: AtomicU64,
}

/// Everything the stream tasks share with the coordinator.
struct Shared {
    total_events: u64,
    steps: Vec<StepStats>,
    /// Per event: the slowest delivery (µs) and how many streams got it.
    event_max: Vec<AtomicU64>,
    event_count: Vec<AtomicU32>,
    connected: AtomicUsize,
    failed: AtomicUsize,
    /// Streams that ended before the run did.
    ended: AtomicUsize,
    messages: AtomicU64,
    stall_now: AtomicBool,
    stalled_ports: std::sync::Mutex<Vec<u16>>,
    /// Replay: markers that arrived out of order.
    out_of_order: AtomicU64,
    /// The time the last wanted event arrived (replay).
    finished_us: AtomicU64,
}

impl Shared {
    fn step_of(&self, seq: u64) -> Option<&StepStats> {
        self.steps.iter().find(|s| seq >= s.start && seq < s.end)
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if args.preset.as_deref() == Some("table") {
        match table::render(&args.files) {
            Ok(text) => print!("{text}"),
            Err(error) => {
                eprintln!("stoa-bench: {error}");
                std::process::exit(2);
            }
        }
        return;
    }
    if let Some(result) = run_search(&args).await {
        if let Err(error) = result {
            eprintln!("stoa-bench: {error}");
            std::process::exit(1);
        }
        return;
    }
    let plan = match plan(&args) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("stoa-bench: {error}");
            std::process::exit(2);
        }
    };
    let max = Duration::from_secs(args.max_seconds);
    tokio::spawn(async move {
        tokio::time::sleep(max).await;
        eprintln!("stoa-bench: --max-seconds reached; stopping");
        std::process::exit(3);
    });
    if let Err(error) = run(&args, plan).await {
        eprintln!("stoa-bench: {error}");
        std::process::exit(1);
    }
}

struct Writer {
    /// Bearer token (stoa).
    token: Option<String>,
    user_id: Option<String>,
}

async fn register_writers(plan: &Plan, nonce: u64) -> Result<Vec<Writer>, String> {
    let n = match plan.publish {
        Publish::Stoa => plan.writers,
        Publish::Sqlite => 1,
        _ => {
            return Ok((0..plan.writers)
                .map(|_| Writer {
                    token: None,
                    user_id: None,
                })
                .collect())
        }
    };
    let mut tasks = Vec::new();
    for k in 0..n {
        let base = plan.base.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(&base);
            let body = json!({"username": format!("b{nonce}w{k}"), "password": "bench-password"})
                .to_string();
            let (status, reply) = conn
                .request(
                    "POST",
                    "/api/auth/register",
                    "Content-Type: application/json\r\n",
                    body.as_bytes(),
                )
                .await
                .map_err(|e| format!("register: {e}"))?;
            if status != 201 && status != 200 {
                return Err(format!(
                    "register: HTTP {status}: {}",
                    String::from_utf8_lossy(&reply)
                ));
            }
            let reply: Value = serde_json::from_slice(&reply).map_err(|e| e.to_string())?;
            Ok(Writer {
                token: reply["token"].as_str().map(str::to_string),
                user_id: reply["user"]["id"].as_str().map(str::to_string),
            })
        }));
    }
    let mut writers = Vec::new();
    for task in tasks {
        writers.push(task.await.map_err(|e| e.to_string())??);
    }
    Ok(writers)
}

async fn run(args: &Args, plan: Plan) -> Result<(), String> {
    let nonce = unix_us() % 1_000_000_007;
    let pids = args.pids.clone();
    let passive = plan.publish == Publish::None && plan.expect > 0;
    let steps: Vec<(f64, u64)> = if passive {
        vec![(0.0, plan.expect)]
    } else {
        plan.steps.clone()
    };
    let mut start = 0;
    let step_stats: Vec<StepStats> = steps
        .iter()
        .map(|&(_, count)| {
            let s = StepStats {
                start,
                end: start + count,
                latency: Histogram::default(),
                unique: AtomicU64::new(0),
                dups: AtomicU64::new(0),
                published_ok: AtomicU64::new(0),
                publish_errors: AtomicU64::new(0),
                ack: Histogram::default(),
                last_delivery_us: AtomicU64::new(0),
            };
            start += count;
            s
        })
        .collect();
    let total = start;
    let shared = Arc::new(Shared {
        total_events: total,
        steps: step_stats,
        event_max: (0..total).map(|_| AtomicU64::new(0)).collect(),
        event_count: (0..total).map(|_| AtomicU32::new(0)).collect(),
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        ended: AtomicUsize::new(0),
        messages: AtomicU64::new(0),
        stall_now: AtomicBool::new(false),
        stalled_ports: std::sync::Mutex::new(Vec::new()),
        out_of_order: AtomicU64::new(0),
        finished_us: AtomicU64::new(0),
    });

    eprintln!(
        "stoa-bench {} → {:?} {}: {} streams, steps {:?}, {} writers, publish {:?}",
        plan.preset,
        plan.target,
        plan.stream
            .iter()
            .map(|url| format!("{}{}", url.host, url.path))
            .collect::<Vec<_>>()
            .join(" "),
        plan.streams,
        steps,
        plan.writers,
        plan.publish
    );
    let writers = register_writers(&plan, nonce).await?;

    let rss_before = stats::total_kib(&pids, "VmRSS");
    let cpu_start = stats::total_cpu(&pids);
    let run_start = Instant::now();
    let run_start_us = unix_us();

    // Open the streams, ramped, from several source addresses.
    let (stop_tx, stop_rx) = watch::channel(false);
    let inflight = Arc::new(Semaphore::new(1024));
    let stream_urls: Vec<Arc<Url>> = plan.stream.iter().cloned().map(Arc::new).collect();
    let mut readers = Vec::with_capacity(plan.streams);
    let ramp_start = tokio::time::Instant::now();
    for i in 0..plan.streams {
        let due = ramp_start + Duration::from_secs_f64(i as f64 / args.ramp);
        tokio::time::sleep_until(due).await;
        let permit = inflight
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i % args.source_addrs.max(1) as usize) as u8);
        let stalled = i < plan.stall;
        readers.push(tokio::spawn(reader(
            shared.clone(),
            stream_urls[i % stream_urls.len()].clone(),
            source,
            stalled,
            stop_rx.clone(),
            permit,
        )));
    }
    // Wait for every stream to connect or fail.
    let ramp_deadline = Instant::now() + Duration::from_secs(60);
    while shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed)
        < plan.streams
        && Instant::now() < ramp_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp_secs = ramp_start.elapsed().as_secs_f64();
    let connected = shared.connected.load(Ordering::Relaxed);
    let failed = shared.failed.load(Ordering::Relaxed);
    eprintln!(
        "connected {connected} of {} streams in {ramp_secs:.1}s ({failed} failed)",
        plan.streams
    );
    let mut results = Vec::new();
    let base_record = json!({
        "preset": args.name.clone().unwrap_or_else(|| plan.preset.clone()),
        "target": format!("{:?}", plan.target).to_lowercase(),
        "label": args.label,
        "streams": plan.streams,
        "connected": connected,
        "failed": failed,
        "ramp_s": round(ramp_secs, 2),
    });

    if passive {
        // Replay: the streams started receiving as they connected.
        let step = &shared.steps[0];
        let expected = plan.expect * connected as u64;
        wait_for(step, expected, args.drain_idle, &shared).await;
        let finished = shared.finished_us.load(Ordering::Relaxed);
        let secs = (finished.saturating_sub(run_start_us)) as f64 / 1e6;
        let received = step.unique.load(Ordering::Relaxed);
        let cpu = stats::total_cpu(&pids) - cpu_start;
        let mut record = base_record.clone();
        merge(
            &mut record,
            json!({
                "step": 0,
                "events": plan.expect,
                "deliveries": received,
                "lost": expected.saturating_sub(received),
                "dups": step.dups.load(Ordering::Relaxed),
                "out_of_order": shared.out_of_order.load(Ordering::Relaxed),
                "seconds": round(secs, 3),
                "replay_events_per_s": round(received as f64 / secs.max(1e-9), 0),
                "server_cpu_s": round(cpu, 2),
                "cpu_us_per_delivery": round(cpu * 1e6 / received.max(1) as f64, 2),
                "rss_before_kib": rss_before,
                "rss_kib": stats::total_kib(&pids, "VmRSS"),
                "hwm_kib": stats::total_kib(&pids, "VmHWM"),
            }),
        );
        results.push(record);
    } else if steps.is_empty() {
        // Idle: settle, then hold with nothing published.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss_held = stats::total_kib(&pids, "VmRSS");
        let cpu0 = stats::total_cpu(&pids);
        let messages0 = shared.messages.load(Ordering::Relaxed);
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(plan.hold)).await;
        let secs = t0.elapsed().as_secs_f64();
        let cpu = stats::total_cpu(&pids) - cpu0;
        let still = connected - shared.ended.load(Ordering::Relaxed);
        let rss_end = stats::total_kib(&pids, "VmRSS");
        let mut record = base_record.clone();
        merge(
            &mut record,
            json!({
                "step": 0,
                "held": still,
                "hold_s": round(secs, 1),
                "rss_before_kib": rss_before,
                "rss_kib": rss_end,
                "hwm_kib": stats::total_kib(&pids, "VmHWM"),
                "rss_per_stream_kib": round(
                    rss_held.max(rss_end).saturating_sub(rss_before) as f64 / connected.max(1) as f64, 2),
                "cpu_per_s": round(cpu / secs, 4),
                "ramp_cpu_s": round(cpu0 - cpu_start, 2),
                "messages_during_hold": shared.messages.load(Ordering::Relaxed) - messages0,
            }),
        );
        results.push(record);
    } else {
        // Let presence messages of the ramp settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let active = (connected - plan.stall.min(connected)) as u64;
        for (index, &(rate, count)) in steps.iter().enumerate() {
            if index >= 1 && plan.stall > 0 {
                shared.stall_now.store(true, Ordering::Relaxed);
            }
            let record = run_step(
                &plan, &shared, &writers, index, rate, count, active, &pids, args, nonce,
            )
            .await;
            let mut full = base_record.clone();
            merge(&mut full, record);
            results.push(full);
        }
    }

    let _ = stop_tx.send(true);
    let mut stalled_queue = Vec::new();
    let ports = shared.stalled_ports.lock().expect("lock").clone();
    for port in ports {
        stalled_queue.extend(stats::tcp_queues(port));
    }
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    }
    if !stalled_queue.is_empty() {
        if let Some(last) = results.last_mut() {
            // The server's socket (its local port is the server's) holds
            // tx_queue bytes; the stalled client's socket rx_queue bytes.
            let server_port = plan.stream[0].addr.port();
            let server_tx: u64 = stalled_queue
                .iter()
                .filter(|q| q.0 == server_port)
                .map(|q| q.2)
                .sum();
            let client_rx: u64 = stalled_queue
                .iter()
                .filter(|q| q.0 != server_port)
                .map(|q| q.3)
                .sum();
            merge(
                last,
                json!({"stalled_server_sendq_bytes": server_tx, "stalled_client_recvq_bytes": client_rx}),
            );
        }
    }
    let total_cpu = stats::total_cpu(&pids) - cpu_start;
    eprintln!(
        "run: {:.1}s, server CPU {:.2}s, server peak RSS {} KiB; tool CPU {:.2}s",
        run_start.elapsed().as_secs_f64(),
        total_cpu,
        stats::total_kib(&pids, "VmHWM"),
        stats::self_cpu()
    );
    for record in &results {
        println!("{record}");
    }
    if let Some(path) = &args.out {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for record in &results {
            writeln!(file, "{record}").map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// Waits until `expected` deliveries of the step arrived, or none came for
/// `idle` seconds.
async fn wait_for(step: &StepStats, expected: u64, idle: u64, shared: &Shared) -> bool {
    let mut last = step.unique.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    loop {
        let now = step.unique.load(Ordering::Relaxed);
        if now >= expected {
            return true;
        }
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() > Duration::from_secs(idle) {
            return false;
        }
        if shared.connected.load(Ordering::Relaxed) == shared.ended.load(Ordering::Relaxed) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_step(
    plan: &Plan,
    shared: &Arc<Shared>,
    writers: &[Writer],
    index: usize,
    rate: f64,
    count: u64,
    active: u64,
    pids: &[u32],
    args: &Args,
    nonce: u64,
) -> Value {
    let step = &shared.steps[index];
    let cpu0 = stats::total_cpu(pids);
    let tool0 = stats::self_cpu();
    let t0 = Instant::now();
    let next = Arc::new(AtomicU64::new(step.start));
    let mut tasks = Vec::new();
    let start = tokio::time::Instant::now();
    if plan.publish == Publish::Sqlite {
        let db = plan.db.clone().expect("checked");
        let user = writers[0].user_id.clone().unwrap_or_default();
        let shared = shared.clone();
        let payload = plan.payload;
        tasks.push(tokio::spawn(async move {
            sqlite_writer(db, user, shared, index, rate, start, next, payload, nonce).await
        }));
    } else if plan.publish != Publish::None {
        for writer in writers.iter().take(plan.writers) {
            let (url, path, headers) = match plan.publish {
                Publish::Stoa => (
                    plan.base.clone(),
                    "/api/community/threads".to_string(),
                    format!(
                        "Content-Type: application/json\r\nAuthorization: Bearer {}\r\n",
                        writer.token.as_deref().unwrap_or("")
                    ),
                ),
                _ => {
                    let url = plan.publish_url.clone().expect("checked");
                    let path = url.path.clone();
                    (url, path, "Content-Type: text/plain\r\n".to_string())
                }
            };
            // Nchan sends the body as it is; stoa wraps it in a thread's
            // JSON (~260 bytes more). Pad Nchan's so both carry as much.
            let pad = plan.payload
                + if plan.publish == Publish::Post {
                    260
                } else {
                    0
                };
            let shared = shared.clone();
            let next = next.clone();
            tasks.push(tokio::spawn(async move {
                http_writer(url, path, headers, shared, index, rate, start, next, pad).await
            }));
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    let publish_secs = t0.elapsed().as_secs_f64();
    let sent = step.published_ok.load(Ordering::Relaxed);
    let errors = step.publish_errors.load(Ordering::Relaxed);
    let expected = sent * active;
    let drained = wait_for(step, expected, args.drain_idle, shared).await;
    // The step ends at its last delivery (or now, if nothing came).
    let last = step.last_delivery_us.load(Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let cpu = stats::total_cpu(pids) - cpu0;
    let tool_cpu = stats::self_cpu() - tool0;
    let received = step.unique.load(Ordering::Relaxed);
    let latency = step.latency.snapshot();
    let ack = step.ack.snapshot();
    // Per event: time until the last stream had it.
    let full = Histogram::default();
    let mut complete = 0u64;
    for seq in step.start..step.end {
        let n = shared.event_count[seq as usize].load(Ordering::Relaxed) as u64;
        if n > 0 {
            full.record(shared.event_max[seq as usize].load(Ordering::Relaxed));
        }
        if n >= active {
            complete += 1;
        }
    }
    let full = full.snapshot();
    let delivery_secs = if last > 0 {
        // From the step's start in wall-clock time.
        let started = unix_us() - (t0.elapsed().as_micros() as u64);
        (last.saturating_sub(started)) as f64 / 1e6
    } else {
        secs
    };
    let ms = |us: u64| round(us as f64 / 1000.0, 2);
    let record = json!({
        "step": index,
        "rate": rate,
        "events": count,
        "published": sent,
        "publish_errors": errors,
        "publish_s": round(publish_secs, 3),
        "publish_per_s": round(sent as f64 / publish_secs.max(1e-9), 1),
        "ack_p50_ms": ms(ack.quantile(0.5)),
        "ack_p99_ms": ms(ack.quantile(0.99)),
        "expected": expected,
        "deliveries": received,
        "lost": expected.saturating_sub(received),
        "dups": step.dups.load(Ordering::Relaxed),
        "drained": drained,
        "events_complete": complete,
        "p50_ms": ms(latency.quantile(0.5)),
        "p90_ms": ms(latency.quantile(0.9)),
        "p99_ms": ms(latency.quantile(0.99)),
        "p999_ms": ms(latency.quantile(0.999)),
        "max_ms": ms(latency.max()),
        "all_streams_p50_ms": ms(full.quantile(0.5)),
        "all_streams_p99_ms": ms(full.quantile(0.99)),
        "all_streams_max_ms": ms(full.max()),
        "seconds": round(delivery_secs, 3),
        "deliveries_per_s": round(received as f64 / delivery_secs.max(1e-9), 0),
        "server_cpu_s": round(cpu, 3),
        "cpu_us_per_delivery": round(cpu * 1e6 / received.max(1) as f64, 3),
        "tool_cpu_us_per_delivery": round(tool_cpu * 1e6 / received.max(1) as f64, 3),
        "rss_kib": stats::total_kib(pids, "VmRSS"),
        "hwm_kib": stats::total_kib(pids, "VmHWM"),
        "streams_ended": shared.ended.load(Ordering::Relaxed),
    });
    eprintln!("{record}");
    record
}

#[allow(clippy::too_many_arguments)]
async fn http_writer(
    url: Url,
    path: String,
    headers: String,
    shared: Arc<Shared>,
    index: usize,
    rate: f64,
    start: tokio::time::Instant,
    next: Arc<AtomicU64>,
    pad: usize,
) {
    let step = &shared.steps[index];
    let mut conn = Conn::new(&url);
    let padding = "x".repeat(pad);
    while let Some(seq) = next_due(&next, step, rate, start).await {
        let sent = unix_us();
        let body = format!(
            r#"{{"title":"bench {seq}","content":"{} {padding}"}}"#,
            sse::marker(seq, sent)
        );
        let result = conn.request("POST", &path, &headers, body.as_bytes()).await;
        let acked = unix_us();
        match result {
            Ok((status, _)) if (200..300).contains(&status) => {
                step.published_ok.fetch_add(1, Ordering::Relaxed);
                step.ack.record(acked - sent);
            }
            Ok((status, reply)) => {
                if step.publish_errors.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!(
                        "publish: HTTP {status}: {}",
                        String::from_utf8_lossy(&reply)
                    );
                }
            }
            Err(error) => {
                if step.publish_errors.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("publish: {error}");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Takes the next sequence number of `step` and waits until it is due at
/// `rate` events/s (at once when `rate` is 0); `None` once the step is done.
async fn next_due(
    next: &AtomicU64,
    step: &StepStats,
    rate: f64,
    start: tokio::time::Instant,
) -> Option<u64> {
    let seq = next.fetch_add(1, Ordering::Relaxed);
    if seq >= step.end {
        return None;
    }
    if rate > 0.0 {
        let due = start + Duration::from_secs_f64((seq - step.start) as f64 / rate);
        tokio::time::sleep_until(due).await;
    }
    Some(seq)
}

/// Writes through the `sqlite3` shell (`psql` for a postgres:// URL), one
/// long-lived process fed on its standard input, as an administrator or a
/// script would. The latency is from handing the statement to the shell,
/// once the shell is ready (psql takes tens of milliseconds to connect).
#[allow(clippy::too_many_arguments)]
async fn sqlite_writer(
    db: PathBuf,
    user: String,
    shared: Arc<Shared>,
    index: usize,
    rate: f64,
    start: tokio::time::Instant,
    next: Arc<AtomicU64>,
    pad: usize,
    nonce: u64,
) {
    let step = &shared.steps[index];
    let url = db.to_str().filter(|db| is_postgres(db));
    let shell = if url.is_some() { "psql" } else { "sqlite3" };
    let mut command = tokio::process::Command::new(shell);
    match url {
        // No ~/.psqlrc, no notices on stdout; autocommit, as sqlite3.
        Some(url) => command.args(["-X", "-q", url]),
        None => command.arg(&db),
    };
    let mut child = match command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            eprintln!("{shell}: {error}");
            return;
        }
    };
    let mut stdin = child.stdin.take().expect("piped");
    let ready: &[u8] = match url {
        Some(_) => b"\\echo ready\n",
        None => b".timeout 5000\n.print ready\n",
    };
    let _ = stdin.write_all(ready).await;
    // Wait for the shell's "ready", then keep its output drained.
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stdout.read_line(&mut line)).await;
    tokio::spawn(async move { tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await });
    let padding = "x".repeat(pad);
    while let Some(seq) = next_due(&next, step, rate, start).await {
        let sent = unix_us();
        let statement = format!(
            "INSERT INTO threads (id, author_id, title, content) VALUES ('ext-{nonce}-{seq}', '{user}', 'bench {seq}', '{} {padding}');\n",
            sse::marker(seq, sent)
        );
        if stdin.write_all(statement.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            step.publish_errors.fetch_add(1, Ordering::Relaxed);
            break;
        }
        step.published_ok.fetch_add(1, Ordering::Relaxed);
    }
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
}

fn is_postgres(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// One stream: connect from `source`, read the head, then parse events
/// until told to stop.
async fn reader(
    shared: Arc<Shared>,
    url: Arc<Url>,
    source: Ipv4Addr,
    stalled: bool,
    mut stop: watch::Receiver<bool>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let recv_buffer = stalled.then_some(4096);
    let mut stream = match connect_from(url.addr, Some(source), recv_buffer).await {
        Ok(stream) => stream,
        Err(_) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
        url.path, url.host
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut buf = vec![0u8; 8192];
    let mut have = 0;
    let head = loop {
        let n = match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf[have..]))
            .await
        {
            Ok(Ok(n)) if n > 0 => n,
            _ => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        have += n;
        if let Some(head) = parse_head(&buf[..have]) {
            break head;
        }
        if have == buf.len() {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    if head.status != 200 {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    shared.connected.fetch_add(1, Ordering::Relaxed);
    drop(permit);
    if stalled {
        if let Ok(addr) = stream.local_addr() {
            shared.stalled_ports.lock().expect("lock").push(addr.port());
        }
    }

    let mut state = StreamState {
        body: if head.chunked {
            Body::Chunked(ChunkState::Size(0, false))
        } else {
            Body::Identity
        },
        parser: sse::Parser::default(),
        seen: Vec::new(),
        next_expected: 0,
        stalled,
    };
    let mut open = state.process(&shared, &buf[head.len..have]);
    while open {
        if stalled && shared.stall_now.load(Ordering::Relaxed) {
            // Stop reading; hold the connection until the run ends.
            let _ = stop.changed().await;
            return;
        }
        let n = tokio::select! {
            biased;
            _ = stop.changed() => return,
            read = stream.read(&mut buf) => match read {
                Ok(n) if n > 0 => n,
                _ => break,
            },
        };
        open = state.process(&shared, &buf[..n]);
    }
    if !*stop.borrow() {
        shared.ended.fetch_add(1, Ordering::Relaxed);
    }
}

/// The parsing state of one stream and what it has seen.
struct StreamState {
    body: Body,
    parser: sse::Parser,
    /// One bit per event of the run: received already.
    seen: Vec<u64>,
    next_expected: u64,
    stalled: bool,
}

impl StreamState {
    /// Handles bytes read from the socket; false once the body ended.
    fn process(&mut self, shared: &Shared, bytes: &[u8]) -> bool {
        let now = unix_us();
        let mut messages = 0u64;
        let StreamState {
            body,
            parser,
            seen,
            next_expected,
            stalled,
        } = self;
        let open = body.feed(bytes, &mut |bytes| {
            parser.feed(bytes, &mut |message| {
                messages += 1;
                if *stalled {
                    return;
                }
                let Some((seq, sent)) = parse_marker(message.data) else {
                    return;
                };
                if seq >= shared.total_events {
                    return;
                }
                if seq != *next_expected {
                    shared.out_of_order.fetch_add(1, Ordering::Relaxed);
                }
                *next_expected = seq + 1;
                if seen.is_empty() {
                    *seen = vec![0; shared.total_events.div_ceil(64) as usize];
                }
                let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
                let Some(step) = shared.step_of(seq) else {
                    return;
                };
                if seen[word] & bit != 0 {
                    step.dups.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                seen[word] |= bit;
                let latency = now.saturating_sub(sent);
                step.latency.record(latency);
                step.unique.fetch_add(1, Ordering::Relaxed);
                step.last_delivery_us.fetch_max(now, Ordering::Relaxed);
                shared.event_max[seq as usize].fetch_max(latency, Ordering::Relaxed);
                shared.event_count[seq as usize].fetch_add(1, Ordering::Relaxed);
                if seq + 1 == shared.total_events {
                    shared.finished_us.fetch_max(now, Ordering::Relaxed);
                }
            });
        });
        if messages > 0 {
            shared.messages.fetch_add(messages, Ordering::Relaxed);
        }
        open
    }
}

#[cfg(test)]
mod tests {
    use super::is_postgres;

    #[test]
    fn a_postgres_url_is_told_from_a_database_file() {
        assert!(is_postgres(
            "postgres://postgres@127.0.0.1:55433/stoa_bench"
        ));
        assert!(is_postgres("postgresql://u:p@localhost/db"));
        assert!(!is_postgres("/tmp/stoa-bench/stoa.db"));
        assert!(!is_postgres("postgres.db"));
    }
}
