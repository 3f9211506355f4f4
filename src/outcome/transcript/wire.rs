//! The shape of one stream-json line, as far as the parser needs it.
//!
//! Everything borrows from the line and everything is lenient: a field of an
//! unexpected type reads as absent instead of failing the whole line, because a newer
//! CLI changing one field must not make borg blind to the `result` line. Parts the
//! parser does not need (file contents in Write inputs, Read results, patches) are
//! skipped by serde without being copied. The field readers themselves are in
//! [`super::lenient`]; this module is the line's structure built from them.

use super::lenient::{absent, Count, Flag, Num, Obj, Str, Strings};
use crate::outcome::{TestCounts, Tokens};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

/// One stdout line. Field names are the CLI's; types of every event are merged,
/// which works because no two event types use one name with different meanings.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Event<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Str<'a>,
    #[serde(borrow)]
    pub subtype: Str<'a>,
    #[serde(borrow)]
    pub session_id: Str<'a>,
    #[serde(borrow)]
    pub cwd: Str<'a>,
    #[serde(borrow)]
    pub model: Str<'a>,
    #[serde(borrow)]
    pub claude_code_version: Str<'a>,
    /// On a synthetic assistant line: server_error, rate_limit, authentication_failed.
    #[serde(borrow)]
    pub error: Str<'a>,
    #[serde(borrow)]
    pub message: Obj<Message<'a>>,
    pub tool_use_result: ToolUseResult,
    pub is_error: Flag,
    pub api_error_status: Num,
    #[serde(borrow)]
    pub result: Str<'a>,
    pub errors: Strings,
    #[serde(borrow)]
    pub terminal_reason: Str<'a>,
    pub num_turns: Num,
    pub total_cost_usd: Num,
    pub duration_ms: Num,
    pub permission_denials: Count,
    pub usage: Obj<Usage>,
    #[serde(rename = "modelUsage")]
    pub model_usage: ModelUsage,
    #[serde(borrow)]
    pub rate_limit_info: Obj<RateLimitInfo<'a>>,
    /// On `system/init`: each MCP server's name and status.
    pub mcp_servers: McpServers,
    /// On `result` under `--json-schema`: the structured output.
    pub structured_output: Option<serde_json::Value>,
}

/// `mcp_servers` of the init line: (name, status) of each server, in order; anything
/// but a list of objects reads as none.
#[derive(Debug, Default)]
pub(crate) struct McpServers(pub Vec<(String, String)>);

/// One entry of `mcp_servers`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct McpServer<'a> {
    #[serde(borrow)]
    pub name: Str<'a>,
    #[serde(borrow)]
    pub status: Str<'a>,
}

impl<'de> Deserialize<'de> for McpServers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = McpServers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of MCP servers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Obj<McpServer<'de>>>()? {
                    if let (Some(n), Some(st)) = (s.0.name.get(), s.0.status.get()) {
                        out.push((n.to_owned(), st.to_owned()));
                    }
                }
                Ok(McpServers(out))
            }
            absent!(bool, num, unit, str, map);
        }
        d.deserialize_any(V)
    }
}

/// `message` of assistant and user lines.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Message<'a> {
    #[serde(borrow)]
    pub id: Str<'a>,
    #[serde(borrow)]
    pub role: Str<'a>,
    #[serde(borrow)]
    pub content: Blocks<'a>,
}

/// `message.content`: a plain string (a user prompt) or content blocks. One block per
/// line is the norm (claude-cli.md §4.2), so the first is kept inline and only further
/// ones cost an allocation.
#[derive(Debug, Default)]
pub(crate) struct Blocks<'a> {
    pub first: Option<Block<'a>>,
    pub rest: Vec<Block<'a>>,
}

impl<'a> Blocks<'a> {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Block<'a>> {
        self.first.iter().chain(self.rest.iter())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Blocks<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Blocks<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("content blocks")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut blocks = Blocks::default();
                while let Some(b) = seq.next_element::<Obj<Block<'a>>>()? {
                    if blocks.first.is_none() {
                        blocks.first = Some(b.0);
                    } else {
                        blocks.rest.push(b.0);
                    }
                }
                Ok(blocks)
            }
            absent!(bool, num, unit, str, map);
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// One content block: text, tool_use or tool_result (others are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Block<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Str<'a>,
    #[serde(borrow)]
    pub text: Str<'a>,
    #[serde(borrow)]
    pub id: Str<'a>,
    #[serde(borrow)]
    pub name: Str<'a>,
    #[serde(borrow)]
    pub input: Obj<ToolInput<'a>>,
    #[serde(borrow)]
    pub tool_use_id: Str<'a>,
    /// tool_result content, kept as raw JSON: only Bash results that may hold a test
    /// summary are ever unescaped (see [`ResultScan`]), the rest is skipped unread.
    #[serde(borrow)]
    pub content: Option<&'a RawValue>,
    pub is_error: Flag,
}

