//! What people see: the run report (terminal table, JSON, JUnit), the rendering of a
//! child's stream-json log, the live progress of a run, and the fleet at a glance.

pub mod fleet;
pub mod progress;
pub mod render;
pub mod report;
