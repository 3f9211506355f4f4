//! Settings: precedence of flags, environment, `.env`, `config.toml` and defaults;
//! errors with file, line and column; the shipped `config.toml` and `.env.example`.

use borg::input::config::{ConfigError, Overrides, Settings};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn json(s: &Settings) -> serde_json::Value {
    serde_json::to_value(s).unwrap()
}

/// Loads with no flags and these process variables, from `dir`.
fn load_env(vars: &[(&str, &str)], dir: &Path) -> Result<Settings, ConfigError> {
    Settings::load_in(&Overrides::default(), &env(vars), dir)
}

/// Loads with these flags and no process variables, from `dir`.
fn load_flags(over: &Overrides, dir: &Path) -> Result<Settings, ConfigError> {
    Settings::load_in(over, &BTreeMap::new(), dir)
}

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

#[test]
fn nothing_given_gives_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let s = load_env(&[], dir.path()).unwrap();
    let mut want = Settings::default();
    for p in [
        &mut want.paths.workspaces,
        &mut want.paths.roles_dir,
        &mut want.paths.store,
    ] {
        *p = dir.path().join(&*p);
    }
    assert_eq!(json(&s), json(&want));
}

/// Each layer sets workspaces and timeout; removing the top layer uncovers the next.
#[test]
fn precedence_flag_env_dotenv_file_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("config.toml"),
        "[paths]\nworkspaces = \"from-file\"\n[run]\ntimeout = \"1m\"\nconcurrency = 7\n",
    )
    .unwrap();
    std::fs::write(
        d.join(".env"),
        "BORG_WORKSPACES=from-dotenv\nBORG_TIMEOUT=2m\n",
    )
    .unwrap();
    let e = env(&[("BORG_WORKSPACES", "from-env"), ("BORG_TIMEOUT", "3m")]);
    let flags = Overrides {
        workspaces: Some("from-flag".into()),
        timeout: Some(Duration::from_secs(240)),
        ..Default::default()
    };

    let s = Settings::load_in(&flags, &e, d).unwrap();
    assert_eq!(s.paths.workspaces, d.join("from-flag"));
    assert_eq!(s.paths.store, d.join("from-flag/borg.db"));
    assert_eq!(s.run.timeout, Duration::from_secs(240));
    assert_eq!(s.run.concurrency, 7, "untouched layers still apply");
    assert_eq!(
        s.paths.config_file.as_deref(),
        Some(d.join("config.toml").as_path())
    );

    let s = Settings::load_in(&Overrides::default(), &e, d).unwrap();
    assert_eq!(s.paths.workspaces, d.join("from-env"));
    assert_eq!(s.run.timeout, Duration::from_secs(180));

    let s = load_env(&[], d).unwrap();
    assert_eq!(s.paths.workspaces, d.join("from-dotenv"));
    assert_eq!(s.run.timeout, Duration::from_secs(120));

    std::fs::remove_file(d.join(".env")).unwrap();
    let s = load_env(&[], d).unwrap();
    assert_eq!(s.paths.workspaces, d.join("from-file"));
    assert_eq!(s.run.timeout, Duration::from_secs(60));

    std::fs::remove_file(d.join("config.toml")).unwrap();
    let s = load_env(&[], d).unwrap();
    assert_eq!(s.paths.workspaces, d.join("workspaces"));
    assert_eq!(s.run.timeout, Duration::from_secs(30 * 60));
    assert!(s.paths.config_file.is_none());
}

