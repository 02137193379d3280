//! `shop`: one binary for every Shop service and the tools around them.

mod api;
mod bench;
mod load;
mod serve;
mod tree;

use clap::{Parser, Subcommand};
use shop_config::{LogFormat, Settings};

#[derive(Parser)]
#[command(
    name = "shop",
    version,
    about = "Shop: an e-commerce backend of supervised actors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run services: one process per service in production, or several (`all`) in one.
    Serve {
        /// user, … or all
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Create every service's database if missing and apply its migrations.
    Migrate,
    /// Load the demo catalogue (idempotent).
    Seed,
    /// Print the effective settings (secrets redacted).
    Config {
        /// Print the table of variables and defaults docs/operations.md shows instead.
        #[arg(long)]
        markdown: bool,
    },
    /// Print a service's supervision tree, like pstree.
    Tree(tree::TreeArgs),
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Load tests, run against a system started by dev/up.
    Load {
        #[command(subcommand)]
        command: load::LoadCommand,
    },
    /// Benchmarks, run against a system started by dev/up; alone, every one of them as one
    /// markdown table of figures and their baselines.
    Bench {
        #[command(subcommand)]
        command: Option<bench::BenchCommand>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an admin, or make an existing account admin and set its password.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long, env = "SHOP_NEW_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            // `shop config` shows what was read as well as what is wrong with it.
            match cli.command {
                Command::Config { markdown: false } => {
                    print!("{}", shop_config::render_entries(&error.entries));
                }
                Command::Config { markdown: true } => {
                    print!("{}", shop_config::render_markdown(&error.entries));
                }
                _ => {}
            }
            eprintln!("shop: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("shop: starting the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Only the services are traced; the tools (bench, load, tree) are their clients.
    let traced_as = match &cli.command {
        Command::Serve { services } => Some(services.join("+")),
        _ => None,
    };
    let telemetry = {
        let _entered = runtime.enter();
        init_logging(&settings, traced_as.as_deref())
    };
    let outcome = runtime.block_on(run(cli.command, settings));
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shop: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve { services } => serve::run(&settings, &services).await,
        Command::Migrate => {
            // The cart's store (MongoDB) needs no migration.
            shop_user::migrate(&settings).await?;
            shop_product::migrate(&settings).await?;
            shop_order::migrate(&settings).await?;
            shop_payment::migrate(&settings).await?;
            shop_notification::migrate(&settings).await?;
            println!(
                "migrated: {}",
                [
                    shop_user::DATABASE,
                    shop_product::DATABASE,
                    shop_order::DATABASE,
                    shop_payment::DATABASE,
                    shop_notification::DATABASE,
                ]
                .join(", ")
            );
            Ok(())
        }
        Command::Seed => {
            let seeded = shop_product::seed(&settings).await?;
            println!(
                "seeded: {} new categories, {} new products",
                seeded.categories, seeded.products
            );
            Ok(())
        }
        Command::Config { markdown } => {
            if markdown {
                print!("{}", settings.render_markdown());
            } else {
                print!("{}", settings.render());
            }
            Ok(())
        }
        Command::Tree(args) => tree::run(&settings, args).await,
        Command::User {
            command: UserCommand::CreateAdmin { email, password },
        } => {
            let id = shop_user::create_admin(&settings, &email, &password).await?;
            println!("admin {email} is {id}");
            Ok(())
        }
        Command::Bench { command } => bench::run(&settings, command).await,
        Command::Load { command } => load::run(&settings, command).await,
    }
}

/// Log lines to stderr, filtered by `SHOP_LOG`; and, for a service with a trace store
/// configured, spans to the store. The two have their own filters: quieting the log does not
/// thin the traces.
fn init_logging(settings: &Settings, service: Option<&str>) -> Option<shop_telemetry::Telemetry> {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    // ractor opens an INFO span for each actor's whole life: ~400 bytes held by every one of a
    // hundred thousand carts, for nothing we read. Unless the filter says otherwise, ractor is
    // heard from at warn and above, and those spans are never made.
    let mut directives = settings.log_filter.clone();
    if !directives.contains("ractor") {
        directives.push_str(",ractor=warn");
    }
    // Spans made for the trace store alone stay out of log lines (see shop_telemetry).
    if !directives.contains(shop_telemetry::SPANS_ONLY) {
        directives.push_str(&format!(",{}=off", shop_telemetry::SPANS_ONLY));
    }
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|error| {
        eprintln!("shop: SHOP_LOG is not a valid filter ({error}); using info");
        EnvFilter::new("info")
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let log = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(filter);
    let telemetry = match (service, &settings.tracing.endpoint) {
        (Some(service), Some(endpoint)) => {
            match shop_telemetry::Telemetry::start(
                endpoint.as_str(),
                settings.tracing.sample_ratio.0,
                service,
            ) {
                Ok(telemetry) => Some(telemetry),
                Err(error) => {
                    eprintln!("shop: tracing is off: {error}");
                    None
                }
            }
        }
        _ => None,
    };
    // Our own spans (every crate of ours is `shop…`), and of our log lines the warnings and
    // errors, as events of the span they happen in: the rest of the log stays the log's.
    let traces = telemetry.as_ref().map(|telemetry| {
        use tracing_subscriber::filter::FilterExt;
        telemetry
            .layer()
            .with_filter(Targets::new().with_target("shop", LevelFilter::INFO).and(
                tracing_subscriber::filter::filter_fn(|metadata| {
                    metadata.is_span() || *metadata.level() <= tracing::Level::WARN
                }),
            ))
    });
    // PostgreSQL statements, from the events sqlx reports after each; asked for only in a
    // trace being kept, so that sqlx does not write up every statement of the others.
    let statements = telemetry.as_ref().map(|_| {
        use tracing_subscriber::filter::FilterExt;
        shop_telemetry::PostgresStatements.with_filter(
            Targets::new()
                .with_target("sqlx::query", LevelFilter::DEBUG)
                .and(tracing_subscriber::filter::dynamic_filter_fn(|_, _| {
                    shop_telemetry::in_recorded_trace()
                })),
        )
    });
    tracing_subscriber::registry()
        .with(log)
        .with(traces)
        .with(statements)
        .init();
    telemetry
}
