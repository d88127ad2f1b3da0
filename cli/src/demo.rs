//! `demo`: the main job on the embedded default. Creates a database, loads the example
//! configuration and drives a few hundred leads and deals through the pipelines over a
//! simulated working week on a virtual clock, then prints the funnel and what happened.

use crate::cli::DemoArgs;
use crate::ctx::SystemClock;
use crate::error::CliError;
use crate::output::Table;
use chrono::{DateTime, Duration, TimeZone, Utc};
use leadflow_engine::command::{FieldInputs, NewCompany, NewContact, NewDeal, NewLead, NewTask};
use leadflow_engine::config::DEFAULT_CONFIG;
use leadflow_engine::field::{format_money, validate_bank_account, validate_inn};
use leadflow_engine::{Actor, Clock, Command, Config, EntityKind, EventMeta, ManualClock};
use leadflow_store::{Options, Store, Synchronous, query, to_hex};
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;

/// SplitMix64: a small deterministic generator, so a seed replays the same week.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn minutes(&mut self, lo: i64, hi: i64) -> Duration {
        Duration::minutes(lo + self.below((hi - lo).max(1) as u64) as i64)
    }
}

/// The steps of one lead's life in the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Arrive,
    TakeInWork,
    Qualify,
    SendOffer,
    Close,
    DealProgress(u8),
}

const FIRST_NAMES: &[&str] = &[
    "Ivan", "Olga", "Sergey", "Natalia", "Dmitry", "Elena", "Andrey", "Tatiana", "Mikhail", "Irina",
];
const LAST_NAMES: &[&str] = &[
    "Smirnov",
    "Kuznetsova",
    "Popov",
    "Vasilieva",
    "Sokolov",
    "Mikhailova",
    "Novikov",
    "Fedorova",
    "Morozov",
    "Volkova",
];

struct Sim {
    config: Config,
    store: Store,
    clock: ManualClock,
    wall: SystemClock,
    rng: Rng,
    first_line: Vec<String>,
    next_first_line: usize,
    next_in_team: std::collections::HashMap<String, usize>,
    deals_of_lead: std::collections::HashMap<i64, i64>,
    rejections: Vec<String>,
    commands: usize,
}

impl Sim {
    fn run(&mut self, actor: &str, cmd: Command) -> Option<leadflow_store::Executed> {
        let actor = if actor == "system" {
            Actor::System
        } else {
            Actor::Employee(actor.into())
        };
        let meta = EventMeta::root(self.clock.now(), actor);
        let config = &self.config;
        self.commands += 1;
        match self
            .store
            .write(self.wall.now(), |tx| tx.execute(config, &cmd, &meta))
        {
            Ok(out) => Some(out),
            Err(leadflow_store::Error::Rejected(r)) => {
                self.rejections.push(r.to_string());
                None
            }
            Err(e) => panic!("the demo's store failed: {e}"),
        }
    }

    fn team_member(&mut self, team: &str) -> String {
        let members: Vec<String> = self
            .config
            .members(&team.into())
            .iter()
            .map(|e| e.id.to_string())
            .collect();
        let i = self.next_in_team.entry(team.to_owned()).or_insert(0);
        let who = members[*i % members.len()].clone();
        *i += 1;
        who
    }

    fn responsible(&self, lead: i64) -> String {
        match self
            .store
            .load(leadflow_engine::StreamId::new(EntityKind::Lead, lead))
        {
            Ok(Some(leadflow_engine::Entity::Lead(l))) => l
                .responsible
                .map_or_else(|| "admin".into(), |r| r.to_string()),
            _ => "admin".into(),
        }
    }

