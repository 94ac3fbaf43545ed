"""Make docs/report.png: a real run of pipelines/patterns/swarm.yml (a planner, a fan-out of researchers,
a synthesizer) against the tests' loopback fake LLM server, then `orchestrai report` and a headless
Chromium screenshot. Nothing touches the internet.

    python docs/report_screenshot.py            # writes docs/report.png (and keeps the HTML in a temp dir)

The server answers like a slow model (0.4-1.3 s a call), one researcher's first call gets a 500 (so
the timeline shows a failed attempt and its retry wait) and `max_concurrent: 2` makes the fourth
researcher wait for a rate-limit slot.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fake_llm_server import FakeLLMServer  # noqa: E402

from orchestrai.report.pdf import browser_command, find_browser  # noqa: E402

QUERIES = [("technical", "What range and charging time do electric city buses reach in winter?"),
           ("economic", "What do electric buses cost over 12 years against diesel ones?"),
           ("environmental", "How much CO2 and NOx does a city save per electric bus and year?"),
           ("regulatory", "Which EU rules require cities to buy zero-emission buses, and when?")]
FINDINGS = {"technical": "Modern 12 m electric buses cover 250-350 km a day; winter heating cuts that by "
                         "up to 30 %, which depot charging overnight absorbs on most routes.",
            "economic": "Purchase costs ~1.6x a diesel bus, but energy and maintenance save 30-40 %; "
                        "over 12 years the total cost of ownership is roughly equal.",
            "environmental": "An electric bus on a typical grid avoids 50-80 t of CO2 a year and all "
                             "tailpipe NOx and particulates in the streets it serves.",
            "regulatory": "The Clean Vehicles Directive sets minimum shares of clean buses in public "
                          "procurement: 45 % to 2025, 65 % to 2030, half of them zero-emission."}


def script(server: FakeLLMServer) -> None:
    plan = {"queries": [{"domain": d, "query": q} for d, q in QUERIES]}
    server.queue_reply(json.dumps(plan), match="plan the work of a swarm", latency_s=0.9)
    for (domain, _), latency in zip(QUERIES, (1.1, 0.8, 1.3, 0.7), strict=True):
        server.queue_reply(FINDINGS[domain], match=f'"domain": "{domain}"', latency_s=latency)
    server.queue_reply("Switch, in stages: electric buses now match diesel on total cost, meet the EU's "
                       "procurement quotas and cut local pollution; plan depot charging and winter range first.",
                       latency_s=1.2)
    failed: list[int] = []

    def rule(index: int, request: Any) -> tuple[int, str, dict[str, str]] | None:
        if '"domain": "economic"' in request.last_user_text and not failed:
            failed.append(index)
            return 500, "upstream overloaded", {}
        return None

    server.set_error_rule(rule)


def main() -> None:
    browser = find_browser()
    if browser is None:
        sys.exit("needs chromium (apt-get install chromium)")
    scratch = Path(tempfile.mkdtemp(prefix="orchestrai-shot-"))
    for folder in ("system_prompts", "pipelines"):
        shutil.copytree(REPO / folder, scratch / folder)
    with FakeLLMServer(latency_s=0.4) as server:
        script(server)
        (scratch / "config.yml").write_text(
            f"providers:\n  openai: {{base_url: '{server.base_url}', api_key: '${{DEMO_KEY}}'}}\n"
            "default_model_config: {model: gpt-4o-mini}\nretry: {max_attempts: 3, base_delay_s: 0.6, jitter: 0}\n"
            "rate_limits: {openai: {max_concurrent: 2}}\nlog_dir: logs\ncache: false\n")
        env = {**os.environ, "DEMO_KEY": "sk-demo-0123456789abcdef", "PYTHONPATH": str(REPO),
               "ORCHESTRAI_LOCAL_DEFAULT": "0"}
        subprocess.run([sys.executable, "-m", "orchestrai", "run", "pipelines/patterns/swarm.yml", "-q",
                        "--input", "request=Should our city switch its buses to electric?"],
                       cwd=scratch, env=env, check=True, stdout=subprocess.DEVNULL)
    [log] = (scratch / "logs").glob("*.json")
    page = scratch / "report.html"
    subprocess.run([sys.executable, "-m", "orchestrai", "report", str(log.relative_to(scratch)), "-o", str(page)],
                   cwd=scratch, env=env, check=True, stdout=subprocess.DEVNULL)
    target = REPO / "docs" / "report.png"
    subprocess.run(browser_command(browser, scratch / "profile", "--window-size=1400,1360", "--hide-scrollbars",
                                   f"--screenshot={target}", page.as_uri()), check=True, capture_output=True)
    print(f"{target} (from {page})")


if __name__ == "__main__":
    main()
