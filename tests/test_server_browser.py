"""The web view in headless Chromium (Debian's `chromium`, driven by playwright): the runs list, a heavy
run live with one panel per agent, then the finished run's answer, clickable citations and trace.

Skipped with the reason where Chromium or playwright is missing, except in CI (`CI` set), where `make
setup` installs both and a missing browser is a failure.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from server_support import ANSWER, LiveServer, Team

CHROMIUM = Path(os.environ.get("OPENHEAVY_CHROMIUM", "/usr/bin/chromium"))
QUESTION = "How do I run a subprocess with a timeout and capture its output?"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} — CI must have it (make setup installs it)")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e '.[dev]'")
    if not CHROMIUM.is_file():
        _unavailable(f"no Chromium at {CHROMIUM}: `make setup-browser` (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            launched.close()


def test_runs_list_live_panels_then_answer_and_trace(browser: Any, tmp_path: Path) -> None:
    gate = threading.Event()
    with LiveServer(tmp_path / "data", Team(gate=gate)) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))

        page.goto(server.url + "/")
        assert page.locator("h1").first.inner_text() == "Runs"
        page.fill("#question", QUESTION)
        page.select_option("#mode", "heavy")
        page.click("button[type=submit]")
        page.wait_for_url("**/runs/*")
        run_id = page.url.rsplit("/", 1)[1]

        # Live: the planner and one panel per agent appear while the synthesizer is held back.
        page.wait_for_selector('.panel[data-agent="agent-1"]', timeout=15_000)
        page.wait_for_selector('.panel[data-agent="agent-2"]', timeout=15_000)
        page.wait_for_selector('.panel[data-agent="agent-2"].finished', timeout=15_000)
        assert page.locator("#status").inner_text() == "running"
        assert "search" in page.locator('.panel[data-agent="agent-1"] ol').inner_text()
        page.screenshot(path=str(tmp_path / "live.png"), full_page=True)

        gate.set()  # let the synthesizer answer: the page reloads with the finished run
        page.wait_for_selector("#answer", timeout=15_000)
        answer = page.locator("#answer")
        assert answer.inner_text().strip() == ANSWER
        assert answer.is_visible()
        assert page.locator("#status").inner_text() == "ok"
        assert page.locator(".plan li").all_inner_texts() == ["find subprocess.run", "find check_output"]
        page.screenshot(path=str(tmp_path / "finished.png"), full_page=True)
        answer_png = answer.screenshot(path=str(tmp_path / "answer.png"))

        page.click("a.cite")  # the citation marker jumps to its source
        assert page.url.endswith("#cite-1")
        assert "subprocess — run" in page.locator("#cite-1").inner_text()

        agent = page.locator('details.group[data-agent="agent-1"]')
        agent.locator("summary").first.click()
        assert "ModelCalled" in agent.inner_text() and 'search "subprocess timeout"' in agent.inner_text()
        planner = page.locator('details.group[data-agent="planner"]')
        planner.locator("summary").first.click()
        planner.locator("details.message summary").first.click()  # the whole prompt, system message first
        assert "You are the planner" in planner.locator("details.message pre").first.inner_text()

        page.goto(server.url + "/")
        row = page.locator("table.runs tbody tr").first
        assert QUESTION in row.inner_text() and "heavy" in row.inner_text() and "ok" in row.inner_text()
        page.screenshot(path=str(tmp_path / "runs.png"), full_page=True)
        page.goto(server.url + f"/runs/{run_id}")
        assert page.locator("#answer").inner_text().strip() == ANSWER
    assert errors == []
    for name in ("live.png", "finished.png", "runs.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
    assert len(set(answer_png[100:])) > 10  # the answer's screenshot is not a blank box


def test_markup_in_a_question_is_shown_as_text_and_never_runs(browser: Any, tmp_path: Path) -> None:
    markup = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    with LiveServer(tmp_path / "data") as server:
        body = {"model": "single", "messages": [{"role": "user", "content": f"What is {markup}?"}]}
        run_id = httpx2.post(server.url + "/v1/chat/completions", json=body, timeout=30).json()["openheavy"][
            "run_id"
        ]
        page = browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(server.url + f"/runs/{run_id}")
        assert page.locator("h1.question").inner_text() == f"What is {markup}?"
        page.goto(server.url + "/")
        assert markup in page.locator("table.runs").inner_text()
        page.wait_for_timeout(200)  # an injected handler would have fired by now
    assert dialogs == []
