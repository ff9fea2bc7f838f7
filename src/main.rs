use std::process::ExitCode;

use clap::Parser;
use lwcfs::cli::{Cli, Command};
use lwcfs::{control, logging, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Stats { json, paths }) => {
            match control::request(&paths.control_socket(), "stats") {
                Ok(line) if json => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Ok(line) => {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                    if let Some(obj) = v.as_object() {
                        for (k, v) in obj {
                            println!("{k:>14}: {v}");
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("lwcfs stats: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Flush { paths }) => {
            match control::request(&paths.control_socket(), "flush") {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("lwcfs flush: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            logging::init(cli.daemon.debug);
            match run::run(cli.daemon) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("lwcfs: {e}");
                    ExitCode::from(255)
                }
            }
        }
    }
}