    /// Performs `step` for lead `id`; returns the next step and its delay.
    fn step(&mut self, id: i64, step: Step) -> Option<(Step, Duration)> {
        let rng = &mut self.rng;
        match step {
            Step::Arrive => {
                let name = format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES));
                let phone = rng.chance(80).then(|| {
                    format!(
                        "8 9{:02} {:03}-{:02}-{:02}",
                        rng.below(100),
                        rng.below(1000),
                        rng.below(100),
                        rng.below(100)
                    )
                });
                let email =
                    (phone.is_none() || rng.chance(40)).then(|| format!("client{id}@example.ru"));
                let source = rng
                    .pick(&["web_form", "web_form", "call", "email"])
                    .to_string();
                let lead = NewLead {
                    name: Some(name),
                    phones: phone.into_iter().collect(),
                    emails: email.into_iter().collect(),
                    source: Some(source),
                    comment: Some("countertop for a kitchen".into()),
                    ..NewLead::default()
                };
                self.run("system", Command::CreateLead(lead))?;
                Some((Step::TakeInWork, self.rng.minutes(5, 90)))
            }
            Step::TakeInWork => {
                let who = self.first_line[self.next_first_line % self.first_line.len()].clone();
                self.next_first_line += 1;
                self.run(
                    "smirnova",
                    Command::AssignLead {
                        id,
                        to: who.as_str().into(),
                    },
                )?;
                self.run(
                    &who,
                    Command::MoveLead {
                        id,
                        stage: "in_work".into(),
                        reason: None,
                    },
                )?;
                Some((Step::Qualify, self.rng.minutes(30, 8 * 60)))
            }
            Step::Qualify => {
                let who = self.responsible(id);
                if self.rng.chance(18) {
                    let reason = self
                        .rng
                        .pick(&["spam", "not_target", "no_answer", "duplicate"])
                        .to_string();
                    self.run(
                        &who,
                        Command::MoveLead {
                            id,
                            stage: "junk".into(),
                            reason: Some(reason),
                        },
                    );
                    return None;
                }
                if self.rng.chance(15) {
                    // A hurried first-liner tries to skip the qualification card; the engine says no.
                    self.run(
                        &who,
                        Command::MoveLead {
                            id,
                            stage: "qualified".into(),
                            reason: None,
                        },
                    );
                }
                let mut card = FieldInputs::new();
                card.insert(
                    "material".into(),
                    Value::from(
                        *self
                            .rng
                            .pick(&["granite", "marble", "quartz", "acrylic", "wood"]),
                    ),
                );
                card.insert(
                    "dimensions".into(),
                    Value::from(format!("{}x{}", 1200 + self.rng.below(30) * 100, 600)),
                );
                card.insert(
                    "budget".into(),
                    Value::from(format!("{}", 40_000 + self.rng.below(40) * 5_000)),
                );
                card.insert(
                    "urgency".into(),
                    Value::from(*self.rng.pick(&["this_week", "this_month", "later"])),
                );
                card.insert("qualification".into(), Value::from("qualified"));
                self.run(&who, Command::UpdateLead { id, changes: card })?;
                self.run(
                    &who,
                    Command::MoveLead {
                        id,
                        stage: "qualified".into(),
                        reason: None,
                    },
                )?;
                let due = self.clock.now() + Duration::hours(4);
                self.run(
                    &who,
                    Command::CreateTask(NewTask {
                        kind: "call".into(),
                        title: "agree on the offer".into(),
                        assignee: who.as_str().into(),
                        due_at: due,
                        lead: Some(id),
                        deal: None,
                    }),
                );
                Some((Step::SendOffer, self.rng.minutes(60, 24 * 60)))
            }
            Step::SendOffer => {
                let who = self.responsible(id);
                let legal = self.rng.chance(30);
                let mut changes = FieldInputs::new();
                changes.insert(
                    "client_type".into(),
                    Value::from(if legal { "legal" } else { "individual" }),
                );
                if legal {
                    changes.insert(
                        "company_name".into(),
                        Value::from(format!("OOO Stone {id}")),
                    );
                    changes.insert("inn".into(), Value::from(valid_inn(&mut self.rng)));
                    changes.insert("bik".into(), Value::from("044525225"));
                    changes.insert(
                        "bank_account".into(),
                        Value::from(valid_account(&mut self.rng, "044525225")),
                    );
                }
                self.run(&who, Command::UpdateLead { id, changes })?;
                self.run(
                    &who,
                    Command::MoveLead {
                        id,
                        stage: "offer_sent".into(),
                        reason: None,
                    },
                )?;
                self.complete_tasks_of(Some(id), None);
                Some((Step::Close, self.rng.minutes(60, 48 * 60)))
            }
            Step::Close => {
                let who = self.responsible(id);
                if self.rng.chance(35) {
                    self.run(
                        &who,
                        Command::MoveLead {
                            id,
                            stage: "junk".into(),
                            reason: Some("no_answer".into()),
                        },
                    );
                    return None;
                }
                let Ok(Some(leadflow_engine::Entity::Lead(lead))) = self
                    .store
                    .load(leadflow_engine::StreamId::new(EntityKind::Lead, id))
                else {
                    return None;
                };
                let contact = self.run(
                    &who,
                    Command::CreateContact(NewContact {
                        name: lead.name.clone().unwrap_or_else(|| lead.title.clone()),
                        phones: lead.phones.clone(),
                        emails: lead.emails.clone(),
                        ..NewContact::default()
                    }),
                )?;
                let company = if lead.client_type == Some(leadflow_engine::event::ClientType::Legal)
                {
                    let field = |k: &str| {
                        lead.fields
                            .get(k)
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    };
                    self.run(
                        &who,
                        Command::CreateCompany(NewCompany {
                            name: field("company_name").unwrap_or_default(),
                            inn: field("inn"),
                            bik: field("bik"),
                            bank_account: field("bank_account"),
                            ..NewCompany::default()
                        }),
                    )
                    .map(|c| c.stream.id)
                } else {
                    None
                };
                let pipeline = if self.rng.chance(60) {
                    "goods"
                } else {
                    "services"
                };
                let owner = self.team_member(pipeline);
                let amount = lead
                    .fields
                    .get("budget")
                    .and_then(Value::as_i64)
                    .map(|minor| Value::from(format_money(minor)));
                let deal = self.run(
                    &who,
                    Command::CreateDeal(NewDeal {
                        title: format!("{} — {}", lead.title, pipeline),
                        pipeline: Some(pipeline.into()),
                        amount,
                        responsible: Some(owner.as_str().into()),
                        contact: Some(contact.stream.id),
                        company,
                        lead: Some(id),
                        ..NewDeal::default()
                    }),
                )?;
                let mut link = FieldInputs::new();
                link.insert("contact".into(), Value::from(contact.stream.id));
                if let Some(c) = company {
                    link.insert("company".into(), Value::from(c));
                }
                self.run(&who, Command::UpdateLead { id, changes: link })?;
                self.run(
                    &who,
                    Command::MoveLead {
                        id,
                        stage: "converted".into(),
                        reason: None,
                    },
                )?;
                self.deals_of_lead.insert(id, deal.stream.id);
                Some((Step::DealProgress(1), self.rng.minutes(60, 24 * 60)))
            }
            Step::DealProgress(n) => {
                let deal_id = *self.deals_of_lead.get(&id)?;
                let Ok(Some(leadflow_engine::Entity::Deal(deal))) = self
                    .store
                    .load(leadflow_engine::StreamId::new(EntityKind::Deal, deal_id))
                else {
                    return None;
                };
                let owner = deal
                    .responsible
                    .map_or_else(|| "admin".into(), |r| r.to_string());
                self.complete_tasks_of(None, Some(deal_id));
                let pipeline = self.config.pipeline(&deal.pipeline)?.clone();
                let open: Vec<_> = pipeline
                    .stages
                    .iter()
                    .filter(|s| s.semantic == leadflow_engine::config::Semantic::InProgress)
                    .collect();
                if (n as usize) < open.len() {
                    if self.rng.chance(12) {
                        let reason = self
                            .rng
                            .pick(&["price", "competitor", "no_budget"])
                            .to_string();
                        self.run(
                            &owner,
                            Command::MoveDeal {
                                id: deal_id,
                                stage: "lost".into(),
                                reason: Some(reason),
                            },
                        );
                        return None;
                    }
                    self.run(
                        &owner,
                        Command::MoveDeal {
                            id: deal_id,
                            stage: open[n as usize].id.clone(),
                            reason: None,
                        },
                    )?;
                    let due = self.clock.now()
                        + Duration::hours(if self.rng.chance(20) { 1 } else { 30 });
                    self.run(
                        &owner,
                        Command::CreateTask(NewTask {
                            kind: "call".into(),
                            title: format!("follow up {}", open[n as usize].name),
                            assignee: owner.as_str().into(),
                            due_at: due,
                            lead: None,
                            deal: Some(deal_id),
                        }),
                    );
                    return Some((Step::DealProgress(n + 1), self.rng.minutes(120, 36 * 60)));
                }
                self.run(
                    &owner,
                    Command::MoveDeal {
                        id: deal_id,
                        stage: "won".into(),
                        reason: None,
                    },
                );
                None
            }
        }
    }

    fn complete_tasks_of(&mut self, lead: Option<i64>, deal: Option<i64>) {
        let open = query::tasks(
            self.store.connection(),
            &query::TaskFilter {
                open: true,
                ..Default::default()
            },
        )
        .unwrap_or_default();
        for t in open
            .into_iter()
            .filter(|t| (lead.is_some() && t.lead == lead) || (deal.is_some() && t.deal == deal))
        {
            if self.rng.chance(10) {
                continue; // now and then a task is forgotten and stays overdue
            }
            self.run(
                t.assignee.as_str(),
                Command::CompleteTask {
                    id: t.id,
                    result: Some("offer agreed".into()),
                },
            );
        }
    }
}

