//! Dynamic batching for inference servers: many concurrent callers each submit one input; a
//! worker thread gathers up to [`BatchConfig::max_batch`] of them, or whatever has arrived
//! [`BatchConfig::max_delay`] after the first, runs them as one batch on an [`Engine`] (one GPU
//! submission, or one parallel CPU call), and answers each caller.
//!
//! * **Backpressure**: at most [`BatchConfig::queue_capacity`] requests wait at once.
//!   [`Batcher::run_async`] waits for a free slot; [`Batcher::try_run`] fails at once with
//!   [`Error::QueueFull`].
//! * **Cancellation-safe**: a caller that drops its future loses its own answer only; a request
//!   whose caller is gone before its batch starts is not computed.
//! * **Graceful shutdown**: [`Batcher::shutdown`] refuses new requests ([`Error::ShutDown`]) and
//!   returns once every accepted request has been answered.
//! * Runtime-independent: the futures only wait on tokio's sync primitives, which work on any
//!   executor; the engine runs on the worker thread.
//!
//! Start with [`Batcher::new`] over an [`Engine`] and a [`BatchConfig`], then [`Batcher::run_async`];
//! the [crate-level guide](crate#batch-and-serve) has an example and `examples/serve.rs` drives one
//! with 64 concurrent clients.

use crate::engine::{Engine, Inputs};
use crate::error::{Error, Result};
use crate::format::check_batch;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// How a [`Batcher`] groups requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most inputs run together.
    pub max_batch: usize,
    /// Longest a request waits for others once it is first in line.
    pub max_delay: Duration,
    /// Most requests waiting or running at once.
    pub queue_capacity: usize,
}

impl Default for BatchConfig {
    /// 64 inputs, 2 ms, 1024 requests.
    fn default() -> Self {
        BatchConfig {
            max_batch: 64,
            max_delay: Duration::from_millis(2),
            queue_capacity: 1024,
        }
    }
}

/// Counters of a [`Batcher`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Batches run.
    pub batches: u64,
    /// Requests answered (with a result or an error).
    pub requests: u64,
    /// Requests whose caller gave up (dropped its future) before their batch started: not
    /// computed, not answered.
    pub abandoned: u64,
}

/// One batch as [`Batcher::observed`] reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchRun {
    /// Inputs run together.
    pub size: usize,
    /// The engine's time for the batch.
    pub elapsed: Duration,
    /// Whether the engine answered (`false`: every request of the batch got its error).
    pub ok: bool,
}

/// One request's input: any owned buffer of `input_size` values (`Vec<f32>`, `Arc<[f32]>`,
/// ...), kept as it is until its batch is gathered.
type Input = Box<dyn AsRef<[f32]> + Send + Sync>;

struct Request {
    input: Input,
    reply: oneshot::Sender<Result<Vec<f32>>>,
    // Frees the caller's queue slot when the request is answered or dropped.
    _slot: OwnedSemaphorePermit,
}

struct Shared {
    sender: Mutex<Option<SyncSender<Request>>>,
    slots: Arc<Semaphore>,
    capacity: usize,
    input_size: usize,
    batches: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    abandoned: Arc<AtomicU64>,
    finished: Mutex<Option<oneshot::Receiver<()>>>,
}

/// A dynamic-batching front end over an [`Engine`]. Cloning is cheap; all clones feed the same
/// queue.
#[derive(Clone)]
pub struct Batcher {
    shared: Arc<Shared>,
}

impl Batcher {
    /// Starts the worker thread for `engine`.
    ///
    /// [`Batcher::run_async`] then submits inputs; the [guide](crate#batch-and-serve) has an
    /// example.
    pub fn new(engine: Engine, config: BatchConfig) -> Result<Batcher> {
        Self::observed(engine, config, |_| {})
    }

