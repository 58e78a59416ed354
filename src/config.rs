//! Settings: the command-line flags (each with an `STOA_` environment
//! fallback and a default shown in `--help`) and the validated [`Config`]
//! the rest of the server is built from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Raw flags as typed by an operator.
#[derive(Debug, Parser)]
#[command(
    name = "stoa",
    version,
    about = "A community forum in one binary, live over Server-Sent Events"
)]
pub struct Flags {
    /// Address to listen on.
    #[arg(long, env = "STOA_LISTEN", default_value = "127.0.0.1:8080", value_parser = listen_address)]
    pub listen: SocketAddr,

    /// The database: a SQLite file (created on first start), or a
    /// PostgreSQL URL (postgres://user:password@host:port/dbname) that
    /// several stoa nodes may share. Either is brought up to date by the
    /// migrations at start.
    #[arg(long, env = "STOA_DB", default_value = "stoa.db", global = true)]
    pub db: Database,
    /// PostgreSQL only: connections each node keeps for reads (it also
    /// holds one for writes and two for the outbox tailer).
    #[arg(long, env = "STOA_DB_POOL_SIZE", default_value_t = 16, value_parser = whole_number::<usize>)]
    pub db_pool_size: usize,

    /// How often each open stream gets a `ping` message.
    #[arg(long, env = "STOA_PING_INTERVAL", default_value = "30s", value_parser = duration)]
    pub ping_interval: Duration,

    /// How often the outbox is polled for rows written by other processes
    /// (writes through this server are picked up at once). Default: 10ms
    /// on SQLite, where a poll that finds nothing costs next to nothing;
    /// 1s on PostgreSQL, where NOTIFY wakes every node at once and polling
    /// only covers a lost notification.
    #[arg(long, env = "STOA_POLL_INTERVAL", value_parser = duration)]
    pub poll_interval: Option<Duration>,

    /// An origin allowed to call the API from another site (CORS); repeatable.
    /// None by default: only the page served by stoa itself.
    #[arg(long = "cors-origin", env = "STOA_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Keep outbox events (what reconnecting clients replay) this long.
    #[arg(long, env = "STOA_RETENTION", default_value = "7days", value_parser = duration)]
    pub retention: Duration,

    /// Writes (posts, comments, likes, deletes) per minute per user, after
    /// a burst of --write-burst; 0 turns the limit off.
    #[arg(long, env = "STOA_WRITE_RATE", default_value_t = 30.0, value_parser = rate)]
    pub write_rate: f64,

    /// Writes a user may make at once before --write-rate applies.
    #[arg(long, env = "STOA_WRITE_BURST", default_value_t = 10, value_parser = whole_number::<u32>)]
    pub write_burst: u32,

    /// Registrations and sign-ins per minute per client address, after a
    /// burst of --sign-in-burst; 0 turns the limit off.
    #[arg(long, env = "STOA_SIGN_IN_RATE", default_value_t = 6.0, value_parser = rate)]
    pub sign_in_rate: f64,

    /// Registrations and sign-ins an address may make at once.
    #[arg(long, env = "STOA_SIGN_IN_BURST", default_value_t = 10, value_parser = whole_number::<u32>)]
    pub sign_in_burst: u32,

    /// Take the client's address from the last entry of X-Forwarded-For
    /// (set this only when every request comes through a proxy such as
    /// nginx; otherwise clients could claim any address).
    #[arg(long, env = "STOA_BEHIND_PROXY")]
    pub behind_proxy: bool,

    /// The address people use to reach the forum, such as
    /// https://forum.example.org (scheme and host, and a port if not the
    /// usual one). Its origin may use the session cookie, and with https
    /// the cookie is marked Secure. Not needed behind a proxy that sends
    /// Host with its port and X-Forwarded-Proto (see deploy/nginx.conf).
    #[arg(long, env = "STOA_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Keep at most this many outbox events (with --retention, whichever
    /// removes more).
    #[arg(long, env = "STOA_RETENTION_EVENTS", default_value_t = 1_000_000, value_parser = whole_number::<u64>)]
    pub retention_events: u64,

    /// How long a database operation waits for a lock held by another
    /// connection before the request gets 503 with Retry-After.
    #[arg(long, env = "STOA_BUSY_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub busy_timeout: Duration,
    /// Longest wait for a request's headers, and for the next request on
    /// an idle keep-alive connection; slower clients are disconnected.
    #[arg(long, env = "STOA_HEADER_TIMEOUT", default_value = "15s", value_parser = duration)]
    pub header_timeout: Duration,

    /// Most open event streams, in all.
    #[arg(long, env = "STOA_MAX_STREAMS", default_value_t = 15_000, value_parser = whole_number::<usize>)]
    pub max_streams: usize,

    /// Most open event streams from one client address.
    #[arg(long, env = "STOA_MAX_STREAMS_PER_IP", default_value_t = 256, value_parser = whole_number::<usize>)]
    pub max_streams_per_ip: usize,

    /// Log level or filter (error, warn, info, debug, trace, or a tracing filter).
    #[arg(long, env = "STOA_LOG_LEVEL", default_value = "info", value_parser = log_filter)]
    pub log_level: String,

