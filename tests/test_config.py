"""chatroom.config: defaults, TOML file, environment, command line, and bad values.

Precedence, lowest first: defaults < file < environment < command line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from chatroom import config
from chatroom.cli.main import main
from chatroom.config import Config, HookSetting, from_environment, load

NO_ENV: dict[str, str] = {}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chatroom.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    config = load(env=NO_ENV)
    assert config == Config()
    assert (config.host, config.port, config.http_port) == ("127.0.0.1", 8080, 8081)
    assert config.db == "./chatroom.db"
    assert config.max_client_id_length == 64
    assert config.max_members == 500
    assert (config.history_default_limit, config.history_max_limit) == (20, 100)
    assert config.idle_timeout > 380  # the SDK's own idle limit: never cut a live client


def test_every_setting_has_a_default() -> None:
    for field in dataclasses.fields(Config):
        assert field.default is not dataclasses.MISSING, field.name


def test_toml_file_top_level_keys(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 9000\nidle_timeout = 30.5\ndb = ":memory:"\n')
    config = load(path, env=NO_ENV)
    assert (config.port, config.idle_timeout, config.db) == (9000, 30.5, ":memory:")
    assert config.http_port == 8081  # untouched settings keep their defaults


def test_toml_file_chatroom_table(tmp_path: Path) -> None:
    path = write(tmp_path, "[chatroom]\nmax_members = 3\nidle_timeout = 2\n")
    config = load(path, env=NO_ENV)
    assert config.max_members == 3
    assert config.idle_timeout == 2.0
    assert isinstance(config.idle_timeout, float)


def test_chatroom_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, 'chatroom = "yes"\n')
    with pytest.raises(ValueError, match="table"):
        load(path, env=NO_ENV)


def test_environment(tmp_path: Path) -> None:
    env = {"CHATROOM_MAX_MEMBERS": "1000", "CHATROOM_HOST": "0.0.0.0", "OTHER": "x"}
    config = load(env=env)
    assert config.max_members == 1000
    assert config.host == "0.0.0.0"
    assert from_environment(env) == {"max_members": "1000", "host": "0.0.0.0"}


def test_command_line_wins_over_environment_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 1\nhttp_port = 2\nmax_members = 3\n")
    env = {"CHATROOM_PORT": "10", "CHATROOM_HTTP_PORT": "20"}
    config = load(path, cli={"port": 100, "http_port": None}, env=env)
    assert config.port == 100  # command line
    assert config.http_port == 20  # environment (None on the command line: not given)
    assert config.max_members == 3  # file


def test_load_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATROOM_MAX_MEMBERS", "7")
    assert load().max_members == 7


@pytest.mark.parametrize(
    ("source", "setting", "value"),
    [
        ("file", "port", '"eighty"'),
        ("file", "max_members", "true"),
        ("file", "max_members", "2.5"),
        ("file", "idle_timeout", '"soon"'),
        ("file", "host", "8080"),
        ("file", "db", "[1, 2]"),
        ("env", "port", "eighty"),
        ("env", "idle_timeout", "soon"),
        ("env", "idle_timeout", "nan"),  # would pass "not negative", and no deadline is NaN
        ("env", "write_latency", "-1"),
        ("env", "max_members", "2.5"),
        ("cli", "port", "eighty"),
        ("cli", "max_members", True),
        ("cli", "max_members", 2.5),
        ("cli", "host", 1),
    ],
)
def test_bad_values_name_the_setting(
    tmp_path: Path, source: str, setting: str, value: object
) -> None:
    with pytest.raises(ValueError, match=setting):
        load_from(tmp_path, source, setting, value)


@pytest.mark.parametrize("source", ["file", "table", "cli"])
def test_unknown_settings_are_refused(tmp_path: Path, source: str) -> None:
    with pytest.raises(ValueError, match="max_memebrs"):
        load_from(tmp_path, source, "max_memebrs", 3)


def load_from(tmp_path: Path, source: str, setting: str, value: object) -> Config:
    """Load one setting given in a file (top level or table), the environment or the
    command line; ``value`` is TOML text for files."""
    if source == "file":
        return load(write(tmp_path, f"{setting} = {value}\n"), env=NO_ENV)
    if source == "table":
        return load(write(tmp_path, f"[chatroom]\n{setting} = {value}\n"), env=NO_ENV)
    if source == "env":
        return load(env={f"CHATROOM_{setting.upper()}": str(value)})
    return load(cli={setting: value}, env=NO_ENV)


def test_unknown_environment_variables_are_ignored() -> None:
    # The environment is shared with everything else; only known names are read.
    assert load(env={"CHATROOM_MAX_MEMEBRS": "3"}) == Config()


def test_with_overrides_converts_and_copies() -> None:
    base = Config()
    changed = base.with_overrides({"port": "0", "write_delay": 1})
    assert (changed.port, changed.write_delay) == (0, 1.0)
    assert isinstance(changed.write_delay, float)
    assert base.port == 8080  # the original is unchanged (frozen)
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.port = 1  # type: ignore[misc]


def test_a_reply_bound_over_half_the_outbox_fails_at_start(tmp_path: Path) -> None:
    # A reply that does not fit in its connection's outbox closes it with 4120: the
    # bound asked for must leave half the outbox to what a busy connection has queued.
    default = Config()
    assert default.reply_bytes == default.max_reply_bytes <= default.outbox_max_bytes // 2
    with pytest.raises(ValueError, match=r"max_reply_bytes.*half of outbox_max_bytes"):
        load(cli={"max_reply_bytes": 4 * 1024 * 1024}, env=NO_ENV)
    with pytest.raises(ValueError, match="max_reply_bytes"):
        load(cli={"max_reply_bytes": 300_000, "outbox_max_bytes": 500_000}, env=NO_ENV)
    # Checked once every source is in: the file's outbox makes room for the command line.
    cli = {"max_reply_bytes": 2**21}
    bigger = load(write(tmp_path, "outbox_max_bytes = 4194304\n"), cli, env=NO_ENV)
    assert bigger.reply_bytes == 2**21
    # Left at its default, the bound follows a smaller outbox.
    assert load(cli={"outbox_max_bytes": 400_000}, env=NO_ENV).reply_bytes == 200_000


# -- hooks (docs/hooks.md)

HOOKS_TOML = """
port = 9000

