//! `leadflow serve`: the HTTP service.
//!
//! One process is a whole deployment: the native JSON API (`/api/v1`), health, readiness and
//! metrics; the rules react to every event and timers fire on time. Every write goes through
//! one writer thread that commits requests in groups (one fsync per batch) and answers each
//! only after the commit that holds its events; reads use read-only connections.
//!
//! The crate starts no runtime, reads no wall clock of its own and prints nothing: the binary
//! gives it a listener, a clock and a shutdown signal (the mini-redis shape), and installs
//! the tracing subscriber.
//!
//! Where to change what: `writer` (group commit), `readers` (the read pool), `runtime` (the
//! rule set in force and the background tasks of `leadflow run`), `api/` (the native API:
//! `entities`, `logs`, `extract`, `openapi`), `ops` (health, readiness, metrics, the request
//! log), `error` (statuses and JSON errors), `auth` (the caller), `bitrix` (the Bitrix24
//! conventions), `ui` (the dashboard in the browser, at `/` and under `/ui/`).

pub mod api;
pub mod auth;
pub mod bitrix;
pub mod error;
pub mod facade;
pub mod intake;
pub mod ops;
mod outbox;
pub mod readers;
pub mod runtime;
pub mod state;
pub mod ui;
pub mod writer;

pub use error::ApiError;
pub use state::{AppState, ReloadRules};

use axum::Router;
use leadflow_engine::{Clock, Config};
use leadflow_store::{Options, Store};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the binary gives the service.
pub struct Setup {
    /// The configuration.
    pub config: Config,
    /// The database file.
    pub db: PathBuf,
    /// How it is opened (`--synchronous`).
    pub options: Options,
    /// The rule set in force at the start, if any.
    pub rules: Option<leadflow_robots::Runtime>,
    /// Loads the rule folder again (SIGHUP, `POST /api/v1/rules/activate`).
    pub reload: ReloadRules,
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
}

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] leadflow_store::Error),
    /// Something else, said in words.
    #[error("{0}")]
    Other(String),
}

impl From<ApiError> for ServeError {
    fn from(e: ApiError) -> Self {
        ServeError::Other(e.to_string())
    }
}

