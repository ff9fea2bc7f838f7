//! A workload as data: the file operations it performs, relative to the mount point, and when.
//!
//! Plans are pure values so that they can be inspected and tested without a daemon; `exec` runs
//! them against a directory (the FUSE mount in the sandbox, a temporary directory in tests).

use crate::content::Content;

/// The mtime an `utime` step sets (atime is always 0, as Perl's `utime(0, $t)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mtime {
    /// The current wall-clock second: a lock refresh.
    Now,
    /// Zero: pmxcfs's "unlock request".
    Zero,
}

/// One file operation. Paths are relative to the mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `mkdir -p`; for preparation only.
    MkdirAll(String),
    /// `mkdir(2)`, mode 0755.
    Mkdir(String),
    /// `rmdir(2)`.
    Rmdir(String),
    /// Create or truncate, one `write(2)` of everything, close (preparation, `echo >`).
    Overwrite { path: String, content: Content },
    /// `echo >>`: open with `O_APPEND`, one write, close.
    Append { path: String, data: Vec<u8> },
    /// PVE's `file_set_contents`: open `<target>.tmp.<pid>` with `O_CREAT|O_EXCL` (0644), one
    /// `write(2)` of the whole content (none when empty), close, `rename(2)` over the target.
    SetContents {
        target: String,
        pid: u32,
        content: Content,
    },
    /// `touch`: open with `O_WRONLY|O_CREAT|O_NONBLOCK|O_NOCTTY`, `futimens(now)`, close.
    Touch(String),
    /// `dd of=<path> bs=<bs> count=<count>`: open with `O_CREAT|O_TRUNC`, `count` writes of `bs`
    /// bytes of noise, close.
    Dd {
        path: String,
        bs: usize,
        count: usize,
        seed: u64,
    },
    /// `rename(2)`.
    Rename { from: String, to: String },
    /// `unlink(2)`.
    Unlink(String),
    /// `utimensat(2)` with atime 0.
    Utime { path: String, mtime: Mtime },
    /// `lstat(2)`.
    Lstat(String),
    /// `stat(2)`.
    Stat(String),
    /// open, read to the end, close.
    Read(String),
}

impl Step {
    /// Whether the step changes the tree (a mutation the daemon may have to persist).
    pub fn mutates(&self) -> bool {
        !matches!(self, Step::Lstat(_) | Step::Stat(_) | Step::Read(_))
    }

    /// Bytes the step hands to `write(2)`: the logical bytes of the workload.
    pub fn logical_bytes(&self) -> u64 {
        match self {
            Step::Overwrite { content, .. } | Step::SetContents { content, .. } => {
                content.len_hint() as u64
            }
            Step::Append { data, .. } => data.len() as u64,
            Step::Dd { bs, count, .. } => (bs * count) as u64,
            _ => 0,
        }
    }

    /// The FUSE-level mutations C pmxcfs would apply (one SQLite transaction each in C): used to
    /// check the HA minute models against workload.md §4.
    pub fn c_mutations(&self) -> u64 {
        match self {
            Step::Mkdir(_) | Step::Rmdir(_) | Step::Rename { .. } | Step::Unlink(_) => 1,
            Step::Utime {
                mtime: Mtime::Now, ..
            } => 1,
            Step::Utime {
                mtime: Mtime::Zero, ..
            } => 0,
            Step::SetContents { content, .. } => {
                if content.len_hint() == 0 {
                    2
                } else {
                    3
                }
            }
            Step::Touch(_) => 2,
            Step::Overwrite { .. } | Step::Append { .. } => 2,
            Step::Dd { count, .. } => 1 + *count as u64,
            Step::MkdirAll(_) | Step::Lstat(_) | Step::Stat(_) | Step::Read(_) => 0,
        }
    }
}

/// Whether a step must succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A failure aborts the run (and makes it invalid).
    Success,
    /// A probe that may fail by design (a contended `mkdir`, an unlock request, a read of a
    /// virtual file the daemon may not provide); failures are counted, not fatal.
    Tolerated,
}

/// A step with its start time relative to the start of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timed {
    pub at_ms: u64,
    pub step: Step,
    pub expect: Expect,
}

impl Timed {
    pub fn now(step: Step) -> Timed {
        Timed {
            at_ms: 0,
            step,
            expect: Expect::Success,
        }
    }
    pub fn at(at_ms: u64, step: Step) -> Timed {
        Timed {
            at_ms,
            step,
            expect: Expect::Success,
        }
    }
    pub fn probe(at_ms: u64, step: Step) -> Timed {
        Timed {
            at_ms,
            step,
            expect: Expect::Tolerated,
        }
    }
}

/// Parallel readers (the read-path workload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readers {
    /// Directory holding `files` files named `f0000` …, each `file_size` bytes.
    pub dir: String,
    pub files: usize,
    pub file_size: usize,
    /// Reader processes.
    pub readers: usize,
    /// Passes over all files per reader.
    pub passes: usize,
}

impl Readers {
    pub fn file_name(i: usize) -> String {
        format!("f{i:04}")
    }

    /// The content of file `i`; readers check every read against it.
    pub fn content(&self, i: usize) -> Vec<u8> {
        crate::content::Lcg::new(0xfeed_0000 + i as u64).bytes(self.file_size)
    }
}

/// What the measured run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunPart {
    Steps(Vec<Timed>),
    Readers(Readers),
}

/// A complete workload: what to prepare (before the measured daemon starts), what to run, and
/// the shortest wall time of the run (a real minute lasts a minute even if its last event comes
/// earlier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub prepare: Vec<Step>,
    pub run: RunPart,
    pub min_duration_ms: u64,
}

impl Plan {
    pub fn steps(&self) -> &[Timed] {
        match &self.run {
            RunPart::Steps(s) => s,
            RunPart::Readers(_) => &[],
        }
    }

    pub fn logical_bytes(&self) -> u64 {
        self.steps().iter().map(|t| t.step.logical_bytes()).sum()
    }

    pub fn c_mutations(&self) -> u64 {
        self.steps().iter().map(|t| t.step.c_mutations()).sum()
    }
}