    /// Load sample users, threads and comments (fixtures/demo.json) on start.
    #[arg(long, env = "STOA_DEMO")]
    pub demo: bool,

    /// A fixture file of users, threads and comments to load on start.
    #[arg(value_name = "FIXTURE")]
    pub fixture: Option<PathBuf>,

    /// Instead of serving: a task on the database named by --db.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The tasks `stoa` runs instead of serving (docs/operations.md).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Sets a user's role (member, moderator or admin); servers using the
    /// database see it at the user's next request. Logged in the
    /// moderation log.
    Role {
        /// The user, by username (any letter case).
        username: String,
        /// member, moderator or admin.
        role: crate::db::Role,
    },
    /// Copy the SQLite database to FILE, consistently, while servers run
    /// (the copy is readable by its owner only).
    Backup {
        /// Where the copy goes.
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Put a backup in place of the SQLite database, with every server
    /// stopped. Clients that saw events newer than the backup reload
    /// instead of resuming; outbox ids are never handed out twice.
    Restore {
        /// The backup to restore (left as it is).
        file: PathBuf,
    },
}

/// `--listen`: an address with its port. A port alone is refused with the
/// address it probably means.
fn listen_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Err(format!(
            "a port alone is not an address: use 127.0.0.1:{port} (this machine only, behind a \
             proxy) or 0.0.0.0:{port} (every interface)"
        ));
    }
    text.parse()
        .map_err(|_| "expected an IP address and port, such as 127.0.0.1:8080 or [::1]:8080".into())
}

/// A duration flag, with an example of the form in the error.
fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|error| format!("{error}: write a duration such as 30s, 250ms, 5m or 7days"))
}

/// A whole-number flag, with an example in the error.
fn whole_number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| "expected a whole number, such as 100 (no units or separators)".to_string())
}

/// A rate per minute: a number, possibly with a fraction.
fn rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() => Ok(rate),
        _ => Err("expected a number per minute, such as 30 or 0.5 (0 turns the limit off)".into()),
    }
}

/// The levels `--log-level` takes, quietest first.
pub const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `--log-level`: a level, or a filter of comma-separated directives each
/// a level or `target=level` (such as `stoa=debug,info`). Anything else is
/// refused: `tracing`'s own parser would take an unknown word for a target
/// name and quietly log nothing.
pub fn log_filter(text: &str) -> Result<String, String> {
    let level = |word: &str| LOG_LEVELS.contains(&word.trim().to_ascii_lowercase().as_str());
    let valid = !text.trim().is_empty()
        && text
            .split(',')
            .all(|directive| match directive.split_once('=') {
                Some((target, word)) => {
                    !target.trim().is_empty()
                        && target
                            .trim()
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_:-".contains(c))
                        && level(word)
                }
                None => level(directive),
            });
    if valid {
        Ok(text.trim().to_ascii_lowercase())
    } else {
        Err(format!(
            "{text:?} is not a log level: use one of {}, or a filter such as stoa=debug,info",
            LOG_LEVELS.join(", ")
        ))
    }
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl std::str::FromStr for Database {
    type Err = String;

    fn from_str(text: &str) -> Result<Database, String> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(Database::Postgres(text.to_string()))
        } else if text.contains("://") {
            Err(format!(
                "--db takes a file path or a postgres:// URL, not {text:?}"
            ))
        } else if text.is_empty() {
            Err("--db must not be empty".into())
        } else {
            Ok(Database::Sqlite(PathBuf::from(text)))
        }
    }
}

impl std::fmt::Display for Database {
    /// The file, or the URL without its password, for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    let credentials = &url[scheme + 3..at];
                    let user = credentials.split(':').next().unwrap_or("");
                    write!(f, "{}{user}{}", &url[..scheme + 3], &url[at..])
                }
                _ => write!(f, "{url}"),
            },
        }
    }
}

/// How often the tailer polls when not told otherwise.
fn default_poll_interval(db: &Database) -> Duration {
    match db {
        Database::Sqlite(_) => Duration::from_millis(10),
        Database::Postgres(_) => Duration::from_secs(1),
    }
}

/// Validated settings. Tests build one with [`Config::for_db`] and adjust it.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub db: Database,
    pub db_pool_size: usize,
    pub ping_interval: Duration,
    pub poll_interval: Duration,
    pub cors_origins: Vec<String>,
    pub retention: Duration,
    pub retention_events: u64,
    pub max_streams: usize,
    pub max_streams_per_ip: usize,
    pub header_timeout: Duration,
    pub busy_timeout: Duration,
    pub write_rate: f64,
    pub write_burst: u32,
    pub sign_in_rate: f64,
    pub sign_in_burst: u32,
    pub behind_proxy: bool,
    /// `--public-url`, without a trailing slash.
    pub public_url: Option<String>,
}

