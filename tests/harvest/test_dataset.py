"""The harvested dataset's file rules: what survives a resume, and how a bad line is reported."""

import json

import pytest

from distillery.harvest import iter_prompts, read_rows
from distillery.harvest.dataset import DatasetWriter


def row(i: int) -> dict:
    return {"prompt_hash": f"{i:064x}", "prompt": f"p{i}", "response": f"r{i}"}


def test_complete_last_row_without_newline_survives_a_resume(tmp_path):
    p = tmp_path / "d.jsonl"
    # a file edited by hand: the last row is complete but has no final newline
    p.write_text(json.dumps(row(1)) + "\n" + json.dumps(row(2)))
    assert [r["prompt"] for r in read_rows(p)] == ["p1", "p2"]
    with DatasetWriter(p) as w:
        assert w.done == {row(1)["prompt_hash"], row(2)["prompt_hash"]}
        assert w.append(row(3))
    assert [r["prompt"] for r in read_rows(p)] == ["p1", "p2", "p3"]


def test_only_a_torn_last_row_is_dropped(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps(row(1)) + "\n" + json.dumps(row(2))[:-5])
    assert [r["prompt"] for r in read_rows(p)] == ["p1"]
    with DatasetWriter(p) as w:
        w.append(row(3))
    assert p.read_text().count("\n") == 2
    assert [r["prompt"] for r in read_rows(p)] == ["p1", "p3"]


def test_a_bad_line_names_the_file_and_the_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps(row(1)) + "\n\nnot json\n" + json.dumps(row(2)) + "\n")
    with pytest.raises(ValueError, match=r"d\.jsonl:3: not a JSON object"):
        read_rows(p)
    q = tmp_path / "q.jsonl"
    q.write_text('{"prompt": "a"}\n{"prompt": "b",\n')
    with pytest.raises(ValueError, match=r"q\.jsonl:2: not a JSON object"):
        list(iter_prompts(q))


def test_prompt_files_and_datasets_share_the_torn_line_rule(tmp_path):
    q = tmp_path / "q.jsonl"
    q.write_text('{"prompt": "a"}\n{"prompt": "b"}')   # complete, no newline: kept
    assert [x.text for x in iter_prompts(q)] == ["a", "b"]
    q.write_text('{"prompt": "a"}\n{"prompt": "b')     # torn: skipped, as in a dataset
    assert [x.text for x in iter_prompts(q)] == ["a"]
