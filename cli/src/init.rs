//! `init [DIR]`: scaffold a configuration and an empty database.

use crate::error::CliError;
use leadflow_engine::config::DEFAULT_CONFIG;
use leadflow_store::{Options, Store};
use std::path::Path;

pub fn init(dir: &Path, force: bool) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
    let config = dir.join("leadflow.toml");
    if config.exists() && !force {
        return Err(CliError::Usage(format!(
            "{} already exists; pass --force to overwrite it",
            config.display()
        )));
    }
    std::fs::write(&config, DEFAULT_CONFIG).map_err(|e| CliError::io(&config, e))?;
    let db = dir.join("leadflow.db");
    let store = Store::open(&db, &Options::default())?;
    drop(store);
    println!("created {} and {}", config.display(), db.display());
    println!(
        "next: edit the teams, employees and pipelines in leadflow.toml, then try `leadflow lead create --name Ivan --phone '+7 912 345-67-89'`"
    );
    Ok(())
}
