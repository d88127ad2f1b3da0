//! The one list query of both HTTP APIs (the native `/api/v1` lists and the Bitrix24 facade's
//! `crm.*.list`): a [`ListQuery`] names the entity kind, [`Filter`]s on its fields, an
//! [`Order`] and a [`PageSpec`]; [`list`] returns a [`Page`] of entities.
//!
//! Every filter is served by an index, so no filter makes SQLite read a whole entity table:
//!
//! | filter | index |
//! |---|---|
//! | `id` | the primary key |
//! | `stage` (`=`, `in`, `!=`), `responsible` | `*_by_stage_responsible`, `*_by_responsible` |
//! | `pipeline` | `*_by_stage` (pipeline, stage) |
//! | `source`, `client_type`, `contact`, `company`, `lead`, `deal` | one index each |
//! | `created_at`, `updated_at` | `*_by_created`, `*_by_updated` |
//! | `phone`, `email` | `match_keys` (normalised as the engine normalises them) |
//! | `title`, `name`, `phone`, `email` (substring), `text` | the FTS5 trigram index `search_fts` |
//! | `title`, `name` (equal, ASCII letters in any case) | `*_by_title`, `*_by_name` |
//! | `title`, `name` (a `LIKE` pattern) | `search_fts` (its longest run of literal characters) |
//! | a deal's `amount` | `deals_by_amount` |
//! | custom fields (`=`, `in`, ranges) | `field_values` (every text, number or yes/no field) |
//!
//! A negation ([`Filter::Not`]) cannot be searched for: it is checked on the rows the other
//! filters find, so a query with one needs another filter that an index serves.
//!
//! SQLite uses one index per query: with several filters it looks up the most selective one
//! it can judge and checks the others on the rows found. Ordering by anything but the index
//! it searched sorts the rows found (not the table): a filter that matches most rows (a
//! `stage != junk`, a wide period) with an order its index does not give costs a sort of
//! what it matches; combine it with a selective filter, or order by id.

use super::{Source, Token};
use crate::error::Error;
use crate::project::{
    COMPANY_COLUMNS, CONTACT_COLUMNS, DEAL_COLUMNS, LEAD_COLUMNS, MatchKey, TASK_COLUMNS,
    company_row, contact_row, deal_row, field_value, lead_row, search_code, task_row,
};
use chrono::{DateTime, Utc};
use leadflow_engine::stored::{fmt_time, parse_time};
use leadflow_engine::{Entity, EntityKind};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, Row, params_from_iter};
use serde_json::Value as Json;
use std::fmt;

/// The largest page: [`PageSpec::limit`] may not exceed it.
pub const MAX_LIMIT: u32 = 500;

/// The most values an `in` condition may list.
pub const MAX_IN: usize = 1000;

/// The shortest text a substring or text search looks for (the trigram index finds any
/// substring of three characters or more).
pub const MIN_SEARCH_CHARS: usize = 3;

/// A comparison of a field with values.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmp<T> {
    /// Equal to.
    Eq(T),
    /// Not equal to (`stage` only).
    Ne(T),
    /// Equal to one of (an empty list matches nothing).
    In(Vec<T>),
    /// Less than.
    Lt(T),
    /// Less than or equal to.
    Le(T),
    /// Greater than.
    Gt(T),
    /// Greater than or equal to.
    Ge(T),
}

impl<T> Cmp<T> {
    /// The operator's name, for errors.
    fn name(&self) -> &'static str {
        match self {
            Cmp::Eq(_) => "=",
            Cmp::Ne(_) => "!=",
            Cmp::In(_) => "in",
            Cmp::Lt(_) => "<",
            Cmp::Le(_) => "<=",
            Cmp::Gt(_) => ">",
            Cmp::Ge(_) => ">=",
        }
    }
}

