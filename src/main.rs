use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ordersaga::config::{Cli, Command, ServeArgs, SimArgs};
use ordersaga::wxpay::sim::{SimConfig, WxPaySim};
use ordersaga::{app, cli, store};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let parsed = Cli::parse();
    // The operator CLI prints its results on stdout: its logs go to stderr, warnings only
    // unless RUST_LOG says otherwise.
    let operator = matches!(
        parsed.command,
        Some(Command::Token(_) | Command::Sagas(_) | Command::Alerts(_))
    );
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(if operator { "warn" } else { "info" }));
    if operator {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let done = match parsed.command {
        Some(Command::Token(args)) => return Ok(cli::finish(cli::token(args).await)),
        Some(Command::Sagas(args)) => return Ok(cli::finish(cli::sagas(args).await)),
        Some(Command::Alerts(args)) => return Ok(cli::finish(cli::alerts(args).await)),
        Some(Command::Migrate(args)) => {
            let db = app::open_db(&args.db.database_url, 2).await?;
            tracing::info!(database = %args.db.database_url, "migrations applied");
            db.close().await;
            Ok(())
        }
        Some(Command::Serve(args)) => serve(*args).await,
        Some(Command::WxpaySim(args)) => wxpay_sim(args).await,
        Some(Command::Bench(args)) => ordersaga::bench::run(args).await,
        None => serve(parsed.serve).await,
    };
    done.map(|()| ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let addr = listener.local_addr()?;
    let state = app::build_state(&args, addr).await?;
    tracing::info!(%addr, database = %args.db.database_url, cart = state.cart.backend_name(), "ordersaga listening");
    println!(
        "ordersaga is up: http://{addr}/  (database {})",
        args.db.database_url
    );
    if args.demo {
        for (user, password, _) in store::DEMO_LOGINS {
            println!("  demo login: {user} / {password}   http://{addr}/login");
        }
    }
    app::run(listener, state, shutdown_signal()).await
}

async fn wxpay_sim(args: SimArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let addr = listener.local_addr()?;
    let sim = WxPaySim::new(SimConfig {
        appid: args.appid,
        mch_id: args.mch_id,
        key: args.key,
        min_close_interval: args.min_close_interval,
        notify_time_scale: args.notify_scale,
    });
    println!(
        "WeChat Pay simulator is up: http://{addr}/  (POST /pay/unifiedorder, /pay/orderquery, /pay/closeorder, /sim/pay, /sim/faults)"
    );
    axum::serve(listener, sim.router())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: draining requests");
}
