//! The `herald` command: parse the CLI, load the config, set up logging and metrics, bind the
//! listeners, then hand over to `daemon::run`. No logic of its own (STYLE).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: Herald makes many small, short-lived allocations
/// per event and keeps many small ones per subscription; mimalloc is faster for the first and,
/// without glibc's per-allocation header and arena fragmentation, keeps a million subscriptions
/// in far less resident memory. Called through `herald::alloc` (see there why).
#[global_allocator]
static GLOBAL: herald::alloc::Mimalloc = herald::alloc::Mimalloc;
use herald::config::Config;
use herald::ingest::server::Listeners;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Webhook dispatch daemon for content-management events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (built-in defaults when no config file is given).
    Serve {
        /// TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and print every error with its key.
    CheckConfig {
        /// TOML configuration file.
        file: PathBuf,
    },
}

fn load(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    let result = match path {
        Some(p) => Config::load(p),
        None => Ok(Config::defaults()),
    };
    result.map_err(|errs| {
        for e in &errs.0 {
            eprintln!("herald: config: {e}");
        }
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    // No transparent huge pages for this process. mimalloc asks for them on its arenas, and
    // then every fresh 64 KiB allocator page, after memory went back to the OS, faults in and
    // zeroes a whole 2 MiB: at fan-out 10 that zeroing was 4 % of Herald's CPU, most of it in
    // the journal thread as memtables grow and are flushed. Without THP the same run spends
    // 0.4 % there. Best effort: a kernel without the flag just keeps its default.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match load(Some(&file)) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Serve { config } => {
            let config = match load(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            herald::telemetry::logging::init(config.log.format, &config.log.level);
            let metrics = match herald::telemetry::metrics::install() {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("herald: cannot set up metrics: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.server.worker_threads)
                .thread_name("herald-worker")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("herald: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(async {
                let listeners = Listeners::bind(&config.server)?;
                herald::daemon::run(
                    config,
                    listeners,
                    metrics,
                    herald::daemon::shutdown_signal(),
                )
                .await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "herald stopped on an error");
                    eprintln!("herald: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
