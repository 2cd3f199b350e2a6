"""The app factory: a health check that really asks the database, and JSON errors of one shape."""

from __future__ import annotations

import pytest

from cloud.app import create_app
from cloud.config import load_config
from cloud.errors import CODES
from protocol import versions


@pytest.fixture
def client(database, tmp_path):
    config = load_config(tmp_path, environ={"VOXFLEET_DATABASE_URL": database.url})
    app = create_app(config)

    @app.get("/api/v1/_test/boom")
    def boom():
        raise RuntimeError("internal detail that must not leak")

    @app.post("/api/v1/_test/echo")
    def echo():
        from flask import request
        return {"size": len(request.get_data())}

    yield app.test_client()
    app.extensions["voxfleet.db"][0].dispose()


def test_health_checks_the_database(client):
    """And names the cloud's release and wire versions: what devices ask before they write to it."""
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "release": versions.release(),
                                   "protocol": {"writes": versions.VERSION, "reads": sorted(versions.READS)}}


def test_health_reports_an_unreachable_database(tmp_path):
    config = load_config(tmp_path, environ={"VOXFLEET_DATABASE_URL": "postgresql://vf:pw@127.0.0.1:9/none"})
    response = create_app(config).test_client().get("/api/v1/health")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "database_unavailable"
    assert "pw" not in response.get_data(as_text=True)


def _error(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]


def test_api_errors_have_one_json_shape(client):
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and _error(missing)["code"] == "not_found"
    wrong_method = client.delete("/api/v1/health")
    assert wrong_method.status_code == 405 and _error(wrong_method)["code"] == "method_not_allowed"
    assert "GET" in wrong_method.headers["Allow"]
    too_big = client.post("/api/v1/_test/echo", data=b"x" * (1024 * 1024 + 1))
    assert too_big.status_code == 413 and _error(too_big)["code"] == "payload_too_large"
    assert client.post("/api/v1/_test/echo", data=b"x" * 100).get_json() == {"size": 100}


def test_unexpected_errors_are_500_json_without_internals(client):
    response = client.get("/api/v1/_test/boom")
    assert response.status_code == 500
    assert _error(response)["code"] == "internal_error"
    assert "internal detail" not in response.get_data(as_text=True)


def test_pages_outside_the_api_keep_html_errors(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


@pytest.mark.parametrize("status", [400, 401, 403, 429])
def test_every_listed_status_has_a_stable_code(client, status):
    from flask import abort

    app = client.application
    rule = f"/api/v1/_test/abort{status}"
    app.add_url_rule(rule, f"abort{status}", lambda: abort(status))
    response = client.get(rule)
    assert response.status_code == status
    assert _error(response)["code"] == CODES[status]


def test_rate_limit_errors_keep_retry_after(client):
    from werkzeug.exceptions import TooManyRequests

    def limited():
        raise TooManyRequests(retry_after=30)

    client.application.add_url_rule("/api/v1/_test/limited", "limited", limited)
    response = client.get("/api/v1/_test/limited")
    assert response.status_code == 429 and response.headers["Retry-After"] == "30"
    assert _error(response)["code"] == "rate_limited"


@pytest.mark.parametrize("hops, expected", [(0, "127.0.0.1"), (1, "203.0.113.7")])
def test_client_address_behind_a_proxy_is_trusted_only_for_configured_hops(tmp_path, hops, expected):
    """Sign-in throttles and rate limits key on the client address: behind nginx that is the
    forwarded one, and without a proxy a forged X-Forwarded-For must not change it."""
    config = load_config(tmp_path, environ={"VOXFLEET_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite",
                                            "VOXFLEET_PROXY_HOPS": str(hops)})
    app = create_app(config)

    @app.get("/api/v1/_test/whoami")
    def whoami():
        from flask import request
        return {"addr": request.remote_addr, "scheme": request.scheme}

    answer = app.test_client().get("/api/v1/_test/whoami", headers={
        "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}).get_json()
    assert answer == {"addr": expected, "scheme": "https" if hops else "http"}
