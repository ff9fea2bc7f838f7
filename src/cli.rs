//! The command line: C's flags (`-f`, `-l`, `-d`) plus lwcfs's own, and the control commands.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "lwcfs",
    version,
    about = "Proxmox cluster filesystem (pmxcfs), the low-write edition",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

#[derive(Args, Debug, Clone)]
pub struct Paths {
    /// The database (C's fixed path by default).
    #[arg(long, default_value = "/var/lib/pve-cluster/config.db")]
    pub db: PathBuf,
    /// Directory for the control socket (default: next to the database).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
}

impl Paths {
    pub fn db_dir(&self) -> PathBuf {
        match self.db.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The control socket: `<run-dir>/lwcfs.sock`, or `.lwcfs.sock` beside the database.
    pub fn control_socket(&self) -> PathBuf {
        match &self.run_dir {
            Some(d) => d.join("lwcfs.sock"),
            None => self.db_dir().join(".lwcfs.sock"),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct DaemonArgs {
    /// Turn on debug messages.
    #[arg(short, long)]
    pub debug: bool,
    /// Do not daemonize.
    #[arg(short, long)]
    pub foreground: bool,
    /// Force local mode (ignore corosync.conf, force quorum).
    #[arg(short, long)]
    pub local: bool,
    #[command(flatten)]
    pub paths: Paths,
    /// Mount point.
    #[arg(long, default_value = "/etc/pve")]
    pub mount: PathBuf,
    /// How long changes may wait in RAM before they are committed together (at most 1 s),
    /// e.g. `250ms`, `1s`.
    #[arg(long, default_value = "250ms", value_parser = parse_commit_delay)]
    pub commit_delay: Duration,
    /// A file held open for writing longer than this is committed anyway.
    #[arg(long, default_value = "5s", value_parser = parse_duration, hide = true)]
    pub hold_bound: Duration,
    /// Seconds after which an unchanged lock under priv/lock may be removed (C: 120).
    #[arg(long, default_value_t = 120, hide = true)]
    pub lock_timeout: u32,
    /// Seconds between the cluster's verify requests (C: 3600).
    #[arg(long, default_value_t = 3600, hide = true)]
    pub verify_interval: u32,
    /// Directory of C's restart flag.
    #[arg(long, default_value = "/run/pve-cluster", hide = true)]
    pub pve_run_dir: PathBuf,
    /// The pid file (C's path by default).
    #[arg(long, default_value = "/run/pve-cluster.pid", hide = true)]
    pub pid_file: PathBuf,
    /// How long a rewrite of nodes/<node>/lrm_status that changes nothing but its timestamp
    /// may stay off disk (at most 1 h; 0: never).
    #[arg(long, default_value = "300s", value_parser = parse_defer_bound, hide = true)]
    pub defer_bound: Duration,
    /// FUSE worker threads.
    #[arg(long, default_value_t = 4, hide = true)]
    pub threads: usize,
    /// Where the RRD files go (`pve-{node,vm,storage}-9.0/`; C's fixed path by default).
    #[arg(long, default_value = crate::rrd::DEFAULT_BASE_DIR, hide = true)]
    pub rrd_dir: PathBuf,
    /// rrdcached's socket (C's fixed path by default); RRD files are written directly when
    /// nothing listens there.
    #[arg(long, default_value = crate::rrd::DEFAULT_RRDCACHED_SOCKET, hide = true)]
    pub rrdcached_socket: PathBuf,
}

impl DaemonArgs {
    /// The RRD settings from `--rrd-dir` and `--rrdcached-socket`.
    pub fn rrd_config(&self) -> crate::rrd::RrdConfig {
        crate::rrd::RrdConfig {
            base_dir: self.rrd_dir.clone(),
            rrdcached: Some(self.rrdcached_socket.clone()),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the commit counters of a running daemon.
    Stats {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        paths: Paths,
    },
    /// Commit everything now; return when it is on stable storage.
    Flush {
        #[command(flatten)]
        paths: Paths,
    },
}

/// `250ms`, `2s`, `1.5s`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (try 250ms)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("'{s}' is not a duration (try 250ms)"));
    }
    Duration::try_from_secs_f64(v * scale).map_err(|_| format!("'{s}' is too long a duration"))
}

fn parse_commit_delay(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > Duration::from_secs(1) {
        return Err(format!("commit delay {s} is over the 1 s limit"));
    }
    Ok(d)
}

fn parse_defer_bound(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > crate::defer::MAX_BOUND {
        return Err(format!("defer bound {s} is over the 1 h limit"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(
            parse_duration("1e30").is_err(),
            "too long: an error, not a panic"
        );
        assert!(parse_commit_delay("2s").is_err());
        assert_eq!(parse_defer_bound("0").unwrap(), Duration::ZERO);
        assert!(parse_defer_bound("2h").is_err() && parse_defer_bound("3601").is_err());
    }

    #[test]
    fn c_flags_parse() {
        let cli = Cli::try_parse_from(["lwcfs", "-f", "-l", "-d"]).unwrap();
        assert!(cli.daemon.foreground && cli.daemon.local && cli.daemon.debug);
        assert_eq!(cli.daemon.defer_bound, crate::defer::DEFAULT_BOUND);
        assert!(Cli::try_parse_from(["lwcfs", "extra"]).is_err());
        assert_eq!(cli.daemon.rrd_config(), crate::rrd::RrdConfig::default());
        let cli = Cli::try_parse_from(["lwcfs", "-l", "--rrd-dir", "/t/db"]).unwrap();
        assert_eq!(cli.daemon.rrd_config().base_dir, PathBuf::from("/t/db"));
        let cli = Cli::try_parse_from(["lwcfs", "stats", "--json", "--db", "/x/y.db"]).unwrap();
        match cli.command {
            Some(Command::Stats { json, paths }) => {
                assert!(json);
                assert_eq!(paths.control_socket(), PathBuf::from("/x/.lwcfs.sock"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
