//! The `stoa` binary: flags, logging, start-up, and shutdown on SIGTERM or
//! Ctrl-C. Everything else lives in the library.

#![recursion_limit = "256"]

use std::process::ExitCode;

use std::sync::Arc;

use clap::Parser;
use stoa::config::Command;
use stoa::db::{Db, OpenSettings};
use stoa::metrics::Metrics;
use stoa::{fixtures, App, Config, Flags};

#[tokio::main]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    if let Some(Command::Role { username, role }) = &flags.command {
        return set_role(&flags, username, *role).await;
    }

    // A client closing its tab mid-stream is routine, not a server error.
    // (--log-level was checked when the flags were parsed.)
    let directives = format!("{},warp::server=off", flags.log_level);
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,warp::server=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour())
        .init();

    // Each open stream is a file descriptor; many systems start processes
    // with a soft limit of 1024, far below what --max-streams allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "file descriptor limit"),
        Err(error) => tracing::warn!(%error, "could not raise the file descriptor limit"),
    }
    if let Some(command) = &flags.command {
        return match run_command(&flags, command).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("stoa: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::try_from(&flags) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("stoa: {message}");
            return ExitCode::from(2);
        }
    };
    match serve(&flags, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stoa: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `stoa backup` and `stoa restore`, reported on standard output.
async fn run_command(flags: &Flags, command: &Command) -> Result<(), stoa::StartError> {
    match command {
        Command::Role { .. } => unreachable!("stoa role runs before logging starts"),
        Command::Backup { file, force } => {
            let latest = stoa::db::backup(&flags.db, file, *force).await?;
            println!(
                "backed up {} to {} (outbox id {latest}; readable by its owner only)",
                flags.db,
                file.display()
            );
        }
        Command::Restore { file } => {
            let restored = stoa::db::restore(&flags.db, file).await?;
            println!(
                "restored {} from {} (the backup's newest outbox id: {})",
                flags.db,
                file.display(),
                restored.backup_latest
            );
            if restored.latest > restored.backup_latest {
                println!(
                    "outbox ids continue after {}; clients holding a position from {} to {} \
                     reload their page instead of resuming",
                    restored.latest,
                    restored.backup_latest + 1,
                    restored.latest
                );
            }
            if !restored.replaced {
                println!(
                    "there was no database at {} to take the newest id from: ids up to {} are \
                     treated as seen",
                    flags.db, restored.latest
                );
            }
        }
    }
    Ok(())
}

/// Colour codes in the log only for a person at a terminal: not in the
/// journal or a file, and not when `NO_COLOR` is set (no-color.org).
fn colour() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    !no_color && std::io::stdout().is_terminal()
}

async fn serve(flags: &Flags, config: Config) -> Result<(), stoa::StartError> {
    let app = App::build(config).await?;
    let (data, source) = match (&flags.fixture, flags.demo) {
        (Some(path), _) => (Some(fixtures::read(path)?), path.display().to_string()),
        (None, true) => (Some(fixtures::parse(fixtures::DEMO)?), "--demo".to_string()),
        (None, false) => (None, String::new()),
    };
    if let Some(data) = data {
        let users: Vec<String> = data.users.iter().map(|u| u.username.clone()).collect();
        let passwords: std::collections::BTreeSet<String> =
            data.users.iter().map(|u| u.password.clone()).collect();
        if fixtures::load(app.db(), data).await? {
            tracing::info!(from = %source, users = %users.join(", "), "loaded sample data");
            if flags.demo && flags.fixture.is_none() {
                tracing::warn!(
                    "the demo users ({}) share the password {:?}, printed here for anyone \
                     who reads this log: do not use --demo on a public server",
                    users.join(", "),
                    passwords.into_iter().collect::<Vec<_>>().join(", ")
                );
            }
        } else {
            tracing::info!(
                from = %source,
                "loaded no sample data: this forum already has threads (sample data only goes \
                 into an empty forum, so a restart with --demo adds nothing twice)"
            );
        }
    }
    tracing::info!(db = %flags.db, "stoa listening on http://{}", app.local_addr());
    app.run(shutdown_signal()).await
}

/// `stoa role USERNAME ROLE`: sets the role on the configured database and
/// says what changed.
async fn set_role(flags: &Flags, username: &str, role: stoa::db::Role) -> ExitCode {
    if let stoa::config::Database::Sqlite(path) = &flags.db {
        if !path.exists() {
            eprintln!("stoa: there is no database at {}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let settings = OpenSettings {
        busy_timeout: flags.busy_timeout,
        pool_size: 1,
    };
    let db = match Db::open(&flags.db, settings, Arc::new(Metrics::default())).await {
        Ok(db) => db,
        Err(error) => {
            eprintln!("stoa: opening {}: {error}", flags.db);
            return ExitCode::FAILURE;
        }
    };
    let outcome = db.set_role(username.to_string(), role).await;
    let _ = db.close().await;
    match outcome {
        Ok(Some(change)) if change.before == role => {
            println!(
                "{} is already {role}: nothing changed",
                change.user.username
            );
            ExitCode::SUCCESS
        }
        Ok(Some(change)) => {
            println!("{}: {} -> {role}", change.user.username, change.before);
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("stoa: no user named {username:?} in {}", flags.db);
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("stoa: setting the role of {username}: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
