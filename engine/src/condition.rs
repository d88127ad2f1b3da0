//! Rule conditions in CEL, the Common Expression Language: a standard, side-effect-free
//! expression language (`lead.client_type == "legal" && !has(lead.fields.inn)`).
//!
//! A condition is compiled once when the rule set loads, checked against a typed sample of the
//! variables it will see (so `lead.fields.budget > "lots"` or a misspelt field is reported at
//! load time, not when a lead arrives), and evaluated against JSON variables at run time.

use crate::config::Config;
use crate::field::FieldType;
use crate::ids::EntityKind;
use cel::common::ast::{EntryExpr, Expr};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A compiled condition.
#[derive(Clone)]
pub struct Condition {
    source: String,
    program: Arc<cel::Program>,
    /// What the expression reads of its variables: only those variables, and of each only
    /// the fields it selects, are handed to CEL (which converts what it is given whole at
    /// every evaluation).
    uses: Arc<Uses>,
}

/// What an expression reads of each top-level variable it names: the fields it selects of
/// it (`lead.stage`, `has(lead.responsible)`), or everything when it uses the variable
/// otherwise (hands it to a function, indexes it, iterates over it, compares it whole).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uses(BTreeMap<String, Option<BTreeSet<String>>>);

impl Uses {
    /// The uses of a compiled expression.
    fn of(expr: &cel::IdedExpr) -> Uses {
        let mut uses = Uses::default();
        uses.walk(expr, &mut Vec::new());
        uses
    }

