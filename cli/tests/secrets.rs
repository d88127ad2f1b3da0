//! No secret in any log: a whole session of the real binary — tokens made with `token create`
//! (an admin's and an employee's), a webhook endpoint with a known `whsec_` secret delivering
//! to a local receiver, `leadflow serve` at `RUST_LOG=trace` taking native API calls with
//! Bearer tokens, failed attempts with wrong secrets (up to the 429), Bitrix24 facade calls
//! with the secret in the URL (also in odd spellings of the path), a web form with its token in
//! the query, a field and the header — and then every secret used, the wrong ones too, is
//! looked for in all of serve's stdout and stderr, every HTTP answer (error bodies, headers,
//! `/metrics`), the delivered webhook requests and every CLI output but the one `token create`
//! that prints its secret. None may appear (`leadflow events`, plain and `--json`, shows an
//! endpoint's signing secret as `***`, as the API does).

use leadflow_testkit::cli::{Env, Serving, json_lines, stderr};
use leadflow_testkit::http::{Client, Response};
use leadflow_testkit::receiver::Receiver;
use serde_json::{Value, json};
use std::time::Duration;

const WEBHOOK_SECRET: &str = "whsec_TWZLUTlyOEdLWXFyVHdqVVBEOElMUFpJbzJMYQ";
const DELIVERY_SECRET: &str = "whsec_RGVsaXZlcnlTZWNyZXRGb3JSdWxlV2ViaG9va3M";
const FORM_SECRET: &str = "form-secret-Qw3rTy0987654321zz";
/// Wrong secrets a client tried: they must not be echoed either.
const WRONG: &[&str] = &[
    "wrong-bearer-secret-AAAA1111",
    "wrong-facade-secret-BBBB2222",
    "wrong-form-secret-CCCC3333",
    "wrong-basic-secret-DDDD4444",
];

const FORM: &str = r#"
[forms.partner]
token = "FORM_SECRET"
source = "call"

[forms.partner.fields]
name = "name"
phones = "phone"

[delivery]
timeout = "5s"
backoff_base = "1s"
backoff_max = "1s"
secret = "DELIVERY_SECRET"
"#;

fn start(env: &Env) -> Serving {
    env.serve("trace")
}

/// What the session saw, to search.
#[derive(Default)]
struct Seen {
    texts: Vec<(String, String)>,
}

impl Seen {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.texts.push((what.into(), text.into()));
    }

    /// Keeps an HTTP answer (status line, headers and body) and returns it.
    fn answer(&mut self, what: &str, r: Response) -> Response {
        let headers: String = r
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}\n"))
            .collect();
        self.add(what, format!("{}\n{headers}\n{}", r.status, r.text()));
        r
    }

    /// Asserts `secret` appears nowhere (but in the sources listed in `except`).
    fn assert_absent(&self, secret: &str, except: &[&str]) {
        for (what, text) in &self.texts {
            if except.contains(&what.as_str()) {
                continue;
            }
            assert!(
                !text.contains(secret),
                "the secret {secret} leaked into {what}:\n{}",
                excerpt(text, secret)
            );
        }
    }
}

fn excerpt(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|l| l.contains(needle))
        .take(5)
        .collect::<Vec<_>>()
        .join("\n")
}

fn token(env: &Env, name: &str, args: &[&str]) -> String {
    let mut a = vec!["--json", "token", "create", name];
    a.extend_from_slice(args);
    let out = env.ok(&a);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    v["secret"].as_str().unwrap().to_owned()
}

/// A CLI command whose stdout and stderr are kept.
fn cli(env: &Env, seen: &mut Seen, args: &[&str]) -> String {
    let out = env.wall_clock_cmd().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    seen.add(
        format!("leadflow {}", args.join(" ")),
        format!("{text}\n{}", stderr(&out)),
    );
    text
}

