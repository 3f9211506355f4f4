//! The dashboard in a real browser: Debian's headless Chromium, driven over WebDriver
//! (chromedriver on loopback, the `fantoccini` client), opens the dashboard of a live
//! `borg run --serve` with fake-claude children, sees the running task and its
//! progress change, clicks Accept on a handoff that waits for a person, and sees the
//! handoff's task run. It saves screenshots (1280×800 and a phone width) and checks
//! the page does not overflow a phone's width.
//!
//! Needs `chromium` and `chromium-driver` (`.ci/run` installs them with
//! `scripts/install-test-tools.sh`). Without them the test says so loudly and passes;
//! with `BORG_REQUIRE_BROWSER=1` or `CI=true` it fails.

mod common;
mod serve_util;

use common::{wait_until, Sandbox};
use fantoccini::{ClientBuilder, Locator};
use serde_json::json;
use serve_util::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver, started by us and stopped by pid.
struct Driver(Child, String);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new(DRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let ok = wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(ok, "chromedriver did not listen on {url}");
    Driver(child, url)
}

fn browser_missing() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(DRIVER).exists() {
        return false;
    }
    let required = std::env::var("BORG_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !required,
        "{CHROMIUM} or {DRIVER} is missing: apt-get install -y chromium chromium-driver"
    );
    eprintln!("\n*** SKIPPED: the browser test needs {CHROMIUM} and {DRIVER} (apt-get install -y chromium chromium-driver) ***\n");
    true
}

