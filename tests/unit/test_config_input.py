"""Hostile or careless configuration (issue 8 items 9, 10, 11, 12): paths, alias bombs, sizes,
numeric ranges, encodings and environment names are refused at load with one short line that
names the key and where the value came from."""

from __future__ import annotations

import re

import pytest

from aep_ops import config
from aep_ops.config import settings
from aep_ops.config.schema import SCHEMA, Field, ListOf, MapOf, Section, preview
from aep_ops.base.errors import ConfigError, UsageError
from tests.conftest import write_config


def leaves(schema=SCHEMA, path=""):
    """(dotted key, Field) for every leaf of the schema; free keys become ``prod`` or ``x``."""
    if isinstance(schema, Section):
        for key, sub in schema.fields.items():
            yield from leaves(sub, f"{path}.{key}" if path else key)
    elif isinstance(schema, MapOf):
        yield from leaves(schema.value, f"{path}.{'prod' if path == 'environments' else 'x'}")
    elif isinstance(schema, ListOf):
        yield from leaves(schema.item, path + "[]")
    else:
        yield path, schema


def settable(key):
    """Keys a --set or an env var can name (not inside a list of mappings such as hosts[])."""
    return "[]" not in key


PATH_KEYS = [k for k, f in leaves() if f.kind in ("path", "remote_path") and "[]" not in k[:-2]]
BOUNDED_KEYS = [(k, f) for k, f in leaves() if f.kind is int and settable(k)]


def env_var(key):
    return "AEP_OPS_" + key.upper().replace(".", "__")


def test_every_path_valued_setting_is_declared_as_a_path():
    """A str setting whose help or name says path/file/dir must be a path kind (none forgotten)."""
    words = re.compile(r"\b(path|file|dirs?|bundle|bin|bindir)\b")
    suspects = [k for k, f in leaves() if f.kind is str
                and words.search(k.rsplit(".", 1)[-1].replace("_", " ") + " " + f.help.lower())]
    assert suspects == [], suspects
    assert {"state_dir", "runbook_dirs[]", "environments.prod.ssh.identity", "environments.prod.ssh.known_hosts",
            "environments.prod.backup.repo_path", "environments.prod.drill.metrics_file"} <= set(PATH_KEYS)


@pytest.mark.parametrize("key", PATH_KEYS)
@pytest.mark.parametrize("value, problem", [("logs", "a path must be absolute"), (" ", "is empty"),
                                            ("[1", "a path must be absolute")])
def test_a_relative_or_empty_path_is_refused_naming_key_and_flag(key, value, problem):
    flag_key = key.replace("[]", "")
    if flag_key != key and value == " ":  # a list: `--set runbook_dirs=` is no dirs; check a later bad item
        value, problem = "/srv/runbooks, notes", "a path must be absolute"
    with pytest.raises(ConfigError) as exc:
        config.load(None, [f"{flag_key}={value}"])
    message = str(exc.value)
    assert message.startswith(f"--set {flag_key}: '{flag_key}") and problem in message, message


@pytest.mark.parametrize("key", [k for k in PATH_KEYS if "[]" not in k])
def test_a_relative_path_from_an_env_var_or_a_file_names_its_source(key, monkeypatch, tmp_path):
    monkeypatch.setenv(env_var(key), "relative/dir")
    with pytest.raises(ConfigError, match=f"^environment variable {env_var(key)}: '{key}' is 'relative/dir'"):
        config.load()
    monkeypatch.delenv(env_var(key))
    *parents, leaf = key.split(".")
    text = "".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parents)) + f"{'  ' * len(parents)}{leaf}: rel/x\n"
    path = write_config(tmp_path / "c.yaml", text, monkeypatch)
    with pytest.raises(ConfigError, match=f"^{path}: '{key}' is 'rel/x'; a path must be absolute"):
        config.load()


def test_an_explicitly_empty_state_dir_env_var_is_an_error_not_the_default(monkeypatch):
    monkeypatch.setenv("AEP_OPS_STATE_DIR", "")
    with pytest.raises(ConfigError, match="^environment variable AEP_OPS_STATE_DIR: 'state_dir' is empty"):
        config.load()


def test_home_is_expanded_and_an_unknown_user_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.load(None, ["state_dir=~/aep"]).data["state_dir"] == str(tmp_path / "aep")
    with pytest.raises(ConfigError, match=r"'state_dir' is '~nouser-8f2c/x': no user 'nouser-8f2c'"):
        config.load(None, ["state_dir=~nouser-8f2c/x"])


def test_a_nul_byte_in_a_path_is_refused(tmp_path, monkeypatch):
    path = write_config(tmp_path / "c.yaml", 'state_dir: "/srv/a\\0b"\n', monkeypatch)
    with pytest.raises(ConfigError, match=f"^{path}: 'state_dir' contains a NUL byte"):
        config.load()


