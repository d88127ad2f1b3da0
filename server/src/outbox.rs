//! The outbox delivered by the service: the `leadflow-delivery` worker on a thread of its own
//! (its reads are short blocking SQLite calls on a read-only connection; its HTTP and SMTP
//! calls run outside any transaction), each of its writes a writer job.

use crate::error::ApiError;
use crate::state::AppState;
use crate::writer::Answer;
use leadflow_delivery::{Deliverer, DeliveryDb, Job};
use leadflow_store::Store;
use serde_json::json;
use std::time::Duration;
use tokio::sync::watch;

/// How often the worker looks for due messages and new events for its endpoints.
const POLL: Duration = Duration::from_millis(250);

struct ThroughWriter {
    reader: Store,
    state: AppState,
}

impl DeliveryDb for ThroughWriter {
    fn reader(&self) -> &Store {
        &self.reader
    }

    async fn write(&mut self, job: Job) -> Result<usize, leadflow_delivery::Error> {
        let answer = self
            .state
            .writer
            .run_rules(Box::new(move |tx, _| {
                let n = job.run(tx).map_err(ApiError::from)?;
                Ok(Answer::ok(json!(n)))
            }))
            .await
            .map_err(|e| {
                leadflow_delivery::Error::Store(leadflow_store::Error::Unreadable {
                    path: Default::default(),
                    why: format!("the writer: {e}"),
                })
            })?;
        Ok(answer.body.as_u64().unwrap_or(0) as usize)
    }
}

/// Starts the delivery thread; it ends when `stop` turns true. `None` (logged) when the
/// `[delivery]` configuration cannot be used. `listen` is the address the service listens on
/// (Bitrix24 event handlers are told to call back there).
pub(crate) fn spawn(
    state: &AppState,
    listen: &str,
    mut stop: watch::Receiver<bool>,
) -> Option<std::thread::JoinHandle<()>> {
    let deliverer = match Deliverer::new(&state.config) {
        Ok(d) if listen.is_empty() => d,
        Ok(d) => d.with_origin(listen),
        Err(e) => {
            tracing::error!(error = %e, "the outbox is not delivered");
            return None;
        }
    };
    let reader = match state.readers.open_one() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the outbox is not delivered");
            return None;
        }
    };
    let state = state.clone();
    std::thread::Builder::new()
        .name("leadflow-delivery".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "the outbox is not delivered");
                    return;
                }
            };
            let clock = state.clock.clone();
            let mut db = ThroughWriter { reader, state };
            rt.block_on(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = deliverer.run(&mut db, clock.as_ref(), POLL, shutdown).await {
                    tracing::error!(error = %e, "the outbox delivery stopped");
                }
            });
        })
        .ok()
}
