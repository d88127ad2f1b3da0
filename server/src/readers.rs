//! Read-only connections for the handlers: reads never go through the writer and never wait
//! for it (WAL: a reader sees the last commit while the writer writes the next).
//!
//! A small pool of `Store::open_read` connections, each used by one blocking task at a time.

use crate::error::ApiError;
use leadflow_store::{Options, Store};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The pool; cheap to clone.
#[derive(Clone)]
pub struct Readers {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: Options,
    idle: Mutex<Vec<Store>>,
    /// At most this many idle connections are kept.
    keep: usize,
}

impl Readers {
    /// A pool over the database at `path`; checks that one connection opens.
    pub fn open(path: PathBuf, options: Options, keep: usize) -> Result<Readers, ApiError> {
        let first = Store::open_read(&path, &options)?;
        Ok(Readers {
            inner: Arc::new(Inner {
                path,
                options,
                idle: Mutex::new(vec![first]),
                keep: keep.max(1),
            }),
        })
    }

    /// A read connection of its own, outside the pool (for a task that keeps one).
    pub fn open_one(&self) -> Result<Store, ApiError> {
        Ok(Store::open_read(&self.inner.path, &self.inner.options)?)
    }

    /// Runs `f` on a read connection in a blocking task.
    pub async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, ApiError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = match inner.idle.lock().ok().and_then(|mut v| v.pop()) {
                Some(s) => s,
                None => Store::open_read(&inner.path, &inner.options)?,
            };
            let out = f(&mut store);
            if let Ok(mut idle) = inner.idle.lock()
                && idle.len() < inner.keep
            {
                idle.push(store);
            }
            out
        })
        .await
        .map_err(|e| ApiError::Internal(format!("a read task failed: {e}")))?
    }
}