/// The metrics recorder: installed once per process (the `metrics` macros report to it).
fn metrics_handle() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "leadflow_http_request_seconds".into(),
                    ),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(
                            "leadflow_commit_batch_size".into(),
                        ),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                    )
                })
                .expect("static buckets are valid");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed already (a test process running several
            // services): then this handle renders what it records, nothing global.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// A running service's parts, for [`serve`].
pub struct Service {
    state: AppState,
    writer_thread: std::thread::JoinHandle<()>,
}

impl Service {
    /// Opens the database (the writer's connection and a read pool) and starts the writer.
    pub fn start(setup: Setup) -> Result<Service, ServeError> {
        let store = Store::open(&setup.db, &setup.options)?;
        let config = Arc::new(setup.config);
        let rules = runtime::Rules::new(setup.rules);
        let (writer, writer_thread) = writer::Writer::start(
            store,
            config.clone(),
            rules.clone(),
            setup.clock.clone(),
            config.server.max_batch,
            config.server.queue,
        )?;
        let readers = readers::Readers::open(setup.db.clone(), setup.options.clone(), 16)?;
        let state = AppState {
            config,
            writer,
            readers,
            rules,
            reload: setup.reload,
            clock: setup.clock,
            metrics: metrics_handle(),
            accepting: Arc::new(AtomicBool::new(true)),
            failures: Arc::default(),
            tokens: Arc::default(),
            sessions: Arc::default(),
        };
        Ok(Service {
            state,
            writer_thread,
        })
    }

    /// The shared state (for tests that call handlers directly).
    pub fn state(&self) -> &AppState {
        &self.state
    }
}

/// Any other path: the Bitrix24 error for `/rest/…` (a path without user, secret or method),
/// the JSON 404 for the rest.
async fn fallback(uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    if uri.path().starts_with("/rest/") {
        facade::incomplete().await
    } else {
        ApiError::NotFound("no such route; see /api/v1/openapi.json".into()).into_response()
    }
}

/// The whole router with its layers.
pub fn app(state: AppState) -> Router {
    ops::layers(
        Router::new()
            .nest("/api/v1", api::routes())
            .route(
                "/rest/{user}/{secret}/{*method}",
                axum::routing::any(facade::call),
            )
            .route(
                "/intake/{form}",
                axum::routing::post(intake::submit).options(intake::preflight),
            )
            .merge(ops::routes())
            .merge(ui::routes())
            .fallback(fallback)
            .with_state(state.clone()),
        &state,
    )
}

/// Serves on `listener` until `shutdown` resolves, with `reload` firing for SIGHUP: then stops
/// accepting, lets in-flight requests finish within `[server] shutdown_grace`, lets the writer
/// commit what it holds, and stops the background tasks. Nothing acknowledged is lost: every
/// 2xx was sent after its commit.
pub async fn serve(
    listener: TcpListener,
    service: Service,
    shutdown: impl Future<Output = &'static str> + Send + 'static,
    mut reload: tokio::sync::mpsc::Receiver<()>,
) -> Result<(), ServeError> {
    let Service {
        state,
        writer_thread,
    } = service;
    // Before the first request: the rule set in force is activated and the backlog a crash
    // left is processed, so the first command is decided on the state the robots leave and its
    // events come after the activation (whose first time starts the rules' cursor).
    if let Some(rt) = state.rules.current() {
        let rules = state.rules.clone();
        state
            .writer
            .run_rules(Box::new(move |tx, ctx| {
                let (report, mine) = rt.react_in(tx, ctx.now)?;
                rules.add_mine(&mine);
                if report.processed > 0 {
                    tracing::info!(
                        processed = report.processed,
                        "processed the events left unprocessed"
                    );
                }
                Ok(writer::Answer::ok(serde_json::json!({})))
            }))
            .await?;
    }
    // Idempotency keys older than the promise are forgotten before the first request too.
    runtime::forget_responses(&state.writer).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let forget_task = tokio::spawn(runtime::forget_loop(state.writer.clone(), stop_rx.clone()));
    let bg = runtime::Background {
        rules: state.rules.clone(),
        writer: state.writer.clone(),
        readers: state.readers.clone(),
        clock: state.clock.clone(),
    };
    let rules_task = tokio::spawn(runtime::rules_loop(bg.clone(), stop_rx.clone()));
    let requests_task = tokio::spawn(runtime::requests_loop(bg, stop_rx.clone()));
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let delivery_thread = outbox::spawn(&state, &addr, stop_rx.clone());
    let reload_task = {
        let state = state.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = reload.recv() => {
                        if r.is_none() { return }
                        tracing::info!("SIGHUP: reloading the rule folder");
                        if let Err(e) = api::logs::reload_rules(&state).await {
                            tracing::error!(error = %e, "rule reload failed");
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        })
    };
    tracing::info!(listen = %addr, "leadflow serve: listening");
    let grace = state
        .config
        .server
        .shutdown_grace
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(10));
    let accepting = state.accepting.clone();
    let (signalled_tx, mut signalled_rx) = watch::channel(false);
    let graceful = async move {
        let signal = shutdown.await;
        tracing::info!(
            signal,
            "leadflow serve: stopping (finishing in-flight requests)"
        );
        accepting.store(false, Ordering::SeqCst);
        let _ = signalled_tx.send(true);
    };
    // In a block of its own, so that the server (and the state its router holds) is gone
    // before the writer is waited for.
    let result = {
        let server = axum::serve(
            listener,
            app(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(graceful)
        .into_future();
        tokio::pin!(server);
        tokio::select! {
            r = &mut server => r,
            () = async {
                let _ = signalled_rx.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("in-flight requests did not finish within the grace period; closing them");
                Ok(())
            }
        }
    };
    let _ = stop_tx.send(true);
    let _ = tokio::join!(rules_task, requests_task, reload_task, forget_task);
    if let Some(t) = delivery_thread {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    // Dropping the last senders closes the writer's queue: it commits what it holds and ends.
    drop(state);
    // Everything acknowledged is committed already; a connection that still holds the state
    // (a client that does not let go) only delays the writer's end, so it is waited for
    // within the grace period.
    let joined = tokio::task::spawn_blocking(move || writer_thread.join());
    if tokio::time::timeout(grace, joined).await.is_err() {
        tracing::warn!(
            "the writer still had senders after the grace period; stopping anyway (nothing acknowledged is lost)"
        );
    }
    tracing::info!("leadflow serve: stopped");
    result.map_err(|e| ServeError::Other(format!("the server failed: {e}")))
}
