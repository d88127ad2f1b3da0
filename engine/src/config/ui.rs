//! `[ui]`: the dashboard of `leadflow serve` (its language). Read by the service only; the
//! engine validates it with the rest of the configuration.

use super::load::Loader;
use crate::diag::FileIndex;
use serde::Deserialize;
use toml::Spanned;

/// The dashboard's language.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Language {
    /// English.
    #[default]
    En,
    /// Russian.
    Ru,
}

impl Language {
    /// Its code: `en`, `ru`.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Ru => "ru",
        }
    }
}

/// `[ui]`: the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UiConfig {
    /// The language of its pages.
    pub language: Language,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUi {
    language: Option<Spanned<String>>,
}

impl Loader {
    pub(super) fn ui(&mut self, src: &FileIndex<'_>, raw: RawUi) -> UiConfig {
        let mut ui = UiConfig::default();
        if let Some(l) = raw.language {
            match l.get_ref().as_str() {
                "en" => ui.language = Language::En,
                "ru" => ui.language = Language::Ru,
                other => self.err(
                    src,
                    l.span(),
                    format!("unknown language '{other}' in [ui]: write \"en\" or \"ru\""),
                ),
            }
        }
        ui
    }
}
