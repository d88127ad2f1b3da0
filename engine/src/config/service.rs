//! The service's sections: `[server]` (how `leadflow serve` listens and bounds requests) and
//! `[forms.NAME]` (web forms whose submissions become leads, `POST /intake/NAME`).
//!
//! Both are read by `leadflow serve` only; the engine just validates them with the rest of
//! the configuration, so that a bad listen address or form mapping is reported with its
//! file:line:col before the service starts.

use super::load::Loader;
use crate::diag::FileIndex;
use chrono::Duration;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// `[server]`: how `leadflow serve` listens and bounds requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where to listen, `host:port` (`--listen` overrides it).
    pub listen: String,
    /// The largest request body accepted, in bytes (413 beyond it).
    pub body_limit: usize,
    /// How long a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// On SIGINT/SIGTERM, how long in-flight requests get to finish.
    pub shutdown_grace: Duration,
    /// Origins (`https://site.example`) allowed to post forms from a browser (CORS), for
    /// every form; a form may add its own.
    pub allowed_origins: Vec<String>,
    /// The most write requests one commit holds (group commit).
    pub max_batch: usize,
    /// The most write requests waiting for the writer; beyond it a request is answered 503.
    pub queue: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            body_limit: 1024 * 1024,
            request_timeout: Duration::seconds(30),
            shutdown_grace: Duration::seconds(10),
            allowed_origins: Vec::new(),
            max_batch: 256,
            queue: 4096,
        }
    }
}

/// `[forms.NAME]`: a web form whose submissions become leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormConfig {
    /// The form's name, in `/intake/NAME` and the actor `api:NAME`.
    pub name: String,
    /// A secret the form sends (`token` field, `?token=` or `Authorization: Bearer`); `None`:
    /// the form is open (public sites), guarded by its origins, honeypot and limits.
    pub token: Option<String>,
    /// Origins allowed to post it from a browser, besides `[server] allowed_origins`.
    pub allowed_origins: Vec<String>,
    /// A field that people leave empty and bots fill: a submission with it is accepted
    /// (answered as usual) but creates nothing.
    pub honeypot: Option<String>,
    /// The largest submission accepted, in bytes.
    pub size_limit: usize,
    /// The lead's title: a template over the form's fields (`{{name}}`, `{{phone}}`…);
    /// default: the name, phone or e-mail, as for any lead.
    pub title: Option<String>,
    /// Lead field ← form field: `name`, `phones`, `emails`, `comment`, `client_type`, and
    /// custom field ids. Several form fields may feed `phones` and `emails`.
    pub map: BTreeMap<String, Vec<String>>,
    /// The lead's source (one of `sources`).
    pub source: String,
    /// Form fields kept as UTM tags on the lead (custom fields of the same names, when the
    /// configuration defines them; otherwise in the comment).
    pub utm: Vec<String>,
    /// Where a plain HTML form is sent after a submission (303); `None`: 201 with the lead.
    pub redirect: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    listen: Option<Spanned<String>>,
    body_limit: Option<Spanned<toml::Value>>,
    request_timeout: Option<Spanned<String>>,
    shutdown_grace: Option<Spanned<String>>,
    #[serde(default)]
    allowed_origins: Vec<Spanned<String>>,
    max_batch: Option<Spanned<i64>>,
    queue: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForm {
    token: Option<Spanned<String>>,
    #[serde(default)]
    allowed_origins: Vec<Spanned<String>>,
    honeypot: Option<Spanned<String>>,
    size_limit: Option<Spanned<toml::Value>>,
    title: Option<Spanned<String>>,
    #[serde(default)]
    fields: BTreeMap<String, Spanned<toml::Value>>,
    source: Option<Spanned<String>>,
    #[serde(default)]
    utm: Vec<Spanned<String>>,
    redirect: Option<Spanned<String>>,
}

/// The lead fields a form can fill besides custom fields.
const FORM_TARGETS: &[&str] = &[
    "name",
    "phones",
    "emails",
    "comment",
    "client_type",
    "title",
];

