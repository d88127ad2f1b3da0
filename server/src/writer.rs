//! The writer: one thread owns the SQLite write connection and commits requests in groups.
//!
//! Handlers queue a [`Job`] (a closure over the write transaction) and await the answer.
//! Whoever holds the write connection takes whatever jobs are queued (up to `[server]
//! max_batch`) — the writer thread, or, when nobody is committing, the handler that queued a
//! job, which commits on its tokio worker (in `block_in_place`) until its own job is answered
//! and so saves the thread wake-ups of a hand-over to the writer and back —, opens one
//! transaction, runs each job in its own savepoint — a refused or conflicting command rolls back
//! alone and gets its own error — with the rules' immediate reactions in the same savepoint,
//! commits once (one fsync for the whole batch), and only then answers each job. An answer is
//! therefore never sent before the commit that holds its events; if the commit fails, every job
//! of the batch is told so (503) and nothing of it is kept.
//!
//! The queue is bounded: a full queue is a 503 at once, not a wait without end. When every
//! sender is gone (the service shuts down) the thread commits what it holds and stops. A job
//! that panics fails alone (a 500, its savepoint rolled back); a panic in the writer itself
//! stops it, answers every queued job 503 and turns readiness false.

use crate::error::ApiError;
use crate::runtime::Rules;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use leadflow_engine::{Clock, Config};
use leadflow_robots::Report;
use leadflow_store::{Store, Tx};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use tokio::sync::{oneshot, watch};

/// What a job does in its savepoint: given the transaction and what it may need, the answer
/// to send after the commit (or an error, after which its savepoint is rolled back).
pub type Work = Box<dyn FnOnce(&mut Tx<'_>, &WriteCtx<'_>) -> Result<Answer, ApiError> + Send>;

/// What a job sees besides the transaction.
pub struct WriteCtx<'a> {
    /// The configuration.
    pub config: &'a Config,
    /// Business time for this batch (the wall clock when the batch began).
    pub now: DateTime<Utc>,
}

/// A successful answer, sent after the commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// 200, 201…
    pub status: StatusCode,
    /// The JSON body.
    pub body: Value,
    /// The entity's version after the job, for `ETag`.
    pub version: Option<i64>,
    /// `Location` of a created entity.
    pub location: Option<String>,
    /// Whether it is a remembered answer to a retried idempotency key.
    pub replayed: bool,
    /// The entity the job wrote to and the positions of its events: after the rules
    /// reacted, the writer puts the entity as the robots left it in the body (under its
    /// kind), its version in the `ETag`, and the robots' events under `robots`.
    pub subject: Option<(leadflow_engine::StreamId, Option<(i64, i64)>)>,
}

impl Answer {
    /// A 200 with a body.
    pub fn ok(body: Value) -> Answer {
        Answer {
            status: StatusCode::OK,
            body,
            version: None,
            location: None,
            replayed: false,
            subject: None,
        }
    }
}

/// A remembered-response key: the token (`scope`), the client's `Idempotency-Key`, and the
/// hash of what was asked.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// Whose key: the token's name (keys of different tokens never meet).
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// SHA-256 of the method, path and body.
    pub request_hash: String,
}

struct Job {
    work: Work,
    idempotency: Option<Idempotency>,
    /// Run the rules after the job (false for jobs that are the rules' own work).
    react: bool,
    reply: oneshot::Sender<Result<Answer, ApiError>>,
    /// The span of the request that queued it: whoever commits the job, what it logs
    /// carries that request's id.
    span: tracing::Span,
}

/// What the writer tells the rest of the service after each commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// The head of the log after the commit.
    pub head: i64,
    /// How many commits so far.
    pub commits: u64,
    /// Whether some job of the commit left external robots' requests to run.
    pub requests: bool,
}

/// What the commits since the rules loop last looked left for it (see [`Writer::take_notes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notes {
    /// Some commit holds events the rules have not processed: a job that ran without the
    /// reaction step (the rules' own work, delivery), or a batch run with no rule set.
    pub unprocessed: bool,
    /// The earliest due time of the timers those commits set.
    pub soonest_timer: Option<DateTime<Utc>>,
}

/// The handle handlers send jobs through; cheap to clone. When the last clone is dropped the
/// queue closes: the writer commits what it holds and its thread ends.
#[derive(Clone)]
pub struct Writer {
    open: Arc<Open>,
    committed: watch::Receiver<Committed>,
}

