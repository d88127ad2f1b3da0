//! `demo`: the main job on the embedded default. Creates a database, writes the example
//! configuration and the rules of seed scenarios A (two-line sales) and B (qualification with a
//! deadline, a check cycle and escalation), and drives a few hundred leads through them over a
//! simulated working week on a virtual clock: people do what people do (and are sometimes late),
//! the robots do the rest, and deadlines fire when the clock reaches them. Then it prints the
//! funnel, the incident journal and the escalations.

use crate::automation;
use crate::cli::DemoArgs;
use crate::error::CliError;
use crate::output::Table;
use chrono::{DateTime, Duration, TimeZone, Utc};
use leadflow_engine::calendar::Calendar;
use leadflow_engine::command::{FieldInputs, NewLead, NewTask};
use leadflow_engine::config::{DEFAULT_CONFIG, Semantic};
use leadflow_engine::field::{format_money, validate_bank_account, validate_inn};
use leadflow_engine::{Actor, Command, Config, Entity, EntityKind, EventMeta, StreamId};
use leadflow_robots::{Registry, Report, Runtime};
use leadflow_store::{Options, Store, Synchronous, query, to_hex};
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};

/// The demo's rule set: seed scenario A's rules and seed scenario B's qualification rules (B's
/// intake is A's round robin, so it is left out). Written to `rules/` beside the configuration,
/// so `leadflow tick`, `run` and `rules check` use them in the demo's folder afterwards.
const RULES: &[(&str, &str)] = &[
    (
        "intake.toml",
        include_str!("../../examples/scenarios/a-two-line-sales/rules/intake.toml"),
    ),
    (
        "transfer.toml",
        include_str!("../../examples/scenarios/a-two-line-sales/rules/transfer.toml"),
    ),
    (
        "qualification.toml",
        include_str!("../../examples/scenarios/b-qualification/rules/qualification.toml"),
    ),
];

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

/// A lead's next step and when it is due; `None` when people are done with it.
type Next = Option<(Step, DateTime<Utc>)>;

/// The steps of one lead's life that people take; robots take the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// The web form (or a call, or an e-mail) brings the lead in.
    Arrive,
    /// Its responsible takes it in work: the qualification deadline starts.
    TakeInWork,
    /// The qualification card is filled in (or the lead is junked), on time or late.
    Qualify,
    /// The head of sales looks at a lead the first line did not qualify.
    QualityControl,
    /// Client type and requisites; the offer goes out.
    Offer,
    /// The first line finishes with the lead: transfer to goods or services, second chance,
    /// or junk.
    Close,
    /// The deal's team moves it on, one stage at a time.
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

/// How often a first-liner fills in the qualification card within the deadline, in percent.
/// Sidorov is the one the head of sales will hear about.
fn punctuality(employee: &str) -> u64 {
    match employee {
        "ivanov" => 99,
        "petrova" => 95,
        "sidorov" => 75,
        _ => 90,
    }
}

/// One lead's client, kept so a later lead can come from the same client again.
#[derive(Clone)]
struct Client {
    name: String,
    phones: Vec<String>,
    emails: Vec<String>,
}

struct Sim {
    config: Config,
    store: Store,
    runtime: Runtime,
    now: DateTime<Utc>,
    rng: Rng,
    clients: Vec<Client>,
    /// The deal the robots made of each converted lead.
    deals: HashMap<i64, i64>,
    /// The robots' work, summed over the week.
    robots: Report,
    /// Where timers kept falling due at once (a rule-set defect), if they did.
    stuck: Option<DateTime<Utc>>,
    rejections: Vec<String>,
    commands: usize,
}

impl Sim {
    fn calendar(&self) -> &Calendar {
        &self.config.calendar
    }

    /// `minutes` of working time after now.
    fn later(&mut self, lo: i64, hi: i64) -> DateTime<Utc> {
        let d = self.rng.minutes(lo, hi);
        self.calendar().add_working(self.now, d)
    }

