"""The API document's contract, checked against a real vidgate: the document
validates as OpenAPI 3.1, Schemathesis's conformance checks pass over every
operation, and openapi-python-client makes a client with create, get, list,
upload and cancel.

Run by run.sh inside a network namespace that has only loopback, so nothing a
fuzzer invents (callback URLs, image links) can reach another host. Every step
runs even when an earlier one fails, so one run lists every problem; the exit
code is non-zero when any step failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# The conformance checks issue 9 asks for; not_a_server_error because a 5xx on
# fuzzed input is a bug whatever the document says.
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SEED = 20261202
# Schemathesis runs under this whole-run limit; past it the run is a failure.
HARD_LIMIT_SECS = 300

# Operations that revoke or limit whoever they name: each gets an account and key
# of its own (as caller for user routes, as target for admin routes), so fuzzing
# them can never lock the shared key out of the other operations.
CALLER_LIMITING = [
    ("POST", re.compile(r"/revoke$")),
    ("PATCH", re.compile(r"^/admin/keys/\{[^}/]+\}$")),
    ("POST", re.compile(r"^/admin/accounts/\{[^}/]+\}/credits$")),
    ("POST", re.compile(r"/(disable|enable)$")),
]

# Operations for which Schemathesis may never get one generated request
# accepted: a valid upload is a real image, which no schema can describe.
MAY_REJECT_ALL_GENERATED = {"POST /v1/files"}

# What a generated client must offer: (what, method, path pattern).
CLIENT_MUST_HAVE = [
    ("create", "post", re.compile(r"^/v1/videos/generations$")),
    ("get", "get", re.compile(r"^/v1/tasks/\{[^}/]+\}$")),
    ("list", "get", re.compile(r"^/v1/tasks$")),
    ("upload", "post", re.compile(r"^/v1/files$")),
    ("cancel", "post", re.compile(r"^/v1/tasks/\{[^}/]+\}/cancel$")),
]


class Server:
    """A vidgate on 127.0.0.1 with its own data folder, stopped on exit."""

    def __init__(self, binary: str, work: Path, admin_key: str) -> None:
        self.work = work
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGATE_")}
        env.update(
            VIDGATE_DATA_DIR=str(work / "data"),
            VIDGATE_LISTEN="127.0.0.1:0",
            VIDGATE_WORKERS="0",
            VIDGATE_WEBHOOK_CONCURRENCY="0",
            VIDGATE_ADMIN_KEY=admin_key,
        )
        self.out = open(work / "vidgate.stdout", "w")
        self.err = open(work / "vidgate.stderr", "w")
        self.proc = subprocess.Popen([binary, "serve"], env=env, stdout=self.out, stderr=self.err)
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vidgate exited with {self.proc.returncode}: {self.stderr_tail()}")
            m = re.search(r"playground:\s+(http://\S+?)/?$", (self.work / "vidgate.stdout").read_text(), re.M)
            if m:
                url = m.group(1)
                if http("GET", url + "/readyz")[0] == 200:
                    return url
            time.sleep(0.1)
        raise RuntimeError(f"vidgate was not ready within 30 s: {self.stderr_tail()}")

    def stderr_tail(self) -> str:
        return (self.work / "vidgate.stderr").read_text()[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def http(method: str, url: str, body: object | None = None, key: str | None = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as e:
        raw = e.read()
        status = e.code
    except (urllib.error.URLError, ConnectionError):
        return 0, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


class Report:
    def __init__(self) -> None:
        self.steps: list[tuple[str, bool, list[str]]] = []

    def add(self, step: str, ok: bool, problems: list[str], notes: list[str] = ()) -> None:
        self.steps.append((step, ok, problems))
        print(f"\n== {step}: {'ok' if ok else 'FAILED'}", flush=True)
        for p in problems:
            print(f"  - {p}", flush=True)
        for n in notes:
            print(f"  (note) {n}", flush=True)

    def summary(self) -> int:
        print("\n== openapi contract summary")
        for step, ok, problems in self.steps:
            print(f"  {'ok    ' if ok else 'FAILED'} {step}" + ("" if ok else f" ({len(problems)} problems)"))
        failed = [s for s, ok, _ in self.steps if not ok]
        print(f"openapi: {len(self.steps) - len(failed)} passed, {len(failed)} failed")
        return 1 if failed else 0


def validate_document(venv_bin: Path, doc_path: Path, doc: dict, report: Report) -> None:
    problems = []
    if not str(doc.get("openapi", "")).startswith("3.1"):
        problems.append(f"`openapi` is {doc.get('openapi')!r}, not 3.1.x")
    out = subprocess.run(
        [venv_bin / "openapi-spec-validator", "--schema", "3.1", "--validation-errors", "all", str(doc_path)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        for line in (out.stdout + out.stderr).splitlines():
            line = line.replace(f"{doc_path}: ", "").strip()
            if line and not re.match(r"^\d+ validation errors? found$", line):
                problems.append(line)
    report.add("openapi-spec-validator (OpenAPI 3.1)", not problems, problems)


def operations(doc: dict) -> list[tuple[str, str, dict]]:
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    return [(m.upper(), p, op) for p, item in doc.get("paths", {}).items() for m, op in item.items() if m in methods]


def make_account(base: str, admin_key: str, name: str, credits: int) -> dict:
    status, body = http("POST", base + "/admin/accounts", {"name": name, "credits": credits}, admin_key)
    if status != 200 or not isinstance(body, dict) or "api_key" not in body:
        raise RuntimeError(f"POST /admin/accounts answered {status}: {str(body)[:300]}")
    return {"api_key": body["api_key"], "account_id": body["account"]["id"], "key_id": body["key"]["id"]}


def toml_str(s: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(s)


def schemathesis_config(doc: dict, base: str, admin_key: str) -> tuple[str, list[str], str]:
    """The run's config: the admin key for admin schemes, a shared user key for
    the rest, and an account of its own for each caller-limiting operation."""
    notes = []
    schemes = sorted(doc.get("components", {}).get("securitySchemes", {}))
    user = make_account(base, admin_key, "schemathesis", 1_000_000)
    lines = [
        f"seed = {SEED}",
        "workers = 1",
        "continue-on-failure = true",
        "[generation]",
        f"max-examples = {int(os.environ.get('VIDGATE_OPENAPI_MAX_EXAMPLES', '100'))}",
        'database = "none"',
        "[output.sanitization]",
        "enabled = true",
    ]
    for s in schemes:
        key = admin_key if "admin" in s.lower() else user["api_key"]
        lines += [f"[auth.openapi.{toml_str(s)}]", f"bearer = {toml_str(key)}"]
        notes.append(f"security scheme `{s}` -> {'admin key' if key == admin_key else 'shared API key'}")
    for method, path, op in operations(doc):
        if not any(method == m and pat.search(path) for m, pat in CALLER_LIMITING):
            continue
        own = make_account(base, admin_key, f"own {method} {path}", 1_000)
        names = {next(iter(req), "") for req in op.get("security", doc.get("security", [])) if req}
        is_admin = names and all("admin" in n.lower() for n in names)
        lines += ["[[operations]]", f"include-name = {toml_str(f'{method} {path}')}"]
        if is_admin:
            pins = {}
            for p in op.get("parameters", []):
                if p.get("in") == "path" and "key" in p["name"].lower():
                    pins[f"path.{p['name']}"] = own["key_id"]
                elif p.get("in") == "path" and "account" in p["name"].lower():
                    pins[f"path.{p['name']}"] = own["account_id"]
            if pins:
                lines.append(
                    "parameters = { " + ", ".join(f"{toml_str(k)} = {toml_str(v)}" for k, v in pins.items()) + " }"
                )
            notes.append(
                f"{method} {path}: admin key, aimed at an account of its own ({', '.join(pins) or 'no path ids'})"
            )
        else:
            lines.append(f"headers = {{ Authorization = {toml_str('Bearer ' + own['api_key'])} }}")
            notes.append(f"{method} {path}: called with a key of its own")
    return "\n".join(lines) + "\n", notes, user["api_key"]


def run_schemathesis(venv_bin: Path, doc_path: Path, base: str, config: str, work: Path, report: Report) -> None:
    cfg = work / "schemathesis.toml"
    cfg.write_text(config)
    reports = work / "schemathesis-report"
    cmd = [
        str(venv_bin / "schemathesis"), "--config-file", str(cfg), "--no-color", "run", str(doc_path),
        "--url", base, "--checks", CHECKS, "--report", "junit", "--report-junit-path", str(reports / "junit.xml"),
        "--output-truncate", "false",
    ]  # fmt: skip
    print("\n== schemathesis: " + " ".join(cmd[1:]), flush=True)
    log = work / "schemathesis.log"
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(HARD_LIMIT_SECS)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
            timed_out = True
    took = time.monotonic() - started
    text = log.read_text()
    print(text[-60000:], flush=True)
    mismatch, notes = warnings_from_output(text)
    problems = failures_from_junit(reports / "junit.xml") + mismatch
    if timed_out:
        problems.insert(0, f"did not finish within the {HARD_LIMIT_SECS} s limit")
    if rc != 0 and not problems:
        problems.append(f"schemathesis exited with {rc} (see its output above)")
    report.add(f"schemathesis conformance ({took:.0f} s, seed {SEED})", not problems, problems, notes)


def failures_from_junit(path: Path) -> list[str]:
    """One line per failing check per operation, from Schemathesis's JUnit report."""
    if not path.exists():
        return []
    import xml.etree.ElementTree as ET

    problems = []
    for case in ET.parse(path).getroot().iter("testcase"):
        for bad in list(case.iter("failure")) + list(case.iter("error")):
            text = bad.text or ""
            problems.append(f"{case.get('name')}: {bad.get('message')}\n" + indent(squash(text)))
    return problems


