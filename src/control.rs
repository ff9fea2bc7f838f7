//! The control socket, outside the mount: one request line, one reply.
//!
//! `stats` → a JSON object of commit counters; `flush` → `ok` once everything is committed and
//! on stable storage, or `error: …`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lwcfs_backend::WriterHandle;

use crate::cluster::Cluster;
use crate::kcache::KernelCache;
use crate::service::Tree;

pub struct ControlServer {
    path: PathBuf,
}

impl ControlServer {
    /// Bind the socket (replacing a stale one) and serve it from a thread.
    pub fn start(
        path: &Path,
        writer: Arc<WriterHandle>,
        tree: Arc<Tree>,
        kcache: Arc<KernelCache>,
        cluster: Option<Arc<Cluster>>,
    ) -> std::io::Result<Self> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!(
                        "control socket {} is in use by another daemon",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    if let Err(e) = serve(conn, &writer, &tree, &kcache, cluster.as_deref()) {
                        tracing::debug!("control connection: {e}");
                    }
                }
            })?;
        Ok(ControlServer {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(
    conn: UnixStream,
    writer: &WriterHandle,
    tree: &Tree,
    kcache: &KernelCache,
    cluster: Option<&Cluster>,
) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let reply = match line.trim() {
        "stats" => stats_json(writer, tree, kcache, cluster).to_string(),
        "flush" => match writer.flush() {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("error: {e}"),
        },
        other => format!("error: unknown command {other:?}"),
    };
    let mut w = &conn;
    writeln!(w, "{reply}")
}

fn stats_json(
    writer: &WriterHandle,
    tree: &Tree,
    kcache: &KernelCache,
    cluster: Option<&Cluster>,
) -> serde_json::Value {
    let s = writer.stats();
    // Lock order: a cluster group before the tree.
    let cluster = cluster.map(Cluster::status_json);
    let db = tree.lock();
    serde_json::json!({
        "transactions": s.transactions,
        "rows_upserted": s.rows_upserted,
        "rows_deleted": s.rows_deleted,
        "blob_bytes": s.blob_bytes,
        "flushes": s.flushes,
        "syncs": s.syncs,
        "deferred_rewrites": s.deferred_rewrites,
        "large_batches": s.large_batches,
        "failed_commits": s.failed_commits,
        "last_error": s.last_error,
        "pending": s.pending,
        "failed": writer.failed(),
        "version": db.version(),
        "entries": db.len(),
        // The verify checksum (C's), to compare nodes.
        "checksum": db.compute_checksum().iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "cluster": cluster,
        "kernel_cache_pending": kcache.pending(),
    })
}

/// The client side: send one command, return the reply line.
pub fn request(path: &Path, cmd: &str) -> Result<String, String> {
    let conn = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot reach lwcfs at {}: {e} (is the daemon running?)",
            path.display()
        )
    })?;
    (&conn)
        .write_all(format!("{cmd}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(&conn)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let line = line.trim_end().to_owned();
    match line.strip_prefix("error: ") {
        Some(e) => Err(e.to_owned()),
        None => Ok(line),
    }
}