    /// Like [`new`](Self::new), and calls `observer` on the worker thread after each batch
    /// (for metrics: its size and how long the engine took). `eie serve` feeds its batch-size
    /// histogram this way.
    pub fn observed(
        engine: Engine,
        config: BatchConfig,
        observer: impl Fn(&BatchRun) + Send + 'static,
    ) -> Result<Batcher> {
        if config.max_batch == 0 || config.queue_capacity == 0 {
            return Err(Error::InvalidArgument(
                "max_batch and queue_capacity must be at least 1".into(),
            ));
        }
        let (sender, receiver) = mpsc::sync_channel::<Request>(config.queue_capacity);
        let (done_tx, done_rx) = oneshot::channel();
        let batches = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let abandoned = Arc::new(AtomicU64::new(0));
        let counters = Counters {
            batches: batches.clone(),
            requests: requests.clone(),
            abandoned: abandoned.clone(),
        };
        let input_size = engine.input_size();
        std::thread::Builder::new()
            .name("eie-batcher".into())
            .spawn(move || {
                worker(&engine, &receiver, config, &counters, &observer);
                // The engine (and its GPU device) is gone before `shutdown` returns, so that a
                // process may exit right after it without a device torn down mid-exit.
                drop(engine);
                let _ = done_tx.send(());
            })
            .map_err(|e| {
                Error::InvalidArgument(format!("cannot start the batching thread: {e}"))
            })?;
        Ok(Batcher {
            shared: Arc::new(Shared {
                sender: Mutex::new(Some(sender)),
                slots: Arc::new(Semaphore::new(config.queue_capacity)),
                capacity: config.queue_capacity,
                input_size,
                batches,
                requests,
                abandoned,
                finished: Mutex::new(Some(done_rx)),
            }),
        })
    }

    /// Runs one input (`input_size` values in any owned buffer: `Vec<f32>`, `Arc<[f32]>`,
    /// ...; it is not copied until its batch is gathered) in the next batch, waiting for a
    /// queue slot when the queue is full: an owned `'static` future (it holds a clone of the
    /// batcher), as [`Engine::run_async`] is. Fails with [`Error::ShutDown`] after
    /// [`shutdown`](Self::shutdown).
    pub fn run_async<T>(&self, input: T) -> impl Future<Output = Result<Vec<f32>>> + Send + 'static
    where
        T: AsRef<[f32]> + Send + Sync + 'static,
    {
        let batcher = self.clone();
        async move {
            batcher.check(input.as_ref())?;
            let slot = batcher
                .shared
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| shut_down())?;
            batcher.enqueue(Box::new(input), slot)?.await
        }
    }

    /// Like [`run_async`](Self::run_async) but never waits for a slot: [`Error::QueueFull`] at once
    /// when `queue_capacity` requests are already waiting. On success, the returned future yields
    /// the answer.
    pub fn try_run<T>(
        &self,
        input: T,
    ) -> Result<impl Future<Output = Result<Vec<f32>>> + Send + 'static>
    where
        T: AsRef<[f32]> + Send + Sync + 'static,
    {
        self.check(input.as_ref())?;
        let slot = match self.shared.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(TryAcquireError::NoPermits) => return Err(Error::QueueFull(self.shared.capacity)),
            Err(TryAcquireError::Closed) => return Err(shut_down()),
        };
        self.enqueue(Box::new(input), slot)
    }

    /// Like [`try_run`](Self::try_run) for several inputs at once, all or nothing: queue slots
    /// for all of them are taken together (or [`Error::QueueFull`] at once, with none queued),
    /// so a request of many inputs that does not fit leaves the queue as it was. The future
    /// yields the answers in input order, or the first error.
    pub fn try_run_all<T>(
        &self,
        inputs: Vec<T>,
    ) -> Result<impl Future<Output = Result<Vec<Vec<f32>>>> + Send + 'static>
    where
        T: AsRef<[f32]> + Send + Sync + 'static,
    {
        for x in &inputs {
            self.check(x.as_ref())?;
        }
        let n = u32::try_from(inputs.len())
            .ok()
            .filter(|&n| n as usize <= self.shared.capacity)
            .ok_or(Error::QueueFull(self.shared.capacity))?;
        let mut slots = match self.shared.slots.clone().try_acquire_many_owned(n) {
            Ok(slots) => slots,
            Err(TryAcquireError::NoPermits) => return Err(Error::QueueFull(self.shared.capacity)),
            Err(TryAcquireError::Closed) => return Err(shut_down()),
        };
        let mut answers = Vec::with_capacity(inputs.len());
        for x in inputs {
            // `slots` holds one permit per input not yet queued.
            let slot = slots.split(1).ok_or_else(shut_down)?;
            answers.push(self.enqueue(Box::new(x), slot)?);
        }
        Ok(async move {
            let mut out = Vec::with_capacity(answers.len());
            for a in answers {
                out.push(a.await?);
            }
            Ok(out)
        })
    }

    /// Refuses new requests and returns once every accepted request has been answered and the
    /// worker has stopped. Later calls return at once.
    ///
    /// The [guide](crate#batch-and-serve)'s example ends with it.
    pub async fn shutdown(&self) {
        self.shared.slots.close();
        let sender = self
            .shared
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(sender);
        let finished = self
            .shared
            .finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(f) = finished {
            let _ = f.await;
        }
    }

    /// Batches run, requests answered and requests abandoned so far.
    ///
    /// See [`BatchStats`].
    pub fn stats(&self) -> BatchStats {
        BatchStats {
            batches: self.shared.batches.load(Ordering::Relaxed),
            requests: self.shared.requests.load(Ordering::Relaxed),
            abandoned: self.shared.abandoned.load(Ordering::Relaxed),
        }
    }

    fn check(&self, input: &[f32]) -> Result<()> {
        if input.len() != self.shared.input_size {
            return Err(Error::Shape(format!(
                "a batched request is one input of {} values, got {}",
                self.shared.input_size,
                input.len()
            )));
        }
        check_batch(self.shared.input_size, input).map(|_| ())
    }

    fn enqueue(
        &self,
        input: Input,
        slot: OwnedSemaphorePermit,
    ) -> Result<impl Future<Output = Result<Vec<f32>>> + Send + 'static> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            input,
            reply,
            _slot: slot,
        };
        {
            let sender = self.shared.sender.lock().unwrap_or_else(|e| e.into_inner());
            let Some(sender) = sender.as_ref() else {
                return Err(shut_down());
            };
            // A slot is held, so the channel (as large as the slots) always has room.
            match sender.try_send(request) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(Error::QueueFull(self.shared.capacity)),
                Err(TrySendError::Disconnected(_)) => return Err(shut_down()),
            }
        }
        Ok(async move {
            answer
                .await
                .map_err(|_| Error::ShutDown("the batching worker stopped".into()))?
        })
    }
}

