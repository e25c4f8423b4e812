"""The HTML report (`tfmp convert --report FILE.html`) rendered by a real browser: Debian's headless
Chromium, driven by Playwright, loads it with no console error and no request beyond the file itself,
fits a laptop's width, and shows the facts the JSON report carries. And the search's progress bar:
drawn on a terminal, absent from pipes."""
import json
import os
import shutil
import subprocess

import pytest

from test_interop import FIXTURES, TFMP, tfmp

LAPTOP = {"width": 1366, "height": 768}


def converted_with_reports(tmp_path):
    """The attention fixture searched to a tight tolerance, with an HTML and a JSON report."""
    calibration = os.path.join(FIXTURES, "attention.inputs.npz")
    pages = {}
    for kind in ("html", "json"):
        out, report = str(tmp_path / f"out-{kind}"), str(tmp_path / f"report.{kind}")
        result = tfmp("convert", os.path.join(FIXTURES, "attention"), out, "--calibration", calibration,
                      "--tolerance", "max_abs=1e-4", "--report", report)
        assert result.returncode == 0, result.stderr
        assert f"report {report}: profiled in" in result.stdout, result.stdout
        pages[kind] = report
    return pages["html"], json.load(open(pages["json"]))


def render(path, screenshot):
    """Loads `path` in headless Chromium at a laptop's size; returns what the page logged, every URL
    it requested, and measurements of the rendered page."""
    from playwright.sync_api import sync_playwright
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: Scripts/test installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport=LAPTOP)
        messages, requests = [], []
        page.on("console", lambda message: messages.append((message.type, message.text)))
        page.on("pageerror", lambda error: messages.append(("pageerror", str(error))))
        page.on("request", lambda request: requests.append(request.url))
        page.goto("file://" + path)
        page.screenshot(path=screenshot)
        measured = page.evaluate("""() => ({
            width: document.documentElement.scrollWidth,
            bars: document.querySelectorAll('svg rect.bar').length,
            charts: document.querySelectorAll('svg').length,
            cells: [...document.querySelectorAll('td')].map(cell => cell.textContent),
            headings: [...document.querySelectorAll('h2')].map(h => h.textContent),
        })""")
        browser.close()
    return messages, requests, measured


def test_the_html_report_renders_in_chromium_and_shows_the_reported_facts(tmp_path):
    page, facts = converted_with_reports(tmp_path)
    screenshot = str(tmp_path / "report.png")
    messages, requests, measured = render(page, screenshot)
    assert [m for m in messages if m[0] in ("error", "pageerror", "warning")] == [], messages
    assert requests == ["file://" + page], requests
    with open(screenshot, "rb") as image:
        assert image.read(8) == b"\x89PNG\r\n\x1a\n"
    # Readable on a laptop: nothing wider than its screen.
    assert measured["width"] <= LAPTOP["width"], measured["width"]
    assert measured["headings"][:3] == ["Outputs against the original", "Where the output error comes from",
                                        "Magnitudes against the reduced types' limits"]
    # The error's sources, as the JSON has them: the nodes with the largest shares first.
    sources = sorted((n for n in facts["profile"]["nodes"] if (n.get("errorShare") or 0) > 0),
                     key=lambda n: -n["errorShare"])
    assert sources
    assert f"{100 * sources[0]['errorShare']:.1f}%" in measured["cells"]
    # Two histograms, a bar per nonempty bin of each.
    profile = facts["profile"]
    assert measured["charts"] == 2
    assert measured["bars"] == sum(1 for c in profile["activations"]["counts"] + profile["weights"]["counts"] if c)
    # Every node the JSON lists has its row, with its precision; the search's are marked.
    cells = measured["cells"]
    for node in facts["nodes"]:
        assert node["name"] in cells, node
    kept = [n for n in facts["nodes"] if n["reason"] == "kept float32 by the accuracy search"]
    assert kept and len(kept) == len(facts["search"]["float32Nodes"])
    assert sum("kept float32 by the accuracy search (own error" in cell for cell in cells) == len(kept)
    # Each output's error before and after the search, as the JSON has them.
    rows = [" ".join(cells[i:i + 2]) for i in range(len(cells) - 1)]
    for label, reports in (("the lists alone", facts["search"]["before"]), ("as written", facts["search"]["after"])):
        for report in reports:
            for output in report["outputs"]:
                assert f"{report['signature']}.{output['name']} {label}" in rows


def test_the_keras_report_renders(tmp_path):
    out, page = str(tmp_path / "out.keras"), str(tmp_path / "report.html")
    result = tfmp("convert", os.path.join(FIXTURES, "keras_cnn.keras"), out, "--report", page)
    assert result.returncode == 0, result.stderr
    messages, requests, measured = render(page, str(tmp_path / "keras.png"))
    assert messages == [] and requests == ["file://" + page], (messages, requests)
    assert "Layers" in measured["headings"] and "mixed_float16" in measured["cells"]


@pytest.mark.skipif(shutil.which("script") is None, reason="util-linux's script gives the terminal")
def test_the_search_draws_progress_on_a_terminal_only(tmp_path):
    args = [TFMP, "convert", os.path.join(FIXTURES, "attention"), str(tmp_path / "out"), "--calibration",
            os.path.join(FIXTURES, "attention.inputs.npz"), "--tolerance", "max_abs=1e-4"]
    piped = subprocess.run(args, capture_output=True, text=True)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
    # `script` runs the command on a pseudo-terminal; its standard error is that terminal.
    command = " ".join(f"'{a}'" for a in args + ["--force"])
    terminal = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True)
    assert terminal.returncode == 0, terminal.stdout
    assert "accuracy search [" in terminal.stdout and "instrumented pass [" in terminal.stdout, terminal.stdout
    assert "\x1b[K" in terminal.stdout