/// The arguments of a tool call that say what it touches; the rest (file contents,
/// edit strings) is skipped unread.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ToolInput<'a> {
    #[serde(borrow)]
    pub file_path: Str<'a>,
    #[serde(borrow)]
    pub notebook_path: Str<'a>,
    #[serde(borrow)]
    pub command: Str<'a>,
    #[serde(borrow)]
    pub path: Str<'a>,
    #[serde(borrow)]
    pub pattern: Str<'a>,
    #[serde(borrow)]
    pub url: Str<'a>,
    #[serde(borrow)]
    pub query: Str<'a>,
    #[serde(borrow)]
    pub description: Str<'a>,
}

/// A tool_result's content (a string, or text blocks) read for its test summary; the
/// string form is recognised while serde holds it, without a copy.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ResultScan {
    pub tests: Option<TestCounts>,
}

impl<'de> Deserialize<'de> for ResultScan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ResultScan;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("tool result content")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ResultScan, E> {
                Ok(ResultScan {
                    tests: crate::outcome::testsummary::recognise(v),
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ResultScan, A::Error> {
                let mut joined = String::new();
                while let Some(b) = seq.next_element::<Obj<TextBlock<'de>>>()? {
                    if let Some(t) = b.0.text.get() {
                        joined.push_str(t);
                        joined.push('\n');
                    }
                }
                Ok(ResultScan {
                    tests: crate::outcome::testsummary::recognise(&joined),
                })
            }
            absent!(bool, num, unit, map);
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TextBlock<'a> {
    #[serde(borrow)]
    text: Str<'a>,
}

/// `tool_use_result`: an object on success (whose `type` tells create from update),
/// a plain string on failure (claude-cli.md §9.8).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ToolUseResult {
    /// Present, and `type` was `create`.
    pub created: bool,
}

impl<'de> Deserialize<'de> for ToolUseResult {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ToolUseResult;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tool result")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ToolUseResult, A::Error> {
                let mut created = false;
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    if key.get() == Some("type") {
                        created = map.next_value::<Str<'de>>()?.get() == Some("create");
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(ToolUseResult { created })
            }
            absent!(bool, num, unit, str, seq);
        }
        d.deserialize_any(V)
    }
}

/// `usage` (snake_case), the fallback when `modelUsage` is absent or empty.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Usage {
    pub input_tokens: Num,
    pub output_tokens: Num,
    pub cache_read_input_tokens: Num,
    pub cache_creation_input_tokens: Num,
}

impl Usage {
    pub(crate) fn tokens(&self) -> Tokens {
        Tokens {
            input: self.input_tokens.u64(),
            output: self.output_tokens.u64(),
            cache_read: self.cache_read_input_tokens.u64(),
            cache_creation: self.cache_creation_input_tokens.u64(),
        }
    }
}

/// `modelUsage` summed over its models as it is read; `models` tells empty from absent.
#[derive(Debug, Default)]
pub(crate) struct ModelUsage {
    pub models: u64,
    pub tokens: Tokens,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ModelUsageEntry {
    input_tokens: Num,
    output_tokens: Num,
    cache_read_input_tokens: Num,
    cache_creation_input_tokens: Num,
}

impl<'de> Deserialize<'de> for ModelUsage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ModelUsage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of models")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ModelUsage, A::Error> {
                let mut out = ModelUsage::default();
                while map.next_key::<IgnoredAny>()?.is_some() {
                    let Obj(e): Obj<ModelUsageEntry> = map.next_value()?;
                    out.models += 1;
                    out.tokens.add(&Tokens {
                        input: e.input_tokens.u64(),
                        output: e.output_tokens.u64(),
                        cache_read: e.cache_read_input_tokens.u64(),
                        cache_creation: e.cache_creation_input_tokens.u64(),
                    });
                }
                Ok(out)
            }
            absent!(bool, num, unit, str, seq);
        }
        d.deserialize_any(V)
    }
}

/// `rate_limit_info` of a `rate_limit_event`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct RateLimitInfo<'a> {
    #[serde(borrow)]
    pub status: Str<'a>,
    pub resets_at: Num,
    #[serde(borrow)]
    pub rate_limit_type: Str<'a>,
}
