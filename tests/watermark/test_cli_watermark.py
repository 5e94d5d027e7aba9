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


def test_default_detect_reaches_full_power_on_gateway_text(marked):
    """No --account: the provider test finds the global layer of two-layer text (the old
    default scored every position, half of them the account key's)."""
    path, env = marked
    oracle = json.loads(run("watermark", "detect", str(path), "--account", "bob", "--json",
                            env=env).stdout)["global"]
    out = json.loads(run("watermark", "detect", str(path), "--json", env=env).stdout)["provider"]
    assert out["global_layer"] == oracle
    assert out["p_value"] == min(1.0, 2 * min(oracle["p_value"],
                                              out["every_position"]["p_value"]))
    assert out["p_value"] < out["every_position"]["p_value"] and out["hypothesis"] == "global layer"
    text = run("watermark", "detect", str(path), env=env)
    assert "provider key: p=" in text.stdout and "strongest: global layer" in text.stdout


@pytest.mark.parametrize(("seeding", "width"), [("lefthash", 3), ("selfhash", 2)])
def test_detect_options_for_transformers_watermarking_config(tiny_engine, tmp_path, seeding,
                                                             width):
    """Text from transformers' generate with a WatermarkingConfig, checked from the shell with
    the same settings: the counts are WatermarkDetector's (no dedup), and no key ring is
    needed for a public hashing key."""
    import torch
    from transformers import WatermarkDetector, WatermarkingConfig

    config = WatermarkingConfig(greenlist_ratio=0.3, bias=4.0, hashing_key=123457,
                                seeding_scheme=seeding, context_width=width)
    torch.manual_seed(0)
    prompt = torch.tensor([[1, 504, 3312, 88]])
    out = tiny_engine.model.generate(prompt, attention_mask=torch.ones_like(prompt),
                                     watermarking_config=config, do_sample=True,
                                     max_new_tokens=60, min_new_tokens=60,
                                     pad_token_id=tiny_engine.pad_id)
    text = tiny_engine.tokenizer.decode(out[0, 4:])
    path = tmp_path / "hf.txt"
    path.write_text(text)
    ids = tiny_engine.tokenizer.encode(text, add_special_tokens=False)  # what detect reads
    theirs = WatermarkDetector(tiny_engine.model.config, "cpu", config,
                               ignore_repeated_ngrams=False)(torch.tensor([ids]),
                                                             return_dict=True)
    vocab = str(tiny_engine.model.config.vocab_size)
    args = ["watermark", "detect", str(path), "--model", "tiny-random", "--construction",
            "transformers", "--hashing-key", "123457", "--seeding", seeding, "--context-width",
            str(width), "--gamma", "0.3", "--vocab-size", vocab, "--json"]
    env = {"DISTILLERY_HOME": str(tmp_path), ENV_VAR: None}  # no key ring anywhere
    raw = run(*args, "--no-dedup", env=env)
    assert raw.exit_code == 0, raw.output
    ours = json.loads(raw.stdout)["provider"]
    assert ours["global_layer"] is None  # one key, no layers
    assert ours["every_position"]["n_scored"] == theirs.num_tokens_scored[0]
    assert ours["every_position"]["score"] == theirs.num_green_tokens[0]
    assert json.loads(run(*args, env=env).stdout)["provider"]["p_value"] < 1e-4
    other = run(*args[:-1], "--hashing-key", "999", "--json", env=env)
    assert json.loads(other.stdout)["provider"]["p_value"] > 1e-3  # another key: nothing


def test_detect_corpus_from_a_directory_or_jsonl(tmp_path):
    env = {ENV_VAR: "5a" * 32}
    texts = ["The red box is 12 meters long.\nStep 3: open the door."] * 3 + ["Hello there."]
    folder = tmp_path / "pages"
    folder.mkdir()
    for i, t in enumerate(texts):
        (folder / f"{i}.txt").write_text(t)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"response": t}) + "\n" for t in texts))
    common = ["--model", "tiny-random", "--json"]
    a = run("watermark", "detect", "--corpus", str(folder), *common, env=env)
    b = run("watermark", "detect", "--corpus", str(rows), *common, env=env)
    assert a.exit_code == 0, a.output
    assert json.loads(a.stdout) == json.loads(b.stdout)
    one = json.loads(run("watermark", "detect", str(folder / "0.txt"), *common,
                         env=env).stdout)["provider"]["every_position"]
    corpus = json.loads(a.stdout)["provider"]["every_position"]
    assert corpus["n_scored"] < 2 * one["n_scored"]  # the three copies count once
    assert "corpus of 4 documents" in run("watermark", "detect", "--corpus", str(folder),
                                          "--model", "tiny-random", env=env).stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"response": "a"}\n{"prompt": "b"}\n')
    r = run("watermark", "detect", "--corpus", str(bad), "--model", "tiny-random", env=env)
    assert r.exit_code == 1 and "row 2" in r.output and len(r.output.strip().splitlines()) == 1
    r = run("watermark", "detect", "--model", "tiny-random", env=env)
    assert r.exit_code != 0 and "--corpus" in r.output


def test_unknown_account_is_an_error_when_a_database_is_given(tmp_path):
    from distillery import store

    url = f"sqlite:///{tmp_path}/gw.db"
    store.migrate(url)
    engine = store.make_engine(url)
    for name in ("alice", "bob"):
        store.create_account(engine, name)
    engine.dispose()
    text = tmp_path / "t.txt"
    text.write_text("Once upon a time there was a watermark.")
    env = {ENV_VAR: "5a" * 32}
    r = run("watermark", "detect", str(text), "--account", "mallory", "--database", url,
            "--model", "tiny-random", env=env)
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert "unknown account 'mallory'" in r.output and "(known: alice, bob)" in r.output
    ok = run("watermark", "detect", str(text), "--account", "alice", "--database", url,
             "--model", "tiny-random", env=env)
    assert ok.exit_code == 0 and "account" in ok.stdout
    assert "derived from" in run("watermark", "detect", "--help").output
