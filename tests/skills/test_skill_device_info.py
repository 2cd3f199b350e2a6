import ipaddress

from voxfleet_skill_device_info import lan_address, read_json, spoken_address


def test_spoken_address():
    assert spoken_address("192.168.1.20") == "192 dot 168 dot 1 dot 20"
    assert spoken_address("10.0.0.1") == "10 dot 0 dot 0 dot 1"


def test_read_json(tmp_path):
    good = tmp_path / "cloud.json"
    good.write_text('{"cloud": "https://fleet.example"}')
    assert read_json(good) == {"cloud": "https://fleet.example"}


def test_read_json_missing_or_none(tmp_path):
    assert read_json(tmp_path / "missing.json") == {}
    assert read_json(None) == {}
    assert read_json(tmp_path) == {}  # a folder


def test_read_json_corrupt(tmp_path):
    bad = tmp_path / "sync.json"
    bad.write_text('{"outbox_depth": ')
    assert read_json(bad) == {}
    binary = tmp_path / "settings.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert read_json(binary) == {}


def test_read_json_not_an_object(tmp_path):
    for text in ("[1, 2]", '"name"', "3", "null"):
        path = tmp_path / "x.json"
        path.write_text(text)
        assert read_json(path) == {}, text


def test_lan_address_is_none_or_a_dotted_quad():
    address = lan_address()
    if address is not None:
        parsed = ipaddress.IPv4Address(address)
        assert str(parsed) == address
        assert not address.startswith("0.")
        assert not parsed.is_unspecified