#[test]
fn original_coordinator_names() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(&[
        ("TASK_TIMEOUT", "90000"),
        ("WORKSPACES_DIR", "/srv/ws"),
        ("CLAUDE_CODE_PATH", "/opt/claude"),
    ]);
    let s = Settings::load_in(&Overrides::default(), &e, dir.path()).unwrap();
    assert_eq!(s.run.timeout, Duration::from_millis(90_000));
    assert_eq!(s.paths.workspaces, PathBuf::from("/srv/ws"));
    assert_eq!(s.paths.store, PathBuf::from("/srv/ws/borg.db"));
    assert_eq!(s.claude.path, Some(PathBuf::from("/opt/claude")));

    // Within one layer the BORG_ name wins; across layers the higher layer wins.
    let e = env(&[
        ("TASK_TIMEOUT", "90000"),
        ("BORG_TIMEOUT", "5m"),
        ("WORKSPACES_DIR", "/a"),
        ("BORG_WORKSPACES", "/b"),
    ]);
    let s = Settings::load_in(&Overrides::default(), &e, dir.path()).unwrap();
    assert_eq!(s.run.timeout, Duration::from_secs(300));
    assert_eq!(s.paths.workspaces, PathBuf::from("/b"));
    std::fs::write(dir.path().join(".env"), "BORG_WORKSPACES=/from-dotenv\n").unwrap();
    let s = load_env(&[("WORKSPACES_DIR", "/env")], dir.path()).unwrap();
    assert_eq!(s.paths.workspaces, PathBuf::from("/env"));

    let e = env(&[("TASK_TIMEOUT", "30m")]);
    let m = Settings::load_in(&Overrides::default(), &e, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        m.starts_with("env TASK_TIMEOUT: run.timeout = \"30m\": expected milliseconds"),
        "{m}"
    );
}

#[test]
fn other_variables() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(&[
        ("BORG_ROLES", "r"),
        ("BORG_STORE", "/db/x.db"),
        ("BORG_CLAUDE", "claude-beta"),
        ("BORG_CONCURRENCY", "9"),
        ("BORG_TEMPLATE", "tpl"),
        ("BORG_BUDGET_USD", "12.5"),
        ("BORG_PERMISSION_MODE", "acceptEdits"),
        ("BORG_MODEL", "opus"),
        ("BORG_MAX_TURNS", "12"),
        ("IS_SANDBOX", "1"),
        ("BORG_IDLE_TIMEOUT", "90s"),
        ("BORG_RETRIES", "2"),
        ("CLAUDE_CODE_MAX_RETRIES", "5"),
        ("API_TIMEOUT_MS", "30000"),
        ("BORG_MODEL_UNUSED", "x"),
    ]);
    let s = Settings::load_in(&Overrides::default(), &e, dir.path()).unwrap();
    assert_eq!(s.paths.roles_dir, dir.path().join("r"));
    assert_eq!(s.paths.store, PathBuf::from("/db/x.db"));
    assert_eq!(
        s.claude.path,
        Some(PathBuf::from("claude-beta")),
        "a bare name is a PATH lookup"
    );
    assert_eq!(s.run.concurrency, 9);
    assert_eq!(s.paths.template, Some(dir.path().join("tpl")));
    assert_eq!(s.run.budget_usd, Some(12.5));
    assert_eq!(s.claude.permission_mode, "acceptEdits");
    assert_eq!(s.claude.model.as_deref(), Some("opus"));
    assert_eq!(s.claude.max_turns, Some(12));
    assert!(s.claude.sandbox);
    assert_eq!(s.run.idle_timeout, Duration::from_secs(90));
    assert_eq!(s.run.retries, 2);
    assert_eq!(s.claude.max_retries, 5);
    assert_eq!(s.claude.api_timeout_ms, 30_000);
}

#[test]
fn dotenv_passes_claude_variables_on_without_touching_the_process() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "# comment\nANTHROPIC_API_KEY=sk-test\nexport ANTHROPIC_BASE_URL=\"http://x\"\nBORG_MODEL=\nCLAUDE_CODE_MAX_RETRIES=4\n",
    )
    .unwrap();
    let s = load_env(&[("ANTHROPIC_BASE_URL", "http://env")], dir.path()).unwrap();
    assert_eq!(
        s.claude.env.get("ANTHROPIC_API_KEY").map(String::as_str),
        Some("sk-test")
    );
    assert!(
        !s.claude.env.contains_key("ANTHROPIC_BASE_URL"),
        "the process environment wins"
    );
    assert_eq!(s.claude.model, None, "empty counts as unset");
    assert_eq!(s.claude.max_retries, 4);
    assert!(std::env::var("ANTHROPIC_API_KEY").map_or(true, |v| v != "sk-test"));
}

