//! The popular Python Bitrix24 clients, unmodified from PyPI, against the real `leadflow serve`
//! on a socket: fast-bitrix24 (tests/clients/fast_bitrix24_client.py) over plain HTTP, and
//! b24pysdk (tests/clients/b24pysdk_client.py), which speaks only https, through a TLS
//! terminator on 127.0.0.1 (tests/clients/tls_proxy.py) with a self-signed certificate made by
//! `openssl`. Each script adds, updates, gets and lists leads (filters, more than one page),
//! works deals in the `services` pipeline (`CATEGORY_ID` 1, `C1:` stages), runs a batch and
//! checks the error of an unknown method, failing on the first mismatch; afterwards the log
//! verifies and its `lead.created`/`deal.created` events are exactly the records the script
//! reports, each written through the webhook's token for user 1 (`api:py@ivanov`). The
//! `batch-order` tests check that a batch runs its commands in the order sent, whatever their
//! labels (fast-bitrix24: a reference to a command labelled after it; b24pysdk: a list of 12
//! requests, labelled `0` … `11`); `fast_bitrix24_lists_with_every_documented_filter` that each
//! kind of filter and order docs/BITRIX24-FACADE.md lists answers the right rows, and
//! `b24pysdk_parses_the_typed_fields` that b24pysdk's typed `.value` of `user.current` and
//! `crm.*.fields` parses (enumeration items have Bitrix24's integer ids).
//!
//! The Python with both packages is `$LEADFLOW_PYTHON` (`.ci/run` makes a virtualenv from
//! tests/clients/requirements.txt). Without it the tests are skipped, saying so on stderr,
//! except under CI (`CI=true`), where they fail.

use leadflow_testkit::cli::{Env, Serving};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The token the scripts' webhook URL carries.
const TOKEN: &str = "py";

/// `$LEADFLOW_PYTHON`, or `None` (the test is skipped) when it is unset outside CI.
#[allow(clippy::print_stderr)] // the skip is said on the test's stderr
fn python(test: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LEADFLOW_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: LEADFLOW_PYTHON is not set, and CI must run the Python clients: point it at a \
         Python with tests/clients/requirements.txt installed (.ci/run makes one)"
    );
    eprintln!(
        "{test}: skipped (set LEADFLOW_PYTHON to a Python with tests/clients/requirements.txt)"
    );
    None
}

/// A script of tests/clients.
fn script(name: &str) -> PathBuf {
    leadflow_testkit::repo("tests/clients").join(name)
}

/// A child process killed when dropped, so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first line of a child's stdout (it says where it listens).
fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

