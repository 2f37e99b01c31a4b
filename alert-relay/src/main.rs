//! `alert-relay`: parses the command line and runs one subcommand.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use alert_relay::cli::{self, Cli, Command, ServeArgs};
use alert_relay::config::Config;
use alert_relay::domain::Timestamp;
use alert_relay::server::{self, Relay};
use alert_relay::store::PostgresStore;
use anyhow::Context;
use clap::Parser;
use exporter::telemetry;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("alert-relay: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<String> = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)).map(|()| String::new()),
        Command::CheckConfig { file, probe } => Config::load(&file)
            .map_err(anyhow::Error::from)
            .and_then(|config| {
                let summary = cli::check_config(&file, &config);
                if !probe {
                    return Ok(summary);
                }
                print!("{summary}");
                runtime
                    .block_on(cli::probe_targets(&config))
                    .map_err(anyhow::Error::msg)
            }),
        Command::Simulate { config, labels, at } => Config::load(&config)
            .map_err(anyhow::Error::from)
            .and_then(|c| {
                let at = match at.as_deref() {
                    Some(text) => Timestamp::parse(text).map_err(anyhow::Error::msg)?,
                    None => Timestamp::now(),
                };
                Ok(cli::simulate(
                    &c,
                    &cli::parse_labels(&labels).map_err(anyhow::Error::msg)?,
                    at,
                ))
            }),
        Command::TestNotify { config, target } => Config::load(&config)
            .map_err(anyhow::Error::from)
            .and_then(|c| {
                runtime
                    .block_on(cli::test_notify(&c, &target))
                    .map_err(anyhow::Error::msg)
            }),
        Command::Incidents { relay, json } => runtime
            .block_on(alert_relay::oncall::incidents(&relay, json))
            .map_err(anyhow::Error::msg),
        Command::Ack { id, by, relay } => runtime
            .block_on(alert_relay::oncall::ack(&relay, id, &by))
            .map_err(anyhow::Error::msg),
        Command::Oncall {
            config: Some(config),
            at,
            schedule,
            ..
        } => Config::load(&config)
            .map_err(anyhow::Error::from)
            .and_then(|c| {
                cli::on_call_from_config(&c, at.as_deref(), schedule.as_deref())
                    .map_err(anyhow::Error::msg)
            }),
        Command::Oncall {
            config: None,
            at,
            schedule,
            json,
            relay,
        } => runtime
            .block_on(alert_relay::oncall::on_call(
                &relay,
                at.as_deref(),
                schedule.as_deref(),
                json,
            ))
            .map_err(anyhow::Error::msg),
        Command::Override { action } => runtime
            .block_on(async {
                use cli::OverrideAction;
                match action {
                    OverrideAction::Add {
                        schedule,
                        person,
                        replaces,
                        from,
                        until,
                        by,
                        relay,
                    } => {
                        alert_relay::oncall::override_add(
                            &relay,
                            &schedule,
                            &person,
                            replaces.as_deref(),
                            from.as_deref(),
                            &until,
                            &by,
                        )
                        .await
                    }
                    OverrideAction::List { json, relay } => {
                        alert_relay::oncall::override_list(&relay, json).await
                    }
                    OverrideAction::Remove { id, relay } => {
                        alert_relay::oncall::override_remove(&relay, id).await
                    }
                }
            })
            .map_err(anyhow::Error::msg),
        Command::Healthcheck { listen } => runtime
            .block_on(telemetry::check_health(listen))
            .map(|()| String::new()),
    };
    match result {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Validate before anything starts: a bad file never half-runs.
    let config = Config::load(&args.config)?;
    let database = args.database().map_err(anyhow::Error::msg)?;
    if let Some(dir) = args.runbooks.as_ref().filter(|d| !d.is_dir()) {
        anyhow::bail!(
            "--runbooks {}: not a directory (point it at the bundle's docs/runbooks)",
            dir.display()
        );
    }
    let guard = telemetry::init("alert-relay", args.log_format, args.loki_url.as_ref())?;
    let result = async {
        let builder = Relay::builder(config, &args.data_dir).config_path(&args.config);
        let relay = match &database {
            Some(url) => {
                let store = PostgresStore::open(url)?;
                tracing::info!(database = %url, "the state is in PostgreSQL");
                builder.store(Arc::new(store)).build()?
            }
            None => builder
                .build()
                .with_context(|| format!("cannot open the state in {}", args.data_dir.display()))?,
        };
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let options = server::Options {
            runbooks: args.runbooks.clone(),
        };
        server::run_with(listener, relay, options, telemetry::shutdown_signal()).await
    }
    .await;
    if let Err(error) = &result {
        tracing::error!(error = %format!("{error:#}"), "alert-relay failed");
    }
    guard.shutdown(Duration::from_secs(5)).await;
    result
}