#[test]
fn config_file_relative_paths_and_explicit_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = dir.path().join("etc");
    std::fs::create_dir(&cfg_dir).unwrap();
    std::fs::write(
        cfg_dir.join("borg.toml"),
        "[paths]\nworkspaces = \"ws\"\nroles = \"/abs/roles\"\n[workspace]\ntemplate = \"tpl\"\n[claude]\npath = \"bin/claude\"\nallowed_tools = [\"Read\"]\n[claude.env]\nFOO = \"bar\"\n[roles.tester]\nmax_instances = 2\n",
    )
    .unwrap();
    let over = Overrides {
        config: Some("etc/borg.toml".into()),
        ..Default::default()
    };
    let s = load_flags(&over, dir.path()).unwrap();
    assert_eq!(s.paths.workspaces, cfg_dir.join("ws"));
    assert_eq!(s.paths.store, cfg_dir.join("ws/borg.db"));
    assert_eq!(s.paths.roles_dir, PathBuf::from("/abs/roles"));
    assert_eq!(s.paths.template, Some(cfg_dir.join("tpl")));
    assert_eq!(s.claude.path, Some(cfg_dir.join("bin/claude")));
    assert_eq!(s.claude.allowed_tools, vec!["Read"]);
    assert_eq!(s.claude.env.get("FOO").map(String::as_str), Some("bar"));
    assert_eq!(s.roles["tester"].max_instances, Some(2));

    // BORG_CONFIG names it too.
    let s = load_env(&[("BORG_CONFIG", "etc/borg.toml")], dir.path()).unwrap();
    assert_eq!(s.paths.workspaces, cfg_dir.join("ws"));

    // Named but missing is an error; the implicit ./config.toml may be missing.
    let over = Overrides {
        config: Some("nope.toml".into()),
        ..Default::default()
    };
    let e = load_flags(&over, dir.path()).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(e.to_string().contains("nope.toml"), "{e}");
    let e = load_env(&[("BORG_CONFIG", "gone.toml")], dir.path()).unwrap_err();
    assert!(e.to_string().contains("gone.toml"), "{e}");
}

#[test]
fn store_set_explicitly_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[paths]\nstore = \"state/b.db\"\n",
    )
    .unwrap();
    let s = load_env(&[("BORG_WORKSPACES", "/w")], dir.path()).unwrap();
    assert_eq!(s.paths.workspaces, PathBuf::from("/w"));
    assert_eq!(s.paths.store, dir.path().join("state/b.db"));
    let over = Overrides {
        store: Some("/x.db".into()),
        ..Default::default()
    };
    let s = load_flags(&over, dir.path()).unwrap();
    assert_eq!(s.paths.store, PathBuf::from("/x.db"));
}

fn file_err(text: &str) -> ConfigError {
    Settings::from_config_str(Path::new("config.toml"), text).unwrap_err()
}

#[test]
fn config_errors_have_line_and_column() {
    match file_err("[run]\nconcurrency = 4\ntimout = \"5m\"\n") {
        ConfigError::Parse {
            line,
            column,
            message,
            ..
        } => {
            assert_eq!((line, column), (3, 1));
            assert!(message.contains("timout"), "{message}");
        }
        other => panic!("{other}"),
    }
    let m = file_err("[run]\nconcurrency = 4\ntimout = \"5m\"\n").to_string();
    assert!(m.starts_with("config.toml:3:1: "), "{m}");
    let m = file_err("[paths]\nworkspaces = [\n").to_string();
    assert!(m.starts_with("config.toml:"), "{m}");
    let m = file_err("[claud]\n").to_string();
    assert!(
        m.starts_with("config.toml:1:") && m.contains("claud"),
        "{m}"
    );
    let m = file_err("[claude]\nsandbox = \"yes\"\n").to_string();
    assert!(m.starts_with("config.toml:2:"), "{m}");
}

