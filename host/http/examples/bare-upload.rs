//! The floor under an upload over HTTP: a server that does nothing with a
//! request body but write it to a file and `fsync` it (`plain`), or write
//! it beside the file, `fsync` it, rename it over the file and `fsync` the
//! directory (`replace`). No ids, no metadata, no policy, no journal.
//! `scripts/bench-writers.sh` loads it as it loads chatstore, to show what
//! any HTTP upload costs on the machine.
//!
//! ```text
//! bare-upload ADDR ROOT
//! POST /plain/{writer}/{name}     writer and name: ASCII letters, digits, '.'
//! POST /replace/{writer}/{name}
//! ```

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;

struct Floor {
    root: PathBuf,
    /// Numbers each replace's new file, so two of one name never meet.
    next: AtomicU64,
}

fn simple(segment: &str) -> bool {
    !segment.is_empty()
        && !segment.starts_with('.')
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

impl Floor {
    fn write(&self, replace: bool, writer: &str, name: &str, body: &[u8]) -> std::io::Result<()> {
        let directory = self.root.join(writer);
        let path = directory.join(name);
        let target = if replace {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            directory.join(format!("{name}.{n}.new"))
        } else {
            path.clone()
        };
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&target)
        };
        // A writer's directory is made at its first file, not checked at each.
        let mut file = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&directory)?;
                open()?
            }
            opened => opened?,
        };
        file.write_all(body)?;
        file.sync_all()?;
        drop(file);
        if replace {
            std::fs::rename(&target, &path)?;
            std::fs::File::open(&directory)?.sync_all()?;
        }
        Ok(())
    }
}

async fn upload(
    State(floor): State<Arc<Floor>>,
    Path((mode, writer, name)): Path<(String, String, String)>,
    body: Bytes,
) -> StatusCode {
    let replace = match mode.as_str() {
        "plain" => false,
        "replace" => true,
        _ => return StatusCode::NOT_FOUND,
    };
    if !simple(&writer) || !simple(&name) {
        return StatusCode::BAD_REQUEST;
    }
    let written =
        tokio::task::spawn_blocking(move || floor.write(replace, &writer, &name, &body)).await;
    match written {
        Ok(Ok(())) => StatusCode::CREATED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, root] = args.as_slice() else {
        eprintln!("usage: bare-upload ADDR ROOT");
        std::process::exit(2);
    };
    let floor = Arc::new(Floor {
        root: PathBuf::from(root),
        next: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/{mode}/{writer}/{name}", post(upload))
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
