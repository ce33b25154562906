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
    /// Evaluate offline, on a file of hourly observations.
    Eval {
        #[command(subcommand)]
        command: EvalCommand,
    },
    /// Print the GraphQL schema (SDL); the committed `schema.graphql` is this output.
    GraphqlSchema,
    /// GET a URL (default: this host's /health) and exit 0 on a 2xx, 1 otherwise: the
    /// container's HEALTHCHECK, where the image has no curl.
    Probe {
        #[arg(default_value = "http://127.0.0.1:8080/health")]
        url: String,
        /// Seconds before giving up.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
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

#[derive(Subcommand)]
enum EvalCommand {
    /// The learned forecasting models against the baselines, rolling origin: train on the
    /// first 70 % of the hours, test on the rest, re-fitting on the data before each origin.
    Forecast {
        /// The file.
        #[arg(long)]
        data: PathBuf,
        /// csv, nycflights13, epw, tmy3, tmy2 or ndbc; default: from the first lines.
        #[arg(long)]
        format: Option<isobar::observations::Format>,
        /// temperature, humidity, pressure or wind_speed.
        #[arg(long, default_value = "temperature")]
        quantity: String,
        #[arg(long, value_delimiter = ',', default_value = "1,3,6,12,24")]
        horizons: Vec<u8>,
        /// Only this station of the file.
        #[arg(long)]
        station: Option<String>,
        /// A CSV of station positions (`id`, `latitude`, `longitude`), for files that do
        /// not give them (the sun's elevation is a feature).
        #[arg(long)]
        positions: Option<PathBuf>,
        /// Hours between re-fits during the test.
        #[arg(long, default_value_t = 168)]
        refit_hours: usize,
        /// Fit on at most this many hours before the origin, as a live place keeps
        /// (`forecast.history_hours`); default: every hour before it.
        #[arg(long)]
        history_hours: Option<usize>,
        /// One JSON object instead of tables.
        #[arg(long)]
        json: bool,
        /// Leave the learned runs as the models give them, not snapped to the values the
        /// place reports (to measure what snapping does).
        #[arg(long)]
        no_grid: bool,
        /// Move the random draws of the forest, the network and the boosted trees by this
        /// much (0: those a live place uses), to see how much of a score is the draw.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
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
        Some(Command::Eval { command }) => return eval(command),
        Some(Command::GraphqlSchema) => {
            print!("{}", isobar::http::graphql::sdl());
            return ExitCode::SUCCESS;
        }
        Some(Command::Probe { url, timeout_secs }) => return probe(&url, timeout_secs),
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

/// `isobar probe [URL]`.
fn probe(url: &str, timeout_secs: u64) -> ExitCode {
    let result = actix_web::rt::System::new().block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(timeout_secs.max(1)))
            .build()
            .map_err(|e| e.to_string())?;
        let response = client.get(url).send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        if status.is_success() { Ok(()) } else { Err(format!("{url} answered {status}")) }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("unhealthy: {error}");
            ExitCode::FAILURE
        }
    }
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
/// A file of observations, its format and its rows; the error is printed.
fn observations_of(
    path: &std::path::Path,
    format: Option<isobar::observations::Format>,
) -> Option<(String, isobar::observations::Format, Vec<isobar::observations::Row>)> {
    use isobar::observations;
    let text = std::fs::read_to_string(path).map_err(|error| eprintln!("error: {}: {error}", path.display())).ok()?;
    let format = format.unwrap_or_else(|| observations::guess(&text));
    let rows =
        observations::read(&text, format).map_err(|error| eprintln!("error: {}: {error}", path.display())).ok()?;
    Some((text, format, rows))
}

fn eval(command: EvalCommand) -> ExitCode {
    use isobar::analytics::forecast::{Settings, evaluate};
    use isobar::domain::Quantity;
    let EvalCommand::Forecast {
        data,
        format,
        quantity,
        horizons,
        station,
        positions,
        refit_hours,
        history_hours,
        json,
        no_grid,
        seed,
    } = command;
    let Some(quantity) = Quantity::from_name(&quantity) else {
        eprintln!("error: unknown quantity {quantity:?}");
        return ExitCode::from(2);
    };
    if horizons.is_empty() || horizons.iter().any(|h| !(1..=24).contains(h)) {
        eprintln!("error: horizons are hours from 1 to 24");
        return ExitCode::from(2);
    }
    let Some((text, format, mut rows)) = observations_of(&data, format) else { return ExitCode::from(2) };
    let mut known = isobar::observations::positions(&text, format);
    if let Some(path) = positions {
        match std::fs::read_to_string(&path) {
            Ok(list) => known.extend(isobar::observations::positions(&list, isobar::observations::Format::Csv)),
            Err(error) => {
                eprintln!("error: {}: {error}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    if let Some(only) = &station {
        rows.retain(|r| &r.station == only);
    }
    let settings = Settings { grid: !no_grid, ..Settings::default() }.reseeded(seed);
    let refits = evaluate::Refits { every: refit_hours, history: history_hours };
    let results = evaluate::by_station(&rows, &known, quantity, &horizons, &settings, refits);
    if results.is_empty() {
        eprintln!("error: no observations");
        return ExitCode::from(2);
    }
    if json {
        let object: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|(station, result)| {
                let value = match result {
                    Ok(evaluation) => serde_json::to_value(evaluation).unwrap_or_default(),
                    Err(error) => serde_json::json!({ "error": error.to_string() }),
                };
                (station.clone(), value)
            })
            .collect();
        println!("{}", serde_json::json!({ "data": data.display().to_string(), "seed": seed, "stations": object }));
    } else {
        for (station, result) in &results {
            match result {
                Ok(evaluation) => println!("{station}\n{}", evaluation.table()),
                Err(error) => eprintln!("{station}: {error}"),
            }
        }
    }
    // Any station that could not be evaluated fails the run, in either output.
    if results.iter().any(|(_, r)| r.is_err()) { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn detect(path: &std::path::Path, format: Option<isobar::observations::Format>) -> ExitCode {
    use isobar::analytics::anomaly::{DetectorSettings, detect_offline};
    let Some((_, _, rows)) = observations_of(path, format) else { return ExitCode::from(2) };
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