    /// Moves the virtual clock to `to`, firing every deadline, delayed robot and task due on
    /// the way at its own time.
    fn advance(&mut self, to: DateTime<Utc>) -> Result<(), CliError> {
        if to <= self.now {
            return Ok(());
        }
        let done = self
            .runtime
            .advance(&mut self.store, self.now, to)
            .map_err(CliError::Robot)?;
        self.robots.add(&done.report);
        self.stuck = self.stuck.or(done.stuck_at);
        self.now = to;
        Ok(())
    }

    /// Runs a command as `actor` (an employee id or `system`), then the robots it triggers;
    /// the id of the entity it addressed or created, or `None` if the engine refused it.
    fn run(&mut self, actor: &str, cmd: Command) -> Result<Option<i64>, CliError> {
        let actor = if actor == "system" {
            Actor::System
        } else {
            Actor::Employee(actor.into())
        };
        let meta = EventMeta::root(self.now, actor);
        let config = &self.config;
        self.commands += 1;
        let out = match self
            .store
            .write(self.now, |tx| tx.execute(config, &cmd, &meta))
        {
            Ok(out) => out,
            Err(leadflow_store::Error::Rejected(r)) => {
                self.rejections.push(r.to_string());
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let report = self
            .runtime
            .process(&mut self.store, self.now)
            .map_err(CliError::Robot)?;
        self.robots.add(&report);
        Ok(Some(out.stream.id))
    }

    fn lead(&self, id: i64) -> Result<Option<leadflow_engine::model::Lead>, CliError> {
        Ok(
            match self.store.load(StreamId::new(EntityKind::Lead, id))? {
                Some(Entity::Lead(l)) => Some(l),
                _ => None,
            },
        )
    }

    fn move_lead(
        &mut self,
        who: &str,
        id: i64,
        stage: &str,
        reason: Option<&str>,
    ) -> Result<bool, CliError> {
        Ok(self
            .run(
                who,
                Command::MoveLead {
                    id,
                    stage: stage.into(),
                    reason: reason.map(str::to_owned),
                },
            )?
            .is_some())
    }

    fn update_lead(&mut self, who: &str, id: i64, changes: FieldInputs) -> Result<bool, CliError> {
        Ok(self
            .run(who, Command::UpdateLead { id, changes })?
            .is_some())
    }

    /// Performs `step` for lead `id` (`None` before it arrives); returns the lead's id (once it
    /// exists) and its next step and when, if it has one.
    fn step(&mut self, id: Option<i64>, step: Step) -> Result<(Option<i64>, Next), CliError> {
        let Some(id) = id else {
            let id = self.arrive()?;
            let next = id.map(|_| (Step::TakeInWork, self.later(5, 60)));
            return Ok((id, next));
        };
        let Some(lead) = self.lead(id)? else {
            return Ok((Some(id), None));
        };
        let who = lead
            .responsible
            .as_ref()
            .map_or_else(|| "admin".to_owned(), |r| r.to_string());
        let next = match step {
            Step::Arrive => None,
            Step::TakeInWork => {
                self.move_lead(&who, id, "in_work", None)?;
                // On time: within the 2 working hours (phone) the deadline gives; late: after.
                let (lo, hi) = if self.rng.chance(punctuality(&who)) {
                    (10, 110)
                } else {
                    (130, 300)
                };
                Some((Step::Qualify, self.later(lo, hi)))
            }
            Step::Qualify => self.qualify(&who, &lead)?,
            Step::QualityControl => {
                // Smirnova checks the leads the first line did not qualify, once the check cycle
                // has sent them to quality control.
                match lead.stage.as_str() {
                    "quality_control" => {
                        let reason = *self.rng.pick(&["not_target", "not_target", "spam"]);
                        self.move_lead("smirnova", id, "junk", Some(reason))?;
                        self.complete_tasks_of(Some(id), None, 100)?;
                        None
                    }
                    "in_work" => Some((Step::QualityControl, self.later(60, 120))),
                    _ => None,
                }
            }
            Step::Offer => self.offer(&who, &lead)?,
            Step::Close => self.close(&who, &lead)?,
            Step::DealProgress(n) => self.deal_progress(id, n)?,
        };
        Ok((Some(id), next))
    }

    fn arrive(&mut self) -> Result<Option<i64>, CliError> {
        let rng = &mut self.rng;
        // Now and then a client comes back: the same phone or e-mail as an earlier lead.
        let client = if !self.clients.is_empty() && rng.chance(8) {
            rng.pick(&self.clients).clone()
        } else {
            let phones: Vec<String> = rng
                .chance(80)
                .then(|| {
                    format!(
                        "8 9{:02} {:03}-{:02}-{:02}",
                        rng.below(100),
                        rng.below(1000),
                        rng.below(100),
                        rng.below(100)
                    )
                })
                .into_iter()
                .collect();
            let emails = (phones.is_empty() || rng.chance(40))
                .then(|| format!("client{}@example.ru", self.clients.len() + 1))
                .into_iter()
                .collect();
            Client {
                name: format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES)),
                phones,
                emails,
            }
        };
        let source = rng
            .pick(&["web_form", "web_form", "call", "email"])
            .to_string();
        let product = rng
            .pick(&[
                "Kitchen countertop",
                "Bathroom vanity top",
                "Windowsill",
                "Bar counter",
            ])
            .to_string();
        self.clients.push(client.clone());
        self.run(
            "system",
            Command::CreateLead(NewLead {
                title: Some(format!("{product}, {}", client.name)),
                name: Some(client.name),
                phones: client.phones,
                emails: client.emails,
                source: Some(source),
                ..NewLead::default()
            }),
        )
    }

