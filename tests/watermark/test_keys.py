import logging
import os
import stat

import pytest

from distillery.watermark import KeyFileError, KeyRing
from distillery.watermark.keys import ENV_VAR


def test_keygen_writes_0600_and_loads_back(tmp_path):
    ring = KeyRing.generate()
    path = ring.save(tmp_path / "wm" / "master.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = KeyRing.load(path)
    assert again.account_key("alice") == ring.account_key("alice")


def test_a_key_file_readable_by_others_is_refused(tmp_path):
    path = KeyRing.generate().save(tmp_path / "master.key")
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        KeyRing.load(path)


def test_missing_and_malformed_files_say_what_to_do(tmp_path):
    with pytest.raises(KeyFileError, match="keygen"):
        KeyRing.load(tmp_path / "nope.key")
    bad = tmp_path / "bad.key"
    bad.write_text("hello")
    os.chmod(bad, 0o600)
    with pytest.raises(KeyFileError, match="keygen"):
        KeyRing.load(bad)


def test_generate_with_a_path_writes_the_default_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLERY_HOME", str(tmp_path))
    monkeypatch.delenv(ENV_VAR, raising=False)
    ring = KeyRing.generate(tmp_path / "watermark.key")
    assert KeyRing.load().global_key() == ring.global_key()  # $DISTILLERY_HOME/watermark.key
    assert issubclass(KeyFileError, ValueError)


def test_save_refuses_to_overwrite(tmp_path):
    p = KeyRing.generate().save(tmp_path / "k")
    with pytest.raises(FileExistsError, match="rotate"):
        KeyRing.generate().save(p)


def test_environment_variable(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "ab" * 32)
    assert KeyRing.load().versions == [1]
    monkeypatch.setenv(ENV_VAR, f"1:{'ab' * 32},2:{'cd' * 32}")
    ring = KeyRing.load()
    assert ring.current == 2 and ring.versions == [1, 2]
    monkeypatch.setenv(ENV_VAR, "not hex")
    with pytest.raises(KeyFileError, match=ENV_VAR):
        KeyRing.load()


def test_derived_keys_are_distinct_deterministic_and_versioned(ring):
    a, b = ring.account_key("alice"), ring.account_key("bob")
    assert a.secret != b.secret and a.key_id != b.key_id
    assert a.key_id.startswith("account:alice:v1:")
    assert ring.global_key().key_id.startswith("global:v1:")
    rotated = ring.rotated()
    assert rotated.current == 2
    assert rotated.account_key("alice", version=1) == a  # old text stays detectable
    assert rotated.account_key("alice").secret != a.secret
    with pytest.raises(KeyError, match="no master key version 7"):
        ring.account_key("alice", version=7)
    with pytest.raises(ValueError):
        ring.account_key("")


def test_secrets_never_reach_repr_or_logs(tmp_path, caplog):
    ring = KeyRing.generate()
    key = ring.account_key("alice")
    caplog.set_level(logging.DEBUG)
    path = ring.save(tmp_path / "k")
    logging.getLogger("x").info("%r %s %r", key, key, ring)
    text = caplog.text + repr(key) + str(key) + repr(ring)
    master_hex = path.read_text().split('"1": "')[1][:64]
    for secret in (key.secret.hex(), master_hex, ring.global_key().secret.hex()):
        assert secret not in text
    assert key.key_id in repr(key)
