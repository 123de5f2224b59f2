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

/// How often the writer thread looks for queued lines. It polls instead of blocking on the
/// queue so that logging threads never pay for waking it up (a futex wake per line was most of
/// the cost of hit logging under load).
const POLL: std::time::Duration = std::time::Duration::from_millis(5);

fn drain(receiver: Receiver<Vec<u8>>, dropped: Arc<AtomicU64>) {
    // Unlocked stderr: the lock is taken per flush, so other writers (eprintln!) never wait long.
    let mut out = io::BufWriter::with_capacity(64 * 1024, io::stderr());
    loop {
        let mut written = 0;
        loop {
            match receiver.try_recv() {
                Ok(line) => {
                    written += 1;
                    let _ = out.write_all(&line);
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        if written == 0 {
            std::thread::sleep(POLL);
            continue;
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
    // env_logger's own layout (`[2026-11-26T10:31:20Z INFO  aishacrm::…] message`) written in
    // one pass: every cache hit logs a line, and the configurable format's styling and
    // indentation layers cost as much as the rest of the hit.
    builder
        .write_style(env_logger::WriteStyle::Never)
        .format(|out, record| {
            writeln!(
                out,
                "[{} {:<5} {}] {}",
                out.timestamp(),
                record.level(),
                record.target(),
                record.args()
            )
        });
    builder.init();
}
