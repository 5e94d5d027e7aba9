"""The README's "Using it" commands, run as written in a fresh home against the real models
and a real gateway: a new user's path, and the outputs the README documents.

Every command below must appear verbatim in README.md (so the two cannot drift apart); it is
run through bash in a temporary working directory with a temporary DISTILLERY_HOME. Only the
model cache is shared with the real home (re-dequantising the GGUFs would add minutes and
test nothing new here), and the gateway listens on a free port instead of 8000.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from distillery.models import distillery_home

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"

PROVIDER = [
    "distillery info",
    "distillery models list",
    "distillery models prepare",
    'distillery generate "Explain photosynthesis in two sentences."',
    'distillery generate --model gemma-3-270m --temperature 0 "Name three colours."',
    "distillery watermark keygen",
    "distillery accounts create alice",
    "distillery keys create --account alice > keys.txt",
]
SERVE = "distillery serve --watermark kgw"
ATTACKER = [
    "distillery prompts seeds -o prompts.jsonl",
    "distillery prompts cot prompts.jsonl -o cot.jsonl",
    "distillery harvest prompts.jsonl -o answers.jsonl --base-url http://127.0.0.1:8000/v1 "
    "--model smollm2-135m-instruct --api-keys-file keys.txt --top-logprobs 5 --limit 64 "
    "--max-tokens 64",
    "distillery train answers.jsonl -o runs/student --student gemma-3-270m --max-steps 8 "
    "--snapshot-steps 4",
    "distillery evaluate answers.jsonl --student runs/student/student --rouge-max-examples 4",
    "distillery manifest verify runs/student/manifest.json",
    'distillery generate --model runs/student/student "Name three colours."',
]


def readme_section() -> str:
    text = README.read_text()
    return text[text.index("## Using it"):text.index("\n## ", text.index("## Using it") + 1)]


def readme_commands(section: str) -> list[str]:
    """The `distillery ...` lines of the section's code blocks: continuations joined,
    trailing comments dropped, whitespace collapsed."""
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    joined = re.sub(r"\\\n\s*", " ", "\n".join(blocks))
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line.startswith("distillery "):
            out.append(" ".join(line.split()))
    return out


def documented_outputs(section: str) -> list[re.Pattern]:
    """The block after "What they print": each line as a pattern whose numbers vary."""
    block = re.search(r"What they print.*?```\n(.*?)```", section, re.S).group(1)
    pats = []
    for line in block.strip().splitlines():
        parts = re.split(r"(\.\.\.|…|\b[0-9a-f]{8,}\b|(?<![\w-])-?\d+(?:\.\d+)?(?![\w]))",
                         line.strip())
        rx = "".join(re.escape(p) if i % 2 == 0 else ".*" if p in ("...", "…") else r"\S+"
                     for i, p in enumerate(parts))
        pats.append(re.compile(rx))
    return pats


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir()
    for shared in ("models", "gguf"):  # the real model cache, read-mostly
        if (distillery_home() / shared).is_dir():
            (h / shared).symlink_to(distillery_home() / shared)
    return h


def test_readme_using_it_runs_as_written(tmp_path, home):
    section = readme_section()
    documented = readme_commands(section)
    for cmd in [*PROVIDER, SERVE, *ATTACKER]:
        assert cmd in documented, f"not in the README as written: {cmd}"
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "DISTILLERY_HOME": str(home),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for k in ("DISTILLERY_WATERMARK_KEY", "OPENAI_API_KEY", "DISTILLERY_ADMIN_TOKEN"):
        env.pop(k, None)
    timings: dict[str, float] = {}
    outputs: list[str] = []

    def sh(cmd: str, timeout: float = 1800) -> str:
        t0 = time.monotonic()
        r = subprocess.run(["bash", "-c", cmd], cwd=work, env=env, capture_output=True,
                           text=True, timeout=timeout)
        timings[cmd[:60]] = time.monotonic() - t0
        assert r.returncode == 0, f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        outputs.extend(r.stdout.splitlines())
        return r.stdout

    for cmd in PROVIDER:
        out = sh(cmd)
        if cmd == "distillery info":
            assert str(home) in out
        if "generate" in cmd:
            assert out.strip()
    assert (work / "keys.txt").read_text().startswith("dk-")
    assert (home / "watermark.key").is_file() and (home / "distillery.db").is_file()

    from distillery.gateway.server import free_port

    port = free_port()
    server = subprocess.Popen(["bash", "-c", f"exec {SERVE} --port {port}"], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, server.stdout.read()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(1)
        for cmd in ATTACKER:
            out = sh(cmd.replace("127.0.0.1:8000", f"127.0.0.1:{port}"))
            if cmd.startswith("distillery harvest"):
                assert "written 64, skipped 0 (already there), failed 0" in out, out
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
    assert "8 steps; held-out loss" in "\n".join(outputs)
    assert (work / "runs/student/snapshots/step-000004/student.json").is_file()
    for pat in documented_outputs(section):
        seen = [line for line in outputs if pat.fullmatch(line.strip())]
        assert seen, f"no output looks like the README's {pat.pattern!r}"
        print(seen[0])
    total = sum(timings.values())
    print(f"README path: {total:.0f} s;",
          ", ".join(f"{k.split(' -')[0][:40]}: {v:.0f} s" for k, v in timings.items()))