    fn walk(&mut self, e: &cel::IdedExpr, bound: &mut Vec<String>) {
        match &e.expr {
            Expr::Ident(name) if !bound.contains(name) => {
                self.0.insert(name.clone(), None);
            }
            Expr::Select(s) => match &s.operand.expr {
                Expr::Ident(name) if !bound.contains(name) => {
                    if let Some(fields) =
                        self.0.entry(name.clone()).or_insert(Some(BTreeSet::new()))
                    {
                        fields.insert(s.field.clone());
                    }
                }
                _ => self.walk(&s.operand, bound),
            },
            Expr::Call(c) => {
                if let Some(t) = &c.target {
                    self.walk(t, bound);
                }
                for a in &c.args {
                    self.walk(a, bound);
                }
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range, bound);
                self.walk(&c.accu_init, bound);
                let depth = bound.len();
                bound.extend(
                    [Some(&c.iter_var), c.iter_var2.as_ref(), Some(&c.accu_var)]
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
                for part in [&c.loop_cond, &c.loop_step, &c.result] {
                    self.walk(part, bound);
                }
                bound.truncate(depth);
            }
            Expr::List(l) => {
                for x in &l.elements {
                    self.walk(x, bound);
                }
            }
            Expr::Map(m) => self.entries(&m.entries, bound),
            Expr::Struct(s) => self.entries(&s.entries, bound),
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn entries(&mut self, entries: &[cel::common::ast::IdedEntryExpr], bound: &mut Vec<String>) {
        for entry in entries {
            match &entry.expr {
                EntryExpr::StructField(f) => self.walk(&f.value, bound),
                EntryExpr::MapEntry(m) => {
                    self.walk(&m.key, bound);
                    self.walk(&m.value, bound);
                }
            }
        }
    }

    /// Adds what `other` reads.
    pub fn merge(&mut self, other: &Uses) {
        for (name, fields) in &other.0 {
            match (self.0.get_mut(name), fields) {
                (None, _) => {
                    self.0.insert(name.clone(), fields.clone());
                }
                (Some(Some(mine)), Some(theirs)) => mine.extend(theirs.iter().cloned()),
                (Some(mine), None) => *mine = None,
                (Some(None), Some(_)) => {}
            }
        }
    }

    /// Whether the variable `name` is read at all.
    pub fn reads(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Whether `name.field` can be read (the field selected, or `name` used whole).
    pub fn reads_field(&self, name: &str, field: &str) -> bool {
        self.0
            .get(name)
            .is_some_and(|f| f.as_ref().is_none_or(|f| f.contains(field)))
    }

    /// The part of the variable `name`'s value `v` the expression can read: the selected
    /// fields of an object, or all of it.
    fn part_of<'v>(&self, name: &str, v: &'v Value) -> Option<std::borrow::Cow<'v, Value>> {
        match (self.0.get(name)?, v) {
            (Some(fields), Value::Object(m)) => Some(std::borrow::Cow::Owned(Value::Object(
                fields
                    .iter()
                    .filter_map(|f| m.get(f).map(|x| (f.clone(), x.clone())))
                    .collect(),
            ))),
            _ => Some(std::borrow::Cow::Borrowed(v)),
        }
    }
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// A problem in a condition: where in the expression text (0-based line and column, in
/// characters) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl Condition {
    /// Parses a CEL expression.
    pub fn compile(source: &str) -> Result<Condition, ConditionError> {
        match cel::Program::compile(source) {
            Ok(p) => Ok(Condition {
                source: source.to_owned(),
                uses: Arc::new(Uses::of(p.expression())),
                program: Arc::new(p),
            }),
            Err(errs) => {
                let first = errs.errors.first();
                let message = first.map_or_else(|| errs.to_string(), |e| e.msg.clone());
                if let Some(limit) = recursion_limit(&message) {
                    let (line, col) = deepest_bracket(source);
                    return Err(ConditionError {
                        line,
                        col,
                        message: format!(
                            "bad condition: it nests more than {limit} levels deep (brackets, operators, calls); simplify it or split it over several rules"
                        ),
                    });
                }
                let (line, col) = first.map_or((1, 0), |e| {
                    (e.pos.0.max(1) as usize, e.pos.1.max(0) as usize)
                });
                Err(ConditionError {
                    line: line - 1,
                    col,
                    message: format!("bad condition: {}", plain_parse_message(&message)),
                })
            }
        }
    }

    /// The expression text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// What the expression reads of its variables.
    pub fn uses(&self) -> &Uses {
        &self.uses
    }

    /// Evaluates the condition with these variables; it must yield true or false.
    pub fn eval(&self, vars: &Map<String, Value>) -> Result<bool, String> {
        let mut ctx = cel::Context::with_env(stdlib());
        // A variable, or a field of one, that the expression never names cannot change its
        // value: only the parts it reads are converted.
        for (k, v) in vars {
            if let Some(part) = self.uses.part_of(k, v) {
                ctx.add_variable(k.as_str(), part.as_ref())
                    .map_err(|e| format!("cannot pass '{k}' to the condition: {e}"))?;
            }
        }
        match self.program.execute(&ctx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "the condition must be true or false, but gave {other:?}"
            )),
            Err(e) => Err(explain(&e.to_string())),
        }
    }

    /// Checks the condition against a typed sample of the variables a rule on `entity` sees.
    pub fn check(&self, config: &Config, entity: Option<EntityKind>) -> Result<(), String> {
        self.eval(&sample_variables(config, entity)).map(|_| ())
    }
}

/// The limit of the parser's "Recursion limit of N exceeded", however it is wrapped.
/// CEL's standard library, built once: what `cel::Context::default` builds again for every
/// context (most of a condition's cost when it was built per evaluation). A context only
/// reads it; its own functions and variables are its own.
fn stdlib() -> std::sync::Arc<cel::Env> {
    static STDLIB: std::sync::OnceLock<std::sync::Arc<cel::Env>> = std::sync::OnceLock::new();
    STDLIB
        .get_or_init(|| std::sync::Arc::new(cel::Env::stdlib()))
        .clone()
}

fn recursion_limit(message: &str) -> Option<&str> {
    let rest = &message[message.find("Recursion limit of ")? + "Recursion limit of ".len()..];
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    (end > 0).then(|| &rest[..end])
}

