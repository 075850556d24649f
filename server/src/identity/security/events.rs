//! The recorder for refusals made outside the ingest writer: enrollment,
//! TLS handshakes, refused calls, streams ended for cause. A caller hands
//! over a note and waits until it is committed, then answers (or closes).
//!
//! Group commit on a thread of its own: whatever notes wait when a
//! transaction begins are merged by (source, kind) and written together,
//! so a flood costs one transaction per commit time, not one per refusal,
//! and the flooding callers wait for it (which slows them down too).
//!
//! Invariant: `record` returns only after the transaction holding its note
//! committed, or after that transaction failed (logged; the refusal is
//! still answered: a store that cannot write must not let anyone in).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::Store;
use crate::store::security_events::{EventBatch, EventNote};

/// Notes waiting at most; callers beyond it wait for room.
const QUEUE: usize = 4096;

struct Job {
    note: EventNote,
    done: oneshot::Sender<bool>,
}

/// Handle to the recorder thread. Cheap to clone; the thread ends with the
/// last handle.
#[derive(Clone)]
pub struct SecurityEvents {
    jobs: mpsc::Sender<Job>,
}

impl SecurityEvents {
    /// Starts the recorder thread, writing through `store`.
    pub fn start(store: Arc<Store>) -> SecurityEvents {
        let (jobs, rx) = mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("custos-security-events".into())
            .spawn(move || run(&store, rx))
            .expect("cannot start the security-event thread");
        SecurityEvents { jobs }
    }

    /// Records `note`; resolves once it is committed (`true`) or could not
    /// be (`false`, logged).
    pub async fn record(&self, note: EventNote) -> bool {
        let (done, committed) = oneshot::channel();
        if self.jobs.send(Job { note, done }).await.is_err() {
            tracing::error!("security event not recorded: the recorder has stopped");
            return false;
        }
        committed.await.unwrap_or(false)
    }
}

/// The recorder loop: take what waits, write it in one transaction, tell
/// every waiting caller.
fn run(store: &Store, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = EventBatch::default();
        let mut waiting = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next {
            batch.add(job.note);
            waiting.push(job.done);
            next = if waiting.len() < QUEUE { rx.try_recv().ok() } else { None };
        }
        let committed = match store.record_security_events(&batch) {
            Ok(()) => {
                // One line per source and kind and commit, however many refusals.
                for n in batch.notes() {
                    tracing::warn!(
                        kind = n.kind,
                        source = n.source,
                        count = n.count,
                        "refused: {}",
                        n.detail
                    );
                }
                true
            }
            Err(e) => {
                tracing::error!(error = %e, occurrences = batch.occurrences(), "security events not recorded");
                false
            }
        };
        for done in waiting {
            let _ = done.send(committed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::security_events::EventFilter;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_notes_are_committed_before_record_returns_and_fold_into_one_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("custos.db")).unwrap());
        let events = SecurityEvents::start(Arc::clone(&store));
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let tasks: Vec<_> = (0..500)
            .map(|i| {
                let events = events.clone();
                tokio::spawn(async move {
                    events
                        .record(EventNote::peer("enrollment_refused", "192.0.2.7", now, &format!("try {i}")))
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        let page = store.security_events(&EventFilter { limit: 10, ..Default::default() }).unwrap();
        assert_eq!(page.events.len(), 1, "{:?}", page.events);
        assert_eq!(page.events[0].count, 500);
    }
}
