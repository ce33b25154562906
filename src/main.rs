//! The `isobar` command: `serve` (the default), `check-config`, `keys` and `detect`.

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
    /// Feed a file of hourly observations through the anomaly detectors, in time order as
    /// if live; print one JSON line per flagged reading.
    Detect {
        /// The file.
        #[arg(long)]
        data: PathBuf,
        /// csv (a `time` column and quantity columns), nycflights13, epw, tmy3, tmy2 or ndbc;
        /// default: from the first lines.
        #[arg(long)]
        format: Option<isobar::observations::Format>,
    },
    /// Manage API keys (kept in Redis when redis.url is set, else under persist.data_dir).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (once: only its hash is kept).
    Create {
        #[arg(long)]
        name: String,
        /// read, write or admin (each includes the ones before it).
        #[arg(long)]
        scope: isobar::auth::Scope,
        /// Source names a write key may write readings as (default: station).
        #[arg(long, value_delimiter = ',')]
        sources: Vec<String>,
        /// Its own requests per second (default: auth.key_rate_per_sec).
        #[arg(long)]
        rate: Option<u32>,
    },
    /// List the keys (names, scopes, sources; never the keys).
    List,
    /// Revoke a key: every instance refuses it within a second.
    Revoke { name: String },
}

#[derive(Args, Default)]
struct ConfigArgs {
    /// Profile: config/NAME.toml layered over config/default.toml (built in: demo, production).
    #[arg(long, global = true)]
    profile: Option<String>,
    /// Extra TOML file layered on top.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (check_only, args) = match cli.command {
        Some(Command::CheckConfig(args)) => (true, args),
        Some(Command::Serve(args)) => (false, args),
        Some(Command::Keys { command, config }) => return keys(command, &config),
        Some(Command::Detect { data, format }) => return detect(&data, format),
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

/// `isobar keys …`: talks to the key store directly (a running instance picks changes up
/// within a second).
fn keys(command: KeysCommand, args: &ConfigArgs) -> ExitCode {
    use isobar::auth::{self, KeyRecord, KeyStore};
    let settings = match Settings::load(args.profile.as_deref(), args.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let result: Result<(), auth::AuthError> = actix_web::rt::System::new().block_on(async move {
        let store = KeyStore::from_settings(&settings, None)?;
        match command {
            KeysCommand::Create { name, scope, sources, rate } => {
                auth::check_name(&name)?;
                let key = auth::generate()?;
                let record = KeyRecord {
                    name: name.clone(),
                    sha256: auth::hash(&key),
                    scope,
                    sources,
                    rate_per_sec: rate,
                    created_at: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                };
                store.create(&record).await?;
                eprintln!(
                    "created key {name:?} ({}) in {}; it is shown once:",
                    serde_json::to_string(&scope).unwrap_or_default(),
                    store.describe()
                );
                println!("{key}");
            }
            KeysCommand::List => {
                for record in store.all().await? {
                    let view = serde_json::json!({
                        "name": record.name, "scope": record.scope, "sources": record.writable_sources(),
                        "rate_per_sec": record.rate_per_sec, "created_at": record.created_at,
                    });
                    println!("{view}");
                }
            }
            KeysCommand::Revoke { name } => {
                if !store.revoke(&name).await? {
                    return Err(auth::AuthError::Invalid(format!("no key named {name:?}")));
                }
                eprintln!("revoked key {name:?}");
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `isobar detect`: the anomaly detectors over a file, offline.
fn detect(path: &std::path::Path, format: Option<isobar::observations::Format>) -> ExitCode {
    use isobar::analytics::anomaly::{DetectorSettings, detect_offline};
    use isobar::observations;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: {}: {error}", path.display());
            return ExitCode::from(2);
        }
    };
    let format = format.unwrap_or_else(|| observations::guess(&text));
    let rows = match observations::read(&text, format) {
        Ok(rows) => rows,
        Err(error) => {
            eprintln!("error: {}: {error}", path.display());
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for flag in detect_offline(&rows, &DetectorSettings::default()) {
        let line = serde_json::json!({
            "time": flag.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "station": flag.station, "quantity": flag.quantity, "kind": flag.kind,
            "severity": flag.severity, "value": flag.value,
        });
        if std::io::Write::write_all(&mut out, format!("{line}\n").as_bytes()).is_err() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
