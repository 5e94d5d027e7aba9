import click
from click.testing import CliRunner

from distillery.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_models_list_shows_every_model():
    result = run("models", "list")
    assert result.exit_code == 0
    for name in ("smollm2-135m-instruct", "gemma-3-270m", "tiny-random"):
        assert name in result.output


def test_generate_with_tiny_model():
    result = run("generate", "--model", "tiny-random", "--max-tokens", "5", "--seed", "1", "Hi")
    assert result.exit_code == 0, result.output
    assert result.output.strip()


def test_generate_batch_of_prompts():
    result = run("generate", "--model", "tiny-random", "--max-tokens", "3", "a", "b")
    assert result.exit_code == 0 and "--- 2: b" in result.output


def one_line_error(result, match):
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], result.output


def test_unknown_model_is_one_readable_line():
    one_line_error(run("generate", "--model", "gpt-17", "Hi"), "unknown model 'gpt-17'")


def test_bad_max_tokens_is_one_readable_line():
    one_line_error(run("generate", "--model", "tiny-random", "--max-tokens", "0", "Hi"),
                   "max_tokens must be a positive integer")


def test_empty_prompt_is_rejected():
    result = run("generate", "--model", "tiny-random", "  ")
    assert result.exit_code != 0 and "empty" in result.output


def test_help_of_a_subcommand_exits_cleanly():
    result = run("generate", "--help")
    assert result.exit_code == 0 and "--max-tokens" in result.output


def test_database_and_key_commands_do_not_import_torch(tmp_path):
    """accounts, keys, watermark keygen and info write or read a file or a row: they must not
    pay ~9 s for torch and transformers."""
    import os
    import subprocess
    import sys

    code = """
import sys
from click.testing import CliRunner
from distillery.cli import main
for args in (["accounts", "create", "bob"], ["keys", "create", "--account", "bob"],
             ["accounts", "list"], ["keys", "list"], ["watermark", "keygen"], ["info"]):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, (args, r.output)
heavy = [m for m in ("torch", "transformers") if m in sys.modules]
assert not heavy, heavy
"""
    env = {**os.environ, "DISTILLERY_HOME": str(tmp_path)}
    env.pop("DISTILLERY_WATERMARK_KEY", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_info_says_where_things_live(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("DISTILLERY_HOME", str(tmp_path))
    monkeypatch.delenv("DISTILLERY_WATERMARK_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    r = run("info")
    assert r.exit_code == 0, r.output
    assert f"sqlite:///{tmp_path}/distillery.db" in r.output
    assert f"{tmp_path}/watermark.key  (missing" in r.output
    assert f"{tmp_path}/models" in r.output and "sk-secret-value" not in r.output
    loc = json.loads(run("info", "--json").output)
    assert loc["home"] == str(tmp_path) and loc["environment"]["DISTILLERY_HOME"] == str(tmp_path)
    assert loc["environment"]["OPENAI_API_KEY"] == "(set, not shown)"


def test_an_error_keeps_its_cause_on_one_line():
    from distillery.cli import one_line

    assert one_line(ValueError("connection failed:\n\tIs the server running?")) == \
        "connection failed: Is the server running?"
    try:
        try:
            raise OSError("No space left on device")
        except OSError as e:
            raise RuntimeError("could not save the student") from e
    except RuntimeError as e:
        assert one_line(e) == ("could not save the student (OSError: No space left on "
                               "device)")


def test_bad_database_url_is_one_line_for_accounts_keys_and_serve(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLERY_HOME", str(tmp_path))
    for url, cause in (("foo://x", "Can't load plugin"), ("not a url", "Could not parse"),
                       ("postgresql+psycopg://postgres:pw@127.0.0.1:1/x", "Connection refused")):
        for args in (["accounts", "list"], ["keys", "create", "--account", "a"],
                     ["serve", "--model", "fake"]):
            r = run(*args, "--database", url)
            one_line_error(r, "cannot open the database")
            assert cause in r.output and ":pw@" not in r.output, r.output


def test_serve_checks_model_and_key_before_starting(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLERY_HOME", str(tmp_path))
    monkeypatch.delenv("DISTILLERY_WATERMARK_KEY", raising=False)
    one_line_error(run("serve", "--model", "gpt-17"), "unknown model 'gpt-17'")
    one_line_error(run("serve", "--model", "fake"), "no watermark key at")
    one_line_error(run("serve", "--model", "fake", "--watermark-key", str(tmp_path / "k")),
                   "no watermark key at")
    (tmp_path / "bad.toml").write_text("model = [\n")
    one_line_error(run("serve", "--config", str(tmp_path / "bad.toml")), "bad.toml: ")


def test_models_list_json():
    import json

    rows = json.loads(run("models", "list", "--json").output)
    assert {r["name"] for r in rows} >= {"smollm2-135m-instruct", "gemma-3-270m", "tiny-random"}
    assert all(set(r) == {"name", "description", "installed", "cached"} for r in rows)


def test_every_option_of_train_harvest_evaluate_has_help_and_a_shown_default():
    for name in ("train", "harvest", "evaluate"):
        cmd = main.commands[name]
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.name == "help":
                continue
            assert p.help, f"{name} --{p.name} has no help"
            shown = p.show_default or "[default:" in p.help or "[required]" in p.help
            assert p.is_flag or p.multiple or p.required or shown or p.name in (
                "config_path", "seed", "limit", "api_keys_file", "parquet", "json_out"), \
                f"{name} --{p.name} shows no default"


def test_every_environment_variable_is_in_info_and_the_readme():
    import re
    from pathlib import Path

    from distillery.cli.info import ENVIRONMENT

    root = Path(__file__).resolve().parents[1]
    read = set()
    for f in (root / "src").rglob("*.py"):
        read |= set(re.findall(r"\"(DISTILLERY_[A-Z_]+|OPENAI_API_KEY)\"", f.read_text()))
    assert read and read <= set(ENVIRONMENT), read - set(ENVIRONMENT)
    readme = (root / "README.md").read_text()
    assert all(f"`{k}`" in readme for k in ENVIRONMENT)


def test_lazy_packages_resolve_every_name():
    """models, harvest and watermark resolve their names on first use: each must exist, and
    watermark's `detect` stays the function even once its submodule is imported."""
    import importlib
    import inspect

    for pkg in ("distillery.models", "distillery.harvest", "distillery.watermark",
                "distillery.distill"):
        mod = importlib.import_module(pkg)
        for name in mod.__all__:
            assert getattr(mod, name) is not None, f"{pkg}.{name}"
    importlib.import_module("distillery.watermark.detect")
    from distillery.watermark import detect

    assert inspect.isfunction(detect)
