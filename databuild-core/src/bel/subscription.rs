//! Live subscriptions built from reads: a cursor that pages through stored
//! events, then waits for the head to move. Cursor-based, so a subscriber
//! sees no gap and no duplicate whatever the timing of appends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::sync::watch;

use super::{BelError, BuildEvent, EventFilter};

/// Events read per page by a subscription.
const PAGE: usize = 1024;

/// The latest committed sequence number of a sink, for its subscribers.
///
/// A sink holds one and calls [`advance`](Self::advance) after each append
/// is committed.
#[derive(Debug, Clone)]
pub struct HeadWatch {
    tx: Arc<watch::Sender<u64>>,
}

impl HeadWatch {
    /// A watch starting at `head`.
    pub fn new(head: u64) -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(head)),
        }
    }

    /// Records that events up to `seq` are committed.
    pub fn advance(&self, seq: u64) {
        self.tx.send_if_modified(|head| {
            let moved = seq > *head;
            if moved {
                *head = seq;
            }
            moved
        });
    }

    /// The latest committed sequence number.
    pub fn get(&self) -> u64 {
        *self.tx.borrow()
    }

    /// How a subscription learns that the head moved.
    pub fn wake(&self) -> Wake {
        Wake::Watch(self.tx.subscribe())
    }
}

/// How a subscription waits for new events.
#[derive(Debug)]
pub enum Wake {
    /// Woken by the writer's [`HeadWatch`] (same process).
    Watch(watch::Receiver<u64>),
    /// Re-reads every interval (a reader of a file another process writes).
    Poll(Duration),
}

/// One page of stored events, for [`subscribe_via_reads`].
pub trait PageReader: Send + Sync + 'static {
    /// Up to `limit` stored events with `seq > since` matching `filter`,
    /// and the head (last stored seq) the read saw.
    fn read_page(
        &self,
        since: u64,
        filter: EventFilter,
        limit: usize,
    ) -> BoxFuture<'static, Result<(Vec<BuildEvent>, u64), BelError>>;
}

/// A [`PageReader`] over a sink's blocking read (`f(since, filter, limit)`
/// returning the page and the head), run on tokio's blocking pool.
#[derive(Debug, Clone)]
pub struct BlockingPages<F> {
    backend: &'static str,
    read: F,
}

impl<F> BlockingPages<F> {
    /// Pages read by `read`, whose failures name `backend`.
    pub fn new(backend: &'static str, read: F) -> Self {
        Self { backend, read }
    }
}

impl<F> PageReader for BlockingPages<F>
where
    F: Fn(u64, &EventFilter, usize) -> Result<(Vec<BuildEvent>, u64), BelError>
        + Clone
        + Send
        + Sync
        + 'static,
{
    fn read_page(
        &self,
        since: u64,
        filter: EventFilter,
        limit: usize,
    ) -> BoxFuture<'static, Result<(Vec<BuildEvent>, u64), BelError>> {
        let read = self.read.clone();
        Box::pin(super::run_blocking(self.backend, move || {
            read(since, &filter, limit)
        }))
    }
}

struct State {
    reader: Arc<dyn PageReader>,
    wake: Wake,
    filter: EventFilter,
    cursor: u64,
    buffer: VecDeque<BuildEvent>,
    done: bool,
}

/// A subscription: every event with `seq > since` matching `filter`, stored
/// ones first, then new ones as `wake` reports them. Ends after an error
/// item, or when the writer's [`HeadWatch`] is dropped and all is read.
pub fn subscribe_via_reads(
    reader: Arc<dyn PageReader>,
    wake: Wake,
    since: u64,
    filter: EventFilter,
) -> BoxStream<'static, Result<BuildEvent, BelError>> {
    let state = State {
        reader,
        wake,
        filter,
        cursor: since,
        buffer: VecDeque::new(),
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(e) = s.buffer.pop_front() {
                return Some((Ok(e), s));
            }
            if s.done {
                return None;
            }
            let page = s.reader.read_page(s.cursor, s.filter.clone(), PAGE).await;
            match page {
                Err(e) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
                Ok((events, head)) => {
                    let full = events.len() >= PAGE;
                    if let Some(last) = events.last() {
                        s.cursor = last.seq;
                    }
                    // A short page holds every match up to the head it saw:
                    // skip the non-matching rest.
                    if !full {
                        s.cursor = s.cursor.max(head);
                    }
                    let got = !events.is_empty();
                    s.buffer.extend(events);
                    if got || full {
                        continue;
                    }
                }
            }
            match &mut s.wake {
                Wake::Watch(rx) => {
                    let cursor = s.cursor;
                    if rx.wait_for(|head| *head > cursor).await.is_err() {
                        // The sink is gone: one last read, then end.
                        s.done = true;
                        let last = s
                            .reader
                            .read_page(s.cursor, s.filter.clone(), usize::MAX)
                            .await;
                        match last {
                            Ok((events, _)) => s.buffer.extend(events),
                            Err(e) => return Some((Err(e), s)),
                        }
                    }
                }
                Wake::Poll(interval) => tokio::time::sleep(*interval).await,
            }
        }
    }))
}
