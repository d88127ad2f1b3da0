//! The service in the test's own process, on a real socket (127.0.0.1, port 0), over a
//! database in a temporary folder: [`Server::start`] runs `leadflow_server::serve` on a
//! tokio runtime of its own thread; dropping the server (or [`Server::stop`]) shuts it down
//! gracefully, as SIGTERM does.

use crate::http::Client;
use leadflow_engine::{Clock, Config};
use leadflow_robots::Runtime;
use leadflow_server::{Service, Setup};
use leadflow_store::{Options, Store};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// The wall clock, for the service under test (and tests that drive its parts).
pub struct Wall;

impl Clock for Wall {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        // To the microsecond, as the service's wall clock (the log's precision).
        chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6)
    }
}

/// The secret of the `admin` token every test server has ([`Server::client`] sends it).
pub const ADMIN_SECRET: &str = "test-admin-secret-0000000000000000";

/// Makes an API token in the database at `db` (before a server starts on it): its secret.
pub fn make_token(
    db: &std::path::Path,
    config: &Config,
    name: &str,
    role: &str,
    employee: Option<&str>,
) -> String {
    use leadflow_engine::command::NewToken;
    use leadflow_engine::{Actor, Command, EventMeta};
    let secret = if name == "admin" {
        ADMIN_SECRET.to_owned()
    } else {
        format!("test-{name}-secret-{:016x}", name.len() * 7919)
    };
    let cmd = Command::CreateToken(NewToken {
        name: name.into(),
        role: role.into(),
        employee: employee.map(Into::into),
        secret_hash: leadflow_engine::access::secret_hash(&secret),
        note: None,
    });
    let mut store = Store::open(db, &Options::default()).unwrap();
    store
        .write_with(&Wall, |tx| {
            tx.execute(
                config,
                &cmd,
                &EventMeta::root(chrono::Utc::now(), Actor::System),
            )
        })
        .unwrap_or_else(|e| panic!("token {name}: {e}"));
    secret
}

/// A running service.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its database file.
    pub db: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Keeps the folder while the server runs.
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A service over a new database with `config` and the rules of `rules` (TOML text of one
    /// rule file; empty: no rules).
    pub fn start(config: Config, rules: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("leadflow.db");
        Store::open(&db, &Options::default()).unwrap();
        let mut s = Server::start_on(db, config, rules);
        s._dir = Some(dir);
        s
    }

    /// A service over the database at `db` (kept when the server stops); makes the `admin`
    /// token first if the database has none.
    pub fn start_on(db: PathBuf, config: Config, rules: &str) -> Server {
        Server::start_with_clock(db, config, rules, Arc::new(Wall))
    }

    /// [`Server::start_on`] with the service's clock (business time of its batches) given.
    pub fn start_with_clock(
        db: PathBuf,
        config: Config,
        rules: &str,
        clock: Arc<dyn Clock>,
    ) -> Server {
        {
            let store = Store::open(&db, &Options::default()).unwrap();
            let has_admin = leadflow_store::query::tokens(&store)
                .unwrap()
                .iter()
                .any(|t| t.name == "admin");
            drop(store);
            if !has_admin {
                make_token(&db, &config, "admin", "admin", None);
            }
        }
        let runtime = |config: &Config, rules: &str| -> Option<Runtime> {
            if rules.trim().is_empty() {
                return None;
            }
            Some(
                Runtime::load(config.clone(), &[crate::source("rules/test.toml", rules)])
                    .unwrap_or_else(|e| panic!("{e}"))
                    .with_wall_clock(Arc::new(Wall)),
            )
        };
        let rt = runtime(&config, rules);
        let text_empty = rules.trim().is_empty();
        let text = rules.to_owned();
        let setup = Setup {
            config,
            db: db.clone(),
            options: Options::default(),
            rules: rt,
            reload: Arc::new(move |c: &Config| Ok(runtime(c, &text))),
            clock,
        };
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let service = Service::start(setup).unwrap_or_else(|e| panic!("{e}"));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let (_reload_tx, reload) = tokio::sync::mpsc::channel(1);
                let shutdown = async move {
                    let _ = stopped.await;
                    "test"
                };
                leadflow_server::serve(listener, service, shutdown, reload)
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().expect("the service started");
        if !text_empty {
            // The first pass of the rules activates the rule set: wait for it, so that tests
            // see a log that changes only with what they do.
            let c = Client::new(addr).bearer(ADMIN_SECRET);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while c.get("/api/v1/events?type=ruleset.activated").json()["events"]
                .as_array()
                .is_none_or(Vec::is_empty)
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the rule set was never activated"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        Server {
            addr,
            db,
            stop: Some(stop),
            thread: Some(thread),
            _dir: None,
        }
    }

    /// A client of this server with the `admin` token.
    pub fn client(&self) -> Client {
        Client::new(self.addr).bearer(ADMIN_SECRET)
    }

    /// A client of this server without credentials.
    pub fn anonymous(&self) -> Client {
        Client::new(self.addr)
    }

    /// Stops it as SIGTERM does and waits until it has.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("the service thread ended cleanly");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}
