//! The role × route matrix, on a real socket: one token per default role (docs/CONFIG.md
//! `[roles.NAME]`), each acting for an employee of the default configuration, calls every route
//! of the native API (read from the served `/api/v1/openapi.json`, so a route added without a
//! row here fails) and every method of the Bitrix24 facade. A row says which roles may; every
//! other role must get a 403 that names the role and what it lacks, and nothing appended; an
//! allowed call must succeed (2xx); no token is a 401. Then: a batch cannot do what its token
//! cannot; event streams and the event list carry only what the role may read (a first-line
//! stream has no deal events; a deleted deal stays its team's); a team-scoped token reaches
//! only its team's pipelines, on every route of both APIs (another team's record is a 403 and
//! left out of lists; a task is made only on a lead or deal in reach) and reads only its own
//! inbox; a `[roles.NAME]` section replaces a default role or adds one.

use leadflow_engine::ids::EmployeeId;
use leadflow_server::bitrix::Mapping;
use leadflow_testkit::config;
use leadflow_testkit::http::{Client, Response};
use leadflow_testkit::receiver::{Receiver, Reply};
use leadflow_testkit::serve::{Server, make_token};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN: &str = "admin";
const DESIGNER: &str = "designer";
const FIRST_LINE: &str = "first_line";
const SALES: &str = "sales";
const HEAD: &str = "head_of_sales";
const AUDITOR: &str = "auditor";
const INTAKE: &str = "intake";

/// Every default role, and the employee its token acts for (`sales` is kuznetsov of the goods
/// team; `head_of_sales` is smirnova, who manages the first line and services; `intake` acts
/// for nobody).
const TOKENS: [(&str, Option<&str>); 7] = [
    (ADMIN, Some("admin")),
    (DESIGNER, Some("admin")),
    (FIRST_LINE, Some("ivanov")),
    (SALES, Some("kuznetsov")),
    (HEAD, Some("smirnova")),
    (AUDITOR, Some("admin")),
    (INTAKE, None),
];

/// One more token, for scope: a head of sales acting for volkov, who manages goods only (no
/// lead pipeline): name, role, employee.
const HEAD_OF_GOODS: (&str, &str, &str) = ("head_of_goods", HEAD, "volkov");

/// Who may call each route of the native API: method, path (as the OpenAPI document names
/// it), the roles that may, and what every other role lacks (its 403 says `role R may not
/// <that>`). `GET /openapi.json` is open. Run in this order, each role on its own records, so
/// that every allowed write is a happy path.
#[rustfmt::skip]
const NATIVE: &[(&str, &str, &[&str], &str)] = &[
    ("get", "/openapi.json", &[ADMIN, DESIGNER, FIRST_LINE, SALES, HEAD, AUDITOR, INTAKE], ""),
    ("get", "/leads", &[ADMIN, DESIGNER, FIRST_LINE, HEAD, AUDITOR], "read leads"),
    ("get", "/leads/{id}", &[ADMIN, DESIGNER, FIRST_LINE, HEAD, AUDITOR], "read leads"),
    ("get", "/leads/{id}/timers", &[ADMIN, DESIGNER, HEAD, AUDITOR], "read timers"),
    ("get", "/deals", &[ADMIN, DESIGNER, SALES, HEAD, AUDITOR], "read deals"),
    ("get", "/deals/{id}", &[ADMIN, DESIGNER, SALES, HEAD, AUDITOR], "read deals"),
    ("get", "/deals/{id}/timers", &[ADMIN, DESIGNER, HEAD, AUDITOR], "read timers"),
    ("get", "/contacts", &[ADMIN, DESIGNER, SALES, HEAD, AUDITOR], "read contacts"),
    ("get", "/contacts/{id}", &[ADMIN, DESIGNER, SALES, HEAD, AUDITOR], "read contacts"),
    ("get", "/companies", &[ADMIN, DESIGNER, SALES, HEAD, AUDITOR], "read companies"),
    ("get", "/companies/{id}", &[ADMIN, DESIGNER, SALES, HEAD, AUDITOR], "read companies"),
    ("get", "/tasks", &[ADMIN, DESIGNER, FIRST_LINE, SALES, HEAD, AUDITOR], "read tasks"),
    ("get", "/tasks/{id}", &[ADMIN, DESIGNER, FIRST_LINE, SALES, HEAD, AUDITOR], "read tasks"),
    ("get", "/events", &[ADMIN, DESIGNER, FIRST_LINE, SALES, HEAD, AUDITOR], "read events"),
    ("get", "/events/stream", &[ADMIN, DESIGNER, FIRST_LINE, SALES, HEAD, AUDITOR], "read events"),
    ("get", "/journal", &[ADMIN, DESIGNER, HEAD, AUDITOR], "read the journal"),
    ("get", "/inbox", &[ADMIN, DESIGNER, FIRST_LINE, SALES, HEAD, AUDITOR], "read the inbox"),
    ("get", "/verify", &[ADMIN, AUDITOR], "read the log check (verify)"),
    ("post", "/rules/check", &[ADMIN, DESIGNER, AUDITOR], "read rules"),
    ("post", "/leads", &[ADMIN, FIRST_LINE, INTAKE], "create leads"),
    ("post", "/deals", &[ADMIN, SALES], "create deals"),
    ("post", "/contacts", &[ADMIN, SALES], "create contacts"),
    ("post", "/companies", &[ADMIN, SALES], "create companies"),
    ("post", "/tasks", &[ADMIN, FIRST_LINE, SALES], "create tasks"),
    ("patch", "/leads/{id}", &[ADMIN, FIRST_LINE], "update leads"),
    ("patch", "/deals/{id}", &[ADMIN, SALES], "update deals"),
    ("patch", "/contacts/{id}", &[ADMIN, SALES], "update contacts"),
    ("patch", "/companies/{id}", &[ADMIN, SALES], "update companies"),
    ("post", "/leads/{id}/assign", &[ADMIN, FIRST_LINE, HEAD], "assign leads"),
    ("post", "/deals/{id}/assign", &[ADMIN, SALES, HEAD], "assign deals"),
    ("post", "/leads/{id}/move", &[ADMIN, FIRST_LINE, HEAD], "move leads"),
    ("post", "/deals/{id}/move", &[ADMIN, SALES, HEAD], "move deals"),
    ("post", "/tasks/{id}/complete", &[ADMIN, FIRST_LINE, SALES], "complete tasks"),
    ("post", "/rules/activate", &[ADMIN, DESIGNER], "administer rules"),
    ("get", "/webhooks", &[ADMIN, DESIGNER, AUDITOR], "read webhooks"),
    ("get", "/outbox", &[ADMIN, DESIGNER, AUDITOR], "read the outbox"),
    ("post", "/webhooks", &[ADMIN], "administer webhooks"),
    ("delete", "/webhooks/{id}", &[ADMIN], "administer webhooks"),
    ("post", "/outbox/{id}/drop", &[ADMIN], "administer the outbox"),
    ("post", "/outbox/{id}/retry", &[ADMIN], "administer the outbox"),
];