fn valid_inn(rng: &mut Rng) -> String {
    loop {
        let base: String = (0..9)
            .map(|_| char::from(b'0' + rng.below(10) as u8))
            .collect();
        let base = format!("77{}", &base[2..]);
        if let Some(inn) = (0..10)
            .map(|d| format!("{base}{d}"))
            .find(|c| validate_inn(c).is_ok())
        {
            return inn;
        }
    }
}

fn valid_account(rng: &mut Rng, bik: &str) -> String {
    let tail: String = (0..11)
        .map(|_| char::from(b'0' + rng.below(10) as u8))
        .collect();
    (0..10)
        .map(|d| format!("40702810{d}{tail}"))
        .find(|a| validate_bank_account(a, bik).is_ok())
        .expect("one check digit fits")
}

pub fn demo(args: DemoArgs) -> Result<(), CliError> {
    let dir: PathBuf = match &args.dir {
        Some(d) => d.clone(),
        None => tempfile::Builder::new()
            .prefix("leadflow-demo-")
            .tempdir()
            .map_err(|e| CliError::io(std::env::temp_dir(), e))?
            .keep(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| CliError::io(&dir, e))?;
    let config_path = dir.join("leadflow.toml");
    let db_path = dir.join("leadflow.db");
    if db_path.exists() {
        return Err(CliError::Usage(format!(
            "{} already exists; the demo needs a fresh folder",
            db_path.display()
        )));
    }
    std::fs::write(&config_path, DEFAULT_CONFIG).map_err(|e| CliError::io(&config_path, e))?;
    let config = Config::from_toml(&config_path.display().to_string(), DEFAULT_CONFIG)?;
    // The demo's commits are many and small; NORMAL keeps them crash-safe and quick.
    let store = Store::open(
        &db_path,
        &Options {
            synchronous: Synchronous::Normal,
            ..Options::default()
        },
    )?;
    let start: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 3, 2, 6, 0, 0)
        .single()
        .expect("valid");
    let first_line = config
        .members(&"first_line".into())
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    let mut sim = Sim {
        config,
        store,
        clock: ManualClock::new(start),
        wall: SystemClock,
        rng: Rng(args.seed),
        first_line,
        next_first_line: 0,
        next_in_team: Default::default(),
        deals_of_lead: Default::default(),
        rejections: Vec::new(),
        commands: 0,
    };
    eprintln!(
        "leadflow demo: {} leads over a simulated working week, in {}",
        args.leads,
        dir.display()
    );
    let started = std::time::Instant::now();
    // Leads arrive during working hours (09:00–18:00 Moscow, 06:00–15:00 UTC), Monday to Friday.
    let mut queue: BinaryHeap<Reverse<(DateTime<Utc>, i64, Step)>> = BinaryHeap::new();
    for i in 0..args.leads {
        let day = (i * 5 / args.leads.max(1)) as i64;
        let at = start + Duration::days(day) + sim.rng.minutes(0, 9 * 60);
        queue.push(Reverse((at, i as i64 + 1, Step::Arrive)));
    }
    let mut lead_ids = std::collections::HashMap::new();
    let mut next_lead = 1i64;
    while let Some(Reverse((at, key, step))) = queue.pop() {
        sim.clock.set(at);
        let id = if step == Step::Arrive {
            let id = next_lead;
            next_lead += 1;
            lead_ids.insert(key, id);
            id
        } else {
            lead_ids[&key]
        };
        if let Some((next, delay)) = sim.step(id, step) {
            queue.push(Reverse((at + delay, key, next)));
        }
    }
    let end = sim.clock.now();
    print_summary(&mut sim, &dir, start, end, started.elapsed())?;
    Ok(())
}