/// What the handles, the writer thread and a caller that commits for itself share.
struct Shared {
    queue: Mutex<Queue>,
    /// The writer thread waits on it for jobs.
    ready: Condvar,
    /// The write connection and what a batch needs: whoever holds it commits the next batch.
    core: Mutex<Thread>,
    capacity: usize,
    max_batch: usize,
    alive: AtomicBool,
    notes: Arc<Mutex<Notes>>,
    wakes: Arc<Wakes>,
}

/// Who a commit wakes besides the waiting requests: the rules loop only when the commit left
/// it something (see [`Notes`]), the requests loop only when external robots' requests wait —
/// not every background task after every commit.
#[derive(Default)]
pub struct Wakes {
    /// The rules loop's: a commit left unprocessed events or set a timer.
    pub rules: tokio::sync::Notify,
    /// The requests loop's: this process's rules made requests that wait to run.
    pub requests: tokio::sync::Notify,
}

struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// Closes the queue when dropped (by the last [`Writer`] clone).
struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        if let Ok(mut q) = self.0.queue.lock() {
            q.closed = true;
        }
        self.0.ready.notify_all();
    }
}

impl Shared {
    /// The next batch: up to `max_batch` of the queued jobs, oldest first.
    fn take(&self) -> Vec<Job> {
        let Ok(mut q) = self.queue.lock() else {
            return Vec::new();
        };
        let n = q.jobs.len().min(self.max_batch);
        q.jobs.drain(..n).collect()
    }

    fn is_queued(&self) -> bool {
        self.queue
            .lock()
            .map(|q| !q.jobs.is_empty())
            .unwrap_or(false)
    }

    /// The writer thread: waits for jobs, then commits them batch by batch while it holds the
    /// connection; ends when the queue is closed and empty. A panic outside a job (a defect in
    /// the writer itself) ends it too, and every queued job is answered 503.
    fn run(&self) {
        // However the loop ends — the queue closed, a poisoned lock, a panic outside a job —
        // the writer is marked stopped and the queued jobs are answered 503.
        let _stop = StopOnExit(self);
        loop {
            {
                let Ok(mut q) = self.queue.lock() else { break };
                while q.jobs.is_empty() && !q.closed {
                    q = match self.ready.wait(q) {
                        Ok(q) => q,
                        Err(_) => return,
                    };
                }
                if q.jobs.is_empty() {
                    break;
                }
            }
            let Ok(mut core) = self.core.lock() else {
                break;
            };
            let batch = self.take();
            if !batch.is_empty() {
                metrics::counter!("leadflow_writer_batches_total", "by" => "writer").increment(1);
                core.commit(batch);
            }
        }
        tracing::info!("writer: queue closed, stopped");
    }

    /// No more jobs are taken; the queued ones are dropped, so their callers get a 503.
    fn stop(&self) {
        self.alive.store(false, Ordering::SeqCst);
        let jobs = match self.queue.lock() {
            Ok(mut q) => {
                q.closed = true;
                std::mem::take(&mut q.jobs)
            }
            Err(poisoned) => std::mem::take(&mut poisoned.into_inner().jobs),
        };
        drop(jobs);
    }
}

/// Stops the writer when the thread's loop ends, by return or by unwinding.
struct StopOnExit<'a>(&'a Shared);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Wakes the writer thread if a caller that was committing unwinds (the connection's lock is
/// then poisoned: the thread stops and answers the queued jobs 503).
struct WakeOnUnwind<'a>(&'a Shared);

impl Drop for WakeOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.ready.notify_one();
        }
    }
}