/// Who may call each method of the Bitrix24 facade, and what every other role lacks (`|`
/// between the refusals a role may get, by what it lacks first). Deletes come last, each role
/// deleting its own records. `event.*` rows are checked only as refused or not (their answer
/// is being reworked).
#[rustfmt::skip]
const FACADE: &[(&str, &[&str], &str)] = &[
    ("user.current", &[ADMIN, DESIGNER, FIRST_LINE, SALES, HEAD, AUDITOR, INTAKE], ""),
    ("crm.status.list", &[ADMIN, DESIGNER, FIRST_LINE, SALES, HEAD, AUDITOR, INTAKE], ""),
    ("crm.category.list", &[ADMIN, DESIGNER, FIRST_LINE, SALES, HEAD, AUDITOR, INTAKE], ""),
    ("batch", &[ADMIN, DESIGNER, FIRST_LINE, SALES, HEAD, AUDITOR, INTAKE], ""),
    ("crm.lead.fields", &[ADMIN, DESIGNER, FIRST_LINE, HEAD, AUDITOR], "read leads"),
    ("crm.lead.list", &[ADMIN, DESIGNER, FIRST_LINE, HEAD, AUDITOR], "read leads"),
    ("crm.lead.get", &[ADMIN, DESIGNER, FIRST_LINE, HEAD, AUDITOR], "read leads"),
    ("crm.deal.fields", &[ADMIN, DESIGNER, SALES, HEAD, AUDITOR], "read deals"),
    ("crm.deal.list", &[ADMIN, DESIGNER, SALES, HEAD, AUDITOR], "read deals"),
    ("crm.deal.get", &[ADMIN, DESIGNER, SALES, HEAD, AUDITOR], "read deals"),
    ("crm.contact.fields", &[ADMIN, DESIGNER, SALES, HEAD, AUDITOR], "read contacts"),
    ("crm.contact.list", &[ADMIN, DESIGNER, SALES, HEAD, AUDITOR], "read contacts"),
    ("crm.contact.get", &[ADMIN, DESIGNER, SALES, HEAD, AUDITOR], "read contacts"),
    ("crm.company.fields", &[ADMIN, DESIGNER, SALES, HEAD, AUDITOR], "read companies"),
    ("crm.company.list", &[ADMIN, DESIGNER, SALES, HEAD, AUDITOR], "read companies"),
    ("crm.company.get", &[ADMIN, DESIGNER, SALES, HEAD, AUDITOR], "read companies"),
    ("crm.stagehistory.list", &[ADMIN, DESIGNER, FIRST_LINE, HEAD, AUDITOR], "read leads"),
    ("crm.lead.add", &[ADMIN, FIRST_LINE, INTAKE], "create leads"),
    ("crm.deal.add", &[ADMIN, SALES], "create deals"),
    ("crm.contact.add", &[ADMIN, SALES], "create contacts"),
    ("crm.company.add", &[ADMIN, SALES], "create companies"),
    ("crm.lead.update", &[ADMIN, FIRST_LINE], "update leads"),
    ("crm.deal.update", &[ADMIN, SALES], "update deals"),
    ("crm.contact.update", &[ADMIN, SALES], "update contacts"),
    ("crm.company.update", &[ADMIN, SALES], "update companies"),
    ("crm.timeline.comment.add", &[ADMIN, FIRST_LINE], "read leads|update leads"),
    ("event.bind", &[ADMIN], "administer webhooks"),
    ("event.unbind", &[ADMIN], "administer webhooks"),
    ("event.get", &[ADMIN, DESIGNER, AUDITOR], "read webhooks"),
    ("crm.lead.delete", &[ADMIN, FIRST_LINE], "delete leads"),
    ("crm.deal.delete", &[ADMIN, SALES], "delete deals"),
    ("crm.contact.delete", &[ADMIN, SALES], "delete contacts"),
    ("crm.company.delete", &[ADMIN, SALES], "delete companies"),
];

/// The facade's methods the matrix must have a row for (or that [`FACADE_BUGS`] holds): the
/// ones docs/BITRIX24-FACADE.md lists.
#[rustfmt::skip]
const FACADE_METHODS: &[&str] = &[
    "crm.lead.add", "crm.lead.get", "crm.lead.list", "crm.lead.update", "crm.lead.delete",
    "crm.lead.fields", "crm.deal.add", "crm.deal.get", "crm.deal.list", "crm.deal.update",
    "crm.deal.delete", "crm.deal.fields", "crm.contact.add", "crm.contact.get",
    "crm.contact.list", "crm.contact.update", "crm.contact.delete", "crm.contact.fields",
    "crm.company.add", "crm.company.get", "crm.company.list", "crm.company.update",
    "crm.company.delete", "crm.company.fields", "crm.status.list", "crm.category.list",
    "crm.stagehistory.list", "crm.timeline.comment.add", "user.current", "event.bind",
    "event.unbind", "event.get", "batch",
];

/// Facade methods whose row disagrees with the product, each checked by an ignored test of
/// its own (none now).
const FACADE_BUGS: &[&str] = &[];

/// A running service with one token per role.
struct World {
    server: Server,
    secrets: BTreeMap<&'static str, String>,
    /// The employee each token acts for.
    employees: BTreeMap<&'static str, Option<&'static str>>,
    mapping: Mapping,
    _dir: tempfile::TempDir,
}

impl World {
    /// The default configuration, a token per role and [`HEAD_OF_GOODS`].
    fn new() -> World {
        World::with(config(), &[])
    }

    /// `cfg`, a token per default role, [`HEAD_OF_GOODS`] and the tokens `extra` (name, role,
    /// employee).
    fn with(cfg: leadflow_engine::Config, extra: &[(&'static str, &str, &'static str)]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("leadflow.db");
        leadflow_store::Store::open(&db, &leadflow_store::Options::default()).unwrap();
        let mut tokens: Vec<(&'static str, &str, Option<&'static str>)> =
            TOKENS.iter().map(|(role, e)| (*role, *role, *e)).collect();
        tokens.push((HEAD_OF_GOODS.0, HEAD_OF_GOODS.1, Some(HEAD_OF_GOODS.2)));
        tokens.extend(extra.iter().map(|(n, r, e)| (*n, *r, Some(*e))));
        let mut secrets = BTreeMap::new();
        let mut employees = BTreeMap::new();
        for (name, role, employee) in tokens {
            secrets.insert(name, make_token(&db, &cfg, name, role, employee));
            employees.insert(name, employee);
        }
        let mapping = Mapping::new(Arc::new(cfg.clone()));
        World {
            server: Server::start_on(db, cfg, ""),
            secrets,
            employees,
            mapping,
            _dir: dir,
        }
    }

    /// The admin's client (it seeds the records).
    fn admin(&self) -> Client {
        self.client(ADMIN)
    }

    /// A client with the token of `name` (a role's name, [`HEAD_OF_GOODS`]'s or an extra one).
    fn client(&self, name: &str) -> Client {
        self.server.anonymous().bearer(&self.secrets[name])
    }

    /// The head of the log.
    fn head(&self) -> i64 {
        self.server.anonymous().get("/readyz").json()["database"]["head"]
            .as_i64()
            .unwrap()
    }

    /// `POST /rest/<user>/<secret>/<method>` with the token of `name`, at its employee's user
    /// id (user 1 for a token without one).
    fn facade(&self, name: &str, method: &str, body: &Value) -> (u16, Value) {
        let user =
            self.employees[name].map_or(1, |e| self.mapping.user(&EmployeeId::from(e)).unwrap());
        let r = self.server.anonymous().request(
            "POST",
            &format!("/rest/{user}/{}/{method}", self.secrets[name]),
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        );
        (r.status, r.json())
    }

    /// Creates with the admin's token; the new id.
    fn create(&self, path: &str, body: Value) -> i64 {
        let r = self.admin().post(path, &body);
        assert_eq!(r.status, 201, "{path}: {}", r.text());
        r.json()["id"].as_i64().unwrap()
    }
}