/// One condition of a list query. The caller maps its API's field names to these (a team to
/// its employees, Bitrix24 stage ids to stages…) and normalises phones with
/// `leadflow_engine::field` as the engine does on write.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// The id (`=`, `in`, ranges).
    Id(Cmp<i64>),
    /// The stage of a lead or deal (`=`, `!=`, `in`).
    Stage(Cmp<String>),
    /// The pipeline of a lead or deal (`=`, `in`).
    Pipeline(Cmp<String>),
    /// The responsible employee (a task's assignee) (`=`, `in`).
    Responsible(Cmp<String>),
    /// A lead's source (`=`, `in`).
    Source(Cmp<String>),
    /// A lead's client type, `individual` or `legal` (`=`, `in`).
    ClientType(Cmp<String>),
    /// The linked contact of a lead or deal (`=`, `in`).
    Contact(Cmp<i64>),
    /// The linked company of a lead, deal or contact (`=`, `in`).
    Company(Cmp<i64>),
    /// The lead of a deal or task (`=`, `in`).
    Lead(Cmp<i64>),
    /// The deal of a task (`=`, `in`).
    Deal(Cmp<i64>),
    /// When it was created (`=`, ranges).
    CreatedAt(Cmp<DateTime<Utc>>),
    /// When it last changed (`=`, ranges; not tasks).
    UpdatedAt(Cmp<DateTime<Utc>>),
    /// One of the phones of a lead, contact or company (`=`, `in`), in E.164; an extension is
    /// ignored, as in `match_keys`.
    Phone(Cmp<String>),
    /// One of the e-mails of a lead, contact or company (`=`, `in`), in any case.
    Email(Cmp<String>),
    /// A substring of the title (leads, deals, tasks), in any case.
    Title(String),
    /// A substring of the name (leads, contacts, companies), in any case.
    Name(String),
    /// A substring of the title, name, phones or e-mails, in any case.
    Text(String),
    /// A substring of one of the phones (as stored: E.164, `+79001234567`).
    PhoneText(String),
    /// A substring of one of the e-mails, in any case.
    EmailText(String),
    /// The title (a company's name) equal to this, ASCII letters in any case.
    TitleIs(String),
    /// The name equal to this, ASCII letters in any case.
    NameIs(String),
    /// The title (a company's name) matching a `LIKE` pattern (`%` any run of characters, `_`
    /// one), ASCII letters in any case; its longest run of literal characters must have at
    /// least [`MIN_SEARCH_CHARS`].
    TitleLike(String),
    /// The name matching a `LIKE` pattern, as [`Filter::TitleLike`].
    NameLike(String),
    /// A deal's amount, in minor units (`=`, `in`, ranges).
    Amount(Cmp<i64>),
    /// The rows the inner filter does not match (a row whose field is empty is one of them).
    /// Checked on the rows the query's other filters find: a query with a negation needs
    /// another filter that an index serves.
    Not(Box<Filter>),
    /// A custom field (`=`, `in`, ranges) holding text, a number or yes/no (`true`/`false`).
    Custom {
        /// The field's id.
        field: String,
        /// The comparison; the values are JSON scalars.
        cmp: Cmp<Json>,
    },
}

impl Filter {
    /// The field's name, as errors give it.
    pub fn field(&self) -> &str {
        match self {
            Filter::Id(_) => "id",
            Filter::Stage(_) => "stage",
            Filter::Pipeline(_) => "pipeline",
            Filter::Responsible(_) => "responsible",
            Filter::Source(_) => "source",
            Filter::ClientType(_) => "client_type",
            Filter::Contact(_) => "contact",
            Filter::Company(_) => "company",
            Filter::Lead(_) => "lead",
            Filter::Deal(_) => "deal",
            Filter::CreatedAt(_) => "created_at",
            Filter::UpdatedAt(_) => "updated_at",
            Filter::Phone(_) => "phone",
            Filter::Email(_) => "email",
            Filter::Title(_) => "title",
            Filter::Name(_) => "name",
            Filter::Text(_) => "text",
            Filter::PhoneText(_) => "phone",
            Filter::EmailText(_) => "email",
            Filter::TitleIs(_) | Filter::TitleLike(_) => "title",
            Filter::NameIs(_) | Filter::NameLike(_) => "name",
            Filter::Amount(_) => "amount",
            Filter::Not(inner) => inner.field(),
            Filter::Custom { field, .. } => field,
        }
    }
}