/// A size: bytes as an integer, or text with a unit (`64KiB`, `1MiB`, `500kB`).
fn parse_size(v: &toml::Value) -> Result<usize, String> {
    let bad = || {
        format!("bad size {v}: give bytes (1048576) or a number with KiB, MiB, kB or MB (\"1MiB\")")
    };
    let n = match v {
        toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| bad())?,
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let num: u64 = num.parse().map_err(|_| bad())?;
            let mult: u64 = match unit.trim() {
                "" | "B" => 1,
                "kB" | "KB" => 1000,
                "KiB" => 1024,
                "MB" => 1_000_000,
                "MiB" => 1024 * 1024,
                _ => return Err(bad()),
            };
            num.checked_mul(mult).ok_or_else(bad)?
        }
        _ => return Err(bad()),
    };
    if n == 0 || n > 1024 * 1024 * 1024 {
        return Err(format!("size {v} is out of range: from 1 byte to 1GiB"));
    }
    usize::try_from(n).map_err(|_| bad())
}

/// Whether `s` is an origin as browsers send it: `scheme://host[:port]`, no path.
fn is_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s == "*";
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains('/')
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

impl Loader {
    /// `[server]`.
    pub(super) fn server(&mut self, src: &FileIndex<'_>, raw: RawServer) -> ServerConfig {
        let mut s = ServerConfig::default();
        if let Some(l) = raw.listen {
            if l.get_ref().parse::<std::net::SocketAddr>().is_err() {
                self.err(
                    src,
                    l.span(),
                    format!(
                        "bad listen address '{}': give host:port, e.g. 127.0.0.1:8080",
                        l.get_ref()
                    ),
                );
            }
            s.listen = l.into_inner();
        }
        if let Some(b) = raw.body_limit {
            match parse_size(b.get_ref()) {
                Ok(n) => s.body_limit = n,
                Err(e) => self.err(src, b.span(), format!("body_limit: {e}")),
            }
        }
        for (key, value, slot) in [
            (
                "request_timeout",
                raw.request_timeout,
                &mut s.request_timeout,
            ),
            ("shutdown_grace", raw.shutdown_grace, &mut s.shutdown_grace),
        ] {
            let Some(v) = value else { continue };
            match crate::time::parse_duration(v.get_ref()) {
                Ok(d) if d > Duration::zero() && d <= Duration::hours(1) => *slot = d,
                Ok(_) => self.err(src, v.span(), format!("{key} must be between 1s and 1h")),
                Err(e) => self.err(src, v.span(), format!("{key}: {e}")),
            }
        }
        s.allowed_origins = self.origins(src, raw.allowed_origins);
        for (key, value, slot) in [
            ("max_batch", raw.max_batch, &mut s.max_batch),
            ("queue", raw.queue, &mut s.queue),
        ] {
            let Some(v) = value else { continue };
            match usize::try_from(*v.get_ref()) {
                Ok(n) if (1..=1_000_000).contains(&n) => *slot = n,
                _ => self.err(
                    src,
                    v.span(),
                    format!("{key} must be from 1 to 1000000, not {}", v.get_ref()),
                ),
            }
        }
        s
    }

    fn origins(&mut self, src: &FileIndex<'_>, list: Vec<Spanned<String>>) -> Vec<String> {
        let mut out = Vec::new();
        for o in list {
            if is_origin(o.get_ref()) {
                out.push(o.into_inner());
            } else {
                self.err(
                    src,
                    o.span(),
                    format!(
                        "bad origin '{}': give scheme://host[:port] as a browser sends it, e.g. https://shop.example",
                        o.get_ref()
                    ),
                );
            }
        }
        out
    }

