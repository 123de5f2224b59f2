//! env_logger writing through a bounded queue to a background thread, so that a request that
//! logs (every cache hit does, at `info`) never blocks on a slow stderr. When the queue is full,
//! lines are dropped and counted rather than making requests wait.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

/// Lines waiting for the writer thread at most.
const QUEUE_LINES: usize = 65_536;

/// Lines queued and not yet written.
static PENDING: AtomicU64 = AtomicU64::new(0);

struct QueueWriter {
    sender: SyncSender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

impl Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        PENDING.fetch_add(1, Ordering::AcqRel);
        match self.sender.try_send(buf.to_vec()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                PENDING.fetch_sub(1, Ordering::AcqRel);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                PENDING.fetch_sub(1, Ordering::AcqRel);
                // The writer thread is gone (process exiting): write directly.
                io::stderr().write_all(buf)?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn drain(receiver: Receiver<Vec<u8>>, dropped: Arc<AtomicU64>) {
    // Unlocked stderr: the lock is taken per flush, so other writers (eprintln!) never wait long.
    let mut out = io::BufWriter::with_capacity(64 * 1024, io::stderr());
    while let Ok(line) = receiver.recv() {
        let mut written = 1;
        let _ = out.write_all(&line);
        // Write whatever else is queued, then flush once: one syscall per burst, not per line.
        while let Ok(line) = receiver.try_recv() {
            written += 1;
            let _ = out.write_all(&line);
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = writeln!(out, "[log] {lost} lines dropped: the log queue was full");
        }
        let _ = out.flush();
        PENDING.fetch_sub(written, Ordering::AcqRel);
    }
}

/// Waits (briefly) until queued lines are written; call before the process exits.
pub fn flush() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    while PENDING.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Installs env_logger (`RUST_LOG`, default `info`) with the queued writer.
pub fn init() {
    let (sender, receiver) = sync_channel(QUEUE_LINES);
    let dropped = Arc::new(AtomicU64::new(0));
    let writer = QueueWriter {
        sender,
        dropped: dropped.clone(),
    };
    let spawned = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || drain(receiver, dropped));
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if spawned.is_ok() {
        builder.target(env_logger::Target::Pipe(Box::new(writer)));
    }
    builder.init();
}