/// What a page is sorted by (and then by id, in the same direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// The id (creation order), the default.
    #[default]
    Id,
    /// The creation time.
    CreatedAt,
    /// The time of the last change (not tasks).
    UpdatedAt,
    /// The title (a contact's or company's name), ASCII letters in any case.
    Title,
}

impl SortKey {
    fn code(self) -> &'static str {
        match self {
            SortKey::Id => "i",
            SortKey::CreatedAt => "c",
            SortKey::UpdatedAt => "u",
            SortKey::Title => "t",
        }
    }
}

/// The order of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Order {
    /// By what.
    pub key: SortKey,
    /// Newest (largest) first.
    pub descending: bool,
}

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// After skipping this many rows (Bitrix24's `start`).
    Offset(u64),
    /// After the row this cursor was made from (the native API's keyset paging: stable while
    /// rows are added or removed).
    After(Cursor),
}

impl Default for Start {
    fn default() -> Self {
        Start::Offset(0)
    }
}

/// Which page to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSpec {
    /// Where it starts.
    pub start: Start,
    /// At most this many rows, 1 to [`MAX_LIMIT`].
    pub limit: u32,
    /// Whether to count every row the filters match ([`Page::total`]).
    pub total: bool,
}

impl Default for PageSpec {
    fn default() -> Self {
        PageSpec {
            start: Start::default(),
            limit: 50,
            total: false,
        }
    }
}

/// A list query.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// Leads, deals, contacts, companies or tasks.
    pub kind: EntityKind,
    /// Conditions, all of which a row must meet.
    pub filters: Vec<Filter>,
    /// The order.
    pub order: Order,
    /// The page.
    pub page: PageSpec,
}

impl ListQuery {
    /// The first page of 50 of every entity of `kind`, by id.
    pub fn new(kind: EntityKind) -> Self {
        ListQuery {
            kind,
            filters: Vec::new(),
            order: Order::default(),
            page: PageSpec::default(),
        }
    }
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The entities, in the query's order (each with its version, for an ETag).
    pub items: Vec<Entity>,
    /// Where the next page starts, if there are more rows.
    pub next: Option<Cursor>,
    /// The next page's offset, if there are more rows and this page was asked by offset.
    pub next_offset: Option<u64>,
    /// How many rows match the filters, if asked.
    pub total: Option<u64>,
}

/// An opaque position in a list: the sort key of the last row of a page, and the order it
/// was made for. Its text form ([`fmt::Display`], [`std::str::FromStr`]) is URL-safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    order: Order,
    /// The sort column's value (`None` when sorting by id).
    value: Option<String>,
    id: i64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = format!(
            "{}{}|{}|{}",
            self.order.key.code(),
            if self.order.descending { "d" } else { "a" },
            self.id,
            self.value.as_deref().unwrap_or_default()
        );
        f.write_str(&leadflow_engine::hex(text.as_bytes()))
    }
}

