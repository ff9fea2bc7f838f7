//! The one error enum of the backend.

use std::path::PathBuf;

use lwcfs_memdb::LoadError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not a SQLite database, or its pages are damaged (`SQLITE_NOTADB`,
    /// `SQLITE_CORRUPT`).
    #[error("{path}: corrupt database: {source}")]
    Corrupt {
        path: PathBuf,
        source: rusqlite::Error,
    },

    /// A stored row breaks the rules of the data model: C's row checks (no name, unknown type,
    /// a directory with data, inode 0 not named `__version__`) and the structural checks of
    /// `Memdb::load` (missing parent, duplicate name, ...). The message names the inode.
    #[error("{path}: cannot load the tree: {source}")]
    Load { path: PathBuf, source: LoadError },

    /// A column of a row has a value no C pmxcfs can have written (a non-integer number
    /// column, a name that is not UTF-8).
    #[error("{path}: inode {inode}: {what}")]
    BadRow {
        path: PathBuf,
        inode: u64,
        what: String,
    },

    /// Any other SQLite failure; `context` says what the backend was doing.
    #[error("sqlite, {context}: {source}")]
    Sqlite {
        context: &'static str,
        source: rusqlite::Error,
    },

    /// SQLite refused WAL mode (C refuses to start then too).
    #[error("journal_mode stays {mode:?}: WAL is required")]
    NoWal { mode: String },

    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    /// The writer thread is gone (it panicked); nothing can be committed any more.
    #[error("the database writer thread is gone")]
    WriterGone,
}

impl Error {
    /// Classify a SQLite error met while reading or opening `path`.
    pub(crate) fn open(path: &std::path::Path, context: &'static str, e: rusqlite::Error) -> Error {
        use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
        match e.sqlite_error_code() {
            Some(NotADatabase | DatabaseCorrupt) => Error::Corrupt {
                path: path.into(),
                source: e,
            },
            _ => Error::Sqlite { context, source: e },
        }
    }

    pub(crate) fn sqlite(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
        move |source| Error::Sqlite { context, source }
    }

    /// True for the corrupt-database errors: the file itself is bad, not the machine.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. } | Error::Load { .. } | Error::BadRow { .. }
        )
    }
}