    /// `[forms.NAME]`, checked against the custom fields and sources of the whole
    /// configuration.
    pub(super) fn form(
        &mut self,
        src: &FileIndex<'_>,
        name: &Spanned<String>,
        raw: RawForm,
        sources: &[String],
        fields: &[super::FieldDef],
    ) -> FormConfig {
        let id = name.get_ref();
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        {
            self.err(
                src,
                name.span(),
                format!("bad form name '{id}': use letters, digits, '_' and '-' (it goes in /intake/NAME)"),
            );
        }
        let mut form = FormConfig {
            name: id.clone(),
            token: None,
            allowed_origins: self.origins(src, raw.allowed_origins),
            honeypot: raw.honeypot.map(Spanned::into_inner),
            size_limit: 64 * 1024,
            title: raw.title.map(Spanned::into_inner),
            map: BTreeMap::new(),
            source: "web_form".into(),
            utm: raw.utm.into_iter().map(Spanned::into_inner).collect(),
            redirect: None,
        };
        if let Some(t) = raw.token {
            if t.get_ref().len() < 16 {
                self.err(src, t.span(), "a form token needs at least 16 characters");
            }
            form.token = Some(t.into_inner());
        }
        if let Some(v) = raw.size_limit {
            match parse_size(v.get_ref()) {
                Ok(n) => form.size_limit = n,
                Err(e) => self.err(src, v.span(), format!("size_limit: {e}")),
            }
        }
        match raw.source {
            Some(s) if !sources.contains(s.get_ref()) => self.err(
                src,
                s.span(),
                format!(
                    "unknown source '{}': expected one of {}",
                    s.get_ref(),
                    sources.join(", ")
                ),
            ),
            Some(s) => form.source = s.into_inner(),
            None if !sources.iter().any(|s| s == "web_form") => self.err(
                src,
                name.span(),
                format!(
                    "form '{id}' needs a source: web_form is not among the sources ({})",
                    sources.join(", ")
                ),
            ),
            None => {}
        }
        if let Some(r) = raw.redirect {
            let ok = r.get_ref().starts_with("https://")
                || r.get_ref().starts_with("http://")
                || r.get_ref().starts_with('/');
            if !ok {
                self.err(
                    src,
                    r.span(),
                    "redirect must be an http(s) URL or a path starting with /",
                );
            }
            form.redirect = Some(r.into_inner());
        }
        for (target, from) in raw.fields {
            let known = FORM_TARGETS.contains(&target.as_str())
                || fields
                    .iter()
                    .any(|f| f.entity == crate::ids::EntityKind::Lead && f.id == target);
            if !known {
                self.err(
                    src,
                    from.span(),
                    format!(
                        "unknown lead field '{target}' in form '{id}': expected {} or a lead custom field",
                        FORM_TARGETS.join(", ")
                    ),
                );
                continue;
            }
            let names: Vec<String> = match from.get_ref() {
                toml::Value::String(s) => vec![s.clone()],
                toml::Value::Array(a) if a.iter().all(|v| v.is_str()) && !a.is_empty() => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => {
                    self.err(
                        src,
                        from.span(),
                        format!("form field for '{target}': give a field name or a list of them"),
                    );
                    continue;
                }
            };
            if target == "title" {
                self.err(
                    src,
                    from.span(),
                    "set the title with `title = \"template\"`, not under fields",
                );
                continue;
            }
            form.map.insert(target, names);
        }
        form
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_bytes_or_units() {
        assert_eq!(parse_size(&toml::Value::Integer(10)), Ok(10));
        assert_eq!(parse_size(&toml::Value::String("64KiB".into())), Ok(65536));
        assert_eq!(
            parse_size(&toml::Value::String("2MB".into())),
            Ok(2_000_000)
        );
        assert!(parse_size(&toml::Value::String("2 parsecs".into())).is_err());
        assert!(parse_size(&toml::Value::Integer(-1)).is_err());
        assert!(parse_size(&toml::Value::Integer(0)).is_err());
        assert!(parse_size(&toml::Value::String("99999999999999999999MiB".into())).is_err());
    }

    #[test]
    fn origins_are_scheme_and_host() {
        assert!(is_origin("https://shop.example"));
        assert!(is_origin("http://127.0.0.1:8080"));
        assert!(is_origin("*"));
        assert!(!is_origin("https://shop.example/form"));
        assert!(!is_origin("shop.example"));
        assert!(!is_origin("ftp://shop.example"));
    }
}
