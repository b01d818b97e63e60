"""s11's page in a real browser: headless Chromium (Debian's `chromium`, which run_tests.sh installs
when missing) driven by Playwright for Python. It types a question, waits for the results, checks
the labelled passage is shown with the question's words highlighted, and that a <script> query shows
as text (and never runs). S11_SCREENSHOT=path keeps the screenshot (README's docs/s11.png)."""
import os
import shutil

import pytest

from test_serve import SCRIPT, Server, copy_data, known_passage


def chromium_path():
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    return None


def browser_or_skip(p):
    """Playwright's own browser download needs the internet beyond PyPI: drive the system's Chromium."""
    exe = chromium_path()
    if exe is None:
        pytest.skip("no chromium on PATH (run_tests.sh installs Debian's package when run as root with apt-get)")
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
    return p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox", "--disable-gpu"])


def search_in_browser(url: str, question: str, shot: str | None = None, mode: str | None = None):
    """Open the page, type the question, press Enter; (page texts, highlighted words, screenshot path)."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = browser_or_skip(p)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            dialogs = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(url + "/")
            page.fill("input[name=q]", question)
            if mode:
                page.select_option("select[name=mode]", mode)
            page.press("input[name=q]", "Enter")
            page.wait_for_selector("#hits li.hit", timeout=30_000)
            out = {"pids": page.locator(".hit .pid").all_inner_texts(),
                   "marks": page.locator(".hit mark").all_inner_texts(),
                   "url": page.url, "took": page.locator("#took").inner_text()}
            if shot:
                page.screenshot(path=shot, full_page=False)
            page.goto(url + "/")
            page.fill("input[name=q]", SCRIPT)
            page.press("input[name=q]", "Enter")
            page.wait_for_selector("#error, #hits", timeout=30_000)
            out["script_query_shown"] = page.locator("#query").inner_text()
            out["script_input"] = page.input_value("input[name=q]")
            out["scripts_in_page"] = page.locator("script").count()
            out["dialogs"] = dialogs
            return out
        finally:
            browser.close()


def test_browser_search(pipeline_base, tmp_path_factory, tmp_path):
    pytest.importorskip("playwright.sync_api", reason="playwright (requirements.txt) is not installed")
    if chromium_path() is None:
        pytest.skip("no chromium on PATH (run_tests.sh installs Debian's package when run as root with apt-get)")
    d = copy_data(pipeline_base, tmp_path_factory, "browser")
    pid, q = known_passage(d)
    s = Server(d).wait_serving()
    try:
        shot = os.environ.get("S11_SCREENSHOT") or str(tmp_path / "s11.png")
        r = search_in_browser(s.url, q, shot, mode="hybrid")
    finally:
        s.stop()
    assert str(pid) in r["pids"][:3], (pid, r["pids"])
    assert "q=" in r["url"] and "mode=hybrid" in r["url"]  # the search is in the URL: shareable
    from common.serve import Highlighter
    h = Highlighter()
    stems = h.stems(q)
    assert r["marks"] and all(h._stem(m) in stems for m in r["marks"]), (r["marks"], stems)
    assert " ms" in r["took"]
    assert r["script_query_shown"] == SCRIPT and r["script_input"] == SCRIPT
    assert r["scripts_in_page"] == 0 and not r["dialogs"]
    assert os.path.getsize(shot) > 10_000