/// Where screenshots go: `BORG_SCREENSHOT_DIR`, else target/screenshots.
fn shots() -> PathBuf {
    let d = std::env::var_os("BORG_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            common::borg_bin()
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("screenshots")
        });
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn text_of(c: &fantoccini::Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    if browser_missing() {
        return;
    }
    let sb = Sandbox::new();
    let cfg = std::fs::read_to_string(sb.path().join("config.toml")).unwrap();
    sb.write(
        "config.toml",
        &format!("{cfg}\n[handoff]\napproval = \"person\"\n"),
    );
    let u = format!("{}", std::process::id());
    let (long, short) = (format!("long-{u}"), format!("short-{u}"));
    let follow = format!("{short}.tester-1");
    // The agent uses borg's MCP tools too: a lease, a decision, a message, progress.
    let coord = "#fake mcp lock_files '{\"paths\":[\"notes/\"],\"reason\":\"writing the notes\"}'\n\
                 #fake mcp log_decision '{\"category\":\"docs\",\"title\":\"Notes in markdown\",\"description\":\"one file per step\"}'\n\
                 #fake mcp send_message '{\"to\":\"all\",\"body\":\"hello fleet\"}'\n";
    let steps = (1..=8)
        .map(|i| format!("#fake text step {i} of 8\n#fake mcp report_progress '{{\"percent\":{},\"step\":\"note {i}\"}}'\n#fake write notes/{i}.md \"note {i}\"\n#fake sleep 900\n", i * 12))
        .collect::<String>();
    let steps = format!("{coord}{steps}");
    let list = format!(
        "[[task]]\nid = \"{long}\"\nprompt = '''\n{steps}'''\n\n[[task]]\nid = \"{short}\"\nprompt = \"#fake text short done\"\nhandoff_to = \"tester\"\n"
    );
    let file = sb.write("tasks.toml", &list);
    let mut cmd = sb.run_cmd(&file, &["--serve=127.0.0.1:0"]);
    cmd.stdin(Stdio::null());
    let run = Server::spawn(cmd);
    let driver = start_driver();
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1280,800",
                     format!("--user-data-dir={}", profile.path().display())]
        }
    });
    let conn = hyper_util::client::legacy::connect::HttpConnector::new();
    let c = ClientBuilder::new(conn)
        .capabilities(caps.as_object().unwrap().clone())
        .connect(&driver.1)
        .await
        .expect("a WebDriver session");
    c.goto(&run.base).await.unwrap();

    // The running task, and its progress changing (log tail, turns, the time bar).
    let row = format!("tr[data-task=\"{long}\"]");
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(&row))
        .await
        .expect("the running task");
    let tail = format!("pre[data-tail=\"{long}\"]");
    let first_tail = wait_for_text(&c, &tail, |t| t.contains("step ")).await;
    let later = wait_for_text(&c, &tail, |t| t.len() > first_tail.len()).await;
    assert!(
        later.starts_with(first_tail.trim_end()),
        "the tail grows: {later}"
    );
    assert!(
        c.find(Locator::Css(&format!("{row} .bar[data-pct]")))
            .await
            .is_ok(),
        "a progress bar"
    );
    let live = text_of(&c, "#live").await;
    assert_eq!(live, "live", "the event stream is connected");
    // Its agent's reported progress, and the coordination panels.
    let bar = format!("{row} .bar");
    let first_bar = wait_for_text(&c, &bar, |t| t.contains("% note")).await;
    wait_for_text(&c, &bar, |t| t.contains('%') && t != first_bar).await;
    wait_for_text(&c, "#leases", |t| t.contains("notes/")).await;
    wait_for_text(&c, "#decisions", |t| t.contains("Notes in markdown")).await;
    wait_for_text(&c, "#messages", |t| t.contains("hello fleet")).await;

    // The handoff waits for a person: Accept it in the page.
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#handoffs button[data-accept]"))
        .await
        .expect("an Accept button");
    let handoffs = text_of(&c, "#handoffs").await;
    assert!(handoffs.contains(&follow), "{handoffs}");
    assert!(!started(&sb, &follow), "it must wait for the Accept");
    std::fs::write(
        shots().join("dashboard-1280x800.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
    click_fresh(&c, "#handoffs button[data-accept]").await;
    assert!(
        wait_until(Duration::from_secs(20), || started(&sb, &follow)),
        "the accepted handoff's task did not run"
    );
    let done = "dd[data-queue=\"done\"]";
    let t0 = Instant::now();
    while !text_of(&c, done).await.contains(&follow) {
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "the dashboard never showed {follow} done"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A phone's width: nothing wider than the screen.
    c.set_window_size(390, 844).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(
        shots().join("dashboard-phone.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
    let fits = c
        .execute(
            "var w = window.innerWidth, wide = [];
             document.querySelectorAll('body *').forEach(function (e) {
               var r = e.getBoundingClientRect();
               if (r.right > w + 1 && !e.closest('.scroll') && !e.closest('pre')) { wide.push(e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(r.right)); }
             });
             return [document.documentElement.scrollWidth <= w + 1, wide.slice(0, 5)];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        fits[0],
        json!(true),
        "the page overflows a phone's width: {fits}"
    );
    c.close().await.unwrap();
    drop(driver);

    let mut run = run;
    let ok = wait_until(Duration::from_secs(60), || {
        run.child.try_wait().ok().flatten().is_some()
    });
    assert!(ok, "the run did not finish: {}", run.stderr());
    assert_eq!(
        run.child.wait().unwrap().code(),
        Some(0),
        "{}",
        run.stderr()
    );
}

/// Clicks the element `css` finds now: the panels are rendered again on every event,
/// so an element found a moment ago may be gone (stale); find it again then.
async fn click_fresh(c: &fantoccini::Client, css: &str) {
    let t0 = Instant::now();
    loop {
        match c.find(Locator::Css(css)).await {
            Ok(e) => match e.click().await {
                Ok(_) => return,
                Err(err) => assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "cannot click {css}: {err}"
                ),
            },
            Err(err) => assert!(t0.elapsed() < Duration::from_secs(10), "no {css}: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the element's text passes `ok`; returns it.
async fn wait_for_text(c: &fantoccini::Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let t = text_of(c, css).await;
        if ok(&t) {
            return t;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{css} never matched; last text: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}
