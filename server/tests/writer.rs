//! The writer thread itself: a job that panics (a defect) fails alone, with its savepoint
//! rolled back, and the writer goes on.

use leadflow_engine::{Actor, Command, EventMeta};
use leadflow_server::writer::Answer;
use leadflow_server::{ApiError, Service, Setup};
use leadflow_store::{Options, Store};
use leadflow_testkit::config;
use leadflow_testkit::serve::Wall;
use serde_json::json;
use std::sync::Arc;

fn create(name: &str) -> Command {
    let args = json!({"name": name});
    leadflow_engine::verb::build(
        leadflow_engine::verb::Verb::LeadCreate,
        args.as_object().unwrap(),
        chrono::Utc::now(),
        &config(),
    )
    .unwrap()
}

#[test]
fn a_job_that_panics_fails_alone_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leadflow.db");
    Store::open(&db, &Options::default()).unwrap();
    let service = Service::start(Setup {
        config: config(),
        db: db.clone(),
        options: Options::default(),
        rules: None,
        reload: Arc::new(|_| Ok(None)),
        clock: Arc::new(Wall),
    })
    .unwrap();
    let writer = service.state().writer.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let boom = writer.run(
            None,
            Box::new(|tx, ctx| {
                // Appends, then panics: the append must not be kept.
                tx.execute(
                    ctx.config,
                    &create("Half done"),
                    &EventMeta::root(ctx.now, Actor::System),
                )?;
                panic!("boom");
            }),
        );
        let fine = writer.run(
            None,
            Box::new(|tx, ctx| {
                tx.execute(
                    ctx.config,
                    &create("Whole"),
                    &EventMeta::root(ctx.now, Actor::System),
                )?;
                Ok(Answer::ok(json!({})))
            }),
        );
        let (boom, fine) = tokio::join!(boom, fine);
        match boom {
            Err(ApiError::Internal(m)) => assert!(m.contains("boom"), "{m}"),
            other => panic!("expected a 500 for the panic, got {other:?}"),
        }
        fine.unwrap();
        assert!(writer.is_alive());
        writer
            .run(None, Box::new(|_, _| Ok(Answer::ok(json!({})))))
            .await
            .unwrap();
    });
    drop(writer);
    drop(service);
    let store = Store::open(&db, &Options::default()).unwrap();
    let names: Vec<String> = leadflow_store::query::leads(&store, &Default::default())
        .unwrap()
        .into_iter()
        .filter_map(|l| l.name)
        .collect();
    assert_eq!(names, ["Whole"]);
}