#[test]
fn invalid_values_name_their_origin() {
    let m = file_err("[run]\n\ntimeout = \"5 parsecs\"\n").to_string();
    assert!(
        m.starts_with("config.toml:3 [run] timeout: run.timeout = \"5 parsecs\": not a duration"),
        "{m}"
    );
    let m = file_err("[run]\nconcurrency = 0\n").to_string();
    assert!(
        m.contains("[run] concurrency: run.concurrency = \"0\": expected a whole number >= 1"),
        "{m}"
    );
    let m = file_err("[run]\nbudget_usd = -1\n").to_string();
    assert!(
        m.contains("[run] budget_usd") && m.contains("more than 0"),
        "{m}"
    );
    let m = file_err("[claude]\npermission_mode = \"yolo\"\n").to_string();
    assert!(m.contains("unknown permission mode"), "{m}");
    let m = file_err("[roles.tester]\nmax_instances = 0\n").to_string();
    assert!(m.contains("[roles.tester] max_instances"), "{m}");
    let m = file_err("[roles.tester]\nmax_instance = 1\n").to_string();
    assert!(m.contains("max_instance"), "{m}");

    let dir = tempfile::tempdir().unwrap();
    let load = |e: &[(&str, &str)], o: Overrides| {
        Settings::load_in(&o, &env(e), dir.path())
            .unwrap_err()
            .to_string()
    };
    let m = load(&[("BORG_CONCURRENCY", "0")], Overrides::default());
    assert_eq!(
        m,
        "env BORG_CONCURRENCY: run.concurrency = \"0\": must be at least 1"
    );
    let m = load(&[("BORG_CONCURRENCY", "lots")], Overrides::default());
    assert!(m.starts_with("env BORG_CONCURRENCY: "), "{m}");
    let m = load(&[("BORG_BUDGET_USD", "-3")], Overrides::default());
    assert!(m.starts_with("env BORG_BUDGET_USD: "), "{m}");
    let m = load(&[("BORG_TIMEOUT", "soon")], Overrides::default());
    assert!(
        m.starts_with("env BORG_TIMEOUT: run.timeout = \"soon\": not a duration"),
        "{m}"
    );
    let m = load(&[("IS_SANDBOX", "maybe")], Overrides::default());
    assert!(m.starts_with("env IS_SANDBOX: "), "{m}");
    let m = load(
        &[],
        Overrides {
            concurrency: Some(0),
            ..Default::default()
        },
    );
    assert!(m.starts_with("--concurrency: "), "{m}");
    let m = load(
        &[],
        Overrides {
            budget_usd: Some(-1.0),
            ..Default::default()
        },
    );
    assert!(m.starts_with("--budget-usd: "), "{m}");
    let m = load(
        &[],
        Overrides {
            timeout: Some(Duration::ZERO),
            ..Default::default()
        },
    );
    assert!(m.starts_with("--timeout: "), "{m}");

    std::fs::write(dir.path().join(".env"), "A=1\nBORG_CONCURRENCY=0\n").unwrap();
    let m = load(&[], Overrides::default());
    assert!(m.starts_with(".env:2 BORG_CONCURRENCY: "), "{m}");
    std::fs::write(dir.path().join(".env"), "A=1\nthis is not an assignment\n").unwrap();
    let e = load_env(&[], dir.path()).unwrap_err();
    assert!(matches!(e, ConfigError::Parse { line: 2, .. }), "{e}");
}