impl std::str::FromStr for Cursor {
    type Err = Error;
    fn from_str(s: &str) -> Result<Cursor, Error> {
        let bad = || {
            bad(
                "cursor",
                "is not a cursor this server made; start from the first page",
            )
        };
        // A title cursor holds the title: room for long ones (a URL of some 64 KiB).
        if !s.len().is_multiple_of(2) || s.len() > 65_536 {
            return Err(bad());
        }
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.splitn(3, '|');
        let (Some(head), Some(id), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let key = match head.get(..1) {
            Some("i") => SortKey::Id,
            Some("c") => SortKey::CreatedAt,
            Some("u") => SortKey::UpdatedAt,
            Some("t") => SortKey::Title,
            _ => return Err(bad()),
        };
        let descending = match head.get(1..) {
            Some("a") => false,
            Some("d") => true,
            _ => return Err(bad()),
        };
        let id: i64 = id.parse().map_err(|_| bad())?;
        let value = match key {
            SortKey::Id if value.is_empty() => None,
            SortKey::Id => return Err(bad()),
            SortKey::Title => Some(value.to_owned()),
            _ => Some(fmt_time(parse_time(value).ok_or_else(bad)?)),
        };
        Ok(Cursor {
            order: Order { key, descending },
            value,
            id,
        })
    }
}

fn bad(field: &str, why: impl Into<String>) -> Error {
    Error::BadList {
        field: field.to_owned(),
        why: why.into(),
    }
}

/// The table of a kind and how its rows read.
struct Kind {
    table: &'static str,
    columns: &'static str,
    row: fn(&Row<'_>) -> rusqlite::Result<Entity>,
    plural: &'static str,
}

fn kind_of(kind: EntityKind) -> Result<Kind, Error> {
    Ok(match kind {
        EntityKind::Lead => Kind {
            table: "leads",
            columns: LEAD_COLUMNS,
            row: |r| lead_row(r).map(Entity::Lead),
            plural: "leads",
        },
        EntityKind::Deal => Kind {
            table: "deals",
            columns: DEAL_COLUMNS,
            row: |r| deal_row(r).map(Entity::Deal),
            plural: "deals",
        },
        EntityKind::Contact => Kind {
            table: "contacts",
            columns: CONTACT_COLUMNS,
            row: |r| contact_row(r).map(Entity::Contact),
            plural: "contacts",
        },
        EntityKind::Company => Kind {
            table: "companies",
            columns: COMPANY_COLUMNS,
            row: |r| company_row(r).map(Entity::Company),
            plural: "companies",
        },
        EntityKind::Task => Kind {
            table: "tasks",
            columns: TASK_COLUMNS,
            row: |r| task_row(r).map(Entity::Task),
            plural: "tasks",
        },
        other => {
            return Err(bad(
                "kind",
                format!("{other} streams hold no entities to list"),
            ));
        }
    })
}

/// The column a plain filter compares, for this kind; `None` if the kind has no such field.
fn column(kind: EntityKind, f: &Filter) -> Option<&'static str> {
    use EntityKind as K;
    Some(match (f, kind) {
        (Filter::Id(_), _) => "id",
        (Filter::Stage(_), K::Lead | K::Deal) => "stage",
        (Filter::Pipeline(_), K::Lead | K::Deal) => "pipeline",
        (Filter::Responsible(_), K::Task) => "assignee",
        (Filter::Responsible(_), _) => "responsible",
        (Filter::Source(_), K::Lead) => "source",
        (Filter::ClientType(_), K::Lead) => "client_type",
        (Filter::Contact(_), K::Lead | K::Deal) => "contact_id",
        (Filter::Company(_), K::Lead | K::Deal | K::Contact) => "company_id",
        (Filter::Lead(_), K::Deal | K::Task) => "lead_id",
        (Filter::Deal(_), K::Task) => "deal_id",
        (Filter::CreatedAt(_), _) => "created_at",
        (Filter::UpdatedAt(_), K::Lead | K::Deal | K::Contact | K::Company) => "updated_at",
        (Filter::Phone(_) | Filter::Email(_), K::Lead | K::Contact | K::Company) => "id",
        (Filter::Title(_), K::Lead | K::Deal | K::Task) => "title",
        (Filter::Name(_), K::Lead | K::Contact | K::Company) => "name",
        (Filter::Text(_), _) => "id",
        // The columns of `search_fts` they search.
        (Filter::PhoneText(_), K::Lead | K::Contact | K::Company) => "phones",
        (Filter::EmailText(_), K::Lead | K::Contact | K::Company) => "emails",
        (Filter::TitleIs(_) | Filter::TitleLike(_), K::Lead | K::Deal | K::Task | K::Company) => {
            title_column(kind)
        }
        (Filter::NameIs(_) | Filter::NameLike(_), K::Lead | K::Contact | K::Company) => "name",
        (Filter::Amount(_), K::Deal) => "amount",
        (Filter::Not(inner), _) => return column(kind, inner),
        (Filter::Custom { .. }, K::Lead | K::Deal | K::Contact | K::Company) => "id",
        _ => return None,
    })
}

/// The SQL of a query: its conditions (without the page's cursor) and their arguments.
struct Conds {
    conds: Vec<String>,
    args: Vec<Sql>,
    /// A condition can match nothing (an empty `in`).
    empty: bool,
    /// Some condition looks up values (`=`, `in`, a match key, a text, a custom field).
    exact: bool,
    /// The columns compared by ranges or `!=`.
    ranges: Vec<&'static str>,
    /// How many negations were added.
    negations: usize,
}

impl Conds {
    fn arg(&mut self, v: impl Into<Sql>) -> String {
        self.args.push(v.into());
        format!("?{}", self.args.len())
    }