[hooks.messageReceived]
url = "https://hooks.example.com/1.1/functions/_messageReceived"
timeout_ms = 250
on_failure = "refuse"

[hooks._clientOnline]
url = "http://127.0.0.1:3000/online"
"""


def test_hooks_are_tables_of_the_toml_file(tmp_path: Path) -> None:
    config = load(write(tmp_path, HOOKS_TOML), env={"CHATROOM_HOOK_SECRET": "s3"})
    assert config.port == 9000
    assert config.hook_secret == "s3"
    assert config.hooks == (
        HookSetting(
            "_messageReceived",
            "https://hooks.example.com/1.1/functions/_messageReceived",
            250,
            "refuse",
            32,
        ),
        HookSetting("_clientOnline", "http://127.0.0.1:3000/online", 500, "pass", 32),
    )


def test_hooks_beside_a_chatroom_table_and_from_the_environment(tmp_path: Path) -> None:
    text = '[chatroom]\nport = 9001\n\n[hooks.messageSent]\nurl = "http://h/sent"\n'
    config = load(write(tmp_path, text), env=NO_ENV)
    assert [h.name for h in config.hooks] == ["_messageSent"]
    env = {"CHATROOM_HOOKS": '{"clientOffline": {"url": "http://h/off", "concurrency": 2}}'}
    [hook] = load(env=env).hooks
    assert (hook.name, hook.url, hook.concurrency) == ("_clientOffline", "http://h/off", 2)


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ('[hooks.messageRecieved]\nurl = "http://h/"', "unknown hook"),
        ("[hooks.messageSent]\ntimeout_ms = 5", "url must be"),
        ('[hooks.messageSent]\nurl = "ftp://h/"', "url must be"),
        ('[hooks.messageSent]\nurl = "http:///x"', "no host"),
        ('[hooks.messageSent]\nurl = "http://h/"\non_failure = "retry"', "on_failure"),
        ('[hooks.messageSent]\nurl = "http://h/"\ntimeout_ms = 0', "timeout_ms"),
        ('[hooks.messageSent]\nurl = "http://h/"\ntimeout_ms = 0.5', "expected int"),
        ('[hooks.messageSent]\nurl = "http://h/"\nconcurrency = 0', "concurrency"),
        ('[hooks.messageSent]\nurl = "http://h/"\nretries = 3', "unknown keys"),
        ('hooks = "x"', "not a JSON object"),
        (
            '[hooks.messageSent]\nurl = "http://h/"\n[hooks._messageSent]\nurl = "http://h/"',
            "twice",
        ),
    ],
)
def test_bad_hook_tables_name_the_hook(tmp_path: Path, table: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        load(write(tmp_path, table), env=NO_ENV)


def test_redis_comes_from_the_flag_the_environment_or_the_file(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('redis = "redis://10.0.0.1:6379/0"\n')
    assert load(toml, env={}).redis == "redis://10.0.0.1:6379/0"
    env = {"CHATROOM_REDIS": "redis://10.0.0.2:6379/1"}
    assert load(toml, env=env).redis == "redis://10.0.0.2:6379/1"
    cli = {"redis": "unix:///run/redis.sock"}
    assert load(toml, cli, env).redis == "unix:///run/redis.sock"


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"workers": 4}, "needs --redis"),
        ({"workers": 4, "redis": "redis://h:6379/0"}, "one SQLite file"),
        ({"workers": 2, "redis": "redis://h:6379/0", "db": ":memory:"}, "in memory"),
        ({"redis": "h:6379"}, "redis://HOST:PORT/DB"),
        ({"workers": 0}, "at least 1 process"),
        ({"workers": 2, "redis": "redis://h/0", "db": "postgresql://u@h/d", "port": 0}, "fixed"),
    ],
)
def test_a_combination_that_cannot_work_is_refused_at_start(
    overrides: dict[str, object], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match=says):
        config.check_combination(Config().with_overrides(overrides))
    argv = ["serve"] + [f"--{k}={v}" for k, v in overrides.items()]
    assert main(argv) == 2
    assert says in capsys.readouterr().err


def test_one_process_with_or_without_redis_is_fine() -> None:
    config.check_combination(Config())
    config.check_combination(Config(redis="redis://127.0.0.1:6379/0"))
