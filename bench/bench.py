#!/usr/bin/env python3
"""borg's bench harness: the figures of the Performance section.

Run it through bench/run.sh (which builds the release binaries first):

    bench/run.sh                 # every bench, full size, median of 5 runs
    bench/run.sh --smoke         # tiny sizes, 1 run: checks the harness works (CI)
    bench/run.sh dispatch parse  # only some benches
    bench/run.sh --runs 3 --dir /var/tmp/borg-bench

Figures are ratios measured side by side in one run (machines are noisy), with
the absolute numbers next to them. Nothing here asserts a time: the targets are
printed next to the figures, and the exit status only says whether the benches ran.

Only the Python standard library is used.
"""

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 1_000_000
MIB = 1024 * 1024


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Env:
    """Paths and sizes shared by the benches."""

    def __init__(self, args):
        self.smoke = args.smoke
        self.runs = args.runs or (1 if args.smoke else 5)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        self.borg = args.borg or os.path.join(target, "release", "borg")
        self.fake = args.fake or os.path.join(target, "release", "fake-claude")
        for b in (self.borg, self.fake):
            if not os.access(b, os.X_OK):
                sys.exit(f"bench: {b} is missing; run `cargo build --release` first (bench/run.sh does)")
        base = args.dir or os.environ.get("BORG_BENCH_DIR") or tempfile.gettempdir()
        os.makedirs(base, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="borg-bench-", dir=base)
        self.keep = args.keep
        self.results = []

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def cleanup(self):
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def record(self, bench, figure, value, unit, target="", compared=""):
        self.results.append(
            {"bench": bench, "figure": figure, "value": value, "unit": unit,
             "target": target, "compared_with": compared}
        )
        log(f"  {figure}: {fmt(value)} {unit}  {('(target ' + target + ')') if target else ''}")


def fmt(v):
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def timed(cmd, **kw):
    """Wall time of one command (stdout/stderr discarded unless given)."""
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.DEVNULL)
    t = time.perf_counter()
    r = subprocess.run(cmd, **kw)
    dt = time.perf_counter() - t
    return dt, r.returncode