impl Config {
    /// Defaults for a database, listening on an ephemeral loopback port.
    pub fn for_db(db: Database) -> Config {
        let poll_interval = default_poll_interval(&db);
        Config {
            listen: "127.0.0.1:0".parse().expect("valid address"),
            db,
            db_pool_size: 16,
            ping_interval: Duration::from_secs(30),
            poll_interval,
            cors_origins: Vec::new(),
            retention: Duration::from_secs(7 * 24 * 3600),
            retention_events: 1_000_000,
            max_streams: 15_000,
            max_streams_per_ip: 256,
            header_timeout: Duration::from_secs(15),
            busy_timeout: Duration::from_secs(5),
            write_rate: 30.0,
            write_burst: 10,
            sign_in_rate: 6.0,
            sign_in_burst: 10,
            behind_proxy: false,
            public_url: None,
        }
    }
}

impl TryFrom<&Flags> for Config {
    type Error = String;

    fn try_from(flags: &Flags) -> Result<Config, String> {
        if flags.ping_interval < Duration::from_millis(10) {
            return Err("--ping-interval must be at least 10ms".into());
        }
        let poll_interval = flags
            .poll_interval
            .unwrap_or_else(|| default_poll_interval(&flags.db));
        if poll_interval < Duration::from_millis(1) {
            return Err("--poll-interval must be at least 1ms".into());
        }
        if flags.header_timeout < Duration::from_millis(100) {
            return Err("--header-timeout must be at least 100ms".into());
        }
        if flags.max_streams == 0 || flags.max_streams_per_ip == 0 {
            return Err("--max-streams and --max-streams-per-ip must be at least 1".into());
        }
        for origin in &flags.cors_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return Err(format!(
                    "--cors-origin {origin:?} must look like https://example.com (scheme and host, no path)"
                ));
            }
        }
        let public_url = match &flags.public_url {
            None => None,
            Some(url) => {
                let origin = url.strip_suffix('/').unwrap_or(url);
                let host = origin
                    .strip_prefix("https://")
                    .or_else(|| origin.strip_prefix("http://"));
                if host.is_none_or(|host| host.is_empty() || host.contains('/')) {
                    return Err(format!(
                        "--public-url {url:?} must look like https://forum.example.org (scheme and host, no path)"
                    ));
                }
                Some(origin.to_string())
            }
        };
        if flags.write_rate < 0.0 || flags.sign_in_rate < 0.0 {
            return Err("--write-rate and --sign-in-rate must be 0 (off) or more".into());
        }
        if flags.db_pool_size == 0 {
            return Err("--db-pool-size must be at least 1".into());
        }
        if flags.retention_events == 0 {
            return Err("--retention-events must be at least 1".into());
        }
        Ok(Config {
            listen: flags.listen,
            db: flags.db.clone(),
            db_pool_size: flags.db_pool_size,
            ping_interval: flags.ping_interval,
            poll_interval,
            cors_origins: flags.cors_origins.clone(),
            retention: flags.retention,
            retention_events: flags.retention_events,
            max_streams: flags.max_streams,
            max_streams_per_ip: flags.max_streams_per_ip,
            header_timeout: flags.header_timeout,
            busy_timeout: flags.busy_timeout,
            write_rate: flags.write_rate,
            write_burst: flags.write_burst,
            sign_in_rate: flags.sign_in_rate,
            sign_in_burst: flags.sign_in_burst,
            behind_proxy: flags.behind_proxy,
            public_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_a_path_or_a_postgres_url() {
        assert_eq!(
            "data/stoa.db".parse::<Database>(),
            Ok(Database::Sqlite("data/stoa.db".into()))
        );
        assert_eq!(
            "postgres://stoa@db/forum".parse::<Database>(),
            Ok(Database::Postgres("postgres://stoa@db/forum".into()))
        );
        assert!("mysql://db/forum".parse::<Database>().is_err());
    }

    #[test]
    fn a_bad_setting_is_refused_with_an_example_of_the_right_form() {
        let error = |args: &[&str]| {
            Flags::try_parse_from([&["stoa"], args].concat())
                .expect_err("refused")
                .to_string()
        };
        assert!(error(&["--listen", "8090"]).contains("use 127.0.0.1:8090"));
        assert!(error(&["--ping-interval", "30"]).contains("such as 30s"));
        assert!(error(&["--max-streams", "10k"]).contains("whole number, such as 100"));
        assert!(error(&["--write-rate", "fast"]).contains("such as 30 or 0.5"));
        let level = error(&["--log-level", "verbose"]);
        assert!(
            level.contains("\"verbose\" is not a log level")
                && level.contains("off, error, warn, info, debug, trace"),
            "{level}"
        );
    }

    #[test]
    fn log_levels_and_filters_are_accepted() {
        for good in [
            "info",
            "DEBUG",
            "stoa=debug,info",
            "warn,stoa::sse=trace",
            "off",
        ] {
            assert!(log_filter(good).is_ok(), "{good}");
        }
        for bad in ["", "verbose", "inf", "stoa=loud", "=info", "info,"] {
            assert!(log_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_password_never_reaches_the_log() {
        let db: Database = "postgres://stoa:secret@db:5432/forum".parse().unwrap();
        assert_eq!(db.to_string(), "postgres://stoa@db:5432/forum");
    }
}
