import json

from click.testing import CliRunner

from distillery.cli import main


def test_prompt_commands_write_harvestable_files(tmp_path, fake_server):
    url, _ = fake_server
    r = CliRunner()
    for args in (["seeds", "--category", "math"], ["taxonomy"], ["cot", "seeds", "--one-each"],
                 ["self-instruct", "--base-url", url, "--api-key", "k", "-n", "2",
                  "--max-requests", "3"]):
        out = tmp_path / f"{args[0]}.jsonl"
        res = r.invoke(main, ["prompts", *args, "-o", str(out)])
        assert res.exit_code == 0, res.output
        rows = [json.loads(x) for x in out.read_text().splitlines()]
        assert rows and all(x["messages"][-1]["role"] == "user" for x in rows)
    res = r.invoke(main, ["harvest", str(tmp_path / "seeds.jsonl"), "-o",
                          str(tmp_path / "d.jsonl"), "--base-url", url, "--api-key", "k",
                          "--no-progress", "--parquet", str(tmp_path / "d.parquet")])
    assert res.exit_code == 0, res.output
    assert "written 14" in res.output and (tmp_path / "d.parquet").exists()


def test_cli_errors_are_one_readable_line(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / "p.jsonl").write_text('{"prompt": "hi"}\n')
    res = CliRunner().invoke(main, ["harvest", str(tmp_path / "p.jsonl"), "-o",
                                    str(tmp_path / "d.jsonl")])
    assert res.exit_code == 1 and "error: no API key" in res.output
    res = CliRunner().invoke(main, ["train", str(tmp_path / "d.jsonl")])
    assert res.exit_code == 1 and "output_dir is required" in res.output


def test_harvest_against_a_dead_url_fails_in_seconds_with_the_cause(tmp_path):
    import time

    from distillery.harvest.testserver import free_port

    (tmp_path / "p.jsonl").write_text('{"prompt": "hi"}\n')
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    t0 = time.monotonic()
    res = CliRunner().invoke(main, ["harvest", str(tmp_path / "p.jsonl"), "-o",
                                    str(tmp_path / "d.jsonl"), "--base-url", url,
                                    "--api-key", "k", "--no-progress"])
    assert time.monotonic() - t0 < 15  # default retries back off for minutes
    lines = res.output.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert f"cannot reach {url}" in lines[0] and "Connect" in lines[0], lines[0]


def test_harvest_summary_as_json(tmp_path, fake_server):
    url, _ = fake_server
    (tmp_path / "p.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    args = ["harvest", str(tmp_path / "p.jsonl"), "-o", str(tmp_path / "d.jsonl"),
            "--base-url", url, "--api-key", "k", "--no-progress", "--json"]
    first = json.loads(CliRunner().invoke(main, args).output)
    again = json.loads(CliRunner().invoke(main, args).output)
    assert (first["written"], first["skipped"], first["failed"]) == (2, 0, 0)
    assert (again["written"], again["skipped"]) == (0, 2) and again["completion_tokens"] == 0