/// A role's own records: the matrix fills path ids and bodies with them.
struct Own {
    role: &'static str,
    lead: i64,
    deal: i64,
    /// The deal's pipeline: the sales token's goods, the head of sales' services.
    pipeline: &'static str,
    /// A member of that pipeline's team, to assign the deal to.
    member: &'static str,
    contact: i64,
    company: i64,
    /// A task on the lead (on the deal for sales), with its assignee.
    task: i64,
    task_on: (&'static str, i64),
    assignee: &'static str,
    /// The endpoint `DELETE /webhooks/{id}` removes, and the failed messages the outbox rows
    /// retry and drop (the same for every role; 0 until [`failed_messages`]).
    webhook: i64,
    retried: i64,
    dropped: i64,
}

/// Seeds `role`'s records with the admin's token: a lead, a deal in a pipeline of its team, a
/// contact, a company and a task (when `task`).
fn seed(w: &World, role: &'static str, task: bool) -> Own {
    let lead = w.create(
        "/api/v1/leads",
        json!({"name": format!("{role}'s lead"), "phones": ["+79001230001"]}),
    );
    let (pipeline, member) = if role == HEAD {
        ("services", "lebedev")
    } else {
        ("goods", "popova")
    };
    let deal = w.create(
        "/api/v1/deals",
        json!({"title": format!("{role}'s deal"), "pipeline": pipeline}),
    );
    let contact = w.create(
        "/api/v1/contacts",
        json!({"name": format!("{role}'s contact")}),
    );
    let company = w.create(
        "/api/v1/companies",
        json!({"name": format!("{role}'s company")}),
    );
    let (task_on, assignee) = if role == SALES {
        (("deal", deal), "kuznetsov")
    } else {
        (("lead", lead), "ivanov")
    };
    let task = if task {
        w.create(
            "/api/v1/tasks",
            json!({"kind": "call", "title": format!("{role}'s call"), "assignee": assignee, task_on.0: task_on.1}),
        )
    } else {
        0
    };
    Own {
        role,
        lead,
        deal,
        pipeline,
        member,
        contact,
        company,
        task,
        task_on,
        assignee,
        webhook: 0,
        retried: 0,
        dropped: 0,
    }
}

/// The matrix's configuration: a message fails at its first attempt (`max_attempts = 1`),
/// and an attempt may take a minute.
fn delivering() -> leadflow_engine::Config {
    leadflow_testkit::setup::config_from(&format!(
        "{}\n[delivery]\nmax_attempts = 1\ntimeout = \"60s\"\n",
        leadflow_engine::config::DEFAULT_CONFIG
    ))
}

/// Two failed messages for the outbox rows, and the id the endpoint `POST /webhooks` makes
/// will have: an endpoint for `contact.deleted` (no row deletes a contact) at a receiver that
/// fails the first two requests and never answers later ones (a retried message appends
/// nothing while the matrix runs), and two contacts deleted through the facade.
fn failed_messages(w: &World) -> (i64, i64, i64) {
    let rx = Receiver::start(|n| {
        if n < 2 {
            Reply::Status(500)
        } else {
            Reply::Hang
        }
    });
    let r = w.admin().post(
        "/api/v1/webhooks",
        &json!({"url": rx.url, "events": ["contact.deleted"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let endpoint = r.json()["id"].as_i64().unwrap();
    for n in 0..2 {
        let id = w.create("/api/v1/contacts", json!({"name": format!("deleted {n}")}));
        let (status, body) = w.facade(ADMIN, "crm.contact.delete", &json!({"id": id}));
        assert_eq!(status, 200, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let failed = w.admin().get("/api/v1/outbox?state=failed").json()["messages"].clone();
        if let [a, b] = failed.as_array().unwrap().as_slice() {
            return (
                endpoint + 1,
                a["id"].as_i64().unwrap(),
                b["id"].as_i64().unwrap(),
            );
        }
        assert!(
            Instant::now() < deadline,
            "the messages never failed: {failed}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The path of a route with `own`'s id in place of `{id}`.
fn fill(path: &str, own: &Own) -> String {
    let id = match path.split('/').nth(1) {
        Some("leads") => own.lead,
        Some("deals") => own.deal,
        Some("contacts") => own.contact,
        Some("companies") => own.company,
        Some("tasks") => own.task,
        Some("webhooks") => own.webhook,
        Some("outbox") if path.ends_with("/retry") => own.retried,
        Some("outbox") => own.dropped,
        _ => 0,
    };
    format!("/api/v1{}", path.replace("{id}", &id.to_string()))
}

/// A valid body for a write route, on `own`'s records.
fn native_body(method: &str, path: &str, own: &Own) -> Value {
    let who = own.role;
    match (method, path) {
        ("post", "/leads") => {
            json!({"name": format!("a lead by {who}"), "phones": ["+79001230002"]})
        }
        ("patch", "/leads/{id}") => json!({"comment": format!("changed by {who}")}),
        ("post", "/leads/{id}/move") => json!({"stage": "quality_control"}),
        ("post", "/leads/{id}/assign") => json!({"to": "petrova"}),
        ("post", "/deals") => {
            json!({"title": format!("a deal by {who}"), "pipeline": own.pipeline})
        }
        ("patch", "/deals/{id}") => json!({"comment": format!("changed by {who}")}),
        ("post", "/deals/{id}/move") => json!({"stage": "lost", "reason": "price"}),
        ("post", "/deals/{id}/assign") => json!({"to": own.member}),
        ("post", "/contacts") | ("post", "/companies") => json!({"name": format!("made by {who}")}),
        ("patch", "/contacts/{id}") | ("patch", "/companies/{id}") => {
            json!({"name": format!("renamed by {who}")})
        }
        ("post", "/tasks") => {
            json!({"kind": "call", "title": format!("a call by {who}"), "assignee": own.assignee, own.task_on.0: own.task_on.1})
        }
        ("post", "/tasks/{id}/complete") => json!({"result": "reached"}),
        ("post", "/rules/check") | ("post", "/rules/activate") => json!({}),
        ("post", "/webhooks") => {
            json!({"url": "https://hooks.example/leadflow", "events": ["contact.deleted"]})
        }
        ("delete", "/webhooks/{id}")
        | ("post", "/outbox/{id}/retry")
        | ("post", "/outbox/{id}/drop") => json!({}),
        (m, p) => panic!("no body for {m} {p}: give the new route one"),
    }
}

/// The status line and what arrived of an event stream within `wait` (or until `until` is in
/// it, or the service closed the connection).
fn read_stream(w: &World, role: &str, path: &str, until: &str, wait: Duration) -> (u16, String) {
    let mut sock = std::net::TcpStream::connect(w.server.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\r\n",
        w.secrets[role]
    )
    .unwrap();
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline && !String::from_utf8_lossy(&got).contains(until) {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// What is wrong with a refusal's body `error` text for `role` lacking `lacks` (`|`-separated
/// alternatives), if anything.
fn wrong_refusal(role: &str, message: &str, lacks: &str) -> Option<String> {
    let named = lacks
        .split('|')
        .any(|l| message.contains(&format!("role {role} may not {l}")));
    (!named).then(|| format!("the 403 should say `role {role} may not {lacks}`: {message}"))
}

#[test]
fn every_role_on_every_route_of_the_native_api_is_allowed_or_refused_as_the_matrix_says() {
    let w = World::with(delivering(), &[]);
    let doc = w.server.anonymous().get("/api/v1/openapi.json").json();
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let path = path.strip_prefix("/api/v1").unwrap().to_owned();
            documented.insert((method.clone(), path));
        }
    }
    let in_matrix: BTreeSet<(String, String)> = NATIVE
        .iter()
        .map(|(m, p, _, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        documented, in_matrix,
        "every documented route has exactly one matrix row"
    );
    assert_eq!(in_matrix.len(), NATIVE.len(), "no route has two rows");

    let mut own: Vec<Own> = TOKENS.iter().map(|(r, _)| seed(&w, r, true)).collect();
    let (webhook, retried, dropped) = failed_messages(&w);
    for o in &mut own {
        (o.webhook, o.retried, o.dropped) = (webhook, retried, dropped);
    }
    let mut wrong = Vec::new();
    for (method, path, allowed, lacks) in NATIVE {
        for own in &own {
            let role = own.role;
            let url = fill(path, own);
            let before = w.head();
            let (status, body) = if *path == "/events/stream" {
                let (status, text) =
                    read_stream(&w, role, &url, "\r\n\r\n", Duration::from_secs(5));
                let (status, text) = if status == 403 {
                    read_stream(&w, role, &url, "\"}}", Duration::from_secs(5))
                } else {
                    (status, text)
                };
                let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                let json = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
                (status, json)
            } else {
                let c = w.client(role);
                let r: Response = if *method == "get" {
                    c.get(&url)
                } else {
                    c.json(
                        &method.to_uppercase(),
                        &url,
                        &native_body(method, path, own),
                    )
                };
                let json = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                (r.status, json)
            };
            let cell = format!("{role} {} {url}", method.to_uppercase());
            if allowed.contains(&role) {
                if !(200..300).contains(&status) {
                    wrong.push(format!("{cell}: allowed, got {status} {body}"));
                }
                continue;
            }
            if status != 403 {
                wrong.push(format!("{cell}: should be 403, got {status} {body}"));
                continue;
            }
            if body["error"]["code"] != "forbidden" {
                wrong.push(format!("{cell}: error code {body}"));
            }
            if let Some(e) =
                wrong_refusal(role, body["error"]["message"].as_str().unwrap_or(""), lacks)
            {
                wrong.push(format!("{cell}: {e}"));
            }
            if w.head() != before {
                wrong.push(format!("{cell}: a refusal appended to the log"));
            }
        }
        // Without a token, every route but the document is a 401.
        let anonymous = if *path == "/openapi.json" { 200 } else { 401 };
        let url = fill(path, &own[0]);
        let r = w.server.anonymous().request(
            &method.to_uppercase(),
            &url,
            &[("content-type", "application/json")],
            b"{}",
        );
        if r.status != anonymous {
            wrong.push(format!(
                "no token {method} {url}: {} {}",
                r.status,
                r.text()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// A valid facade call of `method` on `own`'s records.
fn facade_body(method: &str, own: &Own) -> Value {
    let who = own.role;
    let category = if own.pipeline == "services" { 1 } else { 0 };
    match method {
        "user.current" | "crm.status.list" => json!({}),
        "crm.category.list" => json!({"entityTypeId": 2}),
        "batch" => json!({"halt": 0, "cmd": {"who": "user.current"}}),
        "crm.lead.fields" | "crm.deal.fields" | "crm.contact.fields" | "crm.company.fields" => {
            json!({})
        }
        "crm.lead.list" | "crm.deal.list" | "crm.contact.list" | "crm.company.list" => {
            json!({"select": ["ID"]})
        }
        "crm.lead.get" | "crm.lead.delete" => json!({"id": own.lead}),
        "crm.deal.get" | "crm.deal.delete" => json!({"id": own.deal}),
        "crm.contact.get" | "crm.contact.delete" => json!({"id": own.contact}),
        "crm.company.get" | "crm.company.delete" => json!({"id": own.company}),
        "crm.stagehistory.list" => json!({"entityTypeId": 1, "filter": {"OWNER_ID": own.lead}}),
        "crm.lead.add" => json!({"fields": {"TITLE": format!("added by {who}"), "NAME": "Ivan"}}),
        "crm.deal.add" => {
            json!({"fields": {"TITLE": format!("added by {who}"), "CATEGORY_ID": category}})
        }
        "crm.contact.add" => json!({"fields": {"NAME": format!("added by {who}")}}),
        "crm.company.add" => json!({"fields": {"TITLE": format!("added by {who}")}}),
        "crm.lead.update" => {
            json!({"id": own.lead, "fields": {"TITLE": format!("renamed by {who}")}})
        }
        "crm.deal.update" => {
            json!({"id": own.deal, "fields": {"TITLE": format!("renamed by {who}")}})
        }
        "crm.contact.update" => {
            json!({"id": own.contact, "fields": {"NAME": format!("renamed by {who}")}})
        }
        "crm.company.update" => {
            json!({"id": own.company, "fields": {"TITLE": format!("renamed by {who}")}})
        }
        "crm.timeline.comment.add" => {
            json!({"fields": {"ENTITY_ID": own.lead, "ENTITY_TYPE": "lead", "COMMENT": format!("a word from {who}")}})
        }
        "event.bind" | "event.unbind" => {
            json!({"event": "ONCRMLEADADD", "handler": "https://hooks.example/leadflow"})
        }
        "event.get" => json!({}),
        other => panic!("no body for {other}: give the new method one"),
    }
}

#[test]
fn every_role_on_every_method_of_the_bitrix24_facade_is_allowed_or_refused_as_the_matrix_says() {
    let in_matrix: BTreeSet<&str> = FACADE
        .iter()
        .map(|(m, _, _)| *m)
        .chain(FACADE_BUGS.iter().copied())
        .collect();
    assert_eq!(
        in_matrix,
        FACADE_METHODS.iter().copied().collect::<BTreeSet<_>>(),
        "every documented facade method has one row"
    );
    assert_eq!(in_matrix.len(), FACADE.len() + FACADE_BUGS.len());

    let w = World::new();
    let own: Vec<Own> = TOKENS.iter().map(|(r, _)| seed(&w, r, false)).collect();
    let mut wrong = Vec::new();
    for (method, allowed, lacks) in FACADE {
        for own in &own {
            let role = own.role;
            let before = w.head();
            let (status, body) = w.facade(role, method, &facade_body(method, own));
            let cell = format!("{role} {method}");
            let reworked = method.starts_with("event.");
            if allowed.contains(&role) {
                let ok = if reworked {
                    status != 401 && status != 403
                } else {
                    status == 200
                };
                if !ok {
                    wrong.push(format!("{cell}: allowed, got {status} {body}"));
                }
                continue;
            }
            if status != 403 || body["error"] != "ACCESS_DENIED" {
                wrong.push(format!(
                    "{cell}: should be 403 ACCESS_DENIED, got {status} {body}"
                ));
                continue;
            }
            if let Some(e) = wrong_refusal(
                role,
                body["error_description"].as_str().unwrap_or(""),
                lacks,
            ) {
                wrong.push(format!("{cell}: {e}"));
            }
            if w.head() != before {
                wrong.push(format!("{cell}: a refusal appended to the log"));
            }
        }
    }
    // A wrong secret is a 401 whatever the method (a few: ten failures a minute are a 429).
    for method in [
        "user.current",
        "crm.lead.list",
        "crm.deal.add",
        "batch",
        "event.bind",
    ] {
        let r = w.server.anonymous().request(
            "POST",
            &format!("/rest/1/not-a-secret/{method}"),
            &[("content-type", "application/json")],
            b"{}",
        );
        if r.status != 401 {
            wrong.push(format!("wrong secret {method}: {} {}", r.status, r.text()));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn event_get_is_a_read_of_webhooks() {
    let w = World::new();
    for role in [ADMIN, DESIGNER, AUDITOR] {
        let (status, body) = w.facade(role, "event.get", &json!({}));
        assert!(status != 401 && status != 403, "{role}: {status} {body}");
    }
    for role in [FIRST_LINE, SALES, HEAD, INTAKE] {
        let (status, body) = w.facade(role, "event.get", &json!({}));
        assert_eq!(
            (status, &body["error"]),
            (403, &json!("ACCESS_DENIED")),
            "{role}: {body}"
        );
    }
}

/// The outcome of one labelled command of a batch answer: its result, or its error text.
fn batch_part(b: &Value, label: &str) -> (Value, Value) {
    (
        b["result"]["result"][label].clone(),
        b["result"]["result_error"][label].clone(),
    )
}

#[test]
fn a_batch_cannot_do_what_its_token_cannot() {
    let w = World::new();
    let count = |kind: &str| {
        let r = w.admin().get(&format!("/api/v1/{kind}?limit=500"));
        r.json()["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{kind}: {}", r.text()))
            .len()
    };
    // (role, an allowed command, a forbidden one, the refusal, what the forbidden one makes)
    let cases = [
        (
            FIRST_LINE,
            "crm.lead.add?fields[TITLE]=ok&fields[NAME]=Ivan",
            "crm.deal.add?fields[TITLE]=no",
            "role first_line may not create deals",
            "deals",
        ),
        (
            SALES,
            "crm.deal.add?fields[TITLE]=ok&fields[CATEGORY_ID]=0",
            "crm.lead.add?fields[TITLE]=no&fields[NAME]=No",
            "role sales may not create leads",
            "leads",
        ),
        (
            AUDITOR,
            "crm.lead.list?select[0]=ID",
            "crm.contact.add?fields[NAME]=no",
            "role auditor may not create contacts",
            "contacts",
        ),
        (
            INTAKE,
            "crm.lead.add?fields[TITLE]=ok&fields[NAME]=Anna",
            "crm.company.add?fields[TITLE]=no",
            "role intake may not create companies",
            "companies",
        ),
        (
            HEAD,
            "crm.deal.list?select[0]=ID",
            "crm.deal.add?fields[TITLE]=no&fields[CATEGORY_ID]=1",
            "role head_of_sales may not create deals",
            "deals",
        ),
    ];
    for (role, ok, no, says, kind) in cases {
        for halt in [0, 1] {
            let (made, before) = (count(kind), w.head());
            // A list of commands runs in its order, labelled 0, 1.
            let (status, b) = w.facade(role, "batch", &json!({"halt": halt, "cmd": [ok, no]}));
            assert_eq!(status, 200, "{role}: {b}");
            let (result, error) = batch_part(&b, "0");
            assert!(!result.is_null(), "{role}: the allowed command ran: {b}");
            assert!(error.is_null(), "{role}: {b}");
            let (result, error) = batch_part(&b, "1");
            assert!(
                result.is_null(),
                "{role}: the forbidden command has no result: {b}"
            );
            assert_eq!(error["error"], "ACCESS_DENIED", "{role}: {b}");
            assert!(
                error["error_description"]
                    .as_str()
                    .unwrap_or("")
                    .contains(says),
                "{role}: {b}"
            );
            assert_eq!(
                count(kind),
                made,
                "{role}: the refused command made nothing"
            );
            if ok.contains(".add") {
                assert!(w.head() > before, "{role}: the allowed add was appended");
            } else {
                assert_eq!(w.head(), before, "{role}");
            }
        }
        // The forbidden one first: with halt, nothing after it runs either.
        let before = w.head();
        let (_, b) = w.facade(role, "batch", &json!({"halt": 1, "cmd": [no, ok]}));
        assert_eq!(
            batch_part(&b, "0").1["error"],
            "ACCESS_DENIED",
            "{role}: {b}"
        );
        assert!(batch_part(&b, "1").0.is_null(), "{role}: halted: {b}");
        assert!(batch_part(&b, "1").1.is_null(), "{role}: never ran: {b}");
        assert_eq!(w.head(), before, "{role}: a halted batch appended nothing");
    }
}

/// The event types and streams of an SSE text.
fn sse_events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let ty = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))?
                .to_owned();
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            let v: Value = serde_json::from_str(data).ok()?;
            Some((ty, v["stream"].as_str()?.to_owned()))
        })
        .collect()
}

#[test]
fn event_streams_and_the_event_list_carry_only_what_the_role_may_read() {
    let w = World::new();
    let lead = w.create("/api/v1/leads", json!({"name": "Streamed lead"}));
    let goods = w.create(
        "/api/v1/deals",
        json!({"title": "Goods deal", "pipeline": "goods"}),
    );
    let services = w.create(
        "/api/v1/deals",
        json!({"title": "Services deal", "pipeline": "services"}),
    );
    let contact = w.create("/api/v1/contacts", json!({"name": "Someone"}));
    // A deleted deal stays its pipeline's: its events are the services team's still.
    let gone = w.create(
        "/api/v1/deals",
        json!({"title": "Deleted services deal", "pipeline": "services"}),
    );
    let (st, b) = w.facade(ADMIN, "crm.deal.delete", &json!({"id": gone}));
    assert_eq!(st, 200, "{b}");
    let r = w.admin().post(
        &format!("/api/v1/deals/{goods}/move"),
        &json!({"stage": "offer"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // The last event of the log, on a lead and a contact: every stream below reads up to it.
    let last = w.create("/api/v1/leads", json!({"name": "The last lead"}));
    let marker = format!("\"stream\":\"lead-{last}\"");

    // What each role's stream and list must carry and must not.
    let cases: [(&str, Vec<String>, Vec<String>); 3] = [
        (
            FIRST_LINE,
            vec![format!("lead-{lead}"), format!("lead-{last}")],
            vec![
                format!("deal-"),
                format!("contact-{contact}"),
                "token-".into(),
            ],
        ),
        (
            SALES,
            vec![format!("deal-{goods}"), format!("contact-{contact}")],
            vec![
                format!("lead-{lead}"),
                format!("deal-{services}"),
                format!("deal-{gone}"),
                "token-".into(),
            ],
        ),
        (
            HEAD,
            vec![
                format!("lead-{lead}"),
                format!("deal-{services}"),
                format!("deal-{gone}"),
            ],
            vec![format!("deal-{goods}"), "token-".into()],
        ),
    ];
    for (role, carried, not_carried) in cases {
        // Read up to the last event the role may see: the goods deal's move for sales.
        let until = if role == SALES {
            "event: deal.stage_changed".to_owned()
        } else {
            marker.clone()
        };
        let (status, text) = read_stream(
            &w,
            role,
            "/api/v1/events/stream?after=0",
            &until,
            Duration::from_secs(10),
        );
        assert_eq!(status, 200, "{role}: {text}");
        assert!(
            text.contains(&until),
            "{role}'s stream reached {until}: {text}"
        );
        let streamed = sse_events(&text);
        let list = w.client(role).get("/api/v1/events?after=0&limit=1000");
        assert_eq!(list.status, 200, "{role}: {}", list.text());
        let listed: Vec<(String, String)> = list.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_owned(),
                    e["stream"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for (what, events) in [("stream", &streamed), ("list", &listed)] {
            let streams: BTreeSet<&str> = events.iter().map(|(_, s)| s.as_str()).collect();
            for s in &carried {
                assert!(
                    streams.contains(s.as_str()),
                    "{role}'s {what} carries {s}: {streams:?}"
                );
            }
            for s in &not_carried {
                assert!(
                    // `deal-` is every deal; `deal-3` that one.
                    !streams.iter().any(|x| if s.ends_with('-') {
                        x.starts_with(s.as_str())
                    } else {
                        x == s
                    }),
                    "{role}'s {what} carries no {s}: {streams:?}"
                );
            }
        }
        if role == FIRST_LINE {
            assert!(
                streamed.iter().all(|(t, _)| t.starts_with("lead.")),
                "a first-line stream carries lead events only: {streamed:?}"
            );
            assert!(!text.contains("event: deal."), "{text}");
        }
        // Asking for a stream it may not read gives nothing of it.
        let r = w
            .client(role)
            .get(&format!("/api/v1/events?stream=deal-{services}"));
        let n = r.json()["events"].as_array().map_or(0, Vec::len);
        assert_eq!(
            n > 0,
            role == HEAD,
            "{role}: deal-{services} events: {}",
            r.text()
        );
    }
}

#[test]
fn a_team_scoped_token_reaches_only_its_teams_pipelines() {
    let w = World::new();
    let goods = w.create(
        "/api/v1/deals",
        json!({"title": "Goods deal", "pipeline": "goods"}),
    );
    let services = w.create(
        "/api/v1/deals",
        json!({"title": "Services deal", "pipeline": "services"}),
    );
    let lead = w.create("/api/v1/leads", json!({"name": "A lead"}));
    let lead_task = w.create(
        "/api/v1/tasks",
        json!({"kind": "call", "title": "Lead call", "assignee": "ivanov", "lead": lead}),
    );
    let deal_task = w.create(
        "/api/v1/tasks",
        json!({"kind": "call", "title": "Services call", "assignee": "morozova", "deal": services}),
    );
    let sales = w.client(SALES);
    let before = w.head();
    // The other team's deal: refused, naming the pipeline; its list leaves it out.
    let r = sales.get(&format!("/api/v1/deals/{services}"));
    assert_eq!(r.status, 403, "{}", r.text());
    let m = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        m.contains("role sales may read deals only in its team's pipelines"),
        "{m}"
    );
    assert!(m.contains("'services'"), "{m}");
    assert_eq!(sales.get(&format!("/api/v1/deals/{goods}")).status, 200);
    assert_eq!(ids(sales.get("/api/v1/deals")), [goods]);
    assert_eq!(sales.get("/api/v1/deals?pipeline=services").status, 403);
    assert_eq!(
        ids(sales.get("/api/v1/tasks")),
        Vec::<i64>::new(),
        "neither task is of goods"
    );
    assert_eq!(sales.get(&format!("/api/v1/tasks/{deal_task}")).status, 403);
    assert_eq!(
        sales
            .get(&format!("/api/v1/deals/{services}/timers"))
            .status,
        403
    );
    // Nor may it change it, on any route.
    for (method, path, body) in [
        (
            "PATCH",
            format!("/api/v1/deals/{services}"),
            json!({"comment": "mine now"}),
        ),
        (
            "POST",
            format!("/api/v1/deals/{services}/move"),
            json!({"stage": "measurement"}),
        ),
        (
            "POST",
            format!("/api/v1/deals/{services}/assign"),
            json!({"to": "kuznetsov"}),
        ),
        (
            "POST",
            format!("/api/v1/tasks/{deal_task}/complete"),
            json!({"result": "done"}),
        ),
        (
            "POST",
            "/api/v1/deals".to_owned(),
            json!({"title": "Elsewhere", "pipeline": "services"}),
        ),
    ] {
        let r = sales.json(method, &path, &body);
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
        assert!(r.text().contains("role sales may"), "{}", r.text());
    }
    // The facade holds the same line.
    let (st, b) = w.facade(SALES, "crm.deal.get", &json!({"id": services}));
    assert_eq!((st, &b["error"]), (403, &json!("ACCESS_DENIED")), "{b}");
    let (st, b) = w.facade(
        SALES,
        "crm.deal.update",
        &json!({"id": services, "fields": {"TITLE": "mine"}}),
    );
    assert_eq!((st, &b["error"]), (403, &json!("ACCESS_DENIED")), "{b}");
    let (st, b) = w.facade(
        SALES,
        "crm.deal.add",
        &json!({"fields": {"TITLE": "x", "CATEGORY_ID": 1}}),
    );
    assert_eq!((st, &b["error"]), (403, &json!("ACCESS_DENIED")), "{b}");
    let (st, b) = w.facade(SALES, "crm.deal.list", &json!({"select": ["ID"]}));
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["result"], json!([{"ID": goods.to_string()}]), "{b}");
    assert_eq!(b["total"], 1, "{b}");
    assert_eq!(w.head(), before, "no refusal appended anything");

    // The head of sales reaches the teams she manages: leads and services, not goods.
    let head = w.client(HEAD);
    assert_eq!(head.get(&format!("/api/v1/deals/{services}")).status, 200);
    assert_eq!(head.get(&format!("/api/v1/deals/{goods}")).status, 403);
    assert_eq!(ids(head.get("/api/v1/deals")), [services]);
    let mut tasks = ids(head.get("/api/v1/tasks"));
    tasks.sort_unstable();
    assert_eq!(tasks, [lead_task, deal_task]);
    let r = head.post(
        &format!("/api/v1/deals/{goods}/move"),
        &json!({"stage": "offer"}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(w.head(), before);
    let r = head.post(
        &format!("/api/v1/deals/{services}/move"),
        &json!({"stage": "measurement"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // A first-line token reaches leads, not deals, nor the tasks of deals.
    let first = w.client(FIRST_LINE);
    assert_eq!(ids(first.get("/api/v1/tasks")), [lead_task]);
    assert_eq!(first.get(&format!("/api/v1/tasks/{deal_task}")).status, 403);
}

#[test]
fn a_task_is_created_only_on_a_lead_or_deal_the_token_reaches() {
    let w = World::new();
    let goods = w.create(
        "/api/v1/deals",
        json!({"title": "Goods deal", "pipeline": "goods"}),
    );
    let services = w.create(
        "/api/v1/deals",
        json!({"title": "Services deal", "pipeline": "services"}),
    );
    let lead = w.create("/api/v1/leads", json!({"name": "A lead"}));
    let before = w.head();
    for (role, on, id, assignee) in [
        (FIRST_LINE, "deal", goods, "ivanov"),
        (SALES, "deal", services, "kuznetsov"),
        (SALES, "lead", lead, "kuznetsov"),
    ] {
        let r = w.client(role).post(
            "/api/v1/tasks",
            &json!({"kind": "call", "title": "Out of reach", "assignee": assignee, on: id}),
        );
        assert_eq!(r.status, 403, "{role} on {on}-{id}: {}", r.text());
        let m = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            m.contains(&format!(
                "role {role} may create tasks only in its team's pipelines"
            )),
            "{m}"
        );
    }
    assert_eq!(w.head(), before, "the refused tasks appended nothing");
    // On its own team's records it may.
    for (role, on, id, assignee) in [
        (FIRST_LINE, "lead", lead, "ivanov"),
        (SALES, "deal", goods, "kuznetsov"),
    ] {
        let r = w.client(role).post(
            "/api/v1/tasks",
            &json!({"kind": "call", "title": "Within reach", "assignee": assignee, on: id}),
        );
        assert_eq!(r.status, 201, "{role}: {}", r.text());
    }
}

#[test]
fn a_team_scoped_token_reads_only_its_own_inbox() {
    let w = World::new();
    for (role, own) in [
        (FIRST_LINE, "ivanov"),
        (SALES, "kuznetsov"),
        (HEAD, "smirnova"),
    ] {
        let c = w.client(role);
        let r = c.get("/api/v1/inbox");
        assert_eq!(r.status, 200, "{role}: {}", r.text());
        let r = c.get(&format!("/api/v1/inbox?employee={own}"));
        assert_eq!(r.status, 200, "{role}: {}", r.text());
        let r = c.get("/api/v1/inbox?employee=petrova&unread=true");
        if own != "petrova" {
            assert_eq!(r.status, 403, "{role} reads petrova's inbox: {}", r.text());
            let m = r.json()["error"]["message"].as_str().unwrap().to_owned();
            assert!(m.contains(&format!("role {role} may read only")), "{m}");
        }
    }
    // The roles that read everything read anyone's.
    for role in [ADMIN, DESIGNER, AUDITOR] {
        let r = w.client(role).get("/api/v1/inbox?employee=petrova");
        assert_eq!(r.status, 200, "{role}: {}", r.text());
    }
}

#[test]
fn a_head_of_sales_moves_and_assigns_through_the_facade() {
    let w = World::new();
    let deal = w.create(
        "/api/v1/deals",
        json!({"title": "Services deal", "pipeline": "services"}),
    );
    let lead = w.create("/api/v1/leads", json!({"name": "A lead"}));
    let lebedev = w.mapping.user(&EmployeeId::from("lebedev")).unwrap();
    let petrova = w.mapping.user(&EmployeeId::from("petrova")).unwrap();
    for (method, body) in [
        (
            "crm.deal.update",
            json!({"id": deal, "fields": {"STAGE_ID": "C1:MEASUREMENT"}}),
        ),
        (
            "crm.deal.update",
            json!({"id": deal, "fields": {"ASSIGNED_BY_ID": lebedev}}),
        ),
        (
            "crm.lead.update",
            json!({"id": lead, "fields": {"ASSIGNED_BY_ID": petrova}}),
        ),
    ] {
        let (st, b) = w.facade(HEAD, method, &body);
        assert_eq!(st, 200, "{method} {body}: {b}");
    }
    // A field change stays refused.
    let before = w.head();
    let (st, b) = w.facade(
        HEAD,
        "crm.deal.update",
        &json!({"id": deal, "fields": {"TITLE": "x"}}),
    );
    assert_eq!((st, &b["error"]), (403, &json!("ACCESS_DENIED")), "{b}");
    assert_eq!(w.head(), before);
}

/// Found by the matrix (it counts records with `limit=500`): the largest page of contacts or
/// companies was a 400, the store being asked for one row more than it serves.
#[test]
fn the_largest_page_of_contacts_and_companies_is_served_and_pages_on() {
    use leadflow_engine::{Actor, Command, EventMeta};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leadflow.db");
    let cfg = config();
    {
        let mut store =
            leadflow_store::Store::open(&db, &leadflow_store::Options::default()).unwrap();
        store
            .write_with(&leadflow_testkit::serve::Wall, |tx| {
                for i in 0..501 {
                    let new =
                        serde_json::from_value(json!({"name": format!("Company {i}")})).unwrap();
                    let meta = EventMeta::root(chrono::Utc::now(), Actor::System);
                    tx.execute(&cfg, &Command::CreateCompany(new), &meta)?;
                }
                Ok::<(), leadflow_store::Error>(())
            })
            .unwrap();
    }
    let s = Server::start_on(db, cfg, "");
    let c = s.client();
    let page = c.get("/api/v1/companies?limit=500");
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.json();
    assert_eq!(page["items"].as_array().unwrap().len(), 500);
    assert_eq!(page["items"][0]["name"], "Company 500", "newest first");
    let cursor = page["next_cursor"]
        .as_str()
        .expect("one more row")
        .to_owned();
    let rest = c
        .get(&format!("/api/v1/companies?limit=500&cursor={cursor}"))
        .json();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["items"][0]["name"], "Company 0");
    assert_eq!(rest["next_cursor"], Value::Null);
    let contacts = c.get("/api/v1/contacts?limit=500");
    assert_eq!(contacts.status, 200, "{}", contacts.text());
    assert_eq!(contacts.json()["next_cursor"], Value::Null);
}

#[test]
fn every_route_refuses_a_team_scoped_token_the_records_of_other_teams() {
    let w = World::new();
    let lead = w.create("/api/v1/leads", json!({"name": "A lead"}));
    let goods = w.create(
        "/api/v1/deals",
        json!({"title": "Goods deal", "pipeline": "goods"}),
    );
    let services = w.create(
        "/api/v1/deals",
        json!({"title": "Services deal", "pipeline": "services"}),
    );
    let task = |on: &str, id: i64, assignee: &str| {
        w.create(
            "/api/v1/tasks",
            json!({"kind": "call", "title": "A call", "assignee": assignee, on: id}),
        )
    };
    let (on_lead, on_goods, on_services) = (
        task("lead", lead, "ivanov"),
        task("deal", goods, "kuznetsov"),
        task("deal", services, "morozova"),
    );
    // Per token: its role, and records out of its reach (a lead only where one is: every lead
    // is in the one lead pipeline), each with its pipeline.
    let out_of_reach = |name: &'static str,
                        lead: Option<i64>,
                        deal: (i64, &'static str, &'static str),
                        task: i64| {
        let own = Own {
            role: name,
            lead: lead.unwrap_or(0),
            deal: deal.0,
            pipeline: deal.1,
            member: deal.2,
            contact: 0,
            company: 0,
            task,
            task_on: ("deal", deal.0),
            assignee: "ivanov",
            webhook: 0,
            retried: 0,
            dropped: 0,
        };
        (name, lead.is_some(), own)
    };
    let tokens = [
        out_of_reach(FIRST_LINE, None, (goods, "goods", "popova"), on_goods),
        out_of_reach(
            SALES,
            Some(lead),
            (services, "services", "lebedev"),
            on_services,
        ),
        out_of_reach(HEAD, None, (goods, "goods", "popova"), on_goods),
        out_of_reach(
            HEAD_OF_GOODS.0,
            Some(lead),
            (services, "services", "lebedev"),
            on_lead,
        ),
    ];
    let role_of = |name: &str| {
        if name == HEAD_OF_GOODS.0 {
            HEAD
        } else {
            TOKENS.iter().find(|(r, _)| *r == name).unwrap().0
        }
    };
    let mut wrong = Vec::new();
    for (name, has_lead, own) in &tokens {
        let role = role_of(name);
        let (mut native_cells, mut facade_cells) = (0, 0);
        // Every route on one record: a 403, "may not" for what the role lacks anyway, "only in
        // its team's pipelines" for what it may do on its own team's.
        for (method, path, allowed, _) in NATIVE.iter().filter(|(_, p, _, _)| p.contains("{id}")) {
            let segment = path.split('/').nth(1).unwrap();
            if !matches!(segment, "leads" | "deals" | "tasks") || (segment == "leads" && !has_lead)
            {
                continue;
            }
            native_cells += 1;
            let url = fill(path, own);
            let before = w.head();
            let c = w.client(name);
            let r = if *method == "get" {
                c.get(&url)
            } else {
                c.json(
                    &method.to_uppercase(),
                    &url,
                    &native_body(method, path, own),
                )
            };
            let cell = format!("{name} {} {url}", method.to_uppercase());
            let message = serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|b| b["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let says = if allowed.contains(&role) {
                format!("role {role} may ")
            } else {
                format!("role {role} may not ")
            };
            if r.status != 403 || !message.contains(&says) {
                wrong.push(format!(
                    "{cell}: should be a 403 saying `{says}…`, got {} {}",
                    r.status,
                    r.text()
                ));
            } else if allowed.contains(&role) && !message.contains("only in its team's pipelines") {
                wrong.push(format!("{cell}: the 403 should name the reach: {message}"));
            }
            if w.head() != before {
                wrong.push(format!("{cell}: a refusal appended to the log"));
            }
        }
        // Lists leave them out (or are refused whole).
        for (list, id) in [
            ("leads", own.lead),
            ("deals", own.deal),
            ("tasks", own.task),
        ] {
            if list == "leads" && !has_lead {
                continue;
            }
            let r = w.client(name).get(&format!("/api/v1/{list}?limit=500"));
            let listed = r.status == 200
                && r.json()["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i["id"] == id);
            if listed || !matches!(r.status, 200 | 403) {
                wrong.push(format!(
                    "{name} GET /api/v1/{list}: {id} listed: {} {}",
                    r.status,
                    r.text()
                ));
            }
        }
        // The facade, the same.
        for (method, _, _) in FACADE {
            let about_lead = method.starts_with("crm.lead.")
                || *method == "crm.stagehistory.list"
                || *method == "crm.timeline.comment.add";
            let on_one = [
                ".get",
                ".update",
                ".delete",
                "stagehistory.list",
                "comment.add",
            ]
            .iter()
            .any(|m| method.ends_with(m));
            if !on_one || !(about_lead && *has_lead || method.starts_with("crm.deal.")) {
                continue;
            }
            facade_cells += 1;
            let before = w.head();
            let (status, b) = w.facade(name, method, &facade_body(method, own));
            if status != 403 || b["error"] != "ACCESS_DENIED" {
                wrong.push(format!("{name} {method}: should be 403, got {status} {b}"));
            }
            if w.head() != before {
                wrong.push(format!("{name} {method}: a refusal appended to the log"));
            }
        }
        // Deal routes for all; lead ones too where a lead is out of reach.
        let expected = if *has_lead { (12, 8) } else { (7, 3) };
        assert_eq!(
            (native_cells, facade_cells),
            expected,
            "{name}: cells checked"
        );
        for (method, id) in [("crm.lead.list", own.lead), ("crm.deal.list", own.deal)] {
            let (status, b) = w.facade(name, method, &json!({"select": ["ID"]}));
            let listed = b["result"].as_array().is_some_and(|rows| {
                rows.iter()
                    .any(|r| r["ID"].as_str().and_then(|s| s.parse::<i64>().ok()) == Some(id))
            });
            if listed || !matches!(status, 200 | 403) {
                wrong.push(format!("{name} {method}: {id} listed: {status} {b}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn a_configured_role_replaces_the_default_of_its_name_or_adds_one_on_both_apis() {
    // The example of docs/CONFIG.md: a first line that may also look up contacts; and a role
    // of its own that reads the journal and reports only.
    let text = format!(
        "{}\n{}",
        leadflow_engine::config::DEFAULT_CONFIG,
        r#"
[roles.first_line]
description = "the first line, who may also look up contacts"
scope = "team"
lead = ["read", "write"]
task = ["read", "write"]
contact = ["read"]
inbox = ["read", "update"]
events = ["read"]

[roles.reporter]
description = "reads the journal"
journal = ["read"]
"#
    );
    let w = World::with(
        leadflow_testkit::config_from(&text),
        &[("reporter", "reporter", "smirnova")],
    );
    let contact = w.create("/api/v1/contacts", json!({"name": "Someone"}));
    let first = w.client(FIRST_LINE);
    assert_eq!(first.get("/api/v1/contacts").status, 200);
    assert_eq!(
        first.get(&format!("/api/v1/contacts/{contact}")).status,
        200
    );
    let (st, b) = w.facade(FIRST_LINE, "crm.contact.get", &json!({"id": contact}));
    assert_eq!(st, 200, "{b}");
    let before = w.head();
    let r = first.post("/api/v1/contacts", &json!({"name": "Not mine to make"}));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("role first_line may not create contacts"),
        "{}",
        r.text()
    );
    let (st, b) = w.facade(
        FIRST_LINE,
        "crm.contact.add",
        &json!({"fields": {"NAME": "x"}}),
    );
    assert_eq!(st, 403, "{b}");
    assert_eq!(w.head(), before);
    // A role of its own: what it names, nothing else.
    let reporter = w.client("reporter");
    assert_eq!(reporter.get("/api/v1/journal").status, 200);
    for path in [
        "/api/v1/leads",
        "/api/v1/events",
        "/api/v1/inbox",
        "/api/v1/verify",
    ] {
        let r = reporter.get(path);
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert!(
            r.text().contains("role reporter may not read"),
            "{}",
            r.text()
        );
    }
    let (st, b) = w.facade("reporter", "crm.lead.list", &json!({}));
    assert_eq!((st, &b["error"]), (403, &json!("ACCESS_DENIED")), "{b}");
}

#[test]
fn a_task_of_a_deleted_deal_stays_in_the_deals_pipeline() {
    let w = World::new();
    let deal = w.create(
        "/api/v1/deals",
        json!({"title": "Services deal", "pipeline": "services"}),
    );
    let task = w.create(
        "/api/v1/tasks",
        json!({"kind": "call", "title": "A call", "assignee": "morozova", "deal": deal}),
    );
    let (st, b) = w.facade(ADMIN, "crm.deal.delete", &json!({"id": deal}));
    assert_eq!(st, 200, "{b}");
    let before = w.head();
    for role in [FIRST_LINE, SALES] {
        let c = w.client(role);
        let r = c.get(&format!("/api/v1/tasks/{task}"));
        assert_eq!(r.status, 403, "{role} reads it: {}", r.text());
        let r = c.post(
            &format!("/api/v1/tasks/{task}/complete"),
            &json!({"result": "not mine"}),
        );
        assert_eq!(r.status, 403, "{role} completes it: {}", r.text());
    }
    assert_eq!(w.head(), before);
}

/// A head of sales who manages two deal teams lists the deals of both without naming a
/// pipeline (and never those of a third pipeline she does not reach); naming one still narrows.
#[test]
fn a_token_that_reaches_several_deal_pipelines_lists_them_all_at_once() {
    let base = leadflow_engine::config::DEFAULT_CONFIG;
    // volkov manages goods and services; a third deal pipeline, wholesale, is nobody's team's.
    let text = base.replacen(
        "manager = \"smirnova\"\npipelines = [\"services\"]",
        "manager = \"volkov\"\npipelines = [\"services\"]",
        1,
    ) + r#"
[[pipelines]]
id = "wholesale"
name = "Wholesale"
entity = "deal"

  [[pipelines.stages]]
  id = "new"
  name = "New"

  [[pipelines.stages]]
  id = "won"
  name = "Won"
  semantic = "success"

  [[pipelines.stages]]
  id = "lost"
  name = "Lost"
  semantic = "failure"
"#;
    assert!(text.contains("manager = \"volkov\"\npipelines = [\"services\"]"));
    let w = World::with(leadflow_testkit::config_from(&text), &[]);
    let goods = w.create("/api/v1/deals", json!({"title": "G", "pipeline": "goods"}));
    let services = w.create(
        "/api/v1/deals",
        json!({"title": "S", "pipeline": "services"}),
    );
    let wholesale = w.create(
        "/api/v1/deals",
        json!({"title": "W", "pipeline": "wholesale"}),
    );
    let head = w.client(HEAD_OF_GOODS.0);
    let mut both = ids(head.get("/api/v1/deals"));
    both.sort_unstable();
    assert_eq!(both, [goods, services]);
    assert_eq!(ids(head.get("/api/v1/deals?pipeline=services")), [services]);
    let r = head.get("/api/v1/deals?pipeline=wholesale");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(head.get(&format!("/api/v1/deals/{wholesale}")).status, 403);
    let mut all = ids(w.admin().get("/api/v1/deals"));
    all.sort_unstable();
    assert_eq!(all, [goods, services, wholesale]);
}

/// The ids of a list's page (a 200).
fn ids(r: Response) -> Vec<i64> {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect()
}
