"""The HTML report in a real headless browser (Chromium, Debian's ``chromium`` package):
every section is laid out with a height, every inline image decodes, and a screenshot
is not blank."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from ocsf_detect_tools.cli import main

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECTIONS = ["summary", "top-alerts", "scores", "alerts-over-time", "recall"]

# Appended to a copy of the report: writes what the browser laid out and decoded into the
# DOM, which --dump-dom then returns.
PROBE = """<script>
for (const s of document.querySelectorAll("section"))
  s.setAttribute("data-height", Math.round(s.getBoundingClientRect().height));
for (const i of document.querySelectorAll("img"))
  i.setAttribute("data-decoded", i.complete ? i.naturalWidth : 0);
</script>"""


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt install chromium)")
def test_the_report_renders_its_sections_in_chromium(tmp_path: Path, bundle_dir, live_traffic):
    # Given a report of labeled live traffic
    events = tmp_path / "live.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in live_traffic.events))
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "uid,is_malicious,attack_type\n"
        + "".join(f"{x.uid},{x.is_malicious},{x.attack_type}\n" for x in live_traffic.labels)
    )
    report = tmp_path / "report.html"
    argv = ["report", "--bundle", str(bundle_dir), "--events", str(events)]
    assert main([*argv, "--labels", str(labels), "--out", str(report)]) == 0

    # When Chromium lays it out and screenshots it
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium("--dump-dom", probed.as_uri()).stdout
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1000,2600", report.as_uri())

    # Then every section has a height, every image decoded, and the page is not blank
    heights = dict(re.findall(r'<section id="([a-z-]+)" data-height="(\d+)"', dom))
    assert list(heights) == SECTIONS
    assert all(int(h) > 40 for h in heights.values()), heights
    decoded = re.findall(r'data-decoded="(\d+)"', dom)
    assert len(decoded) == 3
    assert all(int(width) > 300 for width in decoded), decoded
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2600, 1000)
    assert (pixels[..., :3].mean(axis=2) < 0.9).mean() > 0.02  # ink: text, tables, plots