    /// `col op ?` for a comparison whose values `to_sql` converts; `ops` are the operators
    /// the field allows.
    fn cmp<T>(
        &mut self,
        field: &str,
        col: &'static str,
        cmp: &Cmp<T>,
        allowed: &[&str],
        to_sql: impl Fn(&T) -> Result<Sql, Error>,
    ) -> Result<(), Error> {
        if !allowed.contains(&cmp.name()) {
            return Err(bad(
                field,
                format!(
                    "cannot be compared with '{}' (it takes {})",
                    cmp.name(),
                    allowed.join(", ")
                ),
            ));
        }
        let cond = match cmp {
            Cmp::In(list) => {
                if list.len() > MAX_IN {
                    return Err(bad(
                        field,
                        format!("lists {} values; at most {MAX_IN} are allowed", list.len()),
                    ));
                }
                if list.is_empty() {
                    self.empty = true;
                    return Ok(());
                }
                let mut marks = Vec::with_capacity(list.len());
                for v in list {
                    let v = to_sql(v)?;
                    marks.push(self.arg(v));
                }
                self.exact = true;
                format!("{col} IN ({})", marks.join(", "))
            }
            // Two ranges, each an index search (`!=` itself could only be checked row by row).
            Cmp::Ne(v) => {
                let m = self.arg(to_sql(v)?);
                self.ranges.push(col);
                format!("({col} < {m} OR {col} > {m})")
            }
            Cmp::Eq(v) => {
                let m = self.arg(to_sql(v)?);
                self.exact = true;
                format!("{col} = {m}")
            }
            Cmp::Lt(v) | Cmp::Le(v) | Cmp::Gt(v) | Cmp::Ge(v) => {
                let m = self.arg(to_sql(v)?);
                self.ranges.push(col);
                format!("{col} {} {m}", cmp.name())
            }
        };
        self.conds.push(cond);
        Ok(())
    }
}

const EQ_IN: &[&str] = &["=", "in"];
const ALL_BUT_NE: &[&str] = &["=", "in", "<", "<=", ">", ">="];
const EQ_RANGE: &[&str] = &["=", "<", "<=", ">", ">="];

#[allow(clippy::ptr_arg)] // the type of `Cmp<String>`'s values
fn text(s: &String) -> Result<Sql, Error> {
    Ok(Sql::Text(s.to_owned()))
}

fn int(i: &i64) -> Result<Sql, Error> {
    Ok(Sql::Integer(*i))
}

fn time(t: &DateTime<Utc>) -> Result<Sql, Error> {
    Ok(Sql::Text(fmt_time(*t)))
}

/// An FTS5 query for the phrase `s` (a substring, with the trigram tokenizer), in `column`
/// or in every column.
fn fts_phrase(field: &str, column: Option<&str>, s: &str) -> Result<String, Error> {
    let s = s.trim();
    if s.chars().count() < MIN_SEARCH_CHARS {
        return Err(bad(
            field,
            format!("a search needs at least {MIN_SEARCH_CHARS} characters, '{s}' has fewer"),
        ));
    }
    let phrase = format!("\"{}\"", s.replace('"', "\"\""));
    Ok(match column {
        Some(c) => format!("{c} : {phrase}"),
        None => phrase,
    })
}

fn conditions(q: &ListQuery) -> Result<Conds, Error> {
    let mut sql = Conds::new(Vec::new());
    for f in &q.filters {
        condition(&mut sql, q.kind, f)?;
    }
    if sql.negations > 0 && !sql.exact && sql.ranges.is_empty() {
        let field = q
            .filters
            .iter()
            .find(|f| matches!(f, Filter::Not(_)))
            .map_or("filter", Filter::field);
        return Err(bad(
            field,
            "a negation is checked on the rows the other filters find: add a filter an index serves (an equality, a list, a range or a search)",
        ));
    }
    Ok(sql)
}

impl Conds {
    fn new(args: Vec<Sql>) -> Conds {
        Conds {
            conds: Vec::new(),
            args,
            empty: false,
            exact: false,
            ranges: Vec::new(),
            negations: 0,
        }
    }

