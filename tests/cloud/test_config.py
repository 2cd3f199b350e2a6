"""Cloud configuration: defaults, cloud.toml, environment and options, in that order of strength."""

from __future__ import annotations

import pytest

from cloud.config import ConfigError, load_config


def test_defaults_are_the_embedded_ones(tmp_path):
    config = load_config(tmp_path, environ={})
    assert config.database_url == f"sqlite:///{tmp_path / 'cloud.db'}"
    assert config.broker_url is None and config.embedded_broker
    assert (config.http_port, config.mqtt_port) == (8080, 1883)


def test_data_dir_comes_from_the_environment_when_no_option(tmp_path):
    config = load_config(environ={"VOXFLEET_DATA_DIR": str(tmp_path / "env")})
    assert config.data_dir == (tmp_path / "env").resolve()


def test_toml_then_environment_then_options(tmp_path):
    (tmp_path / "cloud.toml").write_text(
        'database_url = "postgresql://vf@db.internal/voxfleet"\nhttp_port = 9000\nmqtt_port = 9883\n'
        'broker_url = "mqtt://broker.internal:1883"\n')
    config = load_config(tmp_path, environ={"VOXFLEET_HTTP_PORT": "9100"}, mqtt_port=1999)
    assert config.database_url == "postgresql://vf@db.internal/voxfleet"
    assert config.broker_url == "mqtt://broker.internal:1883" and not config.embedded_broker
    assert (config.http_port, config.mqtt_port) == (9100, 1999)


def test_a_cloud_table_in_the_toml_file_works_too(tmp_path):
    (tmp_path / "cloud.toml").write_text("[cloud]\nhttp_port = 8181\n")
    assert load_config(tmp_path, environ={}).http_port == 8181


@pytest.mark.parametrize("source,expected", [
    ({"environ": {"VOXFLEET_HTTP_PORT": "eighty"}}, "http_port: Input should be a valid integer"),
    ({"environ": {"VOXFLEET_MQTT_PORT": "70000"}}, "mqtt_port: Input should be less than or equal to 65535"),
    ({"environ": {"VOXFLEET_BROKER_URL": "http://x"}}, "broker_url: must be an mqtt:// or mqtts:// URL"),
    ({"toml": "colour = 'blue'\n"}, "colour: Extra inputs are not permitted"),
    ({"toml": "http_port = [\n"}, "not valid TOML"),
])
def test_invalid_values_name_their_field_and_source(tmp_path, source, expected):
    if "toml" in source:
        (tmp_path / "cloud.toml").write_text(source["toml"])
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, environ=source.get("environ", {}))
    assert expected in str(caught.value)
    if "environ" in source:
        assert f"(from ${next(iter(source['environ']))})" in str(caught.value)


def test_secret_key_is_made_once_private_and_never_shown(tmp_path):
    first = load_config(tmp_path, environ={})
    key_file = tmp_path / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    secret = first.secret_key.get_secret_value()
    assert len(secret) >= 48
    assert load_config(tmp_path, environ={}).secret_key.get_secret_value() == secret
    assert secret not in repr(first) and secret not in str(first.model_dump())


def test_configured_secret_key_is_used_and_no_file_is_written(tmp_path):
    config = load_config(tmp_path, environ={"VOXFLEET_SECRET_KEY": "from-the-vault-0123456789"})
    assert config.secret_key.get_secret_value() == "from-the-vault-0123456789"
    assert not (tmp_path / "secret_key").exists()
