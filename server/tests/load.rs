//! Many clients at once: 64 concurrent clients creating leads through the group-committing
//! writer. Every acknowledged lead is there exactly once, with the robots' effects once, the
//! commits were shared (fewer commits than requests), and the log verifies.

use leadflow_testkit::serve::Server;
use leadflow_testkit::{ASSIGN_AND_QUALIFY_RULES, config};
use serde_json::json;
use std::collections::BTreeMap;

const CLIENTS: usize = 64;
const EACH: usize = 8;

#[test]
fn sixty_four_concurrent_clients_get_every_acknowledged_lead_stored_once_in_shared_commits() {
    let s = Server::start(config(), ASSIGN_AND_QUALIFY_RULES);
    let c = s.client();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for j in 0..EACH {
                    let title = format!("load-{i}-{j}");
                    let r = c.post(
                        "/api/v1/leads",
                        &json!({"title": title, "phones": [format!("+7900{:07}", i * 100 + j)]}),
                    );
                    assert!(
                        r.status == 201 || r.status == 503,
                        "{}: {}",
                        r.status,
                        r.text()
                    );
                    if r.status == 201 {
                        acked.push((title, r.json()["id"].as_i64().unwrap()));
                    }
                }
                acked
            })
        })
        .collect();
    let acked: Vec<(String, i64)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(
        acked.len() >= CLIENTS * EACH * 9 / 10,
        "most requests succeed: {}",
        acked.len()
    );
    let mut by_title = BTreeMap::new();
    let mut path = "/api/v1/leads?limit=500&order=asc".to_owned();
    loop {
        let page = c.get(&path).json();
        for l in page["items"].as_array().unwrap() {
            *by_title
                .entry(l["title"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
            assert!(l["responsible"].is_string(), "every lead was assigned: {l}");
        }
        match page["next_cursor"].as_str() {
            Some(cur) => path = format!("/api/v1/leads?limit=500&order=asc&cursor={cur}"),
            None => break,
        }
    }
    for (title, _) in &acked {
        assert_eq!(by_title.get(title), Some(&1), "{title} is stored once");
    }
    // Each lead's robots acted once.
    let assigned = c.get("/api/v1/events?type=lead.assigned&limit=1000").json();
    assert_eq!(assigned["events"].as_array().unwrap().len(), by_title.len());
    // The commits were shared: the batch-size histogram's sum (requests) exceeds its count
    // (commits).
    let metrics = c.get("/metrics").text();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    let (sum, count) = (
        value("leadflow_commit_batch_size_sum"),
        value("leadflow_commit_batch_size_count"),
    );
    assert!(
        sum > count,
        "requests were committed in groups: {sum} jobs in {count} commits"
    );
    let verify = c.get("/api/v1/verify").json();
    assert_eq!(verify["ok"], true, "{verify}");
}