def timed_cpu(cmd):
    """Wall time and CPU time (user + system, the whole process tree: every process is
    waited for by its parent) of one command, output discarded."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t, ru.ru_utime + ru.ru_stime, p.returncode


def write_config(path, run=None, env=None):
    lines = ["[run]"]
    for k, v in (run or {}).items():
        lines.append(f"{k} = {json.dumps(v)}")
    if env:
        lines.append("[claude.env]")
        for k, v in env.items():
            lines.append(f"{k} = {json.dumps(v)}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def toml_str(s):
    return json.dumps(s)


def write_tasks(path, tasks):
    """tasks: list of dicts with id, prompt, and optional depends_on/timeout/priority."""
    with open(path, "w") as f:
        for t in tasks:
            f.write("[[task]]\n")
            f.write(f"id = {toml_str(t['id'])}\n")
            f.write(f"role = {toml_str(t.get('role', 'developer'))}\n")
            if t.get("priority") is not None:
                f.write(f"priority = {t['priority']}\n")
            if t.get("timeout"):
                f.write(f"timeout = {toml_str(t['timeout'])}\n")
            if t.get("depends_on"):
                f.write("depends_on = [" + ", ".join(toml_str(d) for d in t["depends_on"]) + "]\n")
            f.write(f"prompt = {toml_str(t['prompt'])}\n\n")


def borg_cmd(env, ws, config, *rest):
    return [env.borg, "--config", config, "--workspaces", ws, *rest]


# ---------------------------------------------------------------------------
# 1. Dispatch overhead
# ---------------------------------------------------------------------------

def bench_dispatch(env):
    n = 40 if env.smoke else 400
    conc = 8
    log(f"[dispatch] {n} instant tasks at concurrency {conc}, {env.runs} run(s) each side")
    d = env.path("dispatch")
    os.makedirs(d)
    config = os.path.join(d, "config.toml")
    write_config(config, {"concurrency": conc})
    # The same run without coordination (no `borg mcp` per child, no hooks): what the
    # MCP server and hooks every child gets cost at dispatch.
    no_coord = os.path.join(d, "config-no-coord.toml")
    write_config(no_coord, {"concurrency": conc})
    with open(no_coord, "a") as f:
        f.write("[coord]\nenabled = false\n")
    tasks = os.path.join(d, "tasks.toml")
    write_tasks(tasks, [{"id": f"t{i:04d}", "prompt": "#fake instant\n"} for i in range(n)])

    # The exact stdin borg gives a child: capture it once from a non-instant run
    # (fake-claude records every prompt it reads in its state dir).
    state = os.path.join(d, "state")
    cap_cfg = os.path.join(d, "capture.toml")
    write_config(cap_cfg, {"concurrency": 1}, {"FAKE_CLAUDE_STATE_DIR": state})
    cap_tasks = os.path.join(d, "capture-tasks.toml")
    write_tasks(cap_tasks, [{"id": "t0000", "prompt": "#fake instant\n"}])
    # `instant` as the first step skips the state dir: prepend a no-op step.
    write_tasks(cap_tasks, [{"id": "t0000", "prompt": "#fake sleep 0\n#fake instant\n"}])
    subprocess.run(borg_cmd(env, os.path.join(d, "ws-capture"), cap_cfg, "run", cap_tasks,
                            "--claude", env.fake, "--progress", "none"),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prompt = os.path.join(d, "prompt.txt")
    found = None
    for root, _, files in os.walk(state):
        if "prompt.1.txt" in files:
            found = os.path.join(root, "prompt.1.txt")
    if found:
        with open(found) as f:
            text = f.read().replace("#fake sleep 0\n", "")
    else:
        log("  (could not capture borg's prompt; using the task prompt alone)")
        text = "#fake instant\n"
    with open(prompt, "w") as f:
        f.write(text)
    fake_args = "-p --output-format stream-json --verbose"
    # xargs pays one intermediate exec per child (`sh -c 'exec …'`, needed to give each
    # child its own stdin redirection); borg pays none: its one reaper posix_spawns
    # every child.
    xargs = ["sh", "-c",
             f"seq {n} | xargs -P {conc} -I{{}} sh -c 'exec \"$0\" {fake_args} < \"$1\" > /dev/null' "
             f"{env.fake} {prompt}"]

    # Workspaces are removed only after every run: deleting thousands of files just
    # before a run makes the next file creations slow on some filesystems (ext4 without
    # a journal scans its recently deleted inodes on every create), which would charge
    # the harness's own cleanup to borg.
    spent = []

    cpu = {"borg": [], "xargs": []}

    def borg_once(where, cfg=config):
        ws = os.path.join(where, f"ws-{random.getrandbits(32):08x}")
        dt, c, rc = timed_cpu(borg_cmd(env, ws, cfg, "run", tasks, "--claude", env.fake,
                                       "--progress", "none"))
        if rc != 0:
            raise SystemExit(f"bench: borg run failed (exit {rc}) in {ws}")
        spent.append(ws)
        if where == d and cfg == config:
            cpu["borg"].append(c)
        return dt

    def xargs_once():
        dt, c, _ = timed_cpu(xargs)
        cpu["xargs"].append(c)
        return dt

    # What creating a file costs in the scratch folder: borg creates two log files per
    # attempt, and on some filesystems (ext4 without a journal, after many deletions in
    # the same block group) a create costs half a millisecond or more. Kept until the
    # end, like the workspaces, so that measuring it adds no deletions.
    probe = os.path.join(d, "create-probe")
    os.makedirs(probe)
    t = time.perf_counter()
    for i in range(400):
        open(os.path.join(probe, f"f{i}"), "a").close()
    create_us = (time.perf_counter() - t) / 400 * 1e6
    env.record("dispatch", "file create in the scratch folder", create_us, "us", "",
               "borg creates 2 log files per attempt")
    if create_us > 200:
        log(f"  warning: creating a file in {d} costs {create_us:.0f} us; dispatch figures on this "
            "folder are dominated by the filesystem (choose another with --dir)")

    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    t_borg, t_xargs, t_shm, t_off = [], [], [], []
    borg_once(d)  # warm-up: page cache, binary
    for _ in range(env.runs):
        t_xargs.append(xargs_once())
        t_borg.append(borg_once(d))
        t_off.append(borg_once(d, no_coord))
        if shm:
            where = tempfile.mkdtemp(prefix="borg-bench-", dir=shm)
            t_shm.append(borg_once(where))
            spent.append(where)
    for ws in spent:
        shutil.rmtree(ws, ignore_errors=True)
    mb, mx = statistics.median(t_borg), statistics.median(t_xargs)
    env.record("dispatch", "borg run wall time", mb, "s")
    env.record("dispatch", "xargs -P 8 wall time", mx, "s")
    env.record("dispatch", "dispatch overhead (borg / xargs)", mb / mx, "x", "<= 1.3",
               "xargs -P 8 + sh -c exec, same fake-claude, same stdin")
    env.record("dispatch", "per-task overhead (borg - xargs) / tasks", (mb - mx) / n * 1000, "ms")
    cb, cx = statistics.median(cpu["borg"][1:] or cpu["borg"]), statistics.median(cpu["xargs"])
    env.record("dispatch", "CPU time, whole process tree (borg / xargs)", cb / cx, "x", "",
               f"{cb:.3f} s vs {cx:.3f} s: not inflated by other load the way wall time is")
    mo = statistics.median(t_off)
    env.record("dispatch", "comparison: [coord] enabled = false, borg / xargs", mo / mx, "x", "",
               "no borg mcp and no hooks per child")
    env.record("dispatch", "coordination's share per task (on - off) / tasks", (mb - mo) / n * 1000, "ms")
    if t_shm:
        m = statistics.median(t_shm)
        env.record("dispatch", "comparison: store on tmpfs (/dev/shm), borg / xargs", m / mx, "x", "",
                   "not durable: only shows the disk's share")


def bench_scale(env):
    """Per-task cost of a long list against a short one: the scheduler, the store and the
    instances' session files must not make a run quadratic. The store also holds a task
    of another list, so the run is scoped (claims filter by the run's own tasks)."""
    small, big = (20, 200) if env.smoke else (400, 4000)
    runs = 1 if env.smoke else min(env.runs, 3)
    log(f"[scale] {small} vs {big} instant tasks at concurrency 8, scoped run, {runs} run(s) each")
    d = env.path("scale")
    os.makedirs(d)
    config = os.path.join(d, "config.toml")
    write_config(config, {"concurrency": 8})
    other = os.path.join(d, "other.toml")
    write_tasks(other, [{"id": "zz-other-list", "prompt": "#fake instant\n"}])

    def per_task(n):
        tasks = os.path.join(d, f"tasks-{n}.toml")
        write_tasks(tasks, [{"id": f"t{i:05d}", "prompt": "#fake instant\n"} for i in range(n)])
        times = []
        for _ in range(runs):
            ws = os.path.join(d, f"ws-{random.getrandbits(32):08x}")
            subprocess.run(borg_cmd(env, ws, config, "run", other, "--claude", env.fake,
                                    "--progress", "none"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            dt, rc = timed(borg_cmd(env, ws, config, "run", tasks, "--claude", env.fake,
                                    "--progress", "none"))
            if rc != 0:
                raise SystemExit(f"bench: borg run failed (exit {rc}) in {ws}")
            times.append(dt / n * 1000)
        return statistics.median(times)

    a, b = per_task(small), per_task(big)
    env.record("scale", f"per task, {small} tasks", a, "ms")
    env.record("scale", f"per task, {big} tasks", b, "ms")
    env.record("scale", f"per-task cost growth ({big} / {small} tasks)", b / a, "x", "~1 (linear)")


# ---------------------------------------------------------------------------
# 2. Transcript parsing
# ---------------------------------------------------------------------------

WORDS = ("the of and to in is that for it as with was on be by this are from or have an not "
         "function return value error test file module struct impl match some none result "
         "borg claude task attempt store commit parse line json stream").split()


def words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def gen_transcript(path, size, seed=7):
    """A stream-json transcript with the real CLI's shapes: init, assistant text and
    tool_use lines, user tool_result lines (Read with file contents, Bash with test
    output, Write/Edit), rate-limit events, and a final result."""
    rng = random.Random(seed)
    sid = "dcfa7e2c-25cd-4e07-90af-a907c043962b"
    cwd = "/home/dev/project"
    out = open(path, "w")
    written = 0

    def emit(obj):
        nonlocal written
        s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"
        out.write(s)
        written += len(s.encode())

    emit({"type": "system", "subtype": "init", "cwd": cwd, "session_id": sid,
          "tools": ["Task", "Bash", "Edit", "Read", "Write", "WebFetch"], "mcp_servers": [],
          "model": "claude-opus-4-8", "permissionMode": "bypassPermissions",
          "claude_code_version": "2.1.197", "uuid": "00000000-0000-0000-0000-000000000000"})
    usage = {"input_tokens": 1000, "output_tokens": 100, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0}
    turn = 0

    def assistant(content):
        emit({"type": "assistant", "message": {"id": f"msg_{turn:08d}", "type": "message",
              "role": "assistant", "model": "claude-opus-4-8", "content": content,
              "stop_reason": None, "stop_sequence": None, "usage": usage,
              "context_management": None}, "parent_tool_use_id": None, "session_id": sid,
              "uuid": f"{rng.getrandbits(128):032x}", "request_id": f"req_{turn:08d}"})

    def tool_result(tid, content, extra, is_error=False):
        emit({"type": "user", "message": {"role": "user", "content": [
              {"tool_use_id": tid, "type": "tool_result", "content": content,
               "is_error": is_error}]}, "parent_tool_use_id": None, "session_id": sid,
              "uuid": f"{rng.getrandbits(128):032x}", "timestamp": "2026-11-21T19:52:59.156Z",
              "tool_use_result": extra})

    while written < size:
        turn += 1
        tid = f"toolu_{turn:08d}"
        k = rng.random()
        path_ = f"{cwd}/src/mod{rng.randrange(200)}/file{rng.randrange(50)}.rs"
        if k < 0.25:
            assistant([{"type": "text", "text": words(rng, rng.randrange(10, 120))}])
        elif k < 0.50:
            body = "\n".join(f"{i + 1}\t{words(rng, rng.randrange(2, 14))}"
                             for i in range(rng.randrange(20, 400)))
            assistant([{"type": "tool_use", "id": tid, "name": "Read", "input": {"file_path": path_}}])
            tool_result(tid, body, {"type": "text", "file": {"filePath": path_, "content": body,
                                    "numLines": body.count("\n") + 1, "startLine": 1}})
        elif k < 0.70:
            cmd = rng.choice(["cargo test", "pytest -q", "go test ./...", "npm test"])
            lines = [words(rng, rng.randrange(3, 12)) for _ in range(rng.randrange(5, 150))]
            p, f_ = rng.randrange(0, 300), rng.randrange(0, 3)
            if cmd == "cargo test":
                lines.append(f"test result: {'ok' if f_ == 0 else 'FAILED'}. {p} passed; {f_} failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.52s")
            else:
                lines.append(f"{p} passed, {f_} failed in 1.2s")
            text = "\n".join(lines)
            assistant([{"type": "tool_use", "id": tid, "name": "Bash",
                        "input": {"command": cmd, "description": "Run the tests"}}])
            tool_result(tid, text, {"stdout": text, "stderr": "", "interrupted": False,
                                    "isImage": False}, is_error=f_ > 0)
        elif k < 0.85:
            body = "\n".join(words(rng, rng.randrange(2, 14)) for _ in range(rng.randrange(5, 200)))
            assistant([{"type": "tool_use", "id": tid, "name": "Write",
                        "input": {"file_path": path_, "content": body}}])
            tool_result(tid, f"File created successfully at: {path_}",
                        {"type": "create", "filePath": path_, "content": body,
                         "structuredPatch": [], "originalFile": None})
        else:
            old, new = words(rng, 6), words(rng, 8)
            assistant([{"type": "text", "text": "Fixing it."},
                       {"type": "tool_use", "id": tid, "name": "Edit",
                        "input": {"file_path": path_, "old_string": old, "new_string": new}}])
            tool_result(tid, f"The file {path_} has been updated successfully.",
                        {"filePath": path_, "oldString": old, "newString": new,
                         "structuredPatch": [{"oldStart": 1, "oldLines": 1, "newStart": 1,
                                              "newLines": 1, "lines": ["-" + old, "+" + new]}]})
        if turn % 500 == 0:
            emit({"type": "rate_limit_event", "rate_limit_info": {"status": "allowed",
                  "resetsAt": 1800000000, "rateLimitType": "five_hour"}, "session_id": sid,
                  "uuid": f"{rng.getrandbits(128):032x}"})
    emit({"type": "result", "subtype": "success", "is_error": False, "duration_ms": 1282,
          "duration_api_ms": 525, "num_turns": turn, "result": "Done.", "session_id": sid,
          "total_cost_usd": 0.0075 * turn, "usage": usage})
    out.close()
    return written


PY_LOOP = r"""
import json, sys
n = 0
with open(sys.argv[1], 'rb') as f:
    for line in f:
        json.loads(line)
        n += 1
print(n)
"""


def bench_parse(env):
    size = 4 * MB if env.smoke else 200 * MB
    path = env.path("transcript.jsonl")
    log(f"[parse] generating a {size // MB} MB stream-json transcript")
    real = gen_transcript(path, size)
    subprocess.run([env.borg, "transcript", path, "--json"], stdout=subprocess.DEVNULL)  # warm cache
    t_borg, t_py = [], []
    for _ in range(env.runs):
        dt, rc = timed([env.borg, "transcript", path, "--json"])
        if rc != 0:
            raise SystemExit(f"bench: borg transcript failed (exit {rc})")
        t_borg.append(dt)
        t_py.append(timed([sys.executable, "-c", PY_LOOP, path])[0])
    mb, mp = statistics.median(t_borg), statistics.median(t_py)
    out = subprocess.run([env.borg, "transcript", path, "--json"], capture_output=True, text=True)
    s = json.loads(out.stdout)
    if s.get("bad_lines"):
        raise SystemExit("bench: the generated transcript has bad lines")
    env.record("parse", "transcript size", real / MB, "MB")
    env.record("parse", "borg transcript throughput", real / MB / mb, "MB/s", ">= 300")
    env.record("parse", "python json.loads loop throughput", real / MB / mp, "MB/s")
    env.record("parse", "borg / python", mp / mb, "x", "", "python3 json.loads per line")


# ---------------------------------------------------------------------------
# 3. Memory
# ---------------------------------------------------------------------------

def peak_rss_of(cmd, **kw):
    """Runs cmd, polling /proc/PID/status; returns (peak VmHWM in bytes, wall, rc)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    peak = 0
    status = f"/proc/{p.pid}/status"
    while p.poll() is None:
        try:
            with open(status) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        time.sleep(0.01)
    return peak, time.perf_counter() - t, p.returncode


def proc_stat(pid):
    """(ppid, utime + stime in clock ticks, comm) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    rest = text[text.rindex(")") + 2:].split()
    return int(rest[1]), int(rest[11]) + int(rest[12]), comm


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def descendants(root):
    kids = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st:
                kids.setdefault(st[0], []).append(int(name))
    out, stack = [], [root]
    while stack:
        for c in kids.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def ctx_switches(pid):
    """Voluntary + involuntary context switches of every thread of a process: each
    voluntary one is a wakeup after a sleep."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def bench_serve_idle(env):
    """`borg serve` with nothing happening and one SSE client: its wakeups (context
    switches of all its threads) and CPU over the window; then how soon the client gets
    an event another process wrote (`borg task retry` returning -> the SSE line)."""
    import socket
    window = 3.0 if env.smoke else 10.0
    log(f"[serveidle] borg serve idle for {window:.0f} s, then 5 events from another process")
    d = env.path("serveidle")
    os.makedirs(d)
    config = os.path.join(d, "config.toml")
    write_config(config, {"concurrency": 1})
    tasks = os.path.join(d, "tasks.toml")
    write_tasks(tasks, [{"id": "t0", "prompt": "#fake instant\n"}])
    ws = os.path.join(d, "ws")
    subprocess.run(borg_cmd(env, ws, config, "run", tasks, "--claude", env.fake, "--progress", "none"),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(borg_cmd(env, ws, config, "serve", "--listen", f"127.0.0.1:{port}"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    delays = []
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                http_json("GET", f"http://127.0.0.1:{port}/health")
                break
            except OSError:
                time.sleep(0.05)
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        time.sleep(1.0)
        ctx0, (_, cpu0), t0 = ctx_switches(proc.pid), proc_rss_cpu(proc.pid), time.time()
        time.sleep(window)
        ctx1, (_, cpu1), dt = ctx_switches(proc.pid), proc_rss_cpu(proc.pid), time.time() - t0
        client.settimeout(5)
        for _ in range(5):
            subprocess.run(borg_cmd(env, ws, config, "task", "retry", "t0"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            t = time.perf_counter()
            buf = b""
            while b"event: retry-requested" not in buf:
                buf = buf[-64:] + client.recv(65536)
            delays.append((time.perf_counter() - t) * 1000)
            time.sleep(0.3)
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    env.record("serveidle", "borg serve idle, 1 SSE client: wakeups (context switches)", (ctx1 - ctx0) / dt, "/s")
    env.record("serveidle", "borg serve idle: CPU", 100.0 * (cpu1 - cpu0) / dt, "% core")
    env.record("serveidle", "event written by another process -> SSE client: median", statistics.median(delays), "ms")
    env.record("serveidle", "the same: max of 5", max(delays), "ms")


def mcp_env(d, i):
    """The environment borg gives a child's `borg mcp` (an attempt on store `d`)."""
    coord = {"root": d, "role": "dev", "auto_lock": True, "on_violation": "warn",
             "lease_ttl_ms": 60000, "claim_lease_ms": 60000, "max_agent_tasks": 10,
             "writable": [], "roles": ["dev"], "retries": 0, "started_ms": 0, "protect": []}
    env = {k: v for k, v in os.environ.items() if not k.startswith("BORG_")}
    env.update({"BORG_STORE": os.path.join(d, "borg.db"), "BORG_TASK_ID": f"m{i:02d}",
                "BORG_CLAIM_TOKEN": "1", "BORG_INSTANCE_ID": f"i{i:02d}",
                "BORG_COORD": json.dumps(coord)})
    return env


def mcp_handshake(p, rid, method, params):
    p.stdin.write(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}) + "\n")
    p.stdin.flush()
    return json.loads(p.stdout.readline())


def bench_mcp(env):
    """What coordination's MCP server costs each child: `borg mcp` started as claude
    starts it, from spawn to the answer of `initialize` and of `tools/list` (the CLI
    waits for both before the first model request), and the RSS of 64 of them alive
    after the handshake (a session that calls no tool)."""
    n = 8 if env.smoke else 64
    log(f"[mcp] {n} borg mcp servers: handshake time and RSS")
    d = env.path("mcp")
    os.makedirs(d)
    init = {"protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "claude-code", "version": "2.1.197"}}
    procs, t_init, t_list = [], [], []
    try:
        for i in range(n):
            t = time.perf_counter()
            p = subprocess.Popen([env.borg, "mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True, env=mcp_env(d, i))
            procs.append(p)
            r = mcp_handshake(p, 1, "initialize", init)
            t_init.append(time.perf_counter() - t)
            if "result" not in r:
                raise SystemExit(f"bench: borg mcp did not initialize: {r}")
            p.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
            mcp_handshake(p, 2, "tools/list", {})
            t_list.append(time.perf_counter() - t)
        time.sleep(0.5)
        rss = sum(rss_kib(p.pid) for p in procs)
        pss = sum(rollup_kib(p.pid, "Pss:") for p in procs)
        anon = sum(rollup_kib(p.pid, "Pss_Anon:") for p in procs)
        threads = statistics.median(threads_of(p.pid) for p in procs)
    finally:
        cpu = []
        for p in procs:
            p.stdin.close()
        for p in procs:
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            cpu.append(ru.ru_utime + ru.ru_stime)
    env.record("mcp", "spawn -> initialize answered", statistics.median(t_init) * 1000, "ms")
    env.record("mcp", "CPU time of one borg mcp, start to exit (no tool call)", statistics.median(cpu) * 1000, "ms",
               "", "not inflated by other load the way wall time is")
    env.record("mcp", "spawn -> tools/list answered", statistics.median(t_list) * 1000, "ms")
    env.record("mcp", f"RSS of {n} borg mcp after the handshake", rss / 1024, "MiB", "",
               "a session that calls no tool")
    env.record("mcp", f"  their PSS (shared pages split between them)", pss / 1024, "MiB")
    env.record("mcp", f"  of which anonymous (heap, stacks)", anon / 1024, "MiB")
    env.record("mcp", "threads of one borg mcp", threads, "")


def rollup_kib(pid, key):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def threads_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def bench_idle(env):
    """64 children that sleep: what supervising them costs while nothing happens. The
    RSS of everything borg runs besides the children (the reaper), borg's own RSS, and
    the CPU of borg and the reaper over the window, sampled from /proc."""
    n, window = (8, 5.0) if env.smoke else (64, 60.0)
    sleep_ms = int((window + 20) * 1000)
    log(f"[idle] {n} children sleeping, sampled for {window:.0f} s")
    d = env.path("idle")
    os.makedirs(d)
    config = os.path.join(d, "config.toml")
    write_config(config, {"concurrency": n, "timeout": "10m", "idle_timeout": "10m"})
    tasks = os.path.join(d, "tasks.toml")
    write_tasks(tasks, [{"id": f"s{i:02d}", "prompt": f"#fake sleep {sleep_ms}\n"} for i in range(n)])
    ws = os.path.join(d, "ws")
    p = subprocess.Popen(borg_cmd(env, ws, config, "run", tasks, "--claude", env.fake,
                                  "--progress", "none"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fake = os.path.basename(env.fake)[:15]
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            kids = [c for c in descendants(p.pid) if (proc_stat(c) or (0, 0, ""))[2] == fake]
            if len(kids) >= n:
                break
            time.sleep(0.2)
        else:
            raise SystemExit("bench: the idle children did not all start")
        time.sleep(2)  # let the start-up settle (log files, store writes)
        tick = os.sysconf("SC_CLK_TCK")
        # What borg runs itself: its direct children (the reaper). The children's own
        # trees (fake-claude and the `borg mcp` each child starts for coordination)
        # hang below the reaper and are not supervision.
        helpers = lambda: [c for c in descendants(p.pid) if (proc_stat(c) or (-1,))[0] == p.pid]
        in_trees = lambda: [c for c in descendants(p.pid) if c not in helpers()
                            and (proc_stat(c) or (0, 0, fake))[2] != fake]
        cpu0 = {q: proc_stat(q)[1] for q in [p.pid] + helpers() if proc_stat(q)}
        ctx0, t0 = ctx_switches(p.pid), time.time()
        rss_helpers, rss_borg, rss_trees = 0, 0, 0
        while time.time() - t0 < window:
            rss_helpers = max(rss_helpers, sum(rss_kib(q) for q in helpers()))
            rss_borg = max(rss_borg, rss_kib(p.pid))
            rss_trees = max(rss_trees, sum(rss_kib(q) for q in in_trees()))
            time.sleep(min(1.0, window / 10))
        dt = time.time() - t0
        cpu1 = {q: proc_stat(q)[1] for q in cpu0 if proc_stat(q)}
        borg_cpu = (cpu1.get(p.pid, 0) - cpu0.get(p.pid, 0)) / tick
        helper_cpu = sum(cpu1[q] - cpu0[q] for q in cpu1 if q != p.pid) / tick
        ctx = (ctx_switches(p.pid) - ctx0) / dt
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    shutil.rmtree(ws, ignore_errors=True)
    env.record("idle", f"RSS of what borg runs besides the {n} children (the reaper)", rss_helpers / 1024, "MiB",
               "<= 32", "the old design: one 4.4 MB shim per child (283 MB for 64)")
    env.record("idle", "borg's own RSS", rss_borg / 1024, "MiB")
    env.record("idle", f"in the children's trees besides fake-claude (borg mcp per child)",
               rss_trees / 1024, "MiB", "", "coordination's MCP servers, started by each child")
    env.record("idle", "CPU of borg + reaper while the children sleep", (borg_cpu + helper_cpu) / dt * 100, "% core",
               "<= 1", f"{n} children, {dt:.0f} s window")
    env.record("idle", "  of which borg", borg_cpu / dt * 100, "% core")
    env.record("idle", "borg's context switches (wakeups) per second", ctx, "/s")


def bench_memory(env):
    n, size = (4, "2MiB") if env.smoke else (32, "50MiB")
    log(f"[memory] {n} children each writing {size} at once")
    d = env.path("memory")
    os.makedirs(d)
    config = os.path.join(d, "config.toml")
    write_config(config, {"concurrency": n})
    tasks = os.path.join(d, "tasks.toml")
    write_tasks(tasks, [{"id": f"f{i:02d}", "prompt": f"#fake flood {size}\n"} for i in range(n)])
    peaks, walls = [], []
    for r in range(env.runs):
        ws = os.path.join(d, f"ws{r}")
        peak, wall, rc = peak_rss_of(borg_cmd(env, ws, config, "run", tasks, "--claude", env.fake,
                                              "--progress", "none"))
        if rc != 0:
            raise SystemExit(f"bench: borg run (flood) failed (exit {rc}) in {ws}")
        logs = sum(os.path.getsize(os.path.join(root, f)) for root, _, fs in os.walk(ws)
                   for f in fs if f.endswith(".jsonl") or "stdout" in f)
        shutil.rmtree(ws, ignore_errors=True)
        peaks.append(peak)
        walls.append(wall)
    env.record("memory", "borg peak RSS", statistics.median(peaks) / MIB, "MiB", "<= 64",
               f"{n} children x {size} on stdout")
    env.record("memory", "throughput through borg (logs + parser)",
               n * parse_size(size) / MB / statistics.median(walls), "MB/s")


def parse_size(s):
    for suf, m in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if s.endswith(suf):
            return int(s[:-len(suf)]) * m
    return int(s)


# ---------------------------------------------------------------------------
# 4. Claims
# ---------------------------------------------------------------------------

def bench_claims(env):
    n = 200 if env.smoke else 4000
    log(f"[claims] {n} claim+complete cycles, 8 workers, SQLite store (WAL, synchronous=FULL)")
    exe = find_claims_bench()
    figs = {}
    for r in range(env.runs):
        d = env.path(f"claims{r}")
        os.makedirs(d)
        e = dict(os.environ, BORG_BENCH_CLAIMS=str(n), BORG_BENCH_DIR=d)
        out = subprocess.run([exe, "--exact", "claims_latency", "--nocapture", "--test-threads=1"],
                             env=e, capture_output=True, text=True)
        lines = [l for l in out.stdout.splitlines() if "BENCH claims " in l]
        if out.returncode != 0 or not lines:
            raise SystemExit(f"bench: the claims bench failed:\n{out.stdout}\n{out.stderr}")
        for l in lines:
            fig = json.loads(l.split("BENCH claims ", 1)[1])
            figs.setdefault(fig["mode"], []).append(fig)
        shutil.rmtree(d, ignore_errors=True)
    for mode, what in (("one-store", "one borg, 8 workers on its store"),
                       ("8-connections", "8 processes, a connection each"),
                       ("one-store-5ms-work", "one borg, 8 workers, 5 ms work per cycle (not saturated)")):
        fs = figs.get(mode, [])
        if not fs:
            continue
        med = lambda k: statistics.median(f[k] for f in fs)
        env.record("claims", f"{what}: claim+complete p50", med("p50_ms"), "ms")
        env.record("claims", f"{what}: claim+complete p99", med("p99_ms"), "ms", "<= 5",
                   "the original coordinator's < 10 ms p99")
        env.record("claims", f"{what}: throughput", med("per_s"), "cycles/s")


def find_claims_bench():
    """The test binary holding `claims_latency` (built by run.sh with
    `cargo test --release --test bench_smoke --no-run`)."""
    exe = os.environ.get("BORG_BENCH_CLAIMS_EXE")
    if exe:
        return exe
    out = subprocess.run(["cargo", "test", "--release", "--test", "bench_smoke", "--no-run",
                          "--message-format", "json"], cwd=ROOT, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "bench_smoke" \
                and m.get("executable"):
            return m["executable"]
    raise SystemExit("bench: cannot build tests/bench_smoke.rs:\n" + out.stderr[-2000:])


# ---------------------------------------------------------------------------
# 5. Planning
# ---------------------------------------------------------------------------

def bench_plan(env):
    n = 500 if env.smoke else 10_000
    log(f"[plan] borg run --dry-run of {n} tasks with dependencies")
    d = env.path("plan")
    os.makedirs(d)
    rng = random.Random(3)
    tasks = []
    for i in range(n):
        deps = sorted({f"t{rng.randrange(i):05d}" for _ in range(rng.randrange(0, 4))}) if i else []
        tasks.append({"id": f"t{i:05d}", "priority": rng.randrange(0, 5), "depends_on": deps,
                      "role": rng.choice(["developer", "tester", "reviewer"]),
                      "prompt": f"Task {i}: {words(rng, 30)}\n"})
    path = os.path.join(d, "tasks.toml")
    write_tasks(path, tasks)
    config = os.path.join(d, "config.toml")
    write_config(config)
    ws = os.path.join(d, "ws")
    cmd = borg_cmd(env, ws, config, "run", path, "--dry-run", "--claude", env.fake)
    timed(cmd)  # warm-up
    t = []
    for _ in range(env.runs):
        dt, rc = timed(cmd)
        if rc != 0:
            raise SystemExit(f"bench: borg run --dry-run failed (exit {rc})")
        t.append(dt)
    t_ver = [timed([env.borg, "--version"])[0] for _ in range(env.runs)]
    env.record("plan", f"dry-run of {n} tasks", statistics.median(t), "s", "<= 0.5")
    env.record("plan", "borg --version (process start floor)", statistics.median(t_ver), "s")


# ---------------------------------------------------------------------------
# 6. Stop latency
# ---------------------------------------------------------------------------

def bench_stop(env):
    grace_ms = 200
    log(f"[stop] timeout 1s; interrupt_grace = term_grace = {grace_ms}ms")
    d = env.path("stop")
    os.makedirs(d)
    config = os.path.join(d, "config.toml")
    write_config(config, {"concurrency": 2, "interrupt_grace": f"{grace_ms}ms",
                          "term_grace": f"{grace_ms}ms", "timeout": "1s"})
    tasks = os.path.join(d, "tasks.toml")
    write_tasks(tasks, [
        {"id": "obeys-sigint", "prompt": "#fake hang\n"},
        {"id": "ignores-all", "prompt": "#fake ignore-signals\n#fake hang\n"},
    ])
    lat = {"obeys-sigint": [], "ignores-all": []}
    for r in range(env.runs):
        ws = os.path.join(d, f"ws{r}")
        subprocess.run(borg_cmd(env, ws, config, "run", tasks, "--claude", env.fake,
                                "--progress", "none"),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for tid in lat:
            out = subprocess.run(borg_cmd(env, ws, config, "task", "show", tid, "--json"),
                                 capture_output=True, text=True)
            ms = find_key(json.loads(out.stdout), "stop_latency_ms")
            if ms is None:
                raise SystemExit(f"bench: no stop_latency_ms for {tid}:\n{out.stdout[:2000]}")
            lat[tid].append(ms)
        shutil.rmtree(ws, ignore_errors=True)
    a, b = statistics.median(lat["obeys-sigint"]), statistics.median(lat["ignores-all"])
    env.record("stop", "child obeys SIGINT: timeout -> tree gone", float(a), "ms")
    env.record("stop", "child ignores all but SIGKILL: timeout -> tree gone", float(b), "ms", "",
               f"ladder waits {2 * grace_ms} ms by configuration")
    env.record("stop", "ladder's own cost beyond the configured graces", float(b - 2 * grace_ms), "ms")


def find_key(v, key):
    if isinstance(v, dict):
        if v.get(key) is not None:
            return v[key]
        for x in v.values():
            r = find_key(x, key)
            if r is not None:
                return r
    elif isinstance(v, list):
        for x in v:
            r = find_key(x, key)
            if r is not None:
                return r
    return None



# ---------------------------------------------------------------------------
# 7. Wake-up: a change made from another process reaching the run loop
# ---------------------------------------------------------------------------

def argv_time_ms(state, task, attempt):
    """Epoch ms at which fake-claude started attempt N of a task (its argv record)."""
    path = os.path.join(state, task, f"argv.{attempt}.json")
    try:
        with open(path) as f:
            rec = json.loads(f.readline())
    except (OSError, ValueError):
        return None
    from datetime import datetime
    return datetime.fromisoformat(rec["time"].replace("Z", "+00:00")).timestamp() * 1000


def bench_wake(env):
    """`borg task retry ID` in another shell while `borg run` waits on a long task: the
    time from the retry's commit to the retried task's child starting. The run loop
    learns of it from the store, not from its own attempts."""
    k = 2 if env.smoke else 5
    log(f"[wake] {k} retries from another process per run, {env.runs} run(s)")
    d = env.path("wake")
    os.makedirs(d)
    samples = []
    for run in range(env.runs):
        ws, state = os.path.join(d, f"ws{run}"), os.path.join(d, f"state{run}")
        config = os.path.join(d, f"config{run}.toml")
        write_config(config, {"concurrency": 4, "retries": 0}, {"FAKE_CLAUDE_STATE_DIR": state})
        targets = [{"id": f"t{i}", "prompt": "#fake first 1 exit 3\n#fake text ok\n"} for i in range(k)]
        first = os.path.join(d, f"first{run}.toml")
        write_tasks(first, targets)
        subprocess.run(borg_cmd(env, ws, config, "run", first, "--claude", env.fake, "--progress", "none"),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        hold_ms = 1500 + 700 * k
        second = os.path.join(d, f"second{run}.toml")
        write_tasks(second, targets + [{"id": "hold", "prompt": f"#fake sleep {hold_ms}\n#fake text held\n"}])
        proc = subprocess.Popen(borg_cmd(env, ws, config, "run", second, "--claude", env.fake, "--progress", "none"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while argv_time_ms(state, "hold", 1) is None and time.time() < deadline:
            time.sleep(0.02)
        for i in range(k):
            time.sleep(0.6)  # the loop is idle, waiting
            subprocess.run(borg_cmd(env, ws, config, "task", "retry", f"t{i}"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            committed = time.time() * 1000
            deadline = time.time() + 5
            while argv_time_ms(state, f"t{i}", 2) is None and time.time() < deadline:
                time.sleep(0.005)
            started = argv_time_ms(state, f"t{i}", 2)
            if started is not None:
                samples.append(max(0.0, started - committed))
        proc.wait(timeout=60)
    if not samples:
        log("  (no retried task started)")
        return
    samples.sort()
    env.record("wake", "retry in another shell -> task start, median", statistics.median(samples), "ms")
    env.record("wake", "retry in another shell -> task start, max", samples[-1], "ms")
    bench_wake_accept(env)


def bench_wake_accept(env):
    """Under `[handoff] approval = "person"`, `borg handoff accept ID` in another shell
    while the run waits: the time from the accept's commit to the handoff task's child
    starting (the same store change feed as a retry, and what the dashboard's Accept does)."""
    k = 2 if env.smoke else 5
    d = env.path("wake-accept")
    os.makedirs(d)
    samples = []
    for run in range(env.runs):
        ws, state = os.path.join(d, f"ws{run}"), os.path.join(d, f"state{run}")
        config = os.path.join(d, f"config{run}.toml")
        write_config(config, {"concurrency": 4, "retries": 0}, {"FAKE_CLAUDE_STATE_DIR": state})
        with open(config, "a") as f:
            f.write('[handoff]\napproval = "person"\n')
        tasks = os.path.join(d, f"tasks{run}.toml")
        with open(tasks, "w") as f:
            for i in range(k):
                f.write(f'[[task]]\nid = "src{i}"\nhandoff_to = "tester"\nprompt = "#fake text done"\n\n')
        proc = subprocess.Popen(borg_cmd(env, ws, config, "run", tasks, "--claude", env.fake, "--progress", "none"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in range(k):
            hid = wait_pending_handoff(env, ws, config, f"src{i}.tester-1")
            if hid is None:
                continue
            time.sleep(0.6)  # the loop is idle, waiting for the person
            subprocess.run(borg_cmd(env, ws, config, "handoff", "accept", str(hid)),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            committed = time.time() * 1000
            deadline = time.time() + 5
            while argv_time_ms(state, f"src{i}.tester-1", 1) is None and time.time() < deadline:
                time.sleep(0.005)
            started = argv_time_ms(state, f"src{i}.tester-1", 1)
            if started is not None:
                samples.append(max(0.0, started - committed))
        proc.wait(timeout=60)
    if not samples:
        log("  (no accepted handoff started)")
        return
    samples.sort()
    env.record("wake", "handoff accept in another shell -> task start, median", statistics.median(samples), "ms")
    env.record("wake", "handoff accept in another shell -> task start, max", samples[-1], "ms")


def wait_pending_handoff(env, ws, config, new_task, secs=20):
    deadline = time.time() + secs
    while time.time() < deadline:
        r = subprocess.run(borg_cmd(env, ws, config, "handoff", "list", "--json"), capture_output=True, text=True)
        try:
            for h in json.loads(r.stdout or "[]"):
                if h.get("new_task") == new_task and h.get("state") == "pending":
                    return h["id"]
        except ValueError:
            pass
        time.sleep(0.05)
    return None


# ---------------------------------------------------------------------------
# 8. borg serve: API throughput and latency, idle event-stream clients
# ---------------------------------------------------------------------------

WRK_PROGRESS = r"""
local ids, token, i = {}, os.getenv("BORG_BENCH_TOKEN"), 0
for id in string.gmatch(os.getenv("BORG_BENCH_TASKS"), "[^,]+") do ids[#ids + 1] = id end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.body = '{"percentComplete": 42, "currentStep": "benchmarking"}'
request = function()
  i = i + 1
  return wrk.format(nil, "/api/claude/tasks/" .. ids[(i % #ids) + 1] .. "/progress")
end
"""


def http_json(method, url, token=None, body=None):
    import urllib.request
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def wrk_run(env, url, conns, secs, extra, envvars=None):
    """Runs wrk; returns (requests/s, p99 ms) or None."""
    cmd = ["wrk", f"-t{2}", f"-c{conns}", f"-d{secs}s", "--latency", *extra, url]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(envvars or {})})
    rps, p99 = None, None
    for line in r.stdout.splitlines():
        parts = line.split()
        if "Non-2xx" in line or "Socket errors" in line:
            log(f"  wrk: {line.strip()}")
        if line.startswith("Requests/sec:"):
            rps = float(parts[1])
        elif len(parts) == 2 and parts[0] == "99%":
            v = parts[1]
            p99 = float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000
    if rps is None:
        log(f"  wrk failed: {r.stdout[-500:]} {r.stderr[-500:]}")
        return None
    return rps, p99


def proc_rss_cpu(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return rss, ticks / os.sysconf("SC_CLK_TCK")


def bench_serve(env):
    """`borg run --serve` on a list of an external role's tasks (so they wait for outside
    agents): GET /api/claude/tasks and POST .../progress under 64 connections (wrk),
    then 500 idle SSE clients: borg's RSS and CPU. Median of the runs."""
    if shutil.which("wrk") is None:
        log("[serve] wrk is missing (apt-get install wrk): skipped")
        return
    n, conns, secs, idle = (64, 8, 1, 20) if env.smoke else (400, 64, 10, 500)
    log(f"[serve] {n} tasks, {conns} connections, {secs} s per figure (wrk), {env.runs} run(s)")
    figures = {}
    for run in range(env.runs):
        for k, v in serve_once(env, run, n, conns, secs, idle).items():
            figures.setdefault(k, []).append(v)
    for (figure, unit), vals in figures.items():
        env.record("serve", figure, statistics.median(vals), unit)


def serve_once(env, run, n, conns, secs, idle):
    import socket
    d = env.path(f"serve{run}")
    os.makedirs(os.path.join(d, "roles"))
    with open(os.path.join(d, "roles", "outside.md"), "w") as f:
        f.write('+++\ncapabilities = ["bench"]\nexternal = true\n+++\n# Role: outside\n')
    config = os.path.join(d, "config.toml")
    with open(config, "w") as f:
        f.write('[serve]\nrate_limit = 0\nlease = "1h"\n')
    tasks = os.path.join(d, "tasks.toml")
    write_tasks(tasks, [{"id": f"t{i}", "role": "outside", "prompt": "outside work"} for i in range(n)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    cmd = [env.borg, "--config", config, "--roles", os.path.join(d, "roles"), "--workspaces", os.path.join(d, "ws"),
           "run", tasks, "--claude", env.fake, "--progress", "none", f"--serve=127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = {}
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                http_json("GET", base + "/health")
                break
            except OSError:
                time.sleep(0.05)
        token = http_json("POST", base + "/api/claude/register", body={"agentId": "bench", "capabilities": ["bench"]})["data"]
        held = [f"t{i}" for i in range(conns)]
        for t in held:
            http_json("POST", f"{base}/api/claude/tasks/{t}/claim", token)
        got = wrk_run(env, base + "/api/claude/tasks", conns, secs, ["-H", f"Authorization: Bearer {token}"])
        if got:
            out[(f"GET /api/claude/tasks, {conns} conns: throughput", "req/s")] = got[0]
            out[(f"GET /api/claude/tasks, {conns} conns: p99", "ms")] = got[1]
        script = os.path.join(d, "progress.lua")
        with open(script, "w") as f:
            f.write(WRK_PROGRESS)
        got = wrk_run(env, base, conns, secs, ["-s", script],
                      {"BORG_BENCH_TOKEN": token, "BORG_BENCH_TASKS": ",".join(held)})
        if got:
            out[(f"POST .../progress (durable), {conns} conns: throughput", "req/s")] = got[0]
            out[(f"POST .../progress (durable), {conns} conns: p99", "ms")] = got[1]
        out.update(serve_idle_clients(env, proc.pid, port, idle))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def serve_idle_clients(env, pid, port, count):
    import socket
    rss0, _ = proc_rss_cpu(pid)
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        socks.append(s)
    time.sleep(1.0)
    rss1, cpu1 = proc_rss_cpu(pid)
    idle = 3 if env.smoke else 10
    time.sleep(idle)
    rss2, cpu2 = proc_rss_cpu(pid)
    for s in socks:
        s.close()
    return {
        ("borg RSS before the idle SSE clients", "MiB"): rss0,
        (f"{count} idle SSE clients: borg RSS", "MiB"): rss2,
        (f"{count} idle SSE clients: borg CPU over {idle} s", "%"): 100.0 * (cpu2 - cpu1) / idle,
    }


# ---------------------------------------------------------------------------
# 8. Coordination (issue 15)
# ---------------------------------------------------------------------------

def bench_coord(env):
    """Coordination: `borg hook pre-tool-use` wall time per call (process start, store
    open, the lease check and, with auto-lock, the lease's durable commit) with 64
    leases held by another attempt and 8 concurrent callers; and the `lock_files` +
    `unlock_files` round trip through a running `borg mcp`."""
    n = 16 if env.smoke else 250
    log(f"[coord] borg hook: {n} calls x 8 callers, 64 leases held; borg mcp: {4 * n} lock+unlock round trips")
    exe = find_test_bench("bench_coord", "BORG_BENCH_COORD_EXE")
    figs = {}
    for r in range(env.runs):
        d = env.path(f"coord{r}")
        os.makedirs(d)
        e = dict(os.environ, BORG_BENCH_COORD=str(n), BORG_BENCH_DIR=d)
        out = subprocess.run([exe, "--exact", "coord_latency", "--nocapture", "--test-threads=1"],
                             env=e, capture_output=True, text=True)
        lines = [l for l in out.stdout.splitlines() if "BENCH coord " in l]
        if out.returncode != 0 or not lines:
            raise SystemExit(f"bench: the coord bench failed:\n{out.stdout}\n{out.stderr}")
        for l in lines:
            fig = json.loads(l.split("BENCH coord ", 1)[1])
            figs.setdefault(fig["mode"], []).append(fig)
        shutil.rmtree(d, ignore_errors=True)
    for mode, what, target in (
            ("hook-auto-lock-1-caller", "borg hook pre-tool-use, auto-lock, 1 caller alone", ""),
            ("hook-auto-lock", "borg hook pre-tool-use, auto-lock (check + lease commit)", "< 10"),
            ("hook-check-only", "borg hook pre-tool-use, check only (auto_lock = false)", "< 10"),
            ("check-in-process", "the lease check alone (one indexed query), in-process", "< 10"),
            ("mcp-lock-unlock", "lock_files + unlock_files through borg mcp", "")):
        fs = figs.get(mode, [])
        if not fs:
            continue
        med = lambda k: statistics.median(f[k] for f in fs)
        env.record("coord", f"{what}: p50", med("p50_ms"), "ms", target, "the seed's < 10 ms lock check")
        env.record("coord", f"{what}: p99", med("p99_ms"), "ms", target)


def find_test_bench(name, var):
    """A test binary of tests/NAME.rs (built by run.sh; else built here in release)."""
    exe = os.environ.get(var)
    if exe:
        return exe
    out = subprocess.run(["cargo", "test", "--release", "--test", name, "--no-run",
                          "--message-format", "json"], cwd=ROOT, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == name \
                and m.get("executable"):
            return m["executable"]
    raise SystemExit(f"bench: cannot build tests/{name}.rs:\n" + out.stderr[-2000:])


# ---------------------------------------------------------------------------
# 9. Many hosts on PostgreSQL (issue 17)
# ---------------------------------------------------------------------------

class PgServer:
    """A throwaway PostgreSQL through scripts/with-postgres.sh, alive until close()."""

    def __init__(self):
        script = os.path.join(ROOT, "scripts", "with-postgres.sh")
        self.proc = subprocess.Popen(
            [script, "sh", "-c", 'echo "$BORG_TEST_PG_URL"; echo "$BORG_TEST_PG_BIN"; read _'],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = self.proc.stdout.readline().strip()
        self.bin = self.proc.stdout.readline().strip()
        if not self.url:
            raise SystemExit("bench: scripts/with-postgres.sh did not start a server")
        self.n = 0

    def fresh(self):
        """The URL of a new empty database on the server."""
        from urllib.parse import urlsplit, urlunsplit
        self.n += 1
        name = f"bench_{os.getpid()}_{self.n}"
        u = urlsplit(self.url)
        env = dict(os.environ, PGPASSWORD=u.password or "")
        # createdb sits beside the real initdb (PATH may hold only links to some binaries)
        createdb = os.path.join(os.path.dirname(os.path.realpath(os.path.join(self.bin, "initdb"))), "createdb")
        subprocess.run([createdb, "-h", u.hostname, "-p", str(u.port),
                        "-U", u.username, name], env=env, check=True)
        return urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except Exception:
            self.proc.kill()


def start_worker(env, d, store, host, config, conc, roles=None):
    ws = os.path.join(d, f"ws-{host}")
    cmd = [env.borg, "--config", config, "--workspaces", ws, "--store", store]
    if roles:
        cmd += ["--roles", roles]
    cmd += ["worker", "--host-id", host, "--concurrency", str(conc), "--claude", env.fake,
            "--progress", "none"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_workers(procs):
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


def pg_claims(env, srv):
    n = 200 if env.smoke else 4000
    log(f"[pg] {n} claim+complete cycles, 8 workers: SQLite vs PostgreSQL, side by side")
    exe = find_claims_bench()
    figs = {}
    for r in range(env.runs):
        d = env.path(f"pgclaims{r}")
        os.makedirs(d)
        e = dict(os.environ, BORG_BENCH_CLAIMS=str(n), BORG_BENCH_DIR=d, BORG_TEST_PG_URL=srv.url)
        out = subprocess.run([exe, "--exact", "pg_claims_latency", "--nocapture", "--test-threads=1"],
                             env=e, capture_output=True, text=True)
        lines = [l for l in out.stdout.splitlines() if "BENCH pg " in l]
        if out.returncode != 0 or not lines:
            raise SystemExit(f"bench: the pg claims bench failed:\n{out.stdout}\n{out.stderr}")
        for l in lines:
            fig = json.loads(l.split("BENCH pg ", 1)[1])
            figs.setdefault(fig["mode"], []).append(fig)
        shutil.rmtree(d, ignore_errors=True)
    for mode, what in (("sqlite-one-handle", "SQLite, 8 workers on one handle"),
                       ("sqlite-8-handles", "SQLite, 8 workers with a handle each"),
                       ("postgres-8-handles", "PostgreSQL, 8 workers with a handle each"),
                       ("postgres-one-handle", "PostgreSQL, 8 workers on one handle")):
        fs = figs.get(mode, [])
        if not fs:
            continue
        med = lambda k: statistics.median(f[k] for f in fs)
        env.record("pg", f"{what}: claim + finish p50", med("p50_ms"), "ms")
        env.record("pg", f"{what}: claim + finish p99", med("p99_ms"), "ms", "<= 5")
        env.record("pg", f"{what}: claim + start + finish p50", med("cycle_p50_ms"), "ms")
        env.record("pg", f"{what}: claim + start + finish p99", med("cycle_p99_ms"), "ms")
        env.record("pg", f"{what}: throughput", med("per_s"), "cycles/s")


def pg_wake(env, srv):
    """A dependency finishing on host A, its dependent starting on host B: the time
    from the dependency's finish (its attempt's finished_ms) to the dependent's child
    start (fake-claude's argv record). PostgreSQL (NOTIFY) vs SQLite (polling)."""
    k = 2 if env.smoke else 8
    log(f"[pg] wake-up across hosts, {k} dependency pairs per run: NOTIFY vs polling")
    for kind in ("postgres", "sqlite"):
        samples = []
        for run in range(env.runs):
            d = env.path(f"pgwake-{kind}{run}")
            os.makedirs(d)
            state = os.path.join(d, "state")
            config = os.path.join(d, "config.toml")
            write_config(config, {"retries": 0}, {"FAKE_CLAUDE_STATE_DIR": state})
            store = srv.fresh() if kind == "postgres" else os.path.join(d, "shared.db")
            tasks = []
            for i in range(k):
                tasks.append({"id": f"dep{i}", "role": "developer", "prompt": f"#fake sleep {300 + 150 * i}\n#fake text done\n"})
                tasks.append({"id": f"next{i}", "role": "tester", "depends_on": [f"dep{i}"], "prompt": "#fake text next\n"})
            lst = os.path.join(d, "wake.toml")
            write_tasks(lst, tasks)
            a = start_worker(env, d, store, "host-a", config, k, "developer")
            b = start_worker(env, d, store, "host-b", config, 2, "tester")
            time.sleep(1.0)  # both idle, waiting
            subprocess.run([env.borg, "--config", config, "--workspaces", os.path.join(d, "ws-c"), "--store", store,
                            "run", lst, "--no-work", "--progress", "none", "--json"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
            for i in range(k):
                out = subprocess.run([env.borg, "--config", config, "--workspaces", os.path.join(d, "ws-c"),
                                      "--store", store, "task", "show", f"dep{i}", "--json"],
                                     capture_output=True, text=True)
                try:
                    fin = json.loads(out.stdout)["attempts"][-1]["finished_ms"]
                except (ValueError, KeyError, IndexError, TypeError):
                    continue
                started = argv_time_ms(state, f"next{i}", 1)
                if fin and started is not None:
                    samples.append(max(0.0, started - fin))
            stop_workers([a, b])
        if samples:
            samples.sort()
            how = "NOTIFY" if kind == "postgres" else "polling (50 ms)"
            env.record("pg", f"dependency done on A -> dependent starts on B, {how}, median",
                       statistics.median(samples), "ms")
            env.record("pg", f"dependency done on A -> dependent starts on B, {how}, max", samples[-1], "ms")


def pg_scale(env, srv):
    """300 instant tasks through 1 worker and through 3 (concurrency 4 each), the list
    enqueued by `borg run --no-work`: wall time from the enqueue to the end of the list,
    and the throughput ratio."""
    n = 30 if env.smoke else 300
    log(f"[pg] {n} instant tasks: 3 workers vs 1 (concurrency 4 each)")
    walls = {1: [], 3: []}
    for run in range(env.runs):
        for hosts in (1, 3):
            d = env.path(f"pgscale{run}-{hosts}")
            os.makedirs(d)
            config = os.path.join(d, "config.toml")
            write_config(config, {"retries": 0}, {"FAKE_CLAUDE_STATE_DIR": os.path.join(d, "state")})
            store = srv.fresh()
            lst = os.path.join(d, "scale.toml")
            write_tasks(lst, [{"id": f"t{i}", "prompt": "#fake text ok\n"} for i in range(n)])
            # The workers start first and wait idle; the clock runs from the enqueue
            # (`borg run --no-work`) to the end of the list.
            ws = [start_worker(env, d, store, f"h{h}", config, 4) for h in range(hosts)]
            time.sleep(1.5)
            t = time.perf_counter()
            rc = subprocess.run([env.borg, "--config", config, "--workspaces", os.path.join(d, "ws-c"), "--store", store,
                                 "run", lst, "--no-work", "--progress", "none", "--json"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900).returncode
            walls[hosts].append(time.perf_counter() - t)
            stop_workers(ws)
            if rc != 0:
                log(f"  (run with {hosts} worker(s) exited {rc})")
    one, three = statistics.median(walls[1]), statistics.median(walls[3])
    env.record("pg", f"{n} instant tasks, 1 worker", one, "s")
    env.record("pg", f"{n} instant tasks, 3 workers", three, "s")
    env.record("pg", "throughput, 3 workers / 1", one / three if three else 0.0, "x")


def pg_hook(env, srv):
    """`borg hook pre-tool-use` on a PostgreSQL store: wall time per call (process start,
    the store's light open, the lease check and the auto-lock commit), 1 caller alone and
    8 at once, 64 leases held; the same calls as the coord bench's SQLite figures."""
    n = 16 if env.smoke else 150
    log(f"[pg] borg hook on PostgreSQL: {n} calls, 1 caller then 8 callers")
    exe = find_test_bench("bench_coord", "BORG_BENCH_COORD_EXE")
    figs = {}
    for r in range(env.runs):
        e = dict(os.environ, BORG_BENCH_COORD=str(n), BORG_BENCH_PG_URL=srv.fresh())
        out = subprocess.run([exe, "--exact", "coord_latency_pg", "--nocapture", "--test-threads=1"],
                             env=e, capture_output=True, text=True)
        lines = [l for l in out.stdout.splitlines() if "BENCH coord " in l]
        if out.returncode != 0 or not lines:
            raise SystemExit(f"bench: the pg hook bench failed:\n{out.stdout}\n{out.stderr}")
        for l in lines:
            fig = json.loads(l.split("BENCH coord ", 1)[1])
            figs.setdefault(fig["mode"], []).append(fig)
    for mode, what in (("pg-hook-auto-lock-1-caller", "borg hook pre-tool-use on PostgreSQL, 1 caller alone"),
                       ("pg-hook-auto-lock", "borg hook pre-tool-use on PostgreSQL, 8 callers")):
        fs = figs.get(mode, [])
        if not fs:
            continue
        med = lambda k: statistics.median(f[k] for f in fs)
        env.record("pg", f"{what}: p50", med("p50_ms"), "ms")
        env.record("pg", f"{what}: p99", med("p99_ms"), "ms")


def bench_pg(env):
    srv = PgServer()
    try:
        pg_claims(env, srv)
        pg_hook(env, srv)
        pg_wake(env, srv)
        pg_scale(env, srv)
    finally:
        srv.close()


# ---------------------------------------------------------------------------
# 10. Git mode on a large repository (issue 13)
# ---------------------------------------------------------------------------

def git(*args, cwd=None, check=True):
    """Runs git with a fixed identity and no user configuration; returns stdout."""
    e = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null",
             GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="bench@example.com",
             GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="bench@example.com")
    r = subprocess.run(["git", *args], cwd=cwd, env=e, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"bench: git {' '.join(args)} failed: {r.stderr}")
    return r.stdout


def gen_repo(path, files, folders):
    """A repository of `files` small text files spread over `folders` folders."""
    os.makedirs(path)
    git("init", "-q", "-b", "main", cwd=path)
    per = files // folders
    for d in range(folders):
        dd = os.path.join(path, f"pkg{d:04d}")
        os.makedirs(dd)
        for i in range(per):
            with open(os.path.join(dd, f"mod{i:02d}.py"), "w") as f:
                f.write("".join(f"def f{d}_{i}_{k}(x):\n    return x + {k}\n\n" for k in range(4)))
    with open(os.path.join(path, ".gitignore"), "w") as f:
        f.write("__pycache__/\n")
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "generated", cwd=path)


MODS_SH = r"""#!/bin/sh
# The same edits in any worktree of the generated repository: $1 makes them differ per run.
r=$1
for i in $(seq 0 19); do echo "# run $r edit $i" >> pkg$(printf %04d $((i * 37 % FOLDERS)))/mod00.py; done
for i in $(seq 0 9); do mkdir -p new$r && echo "new $i" > new$r/file$i.py; done
for i in $(seq 0 4); do rm -f pkg$(printf %04d $((i * 53 % FOLDERS + 1)))/mod0$((r % 5)).py; done
"""


def bench_git(env):
    """Git mode on a generated repository: (1) instance creation against `git worktree
    add`; (2) an attempt's files-changed step (`seal_ms`: add, commit, diff) against
    `git status --porcelain` + `git diff --name-status` after the same edits; (3) the
    start of a task with 3 dependencies (`start_ms`: merges + checkout) against the
    same merges run by a shell script in a worktree."""
    files, folders = (2_000, 200) if env.smoke else (20_000, 2_000)
    log(f"[git] a repository of {files} files in {folders} folders")
    d = env.path("git")
    repo = os.path.join(d, "repo")
    gen_repo(repo, files, folders)
    base = git("rev-parse", "HEAD", cwd=repo).strip()
    mods = os.path.join(d, "mods.sh")
    with open(mods, "w") as f:
        f.write(MODS_SH.replace("FOLDERS", str(folders - 2)))
    config = os.path.join(d, "config.toml")
    write_config(config, {"concurrency": 1})
    git_instances(env, d, repo, config)
    git_attempts(env, d, repo, base, mods, config)


def timed_cpu(cmd, **kw):
    """(wall time, CPU time of the process and its children, exit code) of one command."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    dt, rc = timed(cmd, **kw)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dt, cpu, rc


def git_instances(env, d, repo, config):
    """(1) `borg instance create` in git mode vs `git worktree add`, alternating. The
    CPU time is reported too: on a busy machine the wall time of writing 20 000 files
    varies several-fold from one run to the next."""
    ws = os.path.join(d, "ws-create")
    e = dict(os.environ, BORG_REPO=repo)
    t_borg, t_git, c_borg, c_git = [], [], [], []
    for r in range(env.runs + 1):
        borg = lambda: timed_cpu(borg_cmd(env, ws, config, "instance", "create", "--role", "developer",
                                          "--name", f"inst{r}"), env=e)
        plain = lambda: timed_cpu(["git", "-C", repo, "worktree", "add", "-q", "--detach",
                                   os.path.join(d, f"plain{r}"), "HEAD"])
        # Alternate who goes first: the second one pays for the first one's writeback.
        if r % 2:
            (dt2, cpu2, rc2), (dt, cpu, rc) = plain(), borg()
        else:
            (dt, cpu, rc), (dt2, cpu2, rc2) = borg(), plain()
        if rc != 0 or rc2 != 0:
            raise SystemExit("bench: borg instance create or git worktree add failed")
        subprocess.run(["sync"])
        if r:  # the first pair warms the page cache
            t_borg.append(dt)
            t_git.append(dt2)
            c_borg.append(cpu)
            c_git.append(cpu2)
    b, g = statistics.median(t_borg), statistics.median(t_git)
    env.record("git", "instance creation: borg instance create (git mode)", b, "s")
    env.record("git", "instance creation: git worktree add", g, "s")
    env.record("git", "instance creation: borg / git worktree add", pair_ratio(t_borg, t_git), "x", "<= 1.3",
               "median of the ratios of pairs run back to back")
    env.record("git", "instance creation, CPU time: borg / git worktree add", pair_ratio(c_borg, c_git), "x", "",
               f"{statistics.median(c_borg):.3f} s / {statistics.median(c_git):.3f} s")


def git_attempts(env, d, repo, base, mods, config):
    """(2) and (3), from the attempt records of runs on one store."""
    ws = os.path.join(d, "ws-run")
    plain = os.path.join(d, "baseline")
    git("worktree", "add", "-q", "--detach", plain, base, cwd=repo)
    seal, status, start, merge = [], [], [], []
    for r in range(env.runs + 1):
        tasks = os.path.join(d, f"tasks{r}.toml")
        deps = [{"id": f"r{r}-d{k}", "prompt": f"#fake bash \"echo dep {k} > dep{r}_{k}.py\"\n"} for k in range(3)]
        write_tasks(tasks, [{"id": f"r{r}-edit", "prompt": f"#fake bash \"sh {mods} {r}\"\n"}] + deps +
                    [{"id": f"r{r}-join", "depends_on": [t["id"] for t in deps], "prompt": "#fake text joined\n"}])
        subprocess.run(borg_cmd(env, ws, config, "run", tasks, "--claude", env.fake, "--repo", repo,
                                "--progress", "none"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rec = lambda t, k: find_key(json.loads(subprocess.run(
            borg_cmd(env, ws, config, "task", "show", t, "--json"), capture_output=True, text=True).stdout), k)
        s_ms, j_ms = rec(f"r{r}-edit", "seal_ms"), rec(f"r{r}-join", "start_ms")
        if s_ms is None or j_ms is None:
            raise SystemExit(f"bench: run {r} recorded no seal_ms/start_ms")
        # The baseline: the same edits in a worktree at the base, then git reads them.
        git("checkout", "-q", "--detach", "-f", base, cwd=plain)
        git("clean", "-q", "-fd", cwd=plain)
        subprocess.run(["sh", mods, str(r)], cwd=plain, check=True)
        t0 = time.perf_counter()
        git("status", "--porcelain", cwd=plain)
        git("diff", "--name-status", "HEAD", cwd=plain)
        st = time.perf_counter() - t0
        heads = [git("rev-parse", f"borg/r{r}-d{k}", cwd=repo).strip() for k in range(3)]
        script = f"git checkout -q --detach -f {base} && " + " && ".join(
            f"git -c user.name=b -c user.email=b@b merge -q --no-edit {h}" for h in heads)
        git("checkout", "-q", "--detach", "-f", base, cwd=plain)
        git("clean", "-q", "-fd", cwd=plain)
        dt, rc = timed(["sh", "-c", script], cwd=plain)
        if rc != 0:
            raise SystemExit("bench: the merge script failed")
        if r:
            seal.append(s_ms / 1000)
            status.append(st)
            start.append(j_ms / 1000)
            merge.append(dt)
    env.record("git", "files changed: borg (add, commit, diff --raw --numstat)", statistics.median(seal), "s")
    env.record("git", "files changed: git status --porcelain + git diff --name-status", statistics.median(status), "s")
    env.record("git", "files changed: borg / git status + diff", pair_ratio(seal, status), "x", "<= 1.5",
               "median of the ratios of each run's pair")
    env.record("git", "start with 3 dependencies: borg (merge-tree x3, checkout)", statistics.median(start), "s")
    env.record("git", "start with 3 dependencies: shell script (checkout, git merge x3)", statistics.median(merge), "s")
    env.record("git", "start with 3 dependencies: borg / shell script", pair_ratio(start, merge), "x", "<= 1.5",
               "median of the ratios of each run's pair")


# ---------------------------------------------------------------------------
# 11. The merge queue (issue 14)
# ---------------------------------------------------------------------------

MERGE_SH = r"""#!/bin/sh
# The queue's git sequence without the queue: each branch merged onto the target with
# merge-tree --write-tree, a merge commit made with commit-tree, the target moved with
# update-ref NEW OLD.
set -e
target=$1; shift
head=$(git rev-parse "refs/heads/$target")
for b in "$@"; do
    tree=$(git merge-tree --write-tree "$head" "$b")
    new=$(echo "Merge $b" | git commit-tree "$tree" -p "$head" -p "$b")
    git update-ref "refs/heads/$target" "$new" "$head"
    head=$new
done
"""


def merge_setup(env, d, n, breaking=None):
    """A repository with a unittest project and `n` finished task branches, each adding a
    module and its test (task `breaking` adds a failing test); returns (repo, ws, config)."""
    repo = os.path.join(d, "repo")
    os.makedirs(repo)
    git("init", "-q", "-b", "main", cwd=repo)
    with open(os.path.join(repo, "test_base.py"), "w") as f:
        f.write("import unittest\n\n\nclass T(unittest.TestCase):\n    def test_base(self):\n        pass\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "project", cwd=repo)
    tasks = []
    for i in range(n):
        ok = "True" if i != breaking else "False"
        body = (f"import unittest\\n\\n\\nclass T{i}(unittest.TestCase):\\n"
                f"    def test_{i}(self):\\n        self.assertTrue({ok})\\n")
        tasks.append({"id": f"m{i:02d}", "prompt": f"#fake write test_m{i:02d}.py \"{body}\"\n#fake result done\n"})
    tl = os.path.join(d, "tasks.toml")
    write_tasks(tl, tasks)
    ws = os.path.join(d, "ws")
    config = os.path.join(d, "config.toml")
    write_config(config, {"concurrency": 4})
    r = subprocess.run(borg_cmd(env, ws, config, "run", tl, "--claude", env.fake, "--repo", repo,
                                "--progress", "none"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        raise SystemExit(f"bench: the run making the {n} branches failed ({r.returncode})")
    return repo, ws, config


def bench_merge(env):
    """The merge queue: (1) 32 non-conflicting branches with a gate of `true`, `borg merge`
    against a shell script doing the same merge-tree + commit-tree + update-ref sequence;
    (2) one breaking branch among 16 in one batch, with a real gate (`python3 -m
    unittest`): the gate runs bisection spends (target <= 1 + 2*log2(16) = 9)."""
    n = 8 if env.smoke else 32
    d = env.path("merge")
    os.makedirs(d)
    repo, ws, config = merge_setup(env, d, n)
    with open(config, "a") as f:
        f.write("[merge]\nbatch = 4\nverify = [\"true\"]\n")
    script = os.path.join(d, "merge.sh")
    with open(script, "w") as f:
        f.write(MERGE_SH)
    base = git("rev-parse", "main", cwd=repo).strip()
    branches = [f"borg/m{i:02d}" for i in range(n)]
    t_borg, t_sh = [], []
    for r in range(env.runs + 1):
        git("branch", f"q{r}", base, cwd=repo)
        git("branch", f"s{r}", base, cwd=repo)
        dt, rc = timed(borg_cmd(env, ws, config, "merge", "--into", f"q{r}"))
        dt2, rc2 = timed(["sh", script, f"s{r}", *branches], cwd=repo)
        if rc != 0 or rc2 != 0:
            raise SystemExit(f"bench: borg merge ({rc}) or the script ({rc2}) failed")
        if git("rev-parse", f"q{r}^{{tree}}", cwd=repo) != git("rev-parse", f"s{r}^{{tree}}", cwd=repo):
            raise SystemExit("bench: borg merge and the script made different trees")
        if r:
            t_borg.append(dt)
            t_sh.append(dt2)
    env.record("merge", f"{n} branches, gate `true`: borg merge", statistics.median(t_borg), "s")
    env.record("merge", f"{n} branches: merge-tree + commit-tree + update-ref script", statistics.median(t_sh), "s")
    env.record("merge", f"{n} branches: borg merge / script", pair_ratio(t_borg, t_sh), "x", "<= 1.5",
               "median of the ratios of pairs run back to back")
    merge_bisect(env)


def merge_bisect(env):
    """(2): 16 branches in one batch, one of them breaking `python3 -m unittest`."""
    d = env.path("merge-bisect")
    os.makedirs(d)
    repo, ws, config = merge_setup(env, d, 16, breaking=11)
    with open(config, "a") as f:
        f.write("[merge]\nbatch = 16\nverify = [\"python3 -m unittest\"]\n")
    r = subprocess.run(borg_cmd(env, ws, config, "merge", "--json"), capture_output=True, text=True)
    m = json.loads(r.stdout or "{}")
    rejected = [x["task"] for x in m.get("rejected", [])]
    if r.returncode != 1 or rejected != ["m11"] or len(m.get("landed", [])) != 15:
        raise SystemExit(f"bench: bisection did not find m11 alone ({r.returncode}): {r.stdout} {r.stderr}")
    env.record("merge", "1 breaking branch in 16, one batch: gate runs", m["gate_runs"], "runs", "<= 9",
               "1 + 2*log2(16); the baseline run at the target's start not counted")


def pair_ratio(a, b):
    """The median of a[i] / b[i]: each pair ran close together, so a busy machine's
    slow spells hit both sides of a pair rather than one side's median."""
    return statistics.median(x / y for x, y in zip(a, b) if y > 0)

# ---------------------------------------------------------------------------

def bench_tokens(env):
    """Tokens of five sequential tasks on one instance, fresh sessions against continued
    ones (`session = "continue"`), with the real CLI against the scripted Messages API
    (tests/support/mock_api.rs counts prompt caching). Runs the real-CLI test that
    measures them; skipped when the CLI is not installed (scripts/install-claude.sh)."""
    log("[tokens] fresh vs continue, 5 tasks on one instance (real CLI, scripted API)")
    cmd = ["cargo", "test", "--quiet", "--test", "real_cli", "tokens_fresh_vs_continue", "--",
           "--nocapture"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    rows = [json.loads(l.split("TOKENS ", 1)[1]) for l in r.stderr.splitlines() if "TOKENS {" in l]
    if r.returncode != 0 or len(rows) != 2:
        log("  (skipped: the real CLI is not installed, or the test failed)")
        return
    by = {row["mode"]: row for row in rows}
    for mode in ("fresh", "continue"):
        row = by[mode]
        env.record("tokens", f"{mode}: input tokens sent (all requests)", row["sent"], "tokens", "",
                   f"{row['requests']} requests, 5 tasks")
        env.record("tokens", f"{mode}: input tokens reported (not cached)", row["input"], "tokens")
        env.record("tokens", f"{mode}: cache-read tokens reported", row["cache_read"], "tokens")


BENCHES = {"dispatch": bench_dispatch, "scale": bench_scale, "parse": bench_parse, "memory": bench_memory,
           "claims": bench_claims, "plan": bench_plan, "stop": bench_stop, "wake": bench_wake,
           "idle": bench_idle, "tokens": bench_tokens, "pg": bench_pg, "coord": bench_coord,
           "git": bench_git, "serve": bench_serve, "merge": bench_merge, "mcp": bench_mcp,
           "serveidle": bench_serve_idle}


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), {mem} RAM"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("benches", nargs="*", help=f"some of: {' '.join(BENCHES)} (default: all)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one run: checks the harness works")
    ap.add_argument("--runs", type=int, help="runs per figure (median taken; default 5, smoke 1)")
    ap.add_argument("--dir", help="scratch folder (default $BORG_BENCH_DIR or the system temp dir)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--borg", help="borg binary (default target/release/borg)")
    ap.add_argument("--fake", help="fake-claude binary (default target/release/fake-claude)")
    args = ap.parse_args()
    names = args.benches or list(BENCHES)
    for n in names:
        if n not in BENCHES:
            ap.error(f"unknown bench {n!r}; choose from {', '.join(BENCHES)}")
    env = Env(args)
    log(f"machine: {machine()}")
    log(f"scratch: {env.dir}; runs per figure: {env.runs}{' (smoke mode)' if env.smoke else ''}")
    try:
        for n in names:
            BENCHES[n](env)
    finally:
        env.cleanup()
    print(f"\nmachine: {machine()}; median of {env.runs} run(s){'; SMOKE sizes' if env.smoke else ''}")
    print(f"{'bench':9} {'figure':58} {'value':>10} {'unit':8} target")
    for r in env.results:
        print(f"{r['bench']:9} {r['figure']:58} {fmt(r['value']):>10} {r['unit']:8} {r['target']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "runs": env.runs, "smoke": env.smoke,
                       "results": env.results}, f, indent=2)


if __name__ == "__main__":
    main()