/// A folder `init` set up, with an admin token `py`: its secret.
fn env_with_token() -> (Env, String) {
    let env = Env::new();
    let out = env.ok(&["--json", "token", "create", TOKEN, "--role", "admin"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let secret = v["secret"].as_str().unwrap().to_owned();
    (env, secret)
}

/// Runs `python script mode` with `vars`; it must exit 0. Answers the JSON of its last stdout
/// line.
fn run_client(
    python: &Path,
    name: &str,
    mode: &str,
    vars: &[(&str, &str)],
    serving: &Serving,
) -> Value {
    let out = Command::new(python)
        .arg(script(name))
        .arg(mode)
        .envs(vars.iter().copied())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name} {mode}: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- serve\n{}",
        out.status,
        serving.log()
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{name}: no summary ({e}): {stdout}"))
}

/// The ids a summary lists at `pointer`, `[]` if none.
fn ids(summary: &Value, pointer: &str) -> BTreeSet<i64> {
    summary
        .pointer(pointer)
        .map(|v| {
            v.as_array()
                .unwrap_or_else(|| panic!("{pointer} in {summary} is not a list"))
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// After the service stopped: the log verifies, its created leads are exactly the summary's
/// `leads` and its created deals the summary's `deals` by pipeline (`CATEGORY_ID` 1 is
/// `services`, 0 `goods`), each appended through the token for user 1.
fn check_log(env: &Env, summary: &Value) {
    env.ok(&["verify"]);
    let log = env.log();
    let created = |kind: &str, pipeline: Option<&str>| -> BTreeSet<i64> {
        log.iter()
            .filter(|e| e["type"] == format!("{kind}.created").as_str())
            .filter(|e| pipeline.is_none_or(|p| e["payload"]["pipeline"] == p))
            .map(|e| {
                assert_eq!(e["actor"], "api:py@ivanov", "{e}");
                e["payload"]["id"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("no id in {e}"))
            })
            .collect()
    };
    assert_eq!(
        created("lead", None),
        ids(summary, "/leads"),
        "leads created"
    );
    let services = ids(summary, "/deals/services");
    let goods = ids(summary, "/deals/goods");
    assert_eq!(
        created("deal", Some("services")),
        services,
        "services deals"
    );
    assert_eq!(created("deal", Some("goods")), goods, "goods deals");
    assert_eq!(
        created("deal", None).len(),
        services.len() + goods.len(),
        "deals created"
    );
}

/// fast-bitrix24's script in `mode` against a fresh service, then [`check_log`].
fn fast_bitrix24(test: &str, mode: &str) {
    let Some(python) = python(test) else {
        return;
    };
    let (env, secret) = env_with_token();
    let serving = env.serve("info");
    let url = format!("http://{}/rest/1/{secret}/", serving.addr);
    let summary = run_client(
        &python,
        "fast_bitrix24_client.py",
        mode,
        &[("LEADFLOW_URL", &url)],
        &serving,
    );
    serving.stop();
    check_log(&env, &summary);
}

/// b24pysdk's script in `mode` against a fresh service behind a TLS terminator with a
/// self-signed certificate for 127.0.0.1, then [`check_log`]; the folder, for more checks
/// (`None`: skipped).
fn b24pysdk(test: &str, mode: &str) -> Option<Env> {
    let python = python(test)?;
    let (env, secret) = env_with_token();
    let (cert, key) = (env.path().join("cert.pem"), env.path().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap_or_else(|e| panic!("openssl (to make the test certificate): {e}"));
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let serving = env.serve("info");
    let proxy = Command::new(&python)
        .arg(script("tls_proxy.py"))
        .arg(&cert)
        .arg(&key)
        .arg(serving.addr.port().to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut proxy = Running(proxy);
    let line = first_line(&mut proxy.0);
    let domain = line
        .strip_prefix("listening on ")
        .map(str::trim)
        .unwrap_or_else(|| panic!("tls_proxy said {line:?}"))
        .to_owned();
    let webhook = format!("1/{secret}");
    let summary = run_client(
        &python,
        "b24pysdk_client.py",
        mode,
        &[
            ("LEADFLOW_DOMAIN", &domain),
            ("LEADFLOW_WEBHOOK", &webhook),
            ("REQUESTS_CA_BUNDLE", cert.to_str().unwrap()),
        ],
        &serving,
    );
    drop(proxy);
    serving.stop();
    check_log(&env, &summary);
    Some(env)
}

#[test]
fn fast_bitrix24_drives_the_facade_unmodified() {
    fast_bitrix24("fast_bitrix24_drives_the_facade_unmodified", "main");
}

#[test]
fn b24pysdk_drives_the_facade_unmodified_over_tls() {
    if let Some(env) = b24pysdk("b24pysdk_drives_the_facade_unmodified_over_tls", "main") {
        // Its timeline comment is an event of the lead.
        let comments: Vec<Value> = env
            .log()
            .into_iter()
            .filter(|e| e["type"] == "lead.commented")
            .collect();
        assert_eq!(comments.len(), 1, "{comments:?}");
        assert_eq!(comments[0]["payload"]["text"], "called back");
    }
}

#[test]
fn fast_bitrix24_batch_runs_commands_in_the_order_sent() {
    fast_bitrix24(
        "fast_bitrix24_batch_runs_commands_in_the_order_sent",
        "batch-order",
    );
}

#[test]
fn b24pysdk_batch_runs_commands_in_the_order_sent() {
    b24pysdk(
        "b24pysdk_batch_runs_commands_in_the_order_sent",
        "batch-order",
    );
}

#[test]
fn fast_bitrix24_lists_with_every_documented_filter() {
    fast_bitrix24(
        "fast_bitrix24_lists_with_every_documented_filter",
        "documented-filters",
    );
}

#[test]
fn b24pysdk_parses_the_typed_fields() {
    b24pysdk("b24pysdk_parses_the_typed_fields", "typed-fields");
}
