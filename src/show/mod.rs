//! What people see: the run report (terminal table, JSON, JUnit), the rendering of a
//! child's stream-json log, and the live progress of a run.

pub mod progress;
pub mod render;
pub mod report;
