//! `serve`: the HTTP service (leadflow-server) on a multi-threaded tokio runtime, with the
//! wall clock, the signals (SIGINT/SIGTERM stop it gracefully, SIGHUP reloads the rule
//! folder) and the rule folder's files read here.

use crate::automation;
use crate::ctx::{Ctx, SystemClock, read_rule_files};
use crate::error::CliError;
use leadflow_engine::Config;
use leadflow_engine::rules::RuleSet;
use leadflow_robots::{Registry, Runtime};
use leadflow_server::{Service, Setup};
use std::path::PathBuf;
use std::sync::Arc;

/// `serve [--listen ADDR]`.
pub(crate) fn serve(ctx: Ctx, listen: Option<String>, synchronous: &str) -> Result<(), CliError> {
    let rules = automation::load(&ctx)?;
    let Ctx {
        config,
        store,
        rules_dir,
        ..
    } = ctx;
    let db: PathBuf = store
        .path()
        .map(std::path::Path::to_owned)
        .ok_or_else(|| CliError::Usage("serve needs a database file".into()))?;
    drop(store);
    let listen = listen.unwrap_or_else(|| config.server.listen.clone());
    let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
        CliError::Usage(format!(
            "bad --listen address '{listen}': give host:port, e.g. 127.0.0.1:8080"
        ))
    })?;
    let clock: Arc<dyn leadflow_engine::Clock> = Arc::new(SystemClock);
    let reload: leadflow_server::ReloadRules = {
        let dir = rules_dir.clone();
        let clock = clock.clone();
        Arc::new(move |config: &Config| load_rules(dir.as_deref(), config, clock.clone()))
    };
    let options = leadflow_store::Options {
        synchronous: synchronous.parse().map_err(CliError::Usage)?,
        create: false,
        ..leadflow_store::Options::default()
    };
    let setup = Setup {
        config,
        db: db.clone(),
        options,
        rules: rules.map(|rt| rt.with_wall_clock(clock.clone())),
        reload,
        clock,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("leadflow-serve")
        .build()
        .map_err(|e| CliError::io("the tokio runtime", e))?;
    rt.block_on(async move {
        let service = Service::start(setup).map_err(|e| CliError::Usage(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::Usage(format!("cannot listen on {addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| CliError::io("the listener", e))?;
        // The address on stdout, for scripts that start it on port 0.
        outln!(
            "leadflow serve: listening on http://{bound} (database {})",
            db.display()
        );
        let (shutdown, reload) = signals()?;
        leadflow_server::serve(listener, service, shutdown, reload)
            .await
            .map_err(|e| CliError::Usage(e.to_string()))
    })
}

/// The rule folder's rule set (with the wall clock), `None` without rules, or every problem
/// with its file:line:col.
fn load_rules(
    dir: Option<&std::path::Path>,
    config: &Config,
    clock: Arc<dyn leadflow_engine::Clock>,
) -> Result<Option<Runtime>, Vec<String>> {
    let Some(dir) = dir else { return Ok(None) };
    let sources = read_rule_files(dir).map_err(|e| vec![e.to_string()])?;
    let set = RuleSet::load(&sources, config, &Registry::builtin())
        .map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    for w in &set.warnings {
        tracing::warn!("{w}");
    }
    Ok((!set.rules.is_empty())
        .then(|| Runtime::new(config.clone(), set, Registry::builtin()).with_wall_clock(clock)))
}

/// SIGINT/SIGTERM (the shutdown) and SIGHUP (reloads), installed at once.
#[allow(clippy::type_complexity)]
fn signals() -> Result<
    (
        impl std::future::Future<Output = &'static str> + Send + 'static,
        tokio::sync::mpsc::Receiver<()>,
    ),
    CliError,
> {
    use tokio::signal::unix::{SignalKind, signal};
    let io = |e| CliError::io("signal handler", e);
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let mut hup = signal(SignalKind::hangup()).map_err(io)?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok((
        async move {
            tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            }
        },
        rx,
    ))
}
