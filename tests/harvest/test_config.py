import pytest

from distillery.distill.config import EvalConfig, TrainConfig
from distillery.harvest import HarvestConfig, load_config


def test_toml_sections_then_flag_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[harvest]\nbase_url = "http://h:1/v1"\napi_keys = ["a", "b"]\n'
                 'concurrency = 3\n\n[train]\ndataset = "d.jsonl"\noutput_dir = "o"\n'
                 'lora_r = 4\n\n[evaluate]\ndataset = "d"\nstudent = "s"\n')
    h = load_config(HarvestConfig, f, section="harvest", concurrency=9, model=None)
    assert (h.base_url, h.api_keys, h.concurrency) == ("http://h:1/v1", ["a", "b"], 9)
    t = load_config(TrainConfig, f, section="train", max_steps=5)
    assert (t.lora_r, t.max_steps) == (4, 5)
    assert load_config(EvalConfig, f, section="evaluate").student == "s"


def test_unknown_keys_are_named(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('api_keys = ["a"]\nconcurency = 3\n')
    with pytest.raises(ValueError, match="unknown HarvestConfig keys \\['concurency'\\]"):
        load_config(HarvestConfig, f)