fn print_summary(
    sim: &mut Sim,
    dir: &std::path::Path,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    took: std::time::Duration,
) -> Result<(), CliError> {
    let conn = sim.store.connection();
    println!(
        "leadflow demo — a countertop workshop: leads arrive {} to {}; the last deal closed {}",
        start.format("%a %Y-%m-%d"),
        (start + Duration::days(4)).format("%a %Y-%m-%d"),
        end.format("%a %Y-%m-%d %H:%M UTC")
    );
    println!();
    println!("lead funnel (how many leads entered each stage, and how many are there now):");
    let mut t = Table::new(&["STAGE", "REACHED", "NOW"]);
    for f in query::funnel(conn, EntityKind::Lead)? {
        t.row(vec![f.stage, f.reached.to_string(), f.current.to_string()]);
    }
    t.print();
    println!();
    println!("deals by pipeline:");
    let mut t = Table::new(&["PIPELINE", "STAGE", "REACHED", "NOW"]);
    for f in query::funnel(conn, EntityKind::Deal)? {
        t.row(vec![
            f.pipeline,
            f.stage,
            f.reached.to_string(),
            f.current.to_string(),
        ]);
    }
    t.print();
    let (won, amount) = query::deal_totals(conn, "won")?;
    println!();
    println!(
        "won: {won} deals for {} {}",
        format_money(amount),
        sim.config.currency
    );
    let tasks = query::tasks(conn, &query::TaskFilter::default())?;
    let done = tasks.iter().filter(|t| t.completed_at.is_some()).count();
    let overdue = tasks
        .iter()
        .filter(|t| t.completed_at.is_none() && t.due_at < end)
        .count();
    println!(
        "tasks: {} set, {done} done, {overdue} overdue at the end of the week",
        tasks.len()
    );
    println!(
        "commands: {}, of which the engine refused {}",
        sim.commands,
        sim.rejections.len()
    );
    if let Some(r) = sim.rejections.first() {
        println!("  e.g. \"{r}\"");
    }
    let chain = sim.store.verify_chain(&mut |_| {})?;
    let diffs = sim.store.verify_projections(&mut |_| {})?;
    let head = chain
        .head
        .map(|(p, h)| format!("{p}:{}", to_hex(&h)))
        .unwrap_or_default();
    println!(
        "log: {} events in {:.1}s; hash chain {}; projections {}",
        chain.events,
        took.as_secs_f64(),
        if chain.problem.is_none() {
            "intact"
        } else {
            "BROKEN"
        },
        if diffs.is_empty() {
            "equal to a fresh replay"
        } else {
            "DIFFER from a replay"
        }
    );
    println!("head: {head}");
    println!();
    let cfg = dir.join("leadflow.toml");
    println!(
        "explore it (`cargo install --path cli` puts leadflow on your PATH, or write `cargo run --` for `leadflow`):"
    );
    println!("  export LEADFLOW_CONFIG={}", cfg.display());
    println!("  leadflow lead list --stage qualified");
    println!("  leadflow lead show 7");
    println!("  leadflow deal list --pipeline goods");
    println!("  leadflow events --stream lead-7");
    println!("  leadflow verify");
    println!(
        "  sqlite3 {} 'SELECT stage, count(*) FROM leads GROUP BY stage'",
        dir.join("leadflow.db").display()
    );
    Ok(())
}