    fn qualify(
        &mut self,
        who: &str,
        lead: &leadflow_engine::model::Lead,
    ) -> Result<Next, CliError> {
        let id = lead.id;
        if lead.stage.as_str() != "in_work" {
            return Ok(None);
        }
        if self.rng.chance(10) {
            let reason = *self.rng.pick(&["spam", "not_target", "no_answer"]);
            self.move_lead(who, id, "junk", Some(reason))?;
            return Ok(None);
        }
        if self.rng.chance(12) {
            // Not worth working on, says the first line; the check cycle sends it to quality
            // control when the deadline comes.
            let mut card = FieldInputs::new();
            card.insert("qualification".into(), Value::from("not_qualified"));
            self.update_lead(who, id, card)?;
            return Ok(Some((Step::QualityControl, self.later(8 * 60, 9 * 60))));
        }
        let mut card = self.card();
        if self.rng.chance(10) {
            card.remove("urgency"); // forgotten: the check cycle will ask for it
        }
        self.update_lead(who, id, card)?;
        if self.rng.chance(60) {
            // Moved on by hand (refused while the card is incomplete); otherwise the check
            // cycle moves it when the deadline comes.
            self.move_lead(who, id, "qualified", None)?;
        }
        Ok(Some((Step::Offer, self.later(60, 360))))
    }

    /// A complete qualification card.
    fn card(&mut self) -> FieldInputs {
        let rng = &mut self.rng;
        let mut card = FieldInputs::new();
        card.insert(
            "material".into(),
            Value::from(*rng.pick(&["granite", "marble", "quartz", "acrylic", "wood"])),
        );
        card.insert(
            "dimensions".into(),
            Value::from(format!("{}x600", 1200 + rng.below(30) * 100)),
        );
        card.insert(
            "budget".into(),
            Value::from(format!("{}", 40_000 + rng.below(40) * 5_000)),
        );
        card.insert(
            "urgency".into(),
            Value::from(*rng.pick(&["this_week", "this_month", "later"])),
        );
        card.insert("qualification".into(), Value::from("qualified"));
        card
    }