def warnings_from_output(text: str) -> tuple[list[str], list[str]]:
    """The WARNINGS section of Schemathesis's output, one line per operation:
    "Schema validation mismatch" (not one generated request was accepted: the
    schema is looser than the server) is a problem, the rest are notes."""
    m = re.search(r"^=+ WARNINGS =+$(.*?)^=+ SUMMARY =+$", text, re.M | re.S)
    problems: list[str] = []
    notes: list[str] = []
    title = ""
    for line in m.group(1).splitlines() if m else []:
        if not line.strip() or line.startswith("\U0001f4a1"):
            continue
        item = re.match(r"^\s+- (.+)$", line)
        if item:
            op = item.group(1)
            if title == "Schema validation mismatch" and op not in MAY_REJECT_ALL_GENERATED:
                problems.append(f"{op}: every generated request was refused (schema looser than the server)")
            else:
                notes.append(f"{op}: {title}")
        elif not re.match(r"^\d{3} ", line):  # "401 Unauthorized (1 operation):" refines the title above
            title = line.split(":")[0].strip()
    return problems, notes


def indent(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines())


def squash(text: str, limit: int = 1500) -> str:
    text = re.sub(r"\n\s*\n+", "\n", text.strip())
    return text if len(text) <= limit else text[:limit] + " ..."