fn shut_down() -> Error {
    Error::ShutDown("the batching front end no longer accepts requests".into())
}

/// The worker's counters, shared with [`Batcher::stats`].
struct Counters {
    batches: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    abandoned: Arc<AtomicU64>,
}

/// Gathers and runs batches until every sender is gone and the queue is empty.
fn worker(
    engine: &Engine,
    receiver: &mpsc::Receiver<Request>,
    config: BatchConfig,
    counters: &Counters,
    observer: &dyn Fn(&BatchRun),
) {
    let n_in = engine.input_size();
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + config.max_delay;
        while batch.len() < config.max_batch {
            let now = Instant::now();
            let next = if now >= deadline {
                receiver.try_recv().map_err(|_| RecvTimeoutError::Timeout)
            } else {
                receiver.recv_timeout(deadline - now)
            };
            match next {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // Callers that gave up are not computed (their slots are freed here).
        let dropped = batch.len();
        batch.retain(|r| !r.reply.is_closed());
        counters
            .abandoned
            .fetch_add((dropped - batch.len()) as u64, Ordering::Relaxed);
        if batch.is_empty() {
            continue;
        }
        let mut x = Vec::with_capacity(batch.len() * n_in);
        for r in &batch {
            x.extend_from_slice(r.input.as_ref().as_ref());
        }
        let started = Instant::now();
        let result = Inputs::new(&x, batch.len(), n_in).and_then(|i| engine.run(i));
        observer(&BatchRun {
            size: batch.len(),
            elapsed: started.elapsed(),
            ok: result.is_ok(),
        });
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        // Slots are freed before the answers go out, so a caller that has its answer can
        // count on its slot being free again.
        let replies: Vec<_> = batch.into_iter().map(|r| r.reply).collect();
        match result {
            Ok(y) => {
                for (reply, out) in replies.into_iter().zip(y.rows()) {
                    let _ = reply.send(Ok(out.to_vec()));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(Error::BatchFailed(msg.clone())));
                }
            }
        }
    }
}
