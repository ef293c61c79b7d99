//! Content through the store, side by side with the same work done by the
//! operating system alone, in one run:
//!
//! - a 1 GiB upload (staged, hashed, synced, committed) against `cp` +
//!   `fsync` of the same file on the same disk, and the process's peak
//!   memory growth while it runs;
//! - reading it back through the store against reading the file directly;
//! - a 1 KiB append to a 100 MiB history against the same append to an
//!   empty one.
//!
//! `cargo bench -p chatstore-host --bench content` prints the figures; no
//! assertions. `CHATSTORE_BENCH_MIB` sets the upload size (default 1024).

use chatstore_host::{ChatStore, ContentKind, Uuid};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Resets the peak resident size to the current one (Linux: write 5 to clear_refs).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Writes `mib` MiB of varied bytes to `path`.
fn make_file(path: &Path, mib: u64) -> io::Result<()> {
    let mut file = File::create(path)?;
    let mut block = vec![0u8; 1 << 20];
    for i in 0..mib {
        for (j, b) in block.iter_mut().enumerate() {
            *b = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
        }
        file.write_all(&block)?;
    }
    file.sync_all()
}

/// `cp` + `fsync`: copies `from` to `to` and syncs it.
fn copy_and_sync(from: &Path, to: &Path) -> io::Result<Duration> {
    let started = Instant::now();
    std::fs::copy(from, to)?;
    File::open(to)?.sync_all()?;
    Ok(started.elapsed())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: u64 = std::env::var("CHATSTORE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir =
        tempfile::tempdir_in(std::env::var("CHATSTORE_BENCH_DIR").unwrap_or_else(|_| ".".into()))?;
    let source = dir.path().join("source.bin");
    make_file(&source, mib)?;
    let store = ChatStore::builder()
        .data_dir(dir.path().join("data"))
        .quota_bytes(4 * (mib << 20))
        .build()?;
    let user = Uuid::now_v7();
    store.ensure_workspace(user)?;
    let chat = store.create_chat(user)?.chat_id;

    println!("== {mib} MiB upload, three rounds, each side by side with cp + fsync");
    let (mut ours, mut theirs, mut growth, mut staging) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let copy = dir.path().join(format!("copy-{round}.bin"));
        theirs.push(seconds(copy_and_sync(&source, &copy)?));
        std::fs::remove_file(&copy)?;
        reset_peak();
        let before = status_kib("VmRSS:");
        let started = Instant::now();
        let staged = store
            .staging()
            .stage(File::open(&source)?, ContentKind::Bytes, u64::MAX)?;
        staging.push(seconds(started.elapsed()));
        // A new name each round, as `cp` makes a new file.
        let name = format!("big-{round}.bin");
        let file = store.upload_staged(user, chat, &name, None, staged)?;
        ours.push(seconds(started.elapsed()));
        growth.push(status_kib("VmHWM:").saturating_sub(before) as f64 / 1024.0);
        if round < 2 {
            store.delete_attachment(user, chat, file.file_id)?;
        }
    }
    let (ours, theirs, staging) = (median(ours), median(theirs), median(staging));
    let rate = |s: f64| mib as f64 / s;
    println!(
        "cp + fsync                 {theirs:8.2} s  {:8.0} MiB/s",
        rate(theirs)
    );
    println!(
        "upload through the store   {ours:8.2} s  {:8.0} MiB/s",
        rate(ours)
    );
    println!("  of which staging         {staging:8.2} s (read, SHA-256, write, sync)");
    println!("throughput vs cp + fsync   {:8.2}x", theirs / ours);
    println!(
        "peak RSS growth            {:8.1} MiB (median of 3)",
        median(growth)
    );

    println!("== reading {mib} MiB back");
    let file = store.list_attachments(user, chat)?[0].file_id;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let started = Instant::now();
        io::copy(&mut File::open(&source)?, &mut io::sink())?;
        theirs.push(seconds(started.elapsed()));
        let started = Instant::now();
        let (_, mut content) = store.read_attachment(user, chat, file)?;
        io::copy(&mut content, &mut io::sink())?;
        ours.push(seconds(started.elapsed()));
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!("read the file directly     {theirs:8.2} s");
    println!("read through the store     {ours:8.2} s");
    println!("throughput vs direct       {:8.2}x", theirs / ours);

    println!("== a 1 KiB append, on an empty history and on a 100 MiB one");
    let message = vec![b'm'; 1024];
    let appends = |chat: Uuid| -> Result<f64, Box<dyn std::error::Error>> {
        let mut times = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            store.append_history(user, chat, &message[..])?;
            times.push(seconds(started.elapsed()) * 1e6);
        }
        Ok(median(times))
    };
    let small = store.create_chat(user)?.chat_id;
    let large = store.create_chat(user)?.chat_id;
    let history = io::repeat(b'h').take(100 << 20);
    store.write_history(user, large, history)?;
    let (mut on_empty, mut on_large) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        on_empty.push(appends(small)?);
        on_large.push(appends(large)?);
    }
    let (on_empty, on_large) = (median(on_empty), median(on_large));
    println!("append to an empty history {on_empty:8.0} µs");
    println!("append to 100 MiB          {on_large:8.0} µs");
    println!("ratio                      {:8.2}x", on_large / on_empty);
    Ok(())
}
