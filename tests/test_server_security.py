"""The server's security defaults over real sockets: the key, refusing to start exposed without one,
the Host and Origin checks, the browser login, and no markup from traces reaching a page unescaped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest
from typer.testing import CliRunner

from openheavy.cli import app
from openheavy.errors import ConfigError
from openheavy.server.citations import answer_html, answer_markdown, link_target
from openheavy.server.config import KEY_ENV, ServerConfig, is_loopback, load_server_key
from openheavy.server.security import SESSION_COOKIE, session_token
from server_support import DIRECT_ANSWER, LiveServer, wait_until

SRC = Path(__file__).resolve().parents[1] / "src"

KEY = "s3cret-key-for-tests"
CHAT = {"model": "direct", "messages": [{"role": "user", "content": "hi?"}]}


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(tmp_path / "data", config=ServerConfig(api_key=KEY)) as live:
        yield live


def test_without_the_key_every_api_route_is_401(keyed: LiveServer) -> None:
    wrong = openai.OpenAI(base_url=keyed.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="missing or wrong API key"):
        wrong.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    for method, path in (("GET", "/v1/runs/x"), ("POST", "/mcp"), ("GET", "/runs/x/events")):
        response = httpx2.request(method, keyed.url + path, timeout=10)
        assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
    right = openai.OpenAI(base_url=keyed.url + "/v1", api_key=KEY, max_retries=0)
    assert right.chat.completions.create(**CHAT).choices[0].message.content  # type: ignore[call-overload]


def test_a_browser_logs_in_with_the_key_and_gets_a_session_cookie(keyed: LiveServer) -> None:
    with httpx2.Client(base_url=keyed.url, timeout=10) as browser:
        page = browser.get("/", headers={"accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/"
        assert browser.get("/login").status_code == 200  # the form itself needs no key
        refused = browser.post("/login", data={"key": "nope", "next": "/"})
        assert refused.status_code == 401 and "not the key" in refused.text
        accepted = browser.post("/login", data={"key": KEY, "next": "https://evil.example/"})
        assert accepted.status_code == 303 and accepted.headers["location"] == "/"  # no open redirect
        cookie = accepted.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and KEY not in cookie
        assert browser.get("/").status_code == 200
    assert session_token(KEY) != KEY and len(session_token(KEY)) == 64
    forged = httpx2.get(keyed.url + "/", cookies={SESSION_COOKIE: "0" * 64}, timeout=10)
    assert forged.status_code == 401


def test_refuses_to_serve_beyond_loopback_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv("OPENHEAVY_DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"refusing to serve on 0\.0\.0\.0 without an API key"):
        ServerConfig(host="0.0.0.0")
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 1 and "refusing to serve on 0.0.0.0" in result.output
    assert ServerConfig(host="0.0.0.0", api_key=KEY).api_key == KEY
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.com")


def test_the_key_comes_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert load_server_key(None) is None
    monkeypatch.setenv(KEY_ENV, "from-env")
    assert load_server_key(None) == "from-env"
    key_file = tmp_path / "key"
    key_file.write_text(f"{KEY}\n")
    assert load_server_key(key_file) == KEY
    key_file.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_server_key(key_file)
    with pytest.raises(ConfigError, match="cannot read"):
        load_server_key(tmp_path / "missing")


def test_a_foreign_host_name_is_refused_on_loopback(tmp_path: Path) -> None:
    with LiveServer(tmp_path / "data") as server:
        rebound = httpx2.get(server.url + "/", headers={"host": "attacker.example:8000"}, timeout=10)
        assert rebound.status_code == 421 and "loopback names only" in rebound.json()["error"]["message"]
        for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}"):
            assert httpx2.get(server.url + "/", headers={"host": host}, timeout=10).status_code == 200


def test_a_cross_origin_post_is_refused(tmp_path: Path) -> None:
    with LiveServer(tmp_path / "data") as server:
        for path, body in (("/runs", {"question": "q", "mode": "direct"}), ("/v1/chat/completions", None)):
            response = httpx2.post(
                server.url + path, data=body, headers={"origin": "https://attacker.example"}, timeout=10
            )
            assert response.status_code == 403, path
        same = httpx2.post(
            server.url + "/v1/chat/completions", json=CHAT, headers={"origin": server.url}, timeout=30
        )
        assert same.status_code == 200


MARKUP = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_untrusted_text_is_escaped_on_every_page(tmp_path: Path) -> None:
    with LiveServer(tmp_path / "data") as server:
        body = {"model": "single", "messages": [{"role": "user", "content": f"Why {MARKUP}?"}]}
        run_id = httpx2.post(server.url + "/v1/chat/completions", json=body, timeout=30).json()["openheavy"][
            "run_id"
        ]
        pages = [httpx2.get(server.url + path, timeout=10) for path in ("/", f"/runs/{run_id}")]
    for page in pages:
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]


def test_only_web_urls_become_links() -> None:
    citations = [
        {"number": 1, "title": "Evil](javascript:alert(1))", "url": "javascript:alert(1)"},
        {"number": 2, "title": "Docs", "url": "https://docs.python.org/3/library/subprocess.html"},
    ]
    assert link_target("javascript:alert(1)") is None and link_target(" JavaScript:x") is None
    assert link_target("file:///etc/passwd") is None
    markdown = answer_markdown("See [1] and [2].", citations)
    assert "See [^1] and [^2]." in markdown
    assert "](javascript" not in markdown and "[^1]: Evil\\]\\(javascript:alert\\(1\\)\\)" in markdown
    assert "[^2]: [Docs](<https://docs.python.org/3/library/subprocess.html>)" in markdown
    html = str(answer_html("<b>x</b> [1, 2] [7]", citations))
    assert html.startswith("&lt;b&gt;x&lt;/b&gt;")
    assert '[<a class="cite" href="#cite-1">1</a>, <a class="cite" href="#cite-2">2</a>] [7]' in html


def test_openheavy_serve_end_to_end_with_a_key_file(tmp_path: Path) -> None:
    """The real command in a subprocess: key from a file, 401 without it, an answer with it, and a clean
    stop on Ctrl-C. Its model is a scripted openheavy server, reached as any OpenAI-compatible endpoint."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENHEAVY_")}
    env |= {
        "OPENHEAVY_DATA_DIR": str(tmp_path / "served"),
        "OPENHEAVY_CONFIG": "/dev/null",
        "PYTHONPATH": str(SRC),
    }
    with LiveServer(tmp_path / "backend") as backend:
        command = [sys.executable, "-m", "openheavy", "serve", "--port", str(port)]
        command += ["--model", f"{backend.url}/v1#direct", "--api-key-file", str(key_file)]
        with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as served:
            url = f"http://127.0.0.1:{port}"
            try:
                wait_until(lambda: _answers(url + "/v1/models"), timeout=60, what="openheavy serve to listen")
                assert httpx2.get(url + "/v1/models", timeout=10).status_code == 401
                client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=60)
                assert [m.id for m in client.models.list().data][:2] == ["heavy", "direct"]
                reply = client.chat.completions.create(
                    model="direct", messages=[{"role": "user", "content": "hi?"}]
                )
                assert reply.choices[0].message.content == DIRECT_ANSWER
            finally:
                served.send_signal(signal.SIGINT)
                _, stderr = served.communicate(timeout=30)
    assert served.returncode == 0, stderr
    assert f"openheavy serving http://127.0.0.1:{port}/v1" in stderr and KEY not in stderr


def _answers(url: str) -> bool:
    try:
        httpx2.get(url, timeout=1)
    except httpx2.TransportError:
        return False
    return True