    /// Runs `build` on conditions of their own sharing this one's arguments; answers the one
    /// condition they made, if any, and whether they can match nothing.
    fn nested(
        &mut self,
        build: impl FnOnce(&mut Conds) -> Result<(), Error>,
    ) -> Result<(Option<String>, bool), Error> {
        let mut inner = Conds::new(std::mem::take(&mut self.args));
        let built = build(&mut inner);
        self.args = std::mem::take(&mut inner.args);
        built?;
        let cond = (!inner.conds.is_empty()).then(|| inner.conds.join(" AND "));
        Ok((cond, inner.empty))
    }
}

/// The longest run of literal characters of a `LIKE` pattern.
fn like_literal(pattern: &str) -> &str {
    pattern
        .split(['%', '_'])
        .max_by_key(|run| run.chars().count())
        .unwrap_or("")
}

/// Adds the condition of one filter.
fn condition(sql: &mut Conds, kind: EntityKind, f: &Filter) -> Result<(), Error> {
    let field = f.field();
    let plural = kind_of(kind)?.plural;
    let kind_name = kind.as_str();
    let Some(col) = column(kind, f) else {
        return Err(bad(
            field,
            format!("{plural} have no such field to filter on"),
        ));
    };
    let search = |sql: &mut Conds, column: Option<&str>, s: &str| -> Result<(), Error> {
        let m = sql.arg(fts_phrase(field, column, s)?);
        sql.exact = true;
        sql.conds.push(format!(
            "id IN (SELECT rowid >> 3 FROM search_fts WHERE search_fts MATCH {m} AND (rowid & 7) = {})",
            search_code(kind)
        ));
        Ok(())
    };
    match f {
        Filter::Id(c) => sql.cmp(field, col, c, ALL_BUT_NE, int)?,
        Filter::Stage(c) => sql.cmp(field, col, c, &["=", "!=", "in"], text)?,
        Filter::Pipeline(c)
        | Filter::Responsible(c)
        | Filter::Source(c)
        | Filter::ClientType(c) => sql.cmp(field, col, c, EQ_IN, text)?,
        Filter::Contact(c) | Filter::Company(c) | Filter::Lead(c) | Filter::Deal(c) => {
            sql.cmp(field, col, c, EQ_IN, int)?
        }
        Filter::Amount(c) => sql.cmp(field, col, c, ALL_BUT_NE, int)?,
        Filter::CreatedAt(c) | Filter::UpdatedAt(c) => sql.cmp(field, col, c, EQ_RANGE, time)?,
        Filter::Phone(c) | Filter::Email(c) => {
            let what = if matches!(f, Filter::Phone(_)) {
                MatchKey::Phone
            } else {
                MatchKey::Email
            };
            let (cond, empty) = sql.nested(|inner| {
                inner.cmp(field, "value", c, EQ_IN, |v| {
                    Ok(Sql::Text(what.normalize(v.trim())))
                })
            })?;
            sql.empty |= empty;
            if let Some(cond) = cond {
                sql.exact = true;
                sql.conds.push(format!(
                    "id IN (SELECT entity_id FROM match_keys WHERE what = '{}' AND {cond} AND kind = '{kind_name}')",
                    what.as_str()
                ));
            }
        }
        Filter::Title(s) | Filter::Name(s) | Filter::PhoneText(s) | Filter::EmailText(s) => {
            search(sql, Some(col), s)?
        }
        Filter::Text(s) => search(sql, None, s)?,
        Filter::TitleIs(s) | Filter::NameIs(s) => {
            let m = sql.arg(s.trim().to_owned());
            sql.exact = true;
            sql.conds.push(format!("{col} = {m} COLLATE NOCASE"));
        }
        Filter::TitleLike(p) | Filter::NameLike(p) => {
            let literal = like_literal(p);
            if literal.chars().count() < MIN_SEARCH_CHARS {
                return Err(bad(
                    field,
                    format!(
                        "the pattern '{p}' needs a run of at least {MIN_SEARCH_CHARS} characters without % or _"
                    ),
                ));
            }
            search(sql, Some(col), literal)?;
            let m = sql.arg(p.clone());
            sql.conds.push(format!("{col} LIKE {m}"));
        }
        Filter::Not(inner) => {
            if matches!(**inner, Filter::Not(_)) {
                return Err(bad(
                    field,
                    "a negation of a negation: give the filter itself",
                ));
            }
            let (cond, empty) = sql.nested(|sub| condition(sub, kind, inner))?;
            // Not matching nothing is matching everything: no condition at all.
            if let (Some(cond), false) = (cond, empty) {
                sql.negations += 1;
                sql.conds.push(format!("NOT IFNULL(({cond}), 0)"));
            }
        }
        Filter::Custom { field, cmp } => {
            let k = sql.arg(field.clone());
            let (cond, empty) = sql.nested(|inner| {
                inner.cmp(field, "value", cmp, ALL_BUT_NE, |v| {
                    field_value(v).ok_or_else(|| {
                        bad(
                            field,
                            format!("{v} cannot be compared: give text, a number, true or false"),
                        )
                    })
                })
            })?;
            sql.empty |= empty;
            if let Some(cond) = cond {
                sql.exact = true;
                sql.conds.push(format!(
                    "id IN (SELECT entity_id FROM field_values WHERE kind = '{kind_name}' AND field = {k} AND {cond})"
                ));
            }
        }
    }
    Ok(())
}

/// What stands for a title: a lead's, deal's or task's `title`, a contact's or company's
/// `name`.
fn title_column(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Contact | EntityKind::Company => "name",
        _ => "title",
    }
}