def test_relative_xdg_directories_are_ignored_as_the_spec_says(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert settings._xdg_home({"XDG_STATE_HOME": "rel"}, "XDG_STATE_HOME", ".local/state") == str(
        tmp_path / ".local/state")
    assert settings._xdg_home({"XDG_STATE_HOME": "/srv/x"}, "XDG_STATE_HOME", ".local/state") == "/srv/x"


# --- alias bombs, sizes, encodings ---------------------------------------------------------------


def billion_laughs(levels=9, width=9, use="plugins: *a{last}"):
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines + [use.replace("{last}", str(levels))]) + "\n"


@pytest.mark.parametrize("use", ["plugins: *a{last}", "environments: {prod: {ssh: {connect_timeout: *a{last}}}}",
                                 "log: *a{last}"])
def test_an_alias_bomb_is_refused_in_one_short_line(tmp_path, monkeypatch, use):
    text = billion_laughs(use=use)
    assert len(text) < 700
    path = write_config(tmp_path / "bomb.yaml", text, monkeypatch)
    with pytest.raises(ConfigError) as exc:
        config.load()
    message = str(exc.value)
    assert message.startswith(f"{path}: refused: its YAML aliases expand to more than 100000 values"), message
    assert "\n" not in message and len(message) < 300


def test_an_alias_bomb_in_an_env_var_is_refused_too(monkeypatch):
    flow = "[" + ", ".join([f"&a0 [{', '.join(['x'] * 9)}]"] + [
        f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]) + "]"
    monkeypatch.setenv("AEP_OPS_PLUGINS", flow)
    with pytest.raises(ConfigError, match="^environment variable AEP_OPS_PLUGINS: refused: its YAML aliases"):
        config.load()


def test_modest_aliases_still_work(tmp_path, monkeypatch):
    write_config(tmp_path / "c.yaml", "environments:\n  dev: {ssh: &ssh {user: ops, connect_timeout: 5}}\n"
                 "  staging: {ssh: *ssh}\n  prod: {ssh: *ssh}\n", monkeypatch)
    assert config.load("prod").get("environments.prod.ssh.connect_timeout") == 5


@pytest.mark.parametrize("text, message", [
    ("plugins: &a [*a]\n", "refused: a YAML alias refers to the value that contains it"),
    ("plugins: " + "[" * 3000 + "]" * 3000 + "\n", "refused: nested too deeply"),
    ('log: {level: "x\x01"}\n', "is not valid YAML (character #x0001 at position"),
])
def test_self_reference_deep_nesting_and_control_characters_are_one_line(tmp_path, monkeypatch, text, message):
    path = write_config(tmp_path / "c.yaml", text, monkeypatch)
    with pytest.raises(ConfigError) as exc:
        config.load()
    assert str(exc.value).startswith(f"{path}:") and message in str(exc.value) and "\n" not in str(exc.value)


def test_a_file_over_one_mib_is_refused_with_the_limit_stated(tmp_path, monkeypatch):
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * 110_000)
    monkeypatch.setenv("AEP_OPS_CONFIG", str(path))
    with pytest.raises(ConfigError, match=f"^{path}: larger than the 1 MiB a configuration file may have"):
        config.load()


def test_a_file_that_is_not_utf8_names_the_byte(tmp_path, monkeypatch):
    path = tmp_path / "latin1.yaml"
    text = "environments: {prod: {description: caf\xe9}}\n"
    path.write_bytes(text.encode("latin-1"))
    monkeypatch.setenv("AEP_OPS_CONFIG", str(path))
    offset = text.index("\xe9")
    with pytest.raises(ConfigError, match=f"^{path}: not UTF-8 text .byte 0xe9 at offset {offset}.; save it as UTF-8$"):
        config.load()


def test_an_empty_config_env_var_is_an_error(monkeypatch):
    monkeypatch.setenv("AEP_OPS_CONFIG", "")
    with pytest.raises(ConfigError, match="AEP_OPS_CONFIG is set but empty"):
        config.load()


def test_values_in_errors_are_previews_never_whole_values(tmp_path, monkeypatch):
    huge = "x" * 50_000
    path = write_config(tmp_path / "c.yaml", f"environments: {{prod: {{ssh: {{connect_timeout: {huge}}}}}}}\n"
                        f"log: {{level: {huge}}}\n", monkeypatch)
    with pytest.raises(ConfigError) as exc:
        config.load()
    assert len(str(exc.value)) < 300 and "x..." in str(exc.value) and str(path) in str(exc.value)
    assert preview(list(range(10**6))).startswith("[0, 1, 2, 3, ...]")
    recursive = []
    recursive.append(recursive)
    assert len(preview(recursive)) < 90