def generate_client(venv_bin: Path, doc_path: Path, work: Path, report: Report) -> None:
    out_dir = work / "vidgate_client"
    env = dict(os.environ, PATH=f"{venv_bin}:{os.environ.get('PATH', '')}")
    gen = subprocess.run(
        [venv_bin / "openapi-python-client", "generate", "--path", str(doc_path), "--output-path", str(out_dir),
         "--meta", "none", "--overwrite"],
        capture_output=True, text=True, env=env, cwd=work,
    )  # fmt: skip
    problems = []
    # The generator's warnings are notes: what fails the step is a missing function.
    notes = [
        f"generator warning for {where}: {squash(why, 600)}"
        for where, why in re.findall(
            r"WARNING parsing (\S+ \S+)[^\n]*\n+(.*?)(?=\n\n\S|\Z)", gen.stdout + gen.stderr, re.S
        )
    ]
    if gen.returncode != 0 and not out_dir.exists():
        problems.append(f"openapi-python-client exited with {gen.returncode}: {squash(gen.stdout + gen.stderr)}")
    found: dict[tuple[str, str], Path] = {}
    for module in sorted((out_dir / "api").rglob("*.py")) if out_dir.exists() else []:
        src = module.read_text()
        m = re.search(r'"method":\s*"(\w+)",\s*"url":\s*(?:f?)"([^"]+)"', src)
        if m and "def sync_detailed(" in src and "def asyncio_detailed(" in src:
            found[(m.group(1), m.group(2))] = module
    for what, method, pat in CLIENT_MUST_HAVE:
        hits = [p for (m, url), p in found.items() if m == method and pat.match(url)]
        if not hits:
            problems.append(f"no generated function for {what} ({method.upper()} {pat.pattern})")
    if out_dir.exists():
        imp = subprocess.run(
            [venv_bin / "python", "-c", "import vidgate_client.api, pkgutil, importlib\n"
             "for m in pkgutil.walk_packages(vidgate_client.api.__path__, 'vidgate_client.api.'):\n"
             "    importlib.import_module(m.name)"],
            capture_output=True, text=True, cwd=work,
        )  # fmt: skip
        if imp.returncode != 0:
            problems.append(f"the generated client does not import: {squash(imp.stderr, 800)}")
    report.add("openapi-python-client: create, get, list, upload, cancel", not problems, problems, notes)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--venv-bin", required=True, type=Path)
    ap.add_argument("--work", required=True, type=Path)
    args = ap.parse_args()
    report = Report()
    admin_key = "adm-" + secrets.token_hex(16)
    server = Server(args.bin, args.work, admin_key)
    try:
        status, doc = http("GET", server.url + "/openapi.json")
        if status != 200 or not isinstance(doc, dict):
            report.add("GET /openapi.json", False, [f"answered {status}"])
            return report.summary()
        doc_path = args.work / "openapi.json"
        doc_path.write_text(json.dumps(doc, indent=1))
        print(f"openapi: {server.url}/openapi.json, {len(operations(doc))} operations", flush=True)
        validate_document(args.venv_bin, doc_path, doc, report)
        try:
            config, notes, shared_key = schemathesis_config(doc, server.url, admin_key)
        except RuntimeError as e:
            report.add("keys for schemathesis through the admin API", False, [str(e)])
        else:
            print("\n== schemathesis auth\n" + "\n".join(f"  {n}" for n in notes), flush=True)
            run_schemathesis(args.venv_bin, doc_path, server.url, config, args.work, report)
            # The isolation above is only worth something if it held.
            status, _ = http("GET", server.url + "/v1/credits", key=shared_key)
            report.add(
                "the shared API key still works after fuzzing",
                status == 200,
                [] if status == 200 else [f"GET /v1/credits answered {status}"],
            )
        generate_client(args.venv_bin, doc_path, args.work, report)
        if server.proc.poll() is not None:
            report.add("vidgate stayed up", False, [f"exited with {server.proc.returncode}: {server.stderr_tail()}"])
    finally:
        server.stop()
    return report.summary()


if __name__ == "__main__":
    sys.exit(main())
