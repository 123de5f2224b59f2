//! Single flight: while one request loads a key, later requests for the same key wait for its
//! result instead of running the query again. Works across worker threads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::entry::Entry;
use super::key::Key;

/// What a finished load hands its followers: the stored entry, or `None` when the load did not
/// produce a cacheable answer (the followers then load for themselves).
type Outcome = Option<Option<Arc<Entry>>>;

/// A load: its key and the write number it began at.
pub type Load = (Key, u64);

#[derive(Default, Clone)]
pub struct Flights {
    inflight: Arc<Mutex<HashMap<Load, watch::Receiver<Outcome>>>>,
}

pub enum Role {
    Leader(Leader),
    Follower(watch::Receiver<Outcome>),
}

/// The request that runs the load. Dropping it without `finish` (a cancelled request) releases
/// the followers, which then load for themselves.
pub struct Leader {
    key: Load,
    flights: Flights,
    sender: watch::Sender<Outcome>,
}

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Load, watch::Receiver<Outcome>>> {
        self.inflight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn join(&self, key: Load) -> Role {
        let mut inflight = self.lock();
        if let Some(receiver) = inflight.get(&key) {
            return Role::Follower(receiver.clone());
        }
        let (sender, receiver) = watch::channel(None);
        inflight.insert(key, receiver);
        Role::Leader(Leader {
            key,
            flights: self.clone(),
            sender,
        })
    }
}

impl Leader {
    pub fn finish(self, entry: Option<Arc<Entry>>) {
        self.flights.lock().remove(&self.key);
        // Receivers may all be gone; that is fine.
        let _ = self.sender.send(Some(entry));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut inflight = self.flights.lock();
        if inflight
            .get(&self.key)
            .is_some_and(|receiver| receiver.same_channel(&self.sender.subscribe()))
        {
            inflight.remove(&self.key);
        }
    }
}

/// Waits for the leader; `None` when it produced nothing cacheable or was cancelled.
pub async fn wait(mut receiver: watch::Receiver<Outcome>) -> Option<Arc<Entry>> {
    match receiver.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().flatten(),
        Err(_) => None,
    }
}