    fn offer(&mut self, who: &str, lead: &leadflow_engine::model::Lead) -> Result<Next, CliError> {
        let id = lead.id;
        if lead.stage.as_str() == "in_work" {
            // Still waiting for the check cycle, or the card is incomplete: finish it by hand.
            if !lead.fields.contains_key("urgency") {
                let mut changes = FieldInputs::new();
                changes.insert("urgency".into(), Value::from("this_month"));
                self.update_lead(who, id, changes)?;
            }
            if !self.move_lead(who, id, "qualified", None)? {
                return Ok(None);
            }
        } else if lead.stage.as_str() != "qualified" {
            return Ok(None);
        }
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
        self.update_lead(who, id, changes)?;
        if !self.move_lead(who, id, "offer_sent", None)? {
            return Ok(None);
        }
        let due = self.calendar().add_working(self.now, Duration::hours(4));
        self.run(
            who,
            Command::CreateTask(NewTask {
                kind: "call".into(),
                title: "agree on the offer".into(),
                assignee: who.into(),
                due_at: due,
                lead: Some(id),
                deal: None,
            }),
        )?;
        Ok(Some((Step::Close, self.later(60, 480))))
    }

    fn close(&mut self, who: &str, lead: &leadflow_engine::model::Lead) -> Result<Next, CliError> {
        let id = lead.id;
        self.complete_tasks_of(Some(id), None, 90)?;
        let roll = self.rng.below(100);
        if roll < 8 {
            self.move_lead(who, id, "junk", Some("no_answer"))?;
            return Ok(None);
        }
        if roll < 18 {
            // The client asks to be called later: a robot sets the call-back task.
            self.move_lead(who, id, "second_chance", None)?;
            return Ok(None);
        }
        let stage = if roll < 70 {
            "transfer_goods"
        } else {
            "transfer_services"
        };
        // A robot creates the contact and the deal in that pipeline and converts the lead.
        if !self.move_lead(who, id, stage, None)? {
            return Ok(None);
        }
        let Some(deal) = self.deal_of(id)? else {
            return Ok(None);
        };
        self.deals.insert(id, deal);
        Ok(Some((Step::DealProgress(1), self.later(60, 240))))
    }

    /// The deal a robot made of lead `id`.
    fn deal_of(&self, lead: i64) -> Result<Option<i64>, CliError> {
        Ok(query::deal_of_lead(&self.store, lead)?)
    }

    fn deal_progress(&mut self, lead_id: i64, n: u8) -> Result<Next, CliError> {
        let Some(&deal_id) = self.deals.get(&lead_id) else {
            return Ok(None);
        };
        let Some(Entity::Deal(deal)) = self.store.load(StreamId::new(EntityKind::Deal, deal_id))?
        else {
            return Ok(None);
        };
        let owner = deal
            .responsible
            .as_ref()
            .map_or_else(|| "admin".to_owned(), |r| r.to_string());
        self.complete_tasks_of(None, Some(deal_id), 90)?;
        if deal.amount.is_none() {
            // The price is the budget from the qualification card.
            let budget = self
                .lead(lead_id)?
                .and_then(|l| l.fields.get("budget").and_then(Value::as_i64));
            if let Some(minor) = budget {
                let mut changes = FieldInputs::new();
                changes.insert("amount".into(), Value::from(format_money(minor)));
                self.run(
                    &owner,
                    Command::UpdateDeal {
                        id: deal_id,
                        changes,
                    },
                )?;
            }
        }
        let Some(pipeline) = self.config.pipeline(&deal.pipeline) else {
            return Ok(None);
        };
        let open: Vec<String> = pipeline
            .stages
            .iter()
            .filter(|s| s.semantic == Semantic::InProgress)
            .map(|s| s.id.to_string())
            .collect();
        if (n as usize) < open.len() {
            if self.rng.chance(12) {
                let reason = *self.rng.pick(&["price", "competitor", "no_budget"]);
                self.run(
                    &owner,
                    Command::MoveDeal {
                        id: deal_id,
                        stage: "lost".into(),
                        reason: Some(reason.into()),
                    },
                )?;
                return Ok(None);
            }
            let stage = open[n as usize].clone();
            self.run(
                &owner,
                Command::MoveDeal {
                    id: deal_id,
                    stage: stage.as_str().into(),
                    reason: None,
                },
            )?;
            let hours = if self.rng.chance(20) { 1 } else { 6 };
            let due = self
                .calendar()
                .add_working(self.now, Duration::hours(hours));
            self.run(
                &owner,
                Command::CreateTask(NewTask {
                    kind: "call".into(),
                    title: format!("follow up: {stage}"),
                    assignee: owner.as_str().into(),
                    due_at: due,
                    lead: None,
                    deal: Some(deal_id),
                }),
            )?;
            return Ok(Some((Step::DealProgress(n + 1), self.later(120, 600))));
        }
        self.run(
            &owner,
            Command::MoveDeal {
                id: deal_id,
                stage: "won".into(),
                reason: None,
            },
        )?;
        Ok(None)
    }

