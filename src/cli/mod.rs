//! The command line: the contract (`args`: every command, flag and exit code users
//! and tests rely on) and one file per command (`borg run`, `borg instance`, ...).
//! Each turns parsed arguments into calls of the pipeline stages and returns the
//! exit code.

pub mod args;
pub mod decisions;
pub mod diff;
pub mod handoff;
pub mod helpers;
pub mod instance;
pub mod locks;
pub mod logs;
pub mod merge;
pub mod messages;
pub mod roles;
pub mod run;
pub mod serve;
pub mod status;
pub mod task;
pub mod transcript;
pub mod worker;

use crate::input::config::{Overrides, Settings};
use crate::input::roles::RoleSet;
use crate::store::location::StoreLocation;
use crate::store::Store;
use anyhow::Context;
pub use args::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What every command starts from: the global flags and the process environment.
pub struct Ctx {
    /// Global flags.
    pub global: GlobalArgs,
    /// The process environment.
    pub env: BTreeMap<String, String>,
}

impl Ctx {
    /// Resolves the settings with the global flags plus `extra` command flags.
    pub fn settings(&self, mut extra: Overrides) -> anyhow::Result<Settings> {
        extra.config = self.global.config.clone();
        extra.workspaces = self.global.workspaces.clone();
        extra.roles_dir = self.global.roles.clone();
        extra.store = self.global.store.clone();
        Ok(Settings::load(&extra, &self.env)?)
    }

    /// Loads the roles.
    pub fn roles(&self, s: &Settings) -> anyhow::Result<RoleSet> {
        Ok(RoleSet::load(&s.paths.roles_dir)?)
    }

    /// Opens the store the settings name: an SQLite file, or a PostgreSQL database
    /// for a `postgres://` URL.
    pub fn store(&self, s: &Settings) -> anyhow::Result<Arc<dyn Store>> {
        let at = StoreLocation::of(&s.paths.store);
        at.open()
            .with_context(|| format!("opening the store {}", at.shown()))
    }
}

/// Runs the parsed command line; returns the exit code.
pub async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let ctx = Ctx {
        global: cli.global,
        env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
    };
    match cli.command {
        Command::Run(a) => run::run(&ctx, a).await,
        Command::Worker(a) => worker::run(&ctx, a).await,
        Command::Instance(c) => instance::run(&ctx, c),
        Command::Task(c) => task::run(&ctx, c),
        Command::Logs(a) => logs::run(&ctx, a).await,
        Command::Status(a) => status::run(&ctx, a).await,
        Command::Handoff(c) => handoff::run(&ctx, c),
        Command::Transcript(a) => transcript::run(&ctx, a),
        Command::Roles(c) => roles::run(&ctx, c),
        Command::Locks(a) => locks::run(&ctx, a),
        Command::Decisions(c) => decisions::run(&ctx, c),
        Command::Messages(c) => messages::run(&ctx, c),
        Command::Mcp => helpers::mcp(&ctx).await,
        Command::Hook { event } => Ok(helpers::hook(event)),
        Command::Diff(a) => diff::run(&ctx, a),
        Command::Merge(a) => merge::run(&ctx, a).await,
        Command::Serve(a) => serve::run(&ctx, a).await,
    }
}

/// Prints JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
