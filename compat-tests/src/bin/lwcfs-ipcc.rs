//! `lwcfs-ipcc`: a libqb client of `pve2`, run by the IPC tests inside a daemon's namespaces
//! (the `@pve2` socket is per network namespace), as root or as an unprivileged user.
//!
//! - `lwcfs-ipcc script`: connect, print `pid <pid>`, then run one command per stdin line
//!   (see `lwcfs_compat_tests::ipcc::script`) and print one result line each. A refused
//!   connection prints `connect-failed <errno>`.
//! - `lwcfs-ipcc hammer <seconds> <config path>`: call a mix of operations as fast as possible
//!   and print `calls <n> errors <n>` (and the first error).

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lwcfs_compat_tests::ipcc::{script, Client};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("script") => run_script(),
        Some("hammer") if args.len() == 3 => {
            let secs: u64 = args[1].parse().unwrap_or(1);
            hammer(Duration::from_secs(secs), &args[2])
        }
        _ => {
            eprintln!("usage: lwcfs-ipcc script | hammer <seconds> <config path>");
            ExitCode::from(2)
        }
    }
}

fn run_script() -> ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "pid {}", std::process::id());
    let mut client = match Client::connect("pve2") {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "connect-failed {}", e.raw_os_error().unwrap_or(0));
            return ExitCode::SUCCESS;
        }
    };
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let cmd = match script::parse_command(&line) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("bad command {line:?}: {e}");
                return ExitCode::from(2);
            }
        };
        let result = match cmd {
            script::Command::Call(msg) => script::result_line(client.call_raw(&msg)),
            script::Command::Send(msg) => match client.send_only(&msg) {
                Ok(()) => "sent".to_owned(),
                Err(e) => format!("fail {}", e.raw_os_error().unwrap_or(0)),
            },
            script::Command::Reconnect => {
                drop(client);
                client = match Client::connect("pve2") {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = writeln!(out, "connect-failed {}", e.raw_os_error().unwrap_or(0));
                        return ExitCode::SUCCESS;
                    }
                };
                "connected".to_owned()
            }
            script::Command::Exit => {
                let _ = out.flush();
                // Leave without disconnecting: the daemon sees the client vanish.
                std::process::exit(0);
            }
        };
        let _ = writeln!(out, "{result}");
        let _ = out.flush();
    }
    ExitCode::SUCCESS
}

fn hammer(time: Duration, path: &str) -> ExitCode {
    let mut client = match Client::connect("pve2") {
        Ok(c) => c,
        Err(e) => {
            println!("connect-failed {}", e.raw_os_error().unwrap_or(0));
            return ExitCode::FAILURE;
        }
    };
    let mix = script::hammer_mix(path);
    let (mut calls, mut errors) = (0u64, 0u64);
    let mut first = None;
    let end = Instant::now() + time;
    while Instant::now() < end {
        for (msg, want_ok) in &mix {
            calls += 1;
            match client.call_raw(msg) {
                Ok(r) if (r.error == 0) == *want_ok => {}
                Ok(r) => {
                    errors += 1;
                    first.get_or_insert_with(|| format!("op {} error {}", r.id, r.error));
                }
                Err(e) => {
                    errors += 1;
                    first.get_or_insert_with(|| format!("transport {e}"));
                }
            }
        }
    }
    println!(
        "calls {calls} errors {errors}{}",
        first.map(|f| format!(" first {f}")).unwrap_or_default()
    );
    ExitCode::SUCCESS
}