impl Writer {
    /// Starts the writer thread on `store` (opened for writing). `rules` is read at every
    /// batch, so a reload takes effect at the next one.
    pub fn start(
        store: Store,
        config: Arc<Config>,
        rules: Rules,
        clock: Arc<dyn Clock>,
        max_batch: usize,
        queue: usize,
    ) -> Result<(Writer, std::thread::JoinHandle<()>), ApiError> {
        warm_up();
        let head = store.last_position().map_err(ApiError::from)?;
        let (ctx, crx) = watch::channel(Committed {
            head,
            commits: 0,
            requests: false,
        });
        let notes = Arc::new(Mutex::new(Notes::default()));
        let wakes = Arc::new(Wakes::default());
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            core: Mutex::new(Thread {
                store,
                config,
                rules,
                clock,
                committed: ctx,
                notes: notes.clone(),
                wakes: wakes.clone(),
            }),
            capacity: queue.max(1),
            max_batch: max_batch.max(1),
            alive: AtomicBool::new(true),
            notes,
            wakes,
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("leadflow-writer".into())
                .spawn(move || shared.run())
                .map_err(|e| ApiError::Internal(format!("cannot start the writer thread: {e}")))?
        };
        Ok((
            Writer {
                open: Arc::new(Open(shared)),
                committed: crx,
            },
            thread,
        ))
    }

    /// Whether the writer thread is running.
    pub fn is_alive(&self) -> bool {
        self.open.0.alive.load(Ordering::SeqCst)
    }

    /// What the last commit left: the head, and whether requests wait.
    pub fn committed(&self) -> watch::Receiver<Committed> {
        self.committed.clone()
    }

    /// What wakes the background loops after a commit.
    pub fn wakes(&self) -> Arc<Wakes> {
        self.open.0.wakes.clone()
    }

    /// What the commits since the last call left for the rules loop, and forgets it: a
    /// commit whose every job ran with the rules' reactions leaves nothing for the loop to
    /// process, only, perhaps, a timer to wake for — so the loop need not read the database
    /// after each commit.
    pub fn take_notes(&self) -> Notes {
        self.open
            .0
            .notes
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or(Notes {
                unprocessed: true,
                soonest_timer: None,
            })
    }

    /// Runs `work` in the next batch, with the rules' reactions, and answers after the commit.
    /// With an idempotency key, a retry of the same request gets the remembered answer and
    /// runs nothing; the same key with another request is a 422.
    pub async fn run(
        &self,
        idempotency: Option<Idempotency>,
        work: Work,
    ) -> Result<Answer, ApiError> {
        self.send(idempotency, true, work).await
    }

    /// Runs the rules' own work (a timer tick, an outcome) in the next batch, without the
    /// reaction step around it (the work runs the rules itself).
    pub async fn run_rules(&self, work: Work) -> Result<Answer, ApiError> {
        self.send(None, false, work).await
    }

    /// Queues the job; then, when nobody is committing and the caller is on a worker of a
    /// multi-threaded runtime, commits the queue itself until its own job is answered (no
    /// hand-over to the writer thread and back: two thread wake-ups fewer per request when
    /// the service is quiet); otherwise wakes the writer thread, or leaves the jobs to the
    /// caller that is committing, which wakes the writer when it leaves jobs behind.
    async fn send(
        &self,
        idempotency: Option<Idempotency>,
        react: bool,
        work: Work,
    ) -> Result<Answer, ApiError> {
        let shared = &self.open.0;
        if !shared.alive.load(Ordering::SeqCst) {
            return Err(ApiError::Unavailable("the writer stopped".into()));
        }
        let (reply, mut answer) = oneshot::channel();
        {
            let Ok(mut q) = shared.queue.lock() else {
                return Err(ApiError::Unavailable("the writer stopped".into()));
            };
            if q.closed {
                return Err(ApiError::Unavailable("the service is shutting down".into()));
            }
            if q.jobs.len() >= shared.capacity {
                metrics::counter!("leadflow_writer_rejected_total", "why" => "full").increment(1);
                return Err(ApiError::Unavailable(
                    "the writer's queue is full; retry in a moment".into(),
                ));
            }
            q.jobs.push_back(Job {
                work,
                idempotency,
                react,
                reply,
                span: tracing::Span::current(),
            });
        }
        let mut mine = None;
        let on_worker = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if on_worker && let Ok(mut core) = shared.core.try_lock() {
            let _wake = WakeOnUnwind(shared);
            // In `block_in_place`: a commit can wait for another process's write lock (the
            // busy timeout) or a slow fsync, and this worker's other tasks must not wait.
            tokio::task::block_in_place(|| {
                loop {
                    let batch = shared.take();
                    if batch.is_empty() {
                        break;
                    }
                    metrics::counter!("leadflow_writer_batches_total", "by" => "caller")
                        .increment(1);
                    core.commit(batch);
                    match answer.try_recv() {
                        Ok(result) => {
                            mine = Some(result);
                            break;
                        }
                        Err(oneshot::error::TryRecvError::Empty) => {}
                        Err(oneshot::error::TryRecvError::Closed) => break,
                    }
                }
            });
            drop(core);
            if shared.is_queued() {
                shared.ready.notify_one();
            }
        } else {
            shared.ready.notify_one();
        }
        match mine {
            Some(result) => result,
            None => answer
                .await
                .unwrap_or_else(|_| Err(ApiError::Unavailable("the writer stopped".into()))),
        }
    }
}