/// The sort column for `key` on this kind.
fn sort_column(kind: EntityKind, key: SortKey) -> Result<&'static str, Error> {
    Ok(match key {
        SortKey::Id => "id",
        SortKey::CreatedAt => "created_at",
        SortKey::UpdatedAt if kind == EntityKind::Task => {
            return Err(bad("order", "tasks have no updated_at to sort by"));
        }
        SortKey::UpdatedAt => "updated_at",
        SortKey::Title => title_column(kind),
    })
}

/// The statements of a query: the page's, the count's (without the cursor), their arguments.
struct Statements {
    page: String,
    page_args: Vec<Sql>,
    count: String,
    count_args: Vec<Sql>,
    empty: bool,
}

fn statements(q: &ListQuery) -> Result<Statements, Error> {
    let kind = kind_of(q.kind)?;
    if q.page.limit == 0 || q.page.limit > MAX_LIMIT {
        return Err(bad(
            "limit",
            format!("is {}; a page holds 1 to {MAX_LIMIT} rows", q.page.limit),
        ));
    }
    let mut sql = conditions(q)?;
    let count_where = where_of(&sql.conds);
    let count_args = sql.args.clone();
    let sort = sort_column(q.kind, q.order.key)?;
    let dir = if q.order.descending { "DESC" } else { "ASC" };
    // SQLite keeps no statistics, so it may read the table in the order asked for (by id,
    // or along the sort column's index) and check each row against the filters, which for a
    // selective filter reads almost all of it. Where that can happen the sort key is written
    // as an expression (`+id`), which no index provides: SQLite then searches the filter's
    // index and sorts what it finds. By id, only filters that are all ranges (or `!=`) need
    // that: an equality's index gives its rows in id order. By another column, every filter
    // but a range on that column does. Without filters the order's own index is the plan.
    let filtered = !sql.conds.is_empty();
    let by_filter = if sort == "id" {
        !sql.exact && sql.ranges.iter().any(|c| *c != "id")
    } else {
        !sql.ranges.contains(&sort)
    };
    let plus = if filtered && by_filter { "+" } else { "" };
    // Titles and names sort as their index does: ASCII letters in any case.
    let key = if q.order.key == SortKey::Title {
        format!("{sort} COLLATE NOCASE")
    } else {
        sort.to_owned()
    };
    let order_by = if sort == "id" {
        format!("{plus}id {dir}")
    } else {
        format!("{plus}{key} {dir}, {plus}id {dir}")
    };
    let offset = match &q.page.start {
        Start::Offset(n) => *n,
        Start::After(c) => {
            if c.order != q.order {
                return Err(bad(
                    "cursor",
                    "was made for another order; start again from the first page",
                ));
            }
            let op = if q.order.descending { "<" } else { ">" };
            let id = sql.arg(c.id);
            let cond = match &c.value {
                None => format!("id {op} {id}"),
                Some(v) => {
                    let v = sql.arg(v.clone());
                    format!("({key}, id) {op} ({v}, {id})")
                }
            };
            sql.conds.push(cond);
            0
        }
    };
    let page = format!(
        "SELECT {} FROM {}{} ORDER BY {order_by} LIMIT {} OFFSET {}",
        kind.columns,
        kind.table,
        where_of(&sql.conds),
        q.page.limit + 1,
        offset.min(i64::MAX as u64)
    );
    let count = format!("SELECT count(*) FROM {}{count_where}", kind.table);
    Ok(Statements {
        page,
        page_args: sql.args,
        count,
        count_args,
        empty: sql.empty,
    })
}