/// A parser message without the parser's internal wrapping (`OtherError(ParseError { … msg:
/// "…" … })` becomes the text of `msg`).
fn plain_parse_message(message: &str) -> String {
    const MSG: &str = "msg: \"";
    if let Some(start) = message.find(MSG).map(|i| i + MSG.len())
        && let Some(len) = message[start..].find('"')
    {
        let prefix = message.split("OtherError").next().unwrap_or_default();
        return format!("{prefix}{}", &message[start..start + len]);
    }
    message.to_owned()
}

/// Where the brackets of `source` nest deepest (0-based line and column, in characters): the
/// place to point at when an expression nests too deeply.
fn deepest_bracket(source: &str) -> (usize, usize) {
    let (mut depth, mut deepest, mut at) = (0usize, 0usize, (0, 0));
    for (line_no, line) in source.lines().enumerate() {
        for (col, c) in line.chars().enumerate() {
            match c {
                '(' | '[' | '{' => {
                    depth += 1;
                    if depth > deepest {
                        deepest = depth;
                        at = (line_no, col);
                    }
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    at
}

fn explain(message: &str) -> String {
    if let Some(key) = message.strip_prefix("No such key: ") {
        return format!(
            "no field or variable '{key}' (see docs/RULES.md for what conditions can use)"
        );
    }
    if let Some(var) = message
        .strip_prefix("Undeclared reference to '")
        .and_then(|m| m.strip_suffix('\''))
    {
        return format!(
            "unknown variable '{var}': conditions can use lead, deal, task, event, responsible, time"
        );
    }
    format!("the condition fails on a sample of its variables: {message}")
}

fn sample_value(ty: FieldType, options: &[String]) -> Value {
    match ty {
        FieldType::String => json!("text"),
        FieldType::Number => json!(1.5),
        FieldType::Money => json!(100_000),
        FieldType::Bool => json!(true),
        FieldType::Enum => json!(options.first().cloned().unwrap_or_default()),
        FieldType::Date => json!("2026-01-01"),
        FieldType::Phone => json!("+79120000000"),
        FieldType::Email => json!("client@example.ru"),
    }
}

fn custom_fields(config: &Config, entity: EntityKind) -> Value {
    let fields: Map<String, Value> = config
        .fields
        .iter()
        .filter(|f| f.entity == entity)
        .map(|f| (f.id.clone(), sample_value(f.ty, &f.options)))
        .collect();
    Value::Object(fields)
}

/// A sample of the variables a condition sees, with every field present and typed, for
/// load-time checks.
pub fn sample_variables(config: &Config, entity: Option<EntityKind>) -> Map<String, Value> {
    let lead = json!({
        "id": 1, "title": "text", "name": "text", "phones": ["+79120000000"], "emails": ["client@example.ru"],
        "phone": "+79120000000", "email": "client@example.ru",
        "source": "web_form", "client_type": "legal", "responsible": "employee", "pipeline": "lead", "stage": "new",
        "stage_reason": "text", "comment": "text", "contact": 1, "company": 1, "repeat": false,
        "created_at": "2026-01-01T09:00:00Z", "stage_entered_at": "2026-01-01T09:00:00Z",
        "fields": custom_fields(config, EntityKind::Lead),
    });
    let deal = json!({
        "id": 1, "title": "text", "pipeline": "goods", "stage": "new", "stage_reason": "text", "amount": 100_000,
        "currency": "RUB", "responsible": "employee", "contact": 1, "company": 1, "lead": 1, "comment": "text",
        "created_at": "2026-01-01T09:00:00Z", "stage_entered_at": "2026-01-01T09:00:00Z",
        "fields": custom_fields(config, EntityKind::Deal),
    });
    let task = json!({"id": 1, "kind": "call", "title": "text", "assignee": "employee", "due_at": "2026-01-01T09:00:00Z", "lead": 1, "deal": 1});
    let mut vars = Map::new();
    match entity {
        Some(EntityKind::Deal) => {
            vars.insert("deal".into(), deal);
        }
        Some(EntityKind::Lead) => {
            vars.insert("lead".into(), lead);
        }
        Some(EntityKind::Task) => {
            vars.insert("task".into(), task);
            vars.insert("lead".into(), lead);
            vars.insert("deal".into(), deal);
        }
        _ => {
            vars.insert("lead".into(), lead);
            vars.insert("deal".into(), deal);
        }
    }
    vars.insert("event".into(), json!({"type": "text", "position": 1, "actor": "employee:someone", "name": "text", "from": "new", "to": "new", "reason": "text", "field": "text"}));
    vars.insert("responsible".into(), json!({"id": "employee", "name": "text", "team": "team", "manager": "employee", "missed_deadlines": 0, "incidents": 0}));
    vars.insert("time".into(), json!({"now": "2026-01-01T09:00:00Z", "hour": 9, "minute": 0, "weekday": 1, "working": true}));
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_toml("leadflow.toml", crate::config::DEFAULT_CONFIG).unwrap()
    }

    #[test]
    fn conditions_evaluate_over_json() {
        let c =
            Condition::compile(r#"lead.client_type == "legal" && !has(lead.fields.inn)"#).unwrap();
        let mut vars = Map::new();
        vars.insert("lead".into(), json!({"client_type": "legal", "fields": {}}));
        assert_eq!(c.eval(&vars), Ok(true));
        vars.insert(
            "lead".into(),
            json!({"client_type": "legal", "fields": {"inn": "7707083893"}}),
        );
        assert_eq!(c.eval(&vars), Ok(false));
    }

    #[test]
    fn only_the_variables_a_condition_names_are_passed_and_each_one_it_names_counts() {
        let c = Condition::compile(
            r#"event.type == "lead.created" && lead.phones.exists(p, p.startsWith("+7")) && has(responsible.team)"#,
        )
        .unwrap();
        let mut vars = Map::new();
        vars.insert("event".into(), json!({"type": "lead.created"}));
        vars.insert(
            "lead".into(),
            json!({"phones": ["+49301234567", "+79010000000"]}),
        );
        vars.insert("responsible".into(), json!({"team": "first_line"}));
        vars.insert(
            "deal".into(),
            json!({"title": "not named by the condition"}),
        );
        assert_eq!(c.eval(&vars), Ok(true));
        vars.insert("lead".into(), json!({"phones": ["+49301234567"]}));
        assert_eq!(c.eval(&vars), Ok(false));
        vars.insert("lead".into(), json!({"phones": ["+79010000000"]}));
        vars.insert("responsible".into(), json!({}));
        assert_eq!(c.eval(&vars), Ok(false));
        vars.remove("responsible");
        assert!(
            c.eval(&vars).is_err(),
            "a variable it names and lacks is an error"
        );
    }

    /// The condition evaluated with every variable passed whole, as before `Uses`.
    fn eval_whole(c: &Condition, vars: &Map<String, Value>) -> Result<bool, String> {
        let mut ctx = cel::Context::with_env(stdlib());
        for (k, v) in vars {
            ctx.add_variable(k.as_str(), v).unwrap();
        }
        match c.program.execute(&ctx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "the condition must be true or false, but gave {other:?}"
            )),
            Err(e) => Err(explain(&e.to_string())),
        }
    }

    #[test]
    fn a_condition_reads_the_fields_it_selects_and_is_given_only_those() {
        let uses = |src: &str| Condition::compile(src).unwrap().uses().clone();
        let u = uses(r#"has(lead.responsible) && lead.fields.inn == "1" && event.to == "x""#);
        assert!(u.reads_field("lead", "responsible") && u.reads_field("lead", "fields"));
        assert!(!u.reads_field("lead", "title") && !u.reads("time"));
        assert!(u.reads_field("event", "to") && !u.reads_field("event", "from"));
        // Used whole: indexed, handed to a function, compared, iterated.
        for src in [
            r#"lead["title"] == "x""#,
            "size(lead) > 1",
            "lead == {}",
            "lead.all(k, k != 'x')",
            "[lead][0].title == 'x'",
        ] {
            assert!(uses(src).reads_field("lead", "title"), "{src}");
        }
        // A comprehension's own variable is not the top-level one of that name.
        let u = uses("[1, 2].exists(lead, lead > 1) && event.type == 'x'");
        assert!(!u.reads("lead"), "{u:?}");
        let u = uses("lead.phones.exists(p, p == lead.phone)");
        assert!(u.reads_field("lead", "phone") && !u.reads_field("lead", "title"));
        let mut merged = uses("lead.title == 'x'");
        merged.merge(&uses("lead.stage == 'new'"));
        assert!(merged.reads_field("lead", "title") && merged.reads_field("lead", "stage"));
        assert!(!merged.reads_field("lead", "phones"));
        merged.merge(&uses("size(lead) > 0"));
        assert!(merged.reads_field("lead", "phones"));
    }

    #[test]
    fn a_condition_given_only_what_it_reads_says_what_it_says_given_everything() {
        let config = config();
        let mut vars = sample_variables(&config, Some(EntityKind::Lead));
        vars.insert("lead".into(), json!({"id": 3, "title": "Окна", "phones": ["+79010000000"], "phone": "+79010000000", "stage": "new", "fields": {"inn": "7707083893"}, "repeat": true}));
        for src in [
            "has(lead.responsible)",
            "!has(lead.responsible)",
            "lead.fields.inn == '7707083893' && lead.repeat",
            "lead.title.startsWith('Ок') || event.type == 'lead.created'",
            "lead.phones.exists(p, p == lead.phone)",
            "[1, 2].exists(lead, lead > 1)",
            "size(lead) == 7",
            "lead['stage'] == 'new'",
            "lead.missing == 1",
            "has(lead.fields.budget)",
            "lead.stage in ['new', 'in_work'] && time.hour >= 0",
            "{'a': lead.id}.a == 3",
            "responsible.incidents > 2 || responsible.name == 'text'",
            "lead.title",
            "undeclared == 1",
        ] {
            let c = Condition::compile(src).unwrap();
            assert_eq!(c.eval(&vars), eval_whole(&c, &vars), "{src}");
        }
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = Condition::compile("lead.title ==").unwrap_err();
        assert_eq!(e.line, 0);
        assert!(e.message.starts_with("bad condition"), "{e:?}");
    }

    #[test]
    fn a_condition_nested_too_deeply_points_at_its_deepest_bracket_in_plain_words() {
        let deep = format!("true &&\n  {}1 == 1{}", "(".repeat(150), ")".repeat(150));
        let e = Condition::compile(&deep).unwrap_err();
        assert_eq!(
            e.message,
            "bad condition: it nests more than 96 levels deep (brackets, operators, calls); simplify it or split it over several rules"
        );
        assert_eq!((e.line, e.col), (1, 2 + 149));
        // Nothing of the parser's own wrapping is left in other messages either.
        assert_eq!(
            plain_parse_message(
                r#"Syntax error: OtherError(ParseError { source: None, pos: (1, -1), msg: "boom", expr_id: 0 })"#
            ),
            "Syntax error: boom"
        );
    }

    #[test]
    fn type_errors_and_unknown_fields_are_found_at_load_time() {
        let config = config();
        let ok = Condition::compile("lead.fields.budget > 50000 && size(lead.phones) > 0").unwrap();
        assert_eq!(ok.check(&config, Some(EntityKind::Lead)), Ok(()));
        let wrong_type = Condition::compile(r#"lead.fields.budget > "lots""#).unwrap();
        assert!(wrong_type.check(&config, Some(EntityKind::Lead)).is_err());
        let unknown = Condition::compile("lead.fields.colour == 'red'").unwrap();
        assert!(
            unknown
                .check(&config, Some(EntityKind::Lead))
                .unwrap_err()
                .contains("'colour'")
        );
        let not_bool = Condition::compile("lead.title").unwrap();
        assert!(
            not_bool
                .check(&config, Some(EntityKind::Lead))
                .unwrap_err()
                .contains("must be true or false")
        );
        let unknown_var = Condition::compile("customer.name == 'x'").unwrap();
        assert!(
            unknown_var
                .check(&config, Some(EntityKind::Lead))
                .unwrap_err()
                .contains("unknown variable 'customer'")
        );
    }
}
