//! `GET /metrics` in the Prometheus (OpenMetrics) text format. What the store knows
//! is read at scrape time (tasks by status and role, attempts, cost and tokens by role,
//! attempt durations, leases held, breaker, parking, agents), so every borg serve on a
//! store reports the same fleet; what only this process sees is counted here (API
//! requests by route and code, claim latency).

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::App;
use crate::outcome::AttemptRecord;
use crate::store::agents::agent_of_owner;
use crate::store::{call, Store, StoreError};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

type Labels = Vec<(String, String)>;

/// What this process counts.
pub struct Metrics {
    requests: Family<Labels, Counter>,
    claim: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            claim: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        }
    }
}

impl Metrics {
    /// One answered request.
    pub fn count(&self, route: &str, code: u16) {
        self.requests
            .get_or_create(&vec![
                ("route".into(), route.to_string()),
                ("code".into(), code.to_string()),
            ])
            .inc();
    }

    /// One claim over HTTP took this long (the store's claim transaction).
    pub fn claim_latency(&self, d: Duration) {
        self.claim.observe(d.as_secs_f64());
    }
}

/// The middleware counting every routed request by its route pattern and status.
pub async fn track(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    app.metrics.count(&route, resp.status().as_u16());
    resp
}

/// What the store says, gathered in one blocking call.
#[derive(Default)]
struct Fleet {
    tasks: BTreeMap<(String, String), i64>,
    attempts: BTreeMap<(String, String), u64>,
    cost: BTreeMap<String, f64>,
    tokens: BTreeMap<(String, &'static str), u64>,
    durations: Vec<(String, f64)>,
    leases: BTreeMap<&'static str, i64>,
    breaker_open: bool,
    parked: bool,
    agents: i64,
    last_event: i64,
}

fn gather(st: &dyn Store, now: i64) -> Result<Fleet, StoreError> {
    let mut f = Fleet::default();
    for t in st.tasks()? {
        *f.tasks
            .entry((t.status.as_str().into(), t.role.clone()))
            .or_default() += 1;
        if t.owner.is_some() && t.lease_expires_ms.is_some_and(|e| e > now) {
            let kind = if t.owner.as_deref().and_then(agent_of_owner).is_some() {
                "agent"
            } else {
                "borg"
            };
            *f.leases.entry(kind).or_default() += 1;
        }
        for a in st.attempts(&t.id)? {
            *f.attempts
                .entry((t.role.clone(), a.status.as_str().into()))
                .or_default() += 1;
            let Some(r) = AttemptRecord::from_stored(a.record.as_ref()) else {
                continue;
            };
            *f.cost.entry(t.role.clone()).or_default() += r.cost_usd;
            for (k, n) in [
                ("input", r.tokens.input),
                ("output", r.tokens.output),
                ("cache_read", r.tokens.cache_read),
                ("cache_creation", r.tokens.cache_creation),
            ] {
                *f.tokens.entry((t.role.clone(), k)).or_default() += n;
            }
            if a.finished_ms.is_some() {
                f.durations
                    .push((t.role.clone(), r.duration_ms as f64 / 1000.0));
            }
        }
    }
    f.breaker_open = st
        .fleet("breaker")?
        .and_then(|b| b.get("open").and_then(|o| o.as_bool()))
        .unwrap_or(false);
    f.parked = st
        .fleet("parked")?
        .and_then(|p| p.get("until_ms").and_then(|u| u.as_i64()))
        .is_some_and(|u| u > now);
    f.agents = st.agents()?.len() as i64;
    f.last_event = st.last_event_id()?;
    Ok(f)
}

fn l2(a: &str, av: &str, b: &str, bv: &str) -> Labels {
    vec![(a.into(), av.into()), (b.into(), bv.into())]
}

/// `GET /metrics`.
pub async fn render(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult {
    caller.may_read(&app)?;
    let now = chrono::Utc::now().timestamp_millis();
    let f = call(&app.store, move |st: &dyn Store| gather(st, now)).await?;
    let mut reg = Registry::with_prefix("borg");
    register_fleet(&mut reg, &f);
    reg.register(
        "api_requests",
        "API requests answered, by route pattern and status code",
        app.metrics.requests.clone(),
    );
    reg.register(
        "claim_latency_seconds",
        "Time of the store's claim transaction for claims over HTTP",
        app.metrics.claim.clone(),
    );
    let mut out = String::new();
    encode(&mut out, &reg).map_err(|_| ApiError::server("cannot encode the metrics"))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

fn register_fleet(reg: &mut Registry, f: &Fleet) {
    let tasks = Family::<Labels, Gauge>::default();
    for ((s, r), n) in &f.tasks {
        tasks.get_or_create(&l2("status", s, "role", r)).set(*n);
    }
    reg.register("tasks", "Tasks in the store, by status and role", tasks);
    let attempts = Family::<Labels, Counter>::default();
    for ((r, s), n) in &f.attempts {
        attempts
            .get_or_create(&l2("role", r, "status", s))
            .inc_by(*n);
    }
    reg.register(
        "attempts",
        "Attempts recorded, by role and attempt status",
        attempts,
    );
    let cost = Family::<Labels, Counter<f64, AtomicU64>>::default();
    for (r, c) in &f.cost {
        cost.get_or_create(&vec![("role".into(), r.clone())])
            .inc_by(*c);
    }
    reg.register(
        "cost_usd",
        "Cost of finished attempts in US dollars, by role",
        cost,
    );
    let tokens = Family::<Labels, Counter>::default();
    for ((r, k), n) in &f.tokens {
        tokens.get_or_create(&l2("role", r, "kind", k)).inc_by(*n);
    }
    reg.register(
        "tokens",
        "Tokens of finished attempts, by role and kind",
        tokens,
    );
    let durations = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
        Histogram::new(exponential_buckets(1.0, 2.0, 14))
    });
    for (r, d) in &f.durations {
        durations
            .get_or_create(&vec![("role".into(), r.clone())])
            .observe(*d);
    }
    reg.register(
        "attempt_duration_seconds",
        "Durations of finished attempts, by role",
        durations,
    );
    register_state(reg, f);
}

/// Leases, breaker, parking, agents, the newest event.
fn register_state(reg: &mut Registry, f: &Fleet) {
    let leases = Family::<Labels, Gauge>::default();
    for k in ["borg", "agent"] {
        leases
            .get_or_create(&vec![("holder".into(), k.into())])
            .set(f.leases.get(k).copied().unwrap_or(0));
    }
    reg.register(
        "leases_held",
        "Task claims whose lease is live, by holder kind",
        leases,
    );
    let one = |v: i64| {
        let g = Gauge::<i64>::default();
        g.set(v);
        g
    };
    reg.register(
        "breaker_open",
        "1 while the circuit breaker is open",
        one(i64::from(f.breaker_open)),
    );
    reg.register(
        "parked",
        "1 while the fleet is parked on a usage limit",
        one(i64::from(f.parked)),
    );
    reg.register(
        "agents_registered",
        "Outside agents registered",
        one(f.agents),
    );
    reg.register(
        "events_last_id",
        "Id of the newest event in the store",
        one(f.last_event),
    );
}