/// The shipped config.toml documents every setting with its default: as shipped it
/// gives exactly the defaults, and with every line uncommented it still does (for the
/// settings that have a default) and every documented key is a real one.
#[test]
fn shipped_config_toml_is_the_defaults() {
    let path = repo_file("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut s = Settings::from_config_str(Path::new("config.toml"), &text).unwrap();
    s.paths.config_file = None;
    assert_eq!(json(&s), json(&Settings::default()));

    let key = regex::Regex::new(r"^# ?((\[[a-z_.]+\])|([A-Za-z_]+ = .*))$").unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| match key.captures(l) {
            Some(c) => c[1].to_string(),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut all = Settings::from_config_str(Path::new("config.toml"), &uncommented).unwrap();
    // The settings without a default are shown with examples; all must be there.
    assert!(all.paths.template.is_some());
    assert!(all.claude.path.is_some());
    assert!(all.claude.model.is_some());
    assert!(all.claude.max_turns.is_some());
    assert!(all.claude.max_budget_usd.is_some());
    assert!(!all.claude.allowed_tools.is_empty());
    assert!(!all.claude.disallowed_tools.is_empty());
    assert!(!all.claude.extra_args.is_empty());
    assert!(!all.claude.env.is_empty());
    assert!(all.run.budget_usd.is_some());
    assert!(all.verify.commands.is_some());
    assert!(all.verify.junit.is_some());
    assert!(all.verify.review_role.is_some());
    assert!(all
        .roles
        .get("developer")
        .and_then(|r| r.max_instances)
        .is_some());
    all.paths.template = None;
    all.paths.config_file = None;
    all.claude.path = None;
    all.claude.model = None;
    all.claude.max_turns = None;
    all.claude.max_budget_usd = None;
    all.claude.allowed_tools.clear();
    all.claude.disallowed_tools.clear();
    all.claude.extra_args.clear();
    all.claude.env.clear();
    all.run.budget_usd = None;
    all.verify.commands = None;
    all.verify.junit = None;
    all.verify.review_role = None;
    all.roles.clear();
    assert_eq!(json(&all), json(&Settings::default()));
}

#[test]
fn env_example_lists_every_known_variable() {
    let text = std::fs::read_to_string(repo_file(".env.example")).unwrap();
    let listed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim_start_matches('#').trim().split_once('='))
        .map(|(k, _)| k.trim())
        .collect();
    for v in Settings::known_variables() {
        assert!(listed.contains(v), "{v} is not in .env.example");
    }
    for v in [
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "CLAUDE_CODE_MAX_RETRIES",
        "API_TIMEOUT_MS",
        "IS_SANDBOX",
        "BORG_LOG",
        "NO_COLOR",
    ] {
        assert!(listed.contains(&v), "{v} is not in .env.example");
    }
    // As a .env file it must parse (everything is commented out).
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo_file(".env.example"), dir.path().join(".env")).unwrap();
    load_env(&[], dir.path()).unwrap();
}

/// A PostgreSQL URL is kept as written from every layer (never taken as a path relative
/// to the folder), `[store] url` beats `[paths] store`, and the password is never in
/// the settings as shown.
#[test]
fn store_urls_from_flag_env_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let url = "postgres://borg:s3cret@db.example:5432/borg";
    let s = load_env(&[("BORG_STORE", url)], d).unwrap();
    assert_eq!(s.paths.store, PathBuf::from(url));
    assert!(!json(&s).to_string().contains("s3cret"), "{}", json(&s));
    assert!(json(&s)
        .to_string()
        .contains("postgres://borg:***@db.example:5432/borg"));
    let over = Overrides {
        store: Some(PathBuf::from("postgresql://h/other")),
        ..Default::default()
    };
    let s = load_flags(&over, d).unwrap();
    assert_eq!(s.paths.store, PathBuf::from("postgresql://h/other"));
    std::fs::write(
        d.join("config.toml"),
        "[paths]\nstore = \"local.db\"\n[store]\nurl = \"postgres://borg@db/borg\"\n",
    )
    .unwrap();
    let s = load_env(&[], d).unwrap();
    assert_eq!(s.paths.store, PathBuf::from("postgres://borg@db/borg"));
    std::fs::write(d.join("config.toml"), "[store]\nurl = \"state/b.db\"\n").unwrap();
    let s = load_env(&[], d).unwrap();
    assert_eq!(s.paths.store, d.join("state/b.db"));
    std::fs::write(d.join("config.toml"), "[store]\nuri = \"x\"\n").unwrap();
    assert!(load_env(&[], d).is_err(), "a misspelt key is refused");
}
