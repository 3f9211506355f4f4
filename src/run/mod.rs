//! Deciding what runs: the scheduler (the run loop, a state machine driven by
//! events), one attempt as a sequence of named stages, the policy applied after each
//! attempt (retries, breaker, parking), handoffs and resolve tasks becoming tasks,
//! the prompt, the recovery from dead borgs, named lists in a shared store, and the
//! plan of a dry run.

pub mod attempt;
pub mod handoff;
pub mod integrate;
pub mod lists;
pub mod plan;
pub mod policy;
pub mod prompt;
pub mod recovery;
pub mod resolve;
pub mod scheduler;
pub mod spec;
pub mod summary;