/// Loads what the first command would otherwise load while holding the writer (the phone
/// metadata: a fifth of a second, which every request of the first batch waited for), on a
/// thread of its own, once per process; a command that needs it first waits for it.
fn warm_up() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("leadflow-warm-up".into())
            .spawn(leadflow_engine::field::warm_up);
    });
}

struct Thread {
    store: Store,
    config: Arc<Config>,
    rules: Rules,
    clock: Arc<dyn Clock>,
    committed: watch::Sender<Committed>,
    notes: Arc<Mutex<Notes>>,
    wakes: Arc<Wakes>,
}

impl Thread {
    /// Runs one batch in one transaction and answers its jobs after the commit.
    fn commit(&mut self, batch: Vec<Job>) {
        let size = batch.len();
        metrics::histogram!("leadflow_commit_batch_size").record(size as f64);
        let started = std::time::Instant::now();
        let rules = self.rules.current();
        let handle = self.rules.clone();
        let config = self.config.clone();
        // The replies stay out of the transaction, so that a batch that fails before any job
        // ran (its BEGIN could not take the lock) still answers each of them.
        let (jobs, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|j| ((j.work, j.idempotency, j.react, j.span), j.reply))
            .unzip();
        let mut results: Vec<Option<Result<Answer, ApiError>>> = Vec::with_capacity(size);
        let mut requests = false;
        // Whether the rules processed every event of the batch (each job reacted).
        let processed = rules.is_some() && jobs.iter().all(|(_, _, react, _)| *react);
        let mut soonest_timer = None;
        let mut head = 0;
        let clock = self.clock.clone();
        let outcome = self.store.write_with(clock.as_ref(), |tx| {
            let now = clock.now();
            let ctx = WriteCtx {
                config: &config,
                now,
            };
            for ((work, idempotency, react, span), reply) in jobs.into_iter().zip(&replies) {
                let _request = span.enter();
                // Nobody waits for it any more (the request timed out and was answered 503,
                // or its client went away): it is not run, so a 503 never hides a write.
                if reply.is_closed() {
                    metrics::counter!("leadflow_writer_jobs_abandoned_total").increment(1);
                    results.push(None);
                    continue;
                }
                results.push(Some(run_job(
                    tx,
                    &ctx,
                    rules.as_deref(),
                    &handle,
                    work,
                    idempotency.as_ref(),
                    react,
                    &mut requests,
                )));
            }
            soonest_timer = tx.soonest_timer();
            head = tx.head_position();
            Ok::<_, leadflow_store::Error>(())
        });
        metrics::histogram!("leadflow_commit_seconds").record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(()) => {
                let rules_have_work = match self.notes.lock() {
                    Ok(mut n) => {
                        n.unprocessed |= !processed;
                        if let Some(t) = soonest_timer {
                            n.soonest_timer =
                                Some(n.soonest_timer.map_or(t, |s: DateTime<Utc>| s.min(t)));
                        }
                        *n != Notes::default()
                    }
                    Err(_) => true,
                };
                if rules_have_work {
                    self.wakes.rules.notify_one();
                }
                if self.rules.has_mine() {
                    self.wakes.requests.notify_one();
                }
                self.committed.send_modify(|c| {
                    c.head = head;
                    c.commits += 1;
                    c.requests |= requests;
                });
                for (reply, result) in replies.into_iter().zip(results) {
                    if let Some(result) = result {
                        let _ = reply.send(result);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = size, "writer: the batch did not commit");
                let err = ApiError::from(e);
                let err = match err {
                    ApiError::Unavailable(_) => err,
                    other => ApiError::Unavailable(format!("nothing was committed: {other}")),
                };
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Puts the entity as the robots left it, and the robots' events caused by the job's own,
/// in the answer.
fn after_reactions(
    tx: &mut Tx<'_>,
    answer: &mut Answer,
    stream: leadflow_engine::StreamId,
    positions: Option<(i64, i64)>,
) -> Result<(), ApiError> {
    use leadflow_engine::workspace::Workspace;
    if let Some(e) = tx.load(stream)? {
        answer.version = Some(e.version());
        answer.body[stream.kind.as_str()] = crate::api::entities::entity_json(&e);
    }
    let Some((first, last)) = positions else {
        return Ok(());
    };
    let mut robots = Vec::new();
    let mut after = last;
    let mut total = 0usize;
    loop {
        let page = Workspace::read_after(tx, after, 256)?;
        let Some(end) = page.last().map(|e| e.position) else {
            break;
        };
        after = end;
        for e in page.iter().filter(|e| e.correlation == first) {
            total += 1;
            if robots.len() < ROBOT_EVENTS_SHOWN {
                robots.push(serde_json::json!({
                    "position": e.position,
                    "stream": e.stream.to_string(),
                    "type": e.event_type,
                    "actor": e.actor,
                }));
            }
        }
    }
    answer.body["robots"] = serde_json::json!({ "events": robots, "total": total });
    Ok(())
}

/// How many of the robots' events an answer lists (`total` counts them all).
const ROBOT_EVENTS_SHOWN: usize = 50;

/// One job in its savepoint: the remembered answer for a retried key, or the work and the
/// rules' reactions to it (kept together or rolled back together), remembered under its key.
#[allow(clippy::too_many_arguments)]
fn run_job(
    tx: &mut Tx<'_>,
    ctx: &WriteCtx<'_>,
    rules: Option<&leadflow_robots::Runtime>,
    handle: &Rules,
    work: Work,
    idempotency: Option<&Idempotency>,
    react: bool,
    requests: &mut bool,
) -> Result<Answer, ApiError> {
    if let Some(k) = idempotency
        && let Some(r) = tx.recall_response(&k.scope, &k.key)?
    {
        if r.request_hash != k.request_hash {
            return Err(ApiError::Unprocessable {
                code: "idempotency_key_reused",
                message: format!(
                    "Idempotency-Key '{}' was used at {} for another request; use a new key for a new request",
                    k.key, r.at
                ),
                field: None,
            });
        }
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
        let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        // The entity is under its kind, as `written` answers (`{"stream": "lead-3", "lead": …}`).
        let stream = body
            .get("stream")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<leadflow_engine::StreamId>().ok());
        let version = stream
            .and_then(|s| body.get(s.kind.as_str()))
            .and_then(|e| e.get("version"))
            .and_then(Value::as_i64);
        let location = stream
            .filter(|_| status == StatusCode::CREATED)
            .map(|s| format!("/api/v1/{}/{}", crate::api::entities::plural(s.kind), s.id));
        return Ok(Answer {
            status,
            body,
            version,
            location,
            replayed: true,
            subject: None,
        });
    }
    let mut report = Report::default();
    let result = tx.atomically(|tx| {
        // A job that panics (a defect) — its work, the rules' reactions, its answer — fails
        // alone, as a 500, with its savepoint rolled back; the writer goes on with the batch.
        let job = std::panic::AssertUnwindSafe(|| {
            job_in_savepoint(tx, ctx, rules, handle, work, idempotency, react, requests, &mut report)
        });
        match std::panic::catch_unwind(job) {
            Ok(answer) => answer,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                tracing::error!(panic = %what, "writer: a job panicked; its changes are rolled back");
                Err(ApiError::Internal(format!("the request failed on a defect ({what}); nothing of it was kept")))
            }
        }
    });
    if report.incidents > 0 {
        tracing::warn!(
            incidents = report.incidents,
            "robot failures recorded as incidents"
        );
    }
    result
}

/// What a job does in its savepoint: the work, the rules' reactions to it, the answer with
/// the entity as the robots left it, remembered under its idempotency key.
#[allow(clippy::too_many_arguments)]
fn job_in_savepoint(
    tx: &mut Tx<'_>,
    ctx: &WriteCtx<'_>,
    rules: Option<&leadflow_robots::Runtime>,
    handle: &Rules,
    work: Work,
    idempotency: Option<&Idempotency>,
    react: bool,
    requests: &mut bool,
    report: &mut Report,
) -> Result<Answer, ApiError> {
    let mut answer = work(tx, ctx)?;
    if react && let Some(rt) = rules {
        let (r, mine) = rt.react_in(tx, ctx.now)?;
        *report = r;
        if !mine.is_empty() {
            handle.add_mine(&mine);
            *requests = true;
        }
    }
    if let Some((stream, positions)) = answer.subject.take() {
        after_reactions(tx, &mut answer, stream, positions)?;
    }
    if let Some(k) = idempotency {
        tx.remember_response(
            &k.scope,
            &k.key,
            &k.request_hash,
            answer.status.as_u16(),
            &answer.body.to_string(),
        )?;
    }
    Ok(answer)
}