def test_a_secret_given_with_set_is_not_echoed_in_the_error():
    with pytest.raises(ConfigError) as exc:
        config.load(None, ["environments.prod.database.password=hunter2hunter2"])
    assert str(exc.value).startswith("--set environments.prod.database.password: ")
    assert "hunter2" not in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        config.load(None, ["environments.prod.ssh.connect_timeout=" + "9" * 5000])
    assert len(str(exc.value)) < 300


# --- numeric ranges ------------------------------------------------------------------------------


def test_every_integer_setting_has_a_range():
    assert [k for k, f in BOUNDED_KEYS if f.minimum is None or f.maximum is None] == []


@pytest.mark.parametrize("key, field", BOUNDED_KEYS, ids=[k for k, _ in BOUNDED_KEYS])
def test_an_integer_setting_out_of_range_names_the_key_and_the_range(key, field):
    expected = f"expected a whole number from {field.minimum} to {field.maximum}"
    for bad in (field.minimum - 1, field.maximum + 1):
        with pytest.raises(ConfigError) as exc:
            config.load(None, [f"{key}={bad}"])
        assert str(exc.value) == f"--set {key}: '{key}' is {bad}; {expected}"
    assert config.load(None, [f"{key}={field.maximum}"]).get(key) == field.maximum


def test_seed_scale_from_the_configuration_is_bounded(monkeypatch):
    monkeypatch.setenv("AEP_OPS_ENVIRONMENTS__LOCAL__DRILL__SCALE", "1000000")
    with pytest.raises(ConfigError, match="^environment variable AEP_OPS_ENVIRONMENTS__LOCAL__DRILL__SCALE: "
                                          "'environments.local.drill.scale' is 1000000; expected a whole number"
                                          " from 1 to 1000$"):
        config.load()
    monkeypatch.setenv("AEP_OPS_ENVIRONMENTS__LOCAL__DRILL__SCALE", "280")  # bench/drill.py's big run
    assert config.load().get("environments.local.drill.scale") == 280


def test_the_bounds_are_declared_with_the_field():
    assert Field(int, minimum=1, maximum=5).maximum == 5


# --- environment names ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a b", "a\x00b", "-x", "../prod", "prod\n", "x" * 64, "é"])
def test_an_env_flag_that_is_not_a_name_is_a_usage_error(name):
    with pytest.raises(UsageError) as exc:
        config.load(name)
    assert str(exc.value).startswith("--env ") and "an environment name is 1-63 letters" in str(exc.value)
    assert "\n" not in str(exc.value) and "\x00" not in str(exc.value)


def test_an_environment_defined_under_a_bad_name_is_refused(tmp_path, monkeypatch):
    path = write_config(tmp_path / "c.yaml", "environments:\n  'qa env': {production: false, backend: local}\n",
                        monkeypatch)
    with pytest.raises(ConfigError, match=f"^{path}: 'environments' has the key 'qa env'; an environment name"):
        config.load()
    write_config(tmp_path / "c.yaml", "environments:\n  qa-2: {production: false, backend: local}\n", monkeypatch)
    assert config.load("qa-2").env_name == "qa-2"


def test_a_postgres_setting_name_cannot_smuggle_a_line(tmp_path, monkeypatch):
    path = write_config(tmp_path / "c.yaml", "environments:\n  local:\n    postgres:\n      settings:\n"
                        "        \"fsync = off\\nshared_preload_libraries\": x\n", monkeypatch)
    with pytest.raises(ConfigError, match=f"^{path}: 'environments.local.postgres.settings' has the key"):
        config.load()


@pytest.mark.parametrize("key", ["environments.prod.backup.s3.path", "environments.prod.patching.upgrade_log"])
def test_a_path_on_another_machine_must_be_absolute_and_is_not_expanded_here(key):
    with pytest.raises(ConfigError, match=f"^--set {key}: '{key}' is '~/x'; a path must be absolute .start with /.$"):
        config.load(None, [f"{key}=~/x"])
    assert config.load(None, [f"{key}=/pgbackrest"]).get(key) == "/pgbackrest"


def test_a_huge_key_is_cut_short_in_the_error(tmp_path, monkeypatch):
    key = "k" * 20_000  # written as an explicit key (?): a plain key may not exceed 1024 characters
    write_config(tmp_path / "c.yaml", f"environments:\n  prod:\n    endpoints:\n      ? {key}\n      : [1]\n",
                 monkeypatch)
    with pytest.raises(ConfigError, match="must be a string") as exc:
        config.load()
    assert len(str(exc.value)) < 300
    write_config(tmp_path / "c.yaml", f"? {key}\n: 1\n", monkeypatch)
    with pytest.raises(ConfigError, match="unknown key 'kkk") as exc:
        config.load()
    assert len(str(exc.value)) < 400
