//! A webhook receiver for tests: a std `TcpListener` on 127.0.0.1:0 that keeps every request
//! it gets (request line, headers, body) and answers each as a script says — a status, or
//! never (a hung receiver).

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    /// `POST`.
    pub method: String,
    /// `/hook`.
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The body as text (the receiver fails the request on bytes that are not UTF-8).
    pub body: String,
}

impl Got {
    /// A header's value, `""` when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// What the receiver answers to its n-th request (from 0).
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    /// This status, empty body.
    Status(u16),
    /// Never answers (holds the connection for two minutes).
    Hang,
}

/// The receiver; it runs until the process ends.
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    /// Starts a receiver answering as `script` says.
    pub fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Receiver {
        Receiver::start_with(move |n, _| script(n))
    }

    /// Starts a receiver answering each request as `script` says from its number and the
    /// request itself (its headers, its body).
    pub fn start_with(script: impl Fn(usize, &Got) -> Reply + Send + Sync + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        let script = Arc::new(script);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let seen = seen.clone();
                let script = script.clone();
                std::thread::spawn(move || serve(conn, &seen, &*script));
            }
        });
        Receiver { url, got }
    }

    /// A receiver answering 200 to everything.
    pub fn ok() -> Receiver {
        Receiver::start(|_| Reply::Status(200))
    }

    /// Everything it got so far.
    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until it got at least `n` requests (at most `timeout`); what it got.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<Got>, Vec<Got>> {
        let start = Instant::now();
        loop {
            let got = self.got();
            if got.len() >= n {
                return Ok(got);
            }
            if start.elapsed() > timeout {
                return Err(got);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

fn serve(conn: TcpStream, seen: &Mutex<Vec<Got>>, script: &dyn Fn(usize, &Got) -> Reply) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut headers = HashMap::new();
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or_default().to_owned();
    let path = words.next().unwrap_or_default().to_owned();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let Ok(body) = String::from_utf8(body) else {
        return;
    };
    let got = Got {
        method,
        path,
        headers,
        body,
    };
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.push(got.clone());
        seen.len() - 1
    };
    let mut conn = conn;
    match script(n, &got) {
        Reply::Status(s) => {
            let _ = write!(
                conn,
                "HTTP/1.1 {s} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
        Reply::Hang => std::thread::sleep(Duration::from_secs(120)),
    }
}
