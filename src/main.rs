//! The `borg` binary: parses the command line, sets up diagnostics, calls the
//! library and maps the outcome to an exit code (0 ok, 1 failed, 2 bad input,
//! 130 interrupted). The hidden `__reaper` mode runs before anything else, then the
//! helpers' credential scrub (and the hook's and the MCP server's fast paths).

use clap::Parser;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(borg::supervise::reaper::SUBCOMMAND) {
        borg::supervise::reaper::main(&args[2..]);
    }
    // The helpers claude starts inherit its whole environment, credentials included:
    // drop them before any thread exists. The hook answers without the async runtime.
    match args.get(1).map(String::as_str) {
        Some("hook") => {
            borg::coord::env::scrub_credentials();
            std::process::exit(borg::cli::helpers::hook_main(&args[2..]));
        }
        // claude starts `borg mcp` with exactly that argv: the lean path, as for the hook.
        Some("mcp") if args.len() == 2 => {
            borg::coord::env::scrub_credentials();
            // Diagnostics only when asked for: the log filter costs every child's start.
            if std::env::var_os("BORG_LOG").is_some() {
                init_logging(borg::cli::LogFormat::Text);
            }
            std::process::exit(borg::cli::helpers::mcp_main());
        }
        Some("mcp") => borg::coord::env::scrub_credentials(),
        _ => {}
    }
    let cli = borg::cli::Cli::parse();
    init_logging(cli.global.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("borg: cannot start the async runtime: {e}");
            std::process::exit(borg::error::EXIT_FAILED);
        }
    };
    let code = rt.block_on(borg::cli::dispatch(cli)).unwrap_or_else(|e| {
        eprintln!("borg: error: {e:#}");
        borg::error::exit_code(&e)
    });
    // Every child was awaited inside dispatch; the reaper, if one was started, ends
    // with nothing left to kill, and is waited for.
    borg::supervise::reaper::shutdown();
    drop(rt);
    std::process::exit(code);
}

/// Diagnostics on stderr, filtered by BORG_LOG (env-filter syntax; default warn).
fn init_logging(format: borg::cli::LogFormat) {
    // BORG_LOG may also come from ./.env, like every other setting (the environment
    // wins), read by the same reader with the same rules. A .env the settings refuse
    // gives no BORG_LOG here: loading the settings reports it (exit 2).
    let spec = std::env::var("BORG_LOG").ok().or_else(|| {
        borg::input::config::Settings::dotenv_var(std::path::Path::new(".env"), "BORG_LOG")
            .ok()
            .flatten()
    });
    let filter = spec
        .and_then(|s| tracing_subscriber::EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        borg::cli::LogFormat::Json => b.json().try_init(),
        borg::cli::LogFormat::Text => b
            .with_ansi(std::env::var_os("NO_COLOR").is_none())
            .try_init(),
    };
}
