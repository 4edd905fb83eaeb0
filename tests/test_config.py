"""Config loading: good files load, bad ones name the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hivetui.config import (
    CONFIG_ENV,
    STARTER_CONFIG,
    ConfigError,
    load_config,
    parse_config,
    write_starter_config,
)

GOOD = """\
refresh_interval = 2

[[hosts]]
name = "gpu01"
address = "10.0.0.5"
port = 2222
user = "alice"
identity_file = "~/.ssh/id_ed25519"

[[hosts]]
name = "gpu02"

[ssh]
known_hosts = "~/.ssh/known_hosts"
"""


def test_good_config_loads() -> None:
    config = parse_config(GOOD, "good.toml")
    assert [h.name for h in config.hosts] == ["gpu01", "gpu02"]
    assert config.hosts[0].port == 2222
    assert config.hosts[1].address is None
    assert config.refresh_interval == 2.0
    assert config.ssh.known_hosts == "~/.ssh/known_hosts"


def test_no_hosts_means_the_local_machine() -> None:
    config = parse_config("", "empty.toml")
    assert [h.name for h in config.effective_hosts] == ["localhost"]
    assert config.effective_hosts[0].is_local


def test_unknown_key_names_file_line_and_key() -> None:
    text = GOOD.replace('name = "gpu02"', 'name = "gpu02"\nprot = 22')
    with pytest.raises(ConfigError) as info:
        parse_config(text, "/etc/h.toml")
    assert str(info.value) == "/etc/h.toml:12: unknown key 'hosts[1].prot'"


def test_wrong_type_names_line_key_and_value() -> None:
    text = GOOD.replace("port = 2222", 'port = "22"')
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.toml")
    message = str(info.value)
    assert message.startswith("c.toml:6: hosts[0].port:")
    assert "'22'" in message


def test_port_out_of_range() -> None:
    with pytest.raises(ConfigError, match=r"c.toml:3: hosts\[0\].port"):
        parse_config('[[hosts]]\nname = "a"\nport = 70000\n', "c.toml")


def test_unknown_section_key() -> None:
    with pytest.raises(ConfigError, match=r"c.toml:2: unknown key 'ssh.know_hosts'"):
        parse_config('[ssh]\nknow_hosts = "x"\n', "c.toml")


def test_duplicate_host_names() -> None:
    with pytest.raises(ConfigError, match="appears twice"):
        parse_config('[[hosts]]\nname = "a"\n[[hosts]]\nname = "a"\n', "c.toml")


def test_host_name_with_space_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"c.toml:2: hosts\[0\].name"):
        parse_config('[[hosts]]\nname = "gpu 01"\n', "c.toml")


def test_missing_host_name() -> None:
    with pytest.raises(ConfigError, match=r"c.toml:1: hosts\[0\].name: Field required"):
        parse_config('[[hosts]]\naddress = "x"\n', "c.toml")


def test_broken_toml_says_where() -> None:
    with pytest.raises(ConfigError, match=r"c.toml: not valid TOML: .*line 2"):
        parse_config('[[hosts]]\nname = "a\n', "c.toml")


def test_named_config_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(str(tmp_path / "nope.toml"))


def test_env_var_names_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    monkeypatch.setenv(CONFIG_ENV, str(path))
    loaded = load_config(None)
    assert loaded.path == path
    assert len(loaded.config.hosts) == 2


def test_starter_config_is_valid_and_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.toml"
    write_starter_config(path)
    assert path.read_text() == STARTER_CONFIG
    assert parse_config(path.read_text(), str(path)).hosts == []
    with pytest.raises(ConfigError, match="already exists"):
        write_starter_config(path)
    # Every commented-out example in the starter is itself valid once uncommented.
    uncommented = "\n".join(
        line.removeprefix("# ")
        if line.startswith("# ") and "=" in line or line.startswith("# [")
        else line
        for line in STARTER_CONFIG.splitlines()
    )
    config = parse_config(uncommented, "starter")
    assert [h.name for h in config.hosts] == ["gpu01", "gpu02"]


def test_secrets_are_masked_in_config_errors() -> None:
    cases = [
        ('database = "postgresql://hive:s3cret@db:port/team"\n', "hive:***@db"),
        ('[protection]\nsmtp_password_env = ["s3cret"]\n', "(got ***)"),
        ('admins = ["alice"]\nemails = 3\n', "unknown key"),
        ('[protection]\nsmtp_password = "s3cret"\n', "unknown key 'protection.smtp_password'"),
        ('hosts = { name = "a", password = "s3cret" }\n', "'password': '***'"),
    ]
    for text, shown in cases:
        with pytest.raises(ConfigError) as err:
            parse_config(text, "c.toml")
        assert "s3cret" not in str(err.value) and shown in str(err.value), str(err.value)


def test_user_names_in_the_config_are_checked() -> None:
    for text, key in (
        ('admins = ["alice", "-rf"]\n', "c.toml:1: admins: '-rf' is not a user name"),
        ('[protection]\nemails = { "a b" = "x@y" }\n', "c.toml:2: protection.emails: 'a b'"),
        ('[[hosts]]\nname = "g"\nuser = "x\\ny"\n', "c.toml:3: hosts[0].user: 'x\\ny'"),
    ):
        with pytest.raises(ConfigError) as err:
            parse_config(text, "c.toml")
        assert key in str(err.value), str(err.value)
    ok = parse_config('admins = ["alice", "svc-backup.1", "MACHINE$"]\n', "c.toml")
    assert ok.admins == ["alice", "svc-backup.1", "MACHINE$"]


def test_database_urls_get_the_async_driver() -> None:
    for given, used in (
        ("postgresql://hive@db/team", "postgresql+asyncpg://hive@db/team"),
        ("postgres://hive@db/team", "postgresql+asyncpg://hive@db/team"),
        ("postgresql+psycopg2://hive@db/team", "postgresql+asyncpg://hive@db/team"),
        ("postgresql+asyncpg://hive@db:5433/team", "postgresql+asyncpg://hive@db:5433/team"),
        ("sqlite:////srv/team.db", "sqlite+aiosqlite:////srv/team.db"),
        ("sqlite+aiosqlite:////srv/team.db", "sqlite+aiosqlite:////srv/team.db"),
    ):
        assert parse_config(f'database = "{given}"\n', "c.toml").database == used


def test_mask_secrets_covers_urls_queries_and_keys() -> None:
    from hivetui.masking import mask_secrets

    assert mask_secrets("postgresql://hive:s3cret@db/x") == "postgresql://hive:***@db/x"
    assert mask_secrets("postgresql://hive:p@ss@db/x") == "postgresql://hive:***@db/x"
    assert mask_secrets("x://db/t?sslmode=require&password=s3cret") == (
        "x://db/t?sslmode=require&password=***"
    )
    assert mask_secrets("{'smtp_password': 's3cret'}") == "{'smtp_password': '***'}"
    assert mask_secrets("PGPASSWORD=s3cret psql") == "PGPASSWORD=*** psql"
    assert mask_secrets("anything", key="api_token") == "***"
    assert mask_secrets("sqlite+aiosqlite:////srv/team.db") == "sqlite+aiosqlite:////srv/team.db"
    assert mask_secrets("authentication failed for user hive") == (
        "authentication failed for user hive"
    )
