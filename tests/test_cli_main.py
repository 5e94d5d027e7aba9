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
