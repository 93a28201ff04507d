//! The `deploy-tracker` binary: parse the command line, set up logging, dispatch.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use sea_orm::DatabaseConnection;
use tracing_subscriber::EnvFilter;

use deploy_tracker::config::{Cli, Command, GithubCommand, LogFormat, ServeArgs};
use deploy_tracker::deployments::ingest::Ingest;
use deploy_tracker::http::{self, AppState, Limits};
use deploy_tracker::store;
use deploy_tracker::sweep;
use deploy_tracker::{backfill, cli};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // The server logs what it does; other commands print results and log only problems.
    let default_level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    init_tracing(cli.log_format, default_level);
    if let Err(err) = run(cli).await {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn init_tracing(format: Option<LogFormat>, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_current_span(true).init(),
        LogFormat::Pretty => builder.init(),
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(&cli.database_url, args).await,
        Command::Migrate => {
            open(&cli.database_url).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Apps(command) => cli::apps::run(&open(&cli.database_url).await?, command).await,
        Command::Deployments(command) => {
            cli::deployments::run(&open(&cli.database_url).await?, command).await
        }
        Command::Deliveries(command) => {
            cli::deliveries::run(&open(&cli.database_url).await?, command).await
        }
        Command::Replay(args) => {
            // Over HTTP the server owns the database; only an offline replay opens it.
            let db = match args.url {
                Some(_) => None,
                None => Some(open(&cli.database_url).await?),
            };
            cli::replay::run(db, args).await
        }
        Command::Reprocess(args) => cli::reprocess::run(open(&cli.database_url).await?, args).await,
        Command::Sweep(args) => cli::sweep::run(&open(&cli.database_url).await?, args).await,
        Command::Stats(args) => cli::stats::run(&open(&cli.database_url).await?, args).await,
        Command::Github(GithubCommand::Backfill(args)) => {
            cli::github::backfill(open(&cli.database_url).await?, args).await
        }
    }
}

/// Connects and applies pending migrations.
async fn open(url: &str) -> Result<DatabaseConnection> {
    store::open(url)
        .await
        .with_context(|| format!("cannot open the database at {}", redact(url)))
}

/// Hides a password in a database URL.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

async fn serve(database_url: &str, args: ServeArgs) -> Result<()> {
    let (github_secrets, vercel_secrets) = args.secrets.parse().map_err(anyhow::Error::msg)?;
    let sweeper = args.sweep.sweeper().map_err(anyhow::Error::msg)?;
    // Checked before the database is opened, so a bad setting fails fast.
    let backfill_client = if args.github_backfill.is_empty() {
        None
    } else {
        Some(args.github_api.client().map_err(anyhow::Error::msg)?)
    };
    let db = open(database_url).await?;
    for (provider, secrets) in [("GitHub", &github_secrets), ("Vercel", &vercel_secrets)] {
        if secrets.is_empty() {
            tracing::warn!(
                "no {provider} webhook secret is configured; its deliveries will be refused with 503"
            );
        }
    }
    let state = AppState {
        ingest: Ingest::open(db.clone(), database_url, args.ingest_writers).await?,
        github_secrets: Arc::new(github_secrets),
        vercel_secrets: Arc::new(vercel_secrets),
        api_token: args.api_token.map(Arc::from),
        max_body_bytes: args.max_body_bytes,
        limits: Limits {
            request_timeout: Duration::from_millis(args.request_timeout_ms),
            max_concurrency: args.max_concurrency,
        },
    };
    let backfilling = backfill_client.map(|client| {
        tracing::info!(
            hooks = %args.github_backfill.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            every_s = args.github_backfill_every.as_secs(),
            "periodic GitHub backfill on"
        );
        tokio::spawn(backfill::periodic(
            state.ingest.clone(),
            client,
            args.github_backfill.clone(),
            args.github_backfill_every,
        ))
    });
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    // The sweeper stops when the server begins to: it writes nothing after the
    // last request has been answered.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sweeping = tokio::spawn(sweep::run_periodically(db.clone(), sweeper, stopped));
    let stop_on_signal = stop.clone();
    let served = axum::serve(listener, http::app(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = stop_on_signal.send(true);
        })
        .await;
    let _ = stop.send(true);
    let _ = sweeping.await;
    if let Some(task) = backfilling {
        task.abort();
    }
    served?;
    db.close().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
