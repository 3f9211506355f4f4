//! Coordination of running agents (issue 15; seeds 000, 002, 003): every claude child
//! gets borg's MCP server (`borg mcp`, tools `mcp__borg__*`) and hooks (`borg hook`)
//! through per-attempt files in its instance folder. Through them agents take file
//! leases (enforced before every write, checked after every shell command), log
//! decisions, message each other, report progress, share context, hand work on and
//! create tasks. All state lives in the store (`store::coord`): the helpers are
//! short-lived processes that find their attempt in the environment and drop every
//! credential first.
//!
//! Rooms: `env` (the attempt from the environment), `paths` (repository-relative
//! patterns), `leases` (holder and deadlock sentences, the waiting lock), `notes`
//! (decisions, messages, context: checks and recipients), `tasks` (agent-created
//! tasks), `brief` (the prompt's coordination section), `files` (the per-attempt MCP
//! config and settings, and the child's extra flags), `hook` (the hooks), `mcp` (the
//! server).

pub mod brief;
pub mod env;
pub mod files;
pub mod hook;
pub mod leases;
pub mod mcp;
pub mod notes;
pub mod paths;
pub mod tasks;
