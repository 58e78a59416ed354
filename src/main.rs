//! The `stoa` binary: flags, logging, start-up, and shutdown on SIGTERM or
//! Ctrl-C. Everything else lives in the library.

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
    let directives = format!("{},warp::server=off", flags.log_level);
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,warp::server=off"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    // Each open stream is a file descriptor; many systems start processes
    // with a soft limit of 1024, far below what --max-streams allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "file descriptor limit"),
        Err(error) => tracing::warn!(%error, "could not raise the file descriptor limit"),
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

async fn serve(flags: &Flags, config: Config) -> Result<(), stoa::StartError> {
    let app = App::build(config).await?;
    let data = match (&flags.fixture, flags.demo) {
        (Some(path), _) => Some(fixtures::read(path)?),
        (None, true) => Some(fixtures::parse(fixtures::DEMO)?),
        (None, false) => None,
    };
    if let Some(data) = data {
        if fixtures::load(app.db(), data).await? {
            tracing::info!("loaded sample data");
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