fn where_of(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

/// The cursor just after `e` in `order`.
fn cursor_of(e: &Entity, order: Order) -> Cursor {
    let (created, updated) = match e {
        Entity::Lead(l) => (l.created_at, Some(l.updated_at)),
        Entity::Deal(d) => (d.created_at, Some(d.updated_at)),
        Entity::Contact(c) => (c.created_at, Some(c.updated_at)),
        Entity::Company(c) => (c.created_at, Some(c.updated_at)),
        Entity::Task(t) => (t.created_at, None),
    };
    let value = match order.key {
        SortKey::Id => None,
        SortKey::CreatedAt => Some(fmt_time(created)),
        SortKey::UpdatedAt => updated.map(fmt_time),
        SortKey::Title => Some(match e {
            Entity::Lead(l) => l.title.clone(),
            Entity::Deal(d) => d.title.clone(),
            Entity::Contact(c) => c.name.clone(),
            Entity::Company(c) => c.name.clone(),
            Entity::Task(t) => t.title.clone(),
        }),
    };
    Cursor {
        order,
        value,
        id: e.stream().id,
    }
}

/// One page of the entities `q` asks for.
pub fn list(db: &impl Source, q: &ListQuery) -> Result<Page, Error> {
    let conn = db.sql(Token(()));
    let kind = kind_of(q.kind)?;
    let s = statements(q)?;
    if s.empty {
        return Ok(Page {
            items: Vec::new(),
            next: None,
            next_offset: None,
            total: q.page.total.then_some(0),
        });
    }
    let mut items = {
        let mut stmt = conn.prepare_cached(&s.page)?;
        let rows = stmt.query_map(params_from_iter(s.page_args), kind.row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let more = items.len() > q.page.limit as usize;
    items.truncate(q.page.limit as usize);
    let next = more
        .then(|| items.last().map(|e| cursor_of(e, q.order)))
        .flatten();
    let next_offset = match q.page.start {
        Start::Offset(n) if more => Some(n + u64::from(q.page.limit)),
        _ => None,
    };
    let total = if q.page.total {
        let n: i64 = conn
            .prepare_cached(&s.count)?
            .query_row(params_from_iter(s.count_args), |r| r.get(0))?;
        Some(n as u64)
    } else {
        None
    };
    Ok(Page {
        items,
        next,
        next_offset,
        total,
    })
}

/// SQLite's plan for the page's statement and the count's (`EXPLAIN QUERY PLAN`, one line
/// per step), to check that a filter is served by an index.
pub fn explain(db: &impl Source, q: &ListQuery) -> Result<Vec<String>, Error> {
    let conn = db.sql(Token(()));
    let s = statements(q)?;
    let mut out = plan(conn, &s.page, s.page_args)?;
    if q.page.total {
        out.extend(plan(conn, &s.count, s.count_args)?);
    }
    Ok(out)
}

fn plan(conn: &Connection, sql: &str, args: Vec<Sql>) -> Result<Vec<String>, Error> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let rows = stmt.query_map(params_from_iter(args), |r| r.get::<_, String>(3))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