    /// Completes the open tasks of a lead or deal, each with `percent` chance (the others are
    /// forgotten and go overdue).
    fn complete_tasks_of(
        &mut self,
        lead: Option<i64>,
        deal: Option<i64>,
        percent: u64,
    ) -> Result<(), CliError> {
        let open = query::tasks(
            &self.store,
            &query::TaskFilter {
                open: true,
                ..Default::default()
            },
        )?;
        for t in open
            .into_iter()
            .filter(|t| (lead.is_some() && t.lead == lead) || (deal.is_some() && t.deal == deal))
        {
            if !self.rng.chance(percent) {
                continue;
            }
            self.run(
                t.assignee.as_str(),
                Command::CompleteTask {
                    id: t.id,
                    result: Some("done".into()),
                },
            )?;
        }
        Ok(())
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

pub(crate) fn demo(args: DemoArgs) -> Result<(), CliError> {
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
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).map_err(|e| CliError::io(&rules_dir, e))?;
    for (name, text) in RULES {
        let path = rules_dir.join(name);
        std::fs::write(&path, text).map_err(|e| CliError::io(&path, e))?;
    }
    let config = Config::from_toml(&config_path.display().to_string(), DEFAULT_CONFIG)?;
    let rules = automation::load_rule_set(&rules_dir, &config)?
        .ok_or_else(|| CliError::Usage("the demo's rule set is empty".into()))?;
    let rule_count = rules.rules.len();
    // The demo's commits are many and small; NORMAL keeps them crash-safe and quick.
    let mut store = Store::open(
        &db_path,
        &Options {
            synchronous: Synchronous::Normal,
            ..Options::default()
        },
    )?;
    let tz = config.calendar.timezone;
    let local = |d: u32, h: u32| {
        tz.with_ymd_and_hms(2026, 3, d, h, 0, 0)
            .single()
            .expect("an unambiguous local time")
            .with_timezone(&Utc)
    };
    // Monday 2 March 2026, 09:00, to Friday 6 March, 18:00 (Moscow); Monday the 9th is a holiday.
    let (start, end) = (local(2, 9), local(6, 18));
    let runtime = Runtime::new(config.clone(), rules, Registry::builtin());
    runtime
        .activate(&mut store, start)
        .map_err(CliError::Robot)?;
    let mut sim = Sim {
        config,
        store,
        runtime,
        now: start,
        rng: Rng(args.seed),
        clients: Vec::new(),
        deals: HashMap::new(),
        robots: Report::default(),
        stuck: None,
        rejections: Vec::new(),
        commands: 0,
    };
    errln!(
        "leadflow demo: {} leads through seed scenarios A and B over a simulated working week, in {}",
        args.leads,
        dir.display()
    );
    let started = std::time::Instant::now();
    // Leads arrive in working hours, Monday to Thursday; the week ends on Friday evening.
    let mut queue: BinaryHeap<Reverse<(DateTime<Utc>, usize, Step)>> = BinaryHeap::new();
    for key in 0..args.leads {
        let offset = sim.rng.minutes(0, 4 * 8 * 60);
        let at = sim.calendar().add_working(start, offset);
        queue.push(Reverse((at, key, Step::Arrive)));
    }
    let mut ids: Vec<Option<i64>> = vec![None; args.leads];
    let mut unfinished = 0;
    while let Some(Reverse((at, key, step))) = queue.pop() {
        if at > end {
            unfinished = queue.len() + 1;
            break;
        }
        sim.advance(at)?;
        let (id, next) = sim.step(ids[key], step)?;
        ids[key] = id;
        if let Some((next, when)) = next {
            queue.push(Reverse((when, key, next)));
        }
    }
    sim.advance(end)?;
    let took = started.elapsed();
    print_summary(&mut sim, &dir, start, end, rule_count, unfinished, took)
}

/// The funnel of `kind`'s pipelines, every stage in the configuration's order:
/// (pipeline, stage, how many ever entered it, how many are in it now).
fn funnel(
    config: &Config,
    store: &Store,
    kind: EntityKind,
) -> Result<Vec<(String, String, i64, i64)>, CliError> {
    let seen: HashMap<(String, String), query::FunnelStage> = query::funnel(store, kind)?
        .into_iter()
        .map(|f| ((f.pipeline.clone(), f.stage.clone()), f))
        .collect();
    let mut out = Vec::new();
    for p in config.pipelines.iter().filter(|p| p.entity == kind) {
        for s in &p.stages {
            let key = (p.id.to_string(), s.id.to_string());
            let (reached, now) = seen.get(&key).map_or((0, 0), |f| (f.reached, f.current));
            out.push((key.0, key.1, reached, now));
        }
    }
    Ok(out)
}

fn print_summary(
    sim: &mut Sim,
    dir: &Path,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    rule_count: usize,
    unfinished: usize,
    took: std::time::Duration,
) -> Result<(), CliError> {
    let tz = sim.config.calendar.timezone;
    let local = |t: DateTime<Utc>, f: &str| t.with_timezone(&tz).format(f).to_string();
    let name = |id: &str| {
        sim.config
            .employee(&id.into())
            .map_or_else(|| id.to_owned(), |e| e.name.clone())
    };
    let store = &sim.store;
    outln!(
        "leadflow demo — a countertop workshop, {} to {} ({tz})",
        local(start, "%a %Y-%m-%d %H:%M"),
        local(end, "%a %Y-%m-%d %H:%M"),
    );
    outln!(
        "rules: seed scenarios A (two-line sales) and B (qualification with a deadline and escalation), {rule_count} rules in {}",
        dir.join("rules").display()
    );
    outln!();
    outln!("lead funnel (how many leads entered each stage, and how many are there now):");
    let mut t = Table::new(&["STAGE", "REACHED", "NOW"]);
    for (_, stage, reached, now) in funnel(&sim.config, &sim.store, EntityKind::Lead)? {
        t.row(vec![stage, reached.to_string(), now.to_string()]);
    }
    t.print();
    outln!();
    outln!("deals by pipeline:");
    let mut t = Table::new(&["PIPELINE", "STAGE", "REACHED", "NOW"]);
    for (pipeline, stage, reached, now) in funnel(&sim.config, &sim.store, EntityKind::Deal)? {
        t.row(vec![pipeline, stage, reached.to_string(), now.to_string()]);
    }
    t.print();
    let (won, amount) = query::deal_totals(store, "won")?;
    outln!();
    outln!(
        "won: {won} deals for {} {}",
        format_money(amount),
        sim.config.currency
    );

    let counts = query::event_counts(store)?;
    let count = |ty: &str| counts.get(ty).copied().unwrap_or(0);
    let by_robots = query::events_by_robots(store)?;
    outln!();
    outln!(
        "robots: {} rule firings appended {by_robots} events; {} deadlines elapsed, {} tasks went overdue",
        sim.robots.fired,
        count("deadline.elapsed"),
        count("task.overdue")
    );
    outln!(
        "  {} repeat leads recognised, {} contacts and {} deals created by conversion, {} notifications",
        count("lead.repeat_detected"),
        count("contact.created"),
        count("deal.created"),
        count("notification.queued")
    );

    let journal = query::journal(
        store,
        &query::JournalFilter {
            incidents: true,
            escalations: true,
            ..Default::default()
        },
    )?;
    let mut incidents: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in journal
        .iter()
        .filter(|e| e.record == query::JournalRecord::Incident)
    {
        let who = e.employee.clone().unwrap_or_else(|| "—".into());
        *incidents.entry((who, e.kind.clone())).or_default() += 1;
    }
    outln!();
    outln!(
        "incident journal ({} incidents):",
        incidents.values().sum::<usize>()
    );
    let mut t = Table::new(&["EMPLOYEE", "KIND", "INCIDENTS"]);
    for ((who, kind), n) in &incidents {
        t.row(vec![name(who), kind.clone(), n.to_string()]);
    }
    t.print();
    let escalations: Vec<_> = journal
        .iter()
        .filter(|e| e.record == query::JournalRecord::Escalation)
        .collect();
    outln!();
    outln!(
        "escalations to the manager ({}; one per {} missed deadlines):",
        escalations.len(),
        escalations
            .first()
            .and_then(|e| e.count)
            .map_or_else(|| "3".into(), |n| n.to_string())
    );
    let mut t = Table::new(&["WHEN", "EMPLOYEE", "MANAGER", "KIND", "LATEST"]);
    for e in &escalations {
        t.row(vec![
            local(e.at, "%a %H:%M"),
            name(e.employee.as_deref().unwrap_or("—")),
            name(e.manager.as_deref().unwrap_or("—")),
            e.kind.clone(),
            e.stream.clone(),
        ]);
    }
    t.print();

    outln!();
    let tasks = query::tasks(store, &query::TaskFilter::default())?;
    let done = tasks.iter().filter(|t| t.completed_at.is_some()).count();
    let overdue = tasks
        .iter()
        .filter(|t| t.completed_at.is_none() && t.due_at < end)
        .count();
    outln!(
        "tasks: {} set, {done} done, {overdue} overdue on Friday evening",
        tasks.len()
    );
    outln!(
        "people: {} commands, of which the engine refused {}; {unfinished} next steps fall after the week",
        sim.commands,
        sim.rejections.len()
    );
    if let Some(r) = sim.rejections.first() {
        outln!("  e.g. \"{r}\"");
    }
    if let Some(at) = sim.stuck {
        outln!(
            "WARNING: timers kept falling due at once at {}: a rule schedules something due immediately, over and over",
            local(at, "%a %H:%M")
        );
    }
    let chain = sim.store.verify_chain(&mut |_| {})?;
    let diffs = sim.store.verify_projections(&mut |_| {})?;
    let head = chain
        .head
        .map(|(p, h)| format!("{p}:{}", to_hex(&h)))
        .unwrap_or_default();
    outln!(
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
    outln!("head: {head}");
    outln!();
    let cfg = dir.join("leadflow.toml");
    outln!(
        "explore it (`cargo install --path cli` puts leadflow on your PATH, or write `cargo run --` for `leadflow`):"
    );
    outln!("  export LEADFLOW_CONFIG={}", cfg.display());
    outln!("  leadflow journal --employee sidorov     # his missed deadlines and escalations");
    outln!("  leadflow inbox smirnova                 # what the head of sales was told");
    // A stage the user will find leads in: the open lead stage holding the most of them now.
    let open = |stage: &str| {
        sim.config.pipelines.iter().any(|p| {
            p.entity == EntityKind::Lead
                && p.stages
                    .iter()
                    .any(|s| s.id.as_str() == stage && s.semantic == Semantic::InProgress)
        })
    };
    let busiest = funnel(&sim.config, &sim.store, EntityKind::Lead)?
        .into_iter()
        .filter(|(_, stage, _, now)| *now > 0 && open(stage))
        .max_by_key(|(_, _, _, now)| *now);
    match busiest {
        Some((_, stage, _, now)) => outln!(
            "  leadflow lead list --stage {stage}{}# the {now} leads still there",
            " ".repeat(13usize.saturating_sub(stage.len()).max(1))
        ),
        None => outln!("  leadflow lead list --stage converted"),
    }
    outln!("  leadflow lead show 7");
    outln!("  leadflow events --stream lead-7");
    outln!("  leadflow verify");
    outln!(
        "  sqlite3 {} 'SELECT stage, count(*) FROM leads GROUP BY stage'",
        dir.join("leadflow.db").display()
    );
    Ok(())
}
