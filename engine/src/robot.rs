//! What a robot is, as far as rule files are concerned: its name, its parameters and their
//! kinds. The robots themselves (and the registry of built-in ones) live in the `robots` crate;
//! rule sets are validated against a [`RobotCatalog`] so the engine needs no robot code.

use serde::Serialize;

/// The kind of a robot parameter: what values it takes and how a rule file's value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// Free text.
    Text,
    /// Text with `{lead.title}`-style placeholders.
    Template,
    /// true or false.
    Bool,
    /// A whole number.
    Int,
    /// A duration like `2h`, `1d 4h`.
    Duration,
    /// A duration, or a list of `{ if = "CEL", after = "2h" }` cases, the first matching wins.
    DurationCases,
    /// A stage of the entity's pipeline (or of the call's `pipeline` parameter).
    Stage,
    /// A pipeline id.
    Pipeline,
    /// A built-in or custom field of the entity.
    Field,
    /// A list of requirements (`a|b` means either).
    Requirements,
    /// A team id.
    Team,
    /// An employee id.
    Employee,
    /// One of a fixed set of words.
    OneOf(&'static [&'static str]),
    /// A deadline name (lowercase id).
    DeadlineName,
    /// A CEL condition.
    Condition,
    /// Any JSON-compatible value (for `set_field`: checked against the field's type at run time).
    Value,
    /// A list of words.
    List,
}

/// One parameter of a robot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamSpec {
    /// The key in the rule file.
    pub name: &'static str,
    /// What it takes.
    pub kind: ParamKind,
    /// Whether a call must give it.
    pub required: bool,
    /// One line for docs and editor hints.
    pub doc: &'static str,
}

/// An event a robot call may cause at once, which may in turn trigger rules. Used to find rules
/// that can trigger each other forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Emits {
    /// The entity enters the stage named by this parameter.
    StageFromParam(&'static str),
    /// The field named by this parameter changes.
    FieldFromParam(&'static str),
    /// This field of the entity changes (e.g. `responsible` for `assign`).
    Field(&'static str),
    /// Some of the entity's fields change.
    AnyField,
    /// A new entity of this kind is created (a deal by `convert_lead`, a task…).
    Created(crate::ids::EntityKind),
    /// A repeat lead is detected.
    RepeatDetected,
}

/// A robot as rule files see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RobotSpec {
    /// The name used in `robot = "..."`.
    pub name: &'static str,
    /// What it does.
    pub doc: &'static str,
    /// Its parameters.
    pub params: Vec<ParamSpec>,
    /// What its effects may trigger at once.
    pub emits: Vec<Emits>,
}

impl RobotSpec {
    /// The parameter with this name.
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// The robots a rule set may call.
pub trait RobotCatalog {
    /// The robot called `name`, if there is one.
    fn robot(&self, name: &str) -> Option<&RobotSpec>;
    /// Every robot, for error hints and the JSON Schema.
    fn robots(&self) -> Vec<&RobotSpec>;
}
