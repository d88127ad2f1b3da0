//! The dashboard's words in English and Russian (`[ui] language`): one table, a key per
//! phrase, both languages side by side so that a phrase cannot be missing in one.
//!
//! What the engine says (an event in words, a refusal's message) stays as the engine says it;
//! these are the pages' own labels.

use leadflow_engine::config::Language;
use std::collections::BTreeMap;

/// Key, English, Russian.
const WORDS: &[(&str, &str, &str)] = &[
    ("app", "leadflow", "leadflow"),
    ("dashboard", "Dashboard", "Сводка"),
    ("leads", "Leads", "Лиды"),
    ("deals", "Deals", "Сделки"),
    ("journal", "Incident journal", "Журнал инцидентов"),
    ("inbox", "My inbox", "Мои уведомления"),
    ("sign_in", "Sign in", "Войти"),
    ("sign_out", "Sign out", "Выйти"),
    ("token", "API token", "API-токен"),
    (
        "sign_in_hint",
        "Paste the secret of a token made with `leadflow token create`.",
        "Вставьте секрет токена, созданного командой `leadflow token create`.",
    ),
    ("signed_in_as", "Signed in as", "Вход выполнен:"),
    ("role", "role", "роль"),
    ("funnel", "Funnel", "Воронка"),
    ("traffic_light", "Traffic light", "Светофор"),
    (
        "no_reports",
        "This role does not see reports.",
        "Этой роли отчёты недоступны.",
    ),
    ("period", "Period", "Период"),
    ("search", "Search", "Найти"),
    (
        "search_hint",
        "text, phone, e-mail or INN",
        "текст, телефон, e-mail или ИНН",
    ),
    ("stage", "Stage", "Стадия"),
    ("responsible", "Responsible", "Ответственный"),
    ("pipeline", "Pipeline", "Воронка продаж"),
    ("any", "any", "любая"),
    ("anyone", "anyone", "любой"),
    ("title", "Title", "Название"),
    ("created", "Created", "Создан"),
    ("updated", "Updated", "Изменён"),
    ("next_page", "Next page", "Следующая страница"),
    ("first_page", "First page", "Первая страница"),
    ("nothing", "Nothing found.", "Ничего не найдено."),
    ("history", "History", "История"),
    ("pending", "Pending", "Ожидает"),
    (
        "nothing_pending",
        "Nothing pending.",
        "Ничего не ожидается.",
    ),
    ("when", "When", "Когда"),
    ("what", "What", "Что"),
    ("actor", "Who", "Кто"),
    ("rule", "Rule", "Правило"),
    ("ruleset", "Rule set", "Набор правил"),
    ("explain", "explain", "почему"),
    ("explanation", "Why this happened", "Почему это произошло"),
    ("started_by", "Started by", "Началось с"),
    ("condition", "Condition", "Условие"),
    ("move", "Move", "Перевести"),
    ("move_to", "Move to stage", "Перевести на стадию"),
    (
        "reason",
        "Reason (for a failure stage)",
        "Причина (для стадии отказа)",
    ),
    ("assign", "Assign", "Назначить"),
    ("assign_to", "Give to", "Передать"),
    (
        "read_only",
        "This role changes nothing here.",
        "Эта роль здесь ничего не меняет.",
    ),
    ("fields", "Fields", "Поля"),
    ("employee", "Employee", "Сотрудник"),
    ("team", "Team", "Команда"),
    ("kind", "Kind", "Вид"),
    ("since", "Since", "С"),
    ("until", "Until", "По"),
    ("show", "Show", "Показать"),
    ("all", "all", "всё"),
    ("incidents", "incidents", "инциденты"),
    ("escalations", "escalations", "эскалации"),
    ("record", "Record", "Запись"),
    ("about", "About", "О чём"),
    ("details", "Details", "Подробности"),
    ("text", "Message", "Сообщение"),
    ("priority", "Priority", "Приоритет"),
    ("read", "Read", "Прочитано"),
    ("unread_only", "unread only", "только непрочитанные"),
    ("error", "Something is wrong", "Что-то не так"),
    ("back", "Back", "Назад"),
    ("due", "due", "срок"),
    ("task", "task", "задача"),
    ("times_in", "Times in", "Время:"),
    ("position", "Position", "Позиция"),
    ("refused", "Refused", "Отказано"),
];

/// What the reports say (`leadflow_report`: table headers, chart titles and series) in
/// Russian; in English they stay as the CLI prints them.
const REPORT_WORDS: &[(&str, &str)] = &[
    ("STAGE", "СТАДИЯ"),
    ("NAME", "НАЗВАНИЕ"),
    ("REACHED", "ДОШЛИ"),
    ("NOW", "СЕЙЧАС"),
    ("% OF ALL", "% ОТ ВСЕХ"),
    ("% OF PREVIOUS", "% ОТ ПРЕДЫДУЩЕЙ"),
    ("CLIENT", "КЛИЕНТ"),
    ("MANAGER", "МЕНЕДЖЕР"),
    ("LIGHT", "СВЕТ"),
    ("REASONS", "ПРИЧИНЫ"),
    (
        "Funnel: leads that reached each stage",
        "Воронка: лиды, дошедшие до каждой стадии",
    ),
    ("reached", "дошли"),
    (
        "Managers (the worst light of their clients)",
        "Менеджеры (худший цвет их клиентов)",
    ),
    ("Clients", "Клиенты"),
];

/// A report's text in `language` (itself when there is no translation).
pub(crate) fn report_word(language: Language, text: &str) -> String {
    match language {
        Language::En => text.to_owned(),
        Language::Ru => REPORT_WORDS
            .iter()
            .find(|(en, _)| *en == text)
            .map_or_else(|| text.to_owned(), |(_, ru)| (*ru).to_owned()),
    }
}

/// The pages' words in `language`, by key.
pub(crate) fn words(language: Language) -> BTreeMap<&'static str, &'static str> {
    WORDS
        .iter()
        .map(|(k, en, ru)| {
            (
                *k,
                match language {
                    Language::En => *en,
                    Language::Ru => *ru,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_key_is_there_once_with_both_languages() {
        let mut seen = std::collections::BTreeSet::new();
        for (k, en, ru) in super::WORDS {
            assert!(seen.insert(k), "{k} twice");
            assert!(!en.is_empty() && !ru.is_empty(), "{k}");
        }
    }
}