#[test]
fn no_secret_used_in_a_whole_session_reaches_a_log_an_answer_or_a_cli_output() {
    let env = Env::new();
    let config = env.path().join("leadflow.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        &FORM
            .replace("FORM_SECRET", FORM_SECRET)
            .replace("DELIVERY_SECRET", DELIVERY_SECRET),
    );
    std::fs::write(&config, text).unwrap();
    let mut seen = Seen::default();

    // The two outputs that print a secret, once, by design (not searched).
    let admin = token(&env, "ops", &["--role", "admin"]);
    let employee = token(
        &env,
        "ivan",
        &["--role", "first_line", "--employee", "ivanov"],
    );
    let rx = Receiver::ok();
    cli(
        &env,
        &mut seen,
        &[
            "webhook",
            "add",
            &rx.url,
            "--events",
            "lead.created",
            "--secret",
            WEBHOOK_SECRET,
        ],
    );

    let s = start(&env);
    let c = Client::new(s.addr).bearer(&admin);
    let as_employee = Client::new(s.addr).bearer(&employee);
    let anonymous = Client::new(s.addr);

    // The native API, with both tokens.
    let r = seen.answer(
        "POST /api/v1/leads",
        c.post(
            "/api/v1/leads",
            &json!({"name": "Ivan", "phones": ["+79001234567"]}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = seen.answer("GET lead", c.get("/api/v1/leads/1"));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = seen.answer("employee list", as_employee.get("/api/v1/leads"));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = seen.answer(
        "employee forbidden",
        as_employee.post("/api/v1/rules/activate", &json!({})),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    seen.answer(
        "malformed",
        c.request(
            "POST",
            "/api/v1/leads",
            &[("content-type", "application/json")],
            format!("{{\"name\": \"{admin}").as_bytes(),
        ),
    );
    seen.answer("api events", c.get("/api/v1/events?type=endpoint.added"));
    // The endpoint's secret is masked over the API.
    let events = c.get("/api/v1/events?type=endpoint.added").json();
    assert_eq!(events["events"][0]["payload"]["secret"], "***", "{events}");

    // The facade, with the secret in the URL, and odd spellings of such URLs.
    let r = seen.answer(
        "facade add",
        anonymous.post(
            &format!("/rest/1/{admin}/crm.lead.add.json"),
            &json!({"fields": {"TITLE": "From Bitrix", "PHONE": [{"VALUE": "+79007654321"}]}}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = seen.answer(
        "facade list",
        anonymous.get(&format!("/rest/1/{admin}/crm.lead.list?select[]=ID")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = seen.answer(
        "facade employee on another user",
        anonymous.get(&format!("/rest/2/{employee}/crm.lead.list")),
    );
    assert!(r.status < 500, "{}", r.text());
    for path in [
        format!("/rest/1/{admin}"),
        format!("/rest/1/{admin}/"),
        format!("//rest/1/{admin}/crm.lead.list"),
        format!("/REST/1/{admin}/crm.lead.list"),
        format!("/%72est/1/{admin}/crm.lead.list"),
        format!("/rest//1/{admin}/crm.lead.list"),
        format!("/rest/1/{admin}/crm.lead.list/"),
        format!("/rest/x/{admin}/crm.lead.list"),
    ] {
        let r = seen.answer(&format!("odd facade path {path}"), anonymous.get(&path));
        assert!(r.status >= 200 && r.status < 500, "{path}: {}", r.text());
    }

    // The form, with its token in the query, a field and the header.
    let form = |headers: &[(&str, &str)], query: &str, body: &str| {
        let mut h = vec![
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ];
        h.extend_from_slice(headers);
        anonymous.request(
            "POST",
            &format!("/intake/partner{query}"),
            &h,
            body.as_bytes(),
        )
    };
    let r = seen.answer(
        "form query token",
        form(
            &[],
            &format!("?token={FORM_SECRET}"),
            "name=Anna&phone=89001112233",
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = seen.answer(
        "form field token",
        form(
            &[],
            "",
            &format!("name=Olga&phone=89001112244&token={FORM_SECRET}"),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let bearer = format!("Bearer {FORM_SECRET}");
    let r = seen.answer(
        "form header token",
        form(
            &[("authorization", &bearer)],
            "",
            "name=Oleg&phone=89001112255",
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = seen.answer(
        "form wrong token",
        form(
            &[],
            &format!("?token={}", WRONG[2]),
            "name=Eve&phone=89001112266",
        ),
    );
    assert_eq!(r.status, 401, "{}", r.text());

    // The webhook reached the receiver, signed (the signature, never the secret).
    let got = rx
        .wait_for(1, Duration::from_secs(30))
        .unwrap_or_else(|g| panic!("no delivery: {g:?}"));
    for g in &got {
        assert!(!g.header("webhook-signature").is_empty(), "{g:?}");
        seen.add("delivered webhook", format!("{g:?}"));
    }

    // Wrong secrets: bearer, Basic, facade; then the address is refused (429).
    let basic = format!("Basic {}", WRONG[3]);
    let r = seen.answer(
        "basic auth",
        anonymous.request("GET", "/api/v1/leads", &[("authorization", &basic)], b""),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    let r = seen.answer(
        "facade wrong secret",
        anonymous.get(&format!("/rest/1/{}/crm.lead.list", WRONG[1])),
    );
    assert!(r.status == 401 || r.status == 400, "{}", r.text());
    let mut refused = false;
    for i in 0..12 {
        let r = seen.answer(
            "wrong bearer",
            anonymous.bearer(WRONG[0]).get("/api/v1/leads"),
        );
        assert!(r.status == 401 || r.status == 429, "{i}: {}", r.text());
        refused |= r.status == 429;
    }
    assert!(refused, "the wrong secrets were never refused with 429");
    let r = seen.answer("good token refused", c.get("/api/v1/leads"));
    assert_eq!(r.status, 429, "{}", r.text());
    let r = seen.answer(
        "facade after the limit",
        anonymous.get(&format!("/rest/1/{admin}/crm.lead.list")),
    );
    assert!(r.status >= 400, "{}", r.text());

    let metrics = seen.answer("metrics", anonymous.get("/metrics"));
    assert!(metrics.text().contains("leadflow_http_requests_total"));

    // Stop it (SIGTERM) and keep all it said.
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let mut s = s;
    let status = s.child.wait().unwrap();
    assert!(status.success(), "serve: {status}");
    std::thread::sleep(Duration::from_millis(200));
    let log = s.log();
    assert!(
        log.contains("answered"),
        "the request log is not in:\n{log}"
    );
    assert!(log.contains("/rest/1/***/"), "{log}");
    seen.add("serve stdout and stderr", log);

    // The CLI after the session.
    for args in [
        &["token", "list"][..],
        &["--json", "token", "list"],
        &["webhook", "list"],
        &["--json", "webhook", "list"],
        &["lead", "list"],
        &["--json", "lead", "list"],
        &["outbox", "list"],
        &["journal"],
        &["verify"],
    ] {
        cli(&env, &mut seen, args);
    }
    let events = cli(&env, &mut seen, &["--json", "events"]);
    let added: Vec<Value> = json_lines(&events)
        .into_iter()
        .filter(|e| e["type"] == "endpoint.added")
        .collect();
    assert_eq!(added.len(), 1, "{events}");
    cli(&env, &mut seen, &["events"]);

    for secret in [
        admin.as_str(),
        employee.as_str(),
        FORM_SECRET,
        DELIVERY_SECRET,
    ]
    .into_iter()
    .chain(WRONG.iter().copied())
    {
        seen.assert_absent(secret, &[]);
    }
    // The endpoint's signing secret too: the log keeps it, but nothing shows it.
    seen.assert_absent(WEBHOOK_SECRET, &[]);
}
