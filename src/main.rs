//! The `isobar` command: `serve` (the default) and `check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use isobar::config::Settings;
use isobar::startup::Application;
use isobar::telemetry;

#[derive(Parser)]
#[command(name = "isobar", version, about = "Self-hosted real-time weather data service")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve(ConfigArgs),
    /// Print the merged settings and exit; non-zero with a message naming the key on error.
    CheckConfig(ConfigArgs),
}

#[derive(Args, Default)]
struct ConfigArgs {
    /// Profile: config/NAME.toml layered over config/default.toml (built in: demo, production).
    #[arg(long)]
    profile: Option<String>,
    /// Extra TOML file layered on top.
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (check_only, args) = match cli.command {
        Some(Command::CheckConfig(args)) => (true, args),
        Some(Command::Serve(args)) => (false, args),
        None => (false, ConfigArgs::default()),
    };
    let settings = match Settings::load(args.profile.as_deref(), args.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        match serde_json::to_string_pretty(&settings.masked()) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    telemetry::init_tracing(&settings.log);
    telemetry::log_panics();
    // With the `failpoints` feature (tests only), FAILPOINTS configures fault injection.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    actix_web::rt::System::new().block_on(async move {
        let result = match Application::build(settings).await {
            Ok(app) => app.run_until_stopped().await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = result {
            eprintln!("error: {error}");
            // Exit here, inside the runtime: actors already started must not be torn down
            // after it is gone.
            std::process::exit(1);
        }
    });
    ExitCode::SUCCESS
}
