//! `lwcfs-probe OP PATH [ARG]`: run one filesystem operation and print `ok\n<payload>` or
//! `err <errno>`. The FUSE tests run it inside a daemon's namespaces as an unprivileged user.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    match lwcfs_compat_tests::probe::run(&args) {
        Ok(r) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(&lwcfs_compat_tests::probe::encode(r))
                .is_err()
            {
                return ExitCode::from(3);
            }
            ExitCode::SUCCESS
        }
        Err(usage) => {
            eprintln!("{usage}");
            ExitCode::from(2)
        }
    }
}
