//! The options the single-daemon bench and `lwcfs-bench cluster` share.

use clap::Args;
use std::path::PathBuf;

/// Which daemons a run measures.
#[derive(Args, Debug)]
pub struct Daemons {
    /// Daemon under test (default: the workspace's lwcfs next to this binary).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Extra argument for the daemon, after the bench's own flags (repeatable).
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Name of the daemon in the report (default: the binary's file name).
    #[arg(long)]
    pub label: Option<String>,
    /// A second daemon, run in turn on identical workloads and printed side by side.
    #[arg(long, value_name = "PATH")]
    pub vs: Option<PathBuf>,
    /// Extra argument for the --vs daemon (repeatable).
    #[arg(long = "vs-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub vs_args: Vec<String>,
    /// Name of the --vs daemon in the report.
    #[arg(long)]
    pub vs_label: Option<String>,
}

/// How runs are made and reported.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Wait after the workload before stopping the daemons (default: --pace-ms).
    #[arg(long)]
    pub settle_ms: Option<u64>,
    /// Seconds a daemon has to exit after SIGTERM before the run is invalid.
    #[arg(long, default_value_t = 10)]
    pub stop_timeout: u64,
    /// Size of each ext4 image holding a database directory.
    #[arg(long, default_value_t = 256)]
    pub image_mib: u64,
    /// Copy every run's daemon logs into this directory.
    #[arg(long, value_name = "DIR")]
    pub logs: Option<PathBuf>,
    /// Where scratch directories and images go.
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// Which daemons answer `<binary> stats --json` (commit counters; in a cluster also how
    /// "synced" is judged, else by C pmxcfs's log): auto (binaries named lwcfs*), on, off.
    #[arg(long, default_value = "auto")]
    pub stats: String,
    /// Print the report as JSON on stdout instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// Print a saved JSON report (--json-out) as Markdown tables and exit.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// List the workloads and exit.
    #[arg(long)]
    pub list: bool,
    /// No progress line.
    #[arg(short, long)]
    pub quiet: bool,
}
