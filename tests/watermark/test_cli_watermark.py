import json
import os
import stat

import pytest
from click.testing import CliRunner

from distillery.cli import main
from distillery.watermark.keys import ENV_VAR


def run(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env)


def test_keygen_creates_0600_refuses_to_overwrite_and_rotates(tmp_path):
    key = tmp_path / "wm" / "master.key"
    r = run("watermark", "keygen", "--path", str(key))
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "global:v1:" in r.output
    secret = json.loads(key.read_text())["versions"]["1"]
    assert secret not in r.output
    again = run("watermark", "keygen", "--path", str(key))
    assert again.exit_code != 0 and "--rotate" in again.output
    rotated = run("watermark", "keygen", "--path", str(key), "--rotate")
    assert rotated.exit_code == 0 and "current version 2" in rotated.output
    assert sorted(json.loads(key.read_text())["versions"]) == ["1", "2"]


def test_detect_refuses_a_key_file_others_can_read(tmp_path):
    key = tmp_path / "k"
    run("watermark", "keygen", "--path", str(key))
    os.chmod(key, 0o640)
    text = tmp_path / "t.txt"
    text.write_text("hello")
    r = run("watermark", "detect", str(text), "--key-path", str(key))
    assert r.exit_code == 1
    assert "chmod 600" in r.output and len(r.output.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    """`distillery generate --watermark kgw --account bob` output, and the key it used."""
    env = {ENV_VAR: "5a" * 32}
    r = run("generate", "--model", "tiny-random", "--raw", "--no-stream", "--max-tokens", "150",
            "--temperature", "1.0", "--seed", "3", "--watermark", "kgw", "--account", "bob",
            "Once upon a time", env=env)
    assert r.exit_code == 0, r.output
    assert "account:bob:v1:" in r.stderr  # the key ids go to stderr, public ids only
    path = tmp_path_factory.mktemp("wm") / "answer.txt"
    path.write_text(r.stdout)
    return path, env


def test_generated_text_is_detected_and_attributed(marked):
    path, env = marked
    r = run("watermark", "detect", str(path), "--account", "bob", "--json", env=env)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["global"]["p_value"] < 1e-6 and out["account"]["p_value"] < 1e-6
    assert out["account"]["key_id"].startswith("account:bob:v1:")
    scan = run("watermark", "detect", str(path), "--all-accounts", "--accounts",
               "alice,bob,carol,dave", env=env)
    assert scan.exit_code == 0, scan.output
    assert "best account: bob" in scan.stdout


def test_all_accounts_from_a_file_as_json(marked, tmp_path):
    path, env = marked
    names = tmp_path / "accounts.txt"
    names.write_text("alice\nbob\n\ncarol\n")
    r = run("watermark", "detect", str(path), "--all-accounts", "--accounts-file", str(names),
            "--json", env=env)
    out = json.loads(r.stdout)
    assert out["best_account"] == "bob" and len(out["per_key"]) == 3


def test_detect_flags_and_errors(marked, tmp_path):
    path, env = marked
    no_gateway = f"sqlite:///{tmp_path}/not-a-gateway.db"
    r = run("watermark", "detect", str(path), "--all-accounts", "--database", no_gateway,
            env=env)
    assert r.exit_code != 0 and "--accounts" in r.output and "not-a-gateway.db" in r.output
    r = run("watermark", "detect", str(path), "--scheme", "gumbel", env=env)
    assert r.exit_code == 0 and "p=" in r.stdout  # wrong scheme: runs, finds nothing strong
    r = run("generate", "--model", "tiny-random", "--account", "bob", "Hi", env=env)
    assert r.exit_code != 0 and "--watermark" in r.output
