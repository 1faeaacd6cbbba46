//! Global options shared by every command, and the context built from them.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// DIVE's state directory (default: $XDG_DATA_HOME/dive, i.e. ~/.local/share/dive).
    #[arg(long, global = true, env = "DIVE_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "DIVE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// More output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less output: errors and results only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Assume "yes" to questions; never prompt.
    #[arg(
        short = 'y',
        long = "yes",
        visible_alias = "non-interactive",
        global = true
    )]
    pub yes: bool,
    /// Print what a mutating command would do and change nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Orchestration state store: a PostgreSQL URL (postgres://...) or a SQLite file path
    /// (default: $DIVE_HOME/state.db).
    #[arg(long, global = true, env = "DIVE_STATE_URL", value_name = "URL")]
    pub state_url: Option<String>,
}

/// What every command gets: resolved paths and the operator's preferences.
#[derive(Debug, Clone)]
pub struct Context {
    pub home: PathBuf,
    pub log_format: LogFormat,
    pub verbosity: i8,
    pub dry_run: bool,
    pub state_url: Option<String>,
    /// Standard input and standard error are terminals and `--yes` was not given: prompts and
    /// live progress are allowed.
    pub interactive: bool,
}

impl Context {
    pub fn from_args(args: &GlobalArgs) -> anyhow::Result<Context> {
        let home = match &args.home {
            Some(h) => absolute(h)?,
            None => default_home()?,
        };
        Ok(Context {
            home,
            log_format: args.log_format,
            verbosity: if args.quiet { -1 } else { args.verbose as i8 },
            dry_run: args.dry_run,
            state_url: args.state_url.clone(),
            interactive: !args.yes
                && std::io::stdin().is_terminal()
                && std::io::stderr().is_terminal(),
        })
    }
}

fn absolute(p: &std::path::Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

fn default_home() -> anyhow::Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("dive"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            crate::exit::bad_input("neither DIVE_HOME, --home, XDG_DATA_HOME nor HOME is set")
        })?;
    Ok(PathBuf::from(home).join(".local/share/dive"))
}

/// Logs go to stderr: human text, or JSON lines with `--log-format json`.
pub fn init_logging(ctx: &Context) {
    let level = match ctx.verbosity {
        i8::MIN..=-1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("DIVE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match ctx.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
