"""The goq-web plugin seen as a person sees it: a real server, two workers and `goq web` as
processes on 127.0.0.1, jobs (some failing, one named with markup), each page loaded in headless
Chromium; /metrics read with prometheus_client's parser; the token rule off loopback.

Skips when goq-web, selenium or Debian's chromium/chromium-driver are missing (.ci/run installs
them). Set GOQ_WEB_SCREENSHOT=PATH to save the overview's screenshot there (docs/dashboard.png).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster, initialised
from tests.support import free_port, wait_for

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if importlib.util.find_spec("goq_web") is None:
    pytest.skip("goq-web is not installed (pip install ./plugins/goq-web)", allow_module_level=True)
if importlib.util.find_spec("selenium") is None:
    pytest.skip("selenium is not installed (pip install selenium)", allow_module_level=True)
if CHROMIUM is None or DRIVER is None:
    pytest.skip(
        "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

MARKUP_NAME = "<i>x</i>&amp;"
WAIT = 20  # seconds any condition may take to show


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,1000", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def start_web(c: Cluster, listen: str) -> tuple[str, str]:
    """`goq web --listen LISTEN` as a process of the cluster; its URL and what it printed."""
    log = f"web-{listen.replace(':', '-')}.log"
    c.spawn("web", "--listen", listen, log=log)
    said = wait_for(lambda: "serving http" in c.log(log) and c.log(log), 30, "goq web to start")
    url = re.search(r"serving (http://\S+/)", said).group(1)
    return url, said


def get(url: str, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def shows(driver: webdriver.Chrome, url: str, predicate, what: str) -> str:
    """Load `url` until predicate(visible text of the page) holds; that text."""

    def look() -> str | None:
        driver.get(url)
        text = driver.find_element(By.TAG_NAME, "body").text
        return text if predicate(text) else None

    return wait_for(look, WAIT, what, every=0.5)


def card(text: str, label: str) -> int:
    """The number a card shows above its label ("3\\nrunning")."""
    found = re.search(rf"(\d+)\n{label}\b", text)
    return int(found.group(1)) if found else -1


def test_a_person_sees_the_queue_workers_failures_and_the_plot(
    tmp_path: Path, browser: webdriver.Chrome
) -> None:
    with initialised(tmp_path, server=True) as c:
        c.spawn("work", "--cpus", "2", "--name", "alpha", log="alpha.log")
        c.spawn("work", "--name", "beta", log="beta.log")
        ok = c.sub("true")
        failing = c.sub("--name", "doomed", "sh", "-c", "echo 'boom <b>bold</b>'; exit 3")
        marked = c.sub("--name", MARKUP_NAME, "true")
        ended = c.goq("wait", str(ok), str(failing), str(marked), timeout=WAIT)
        assert ended.returncode == 2, ended.stdout + ended.stderr  # one failed
        sleepers = {c.sub("--name", "sleeper", "sleep", "120") for _ in range(3)}
        url, _ = start_web(c, f"127.0.0.1:{free_port()}")

        text = shows(
            browser,
            url,
            lambda t: card(t, "running") == 3 and card(t, "busy") == 2,
            "the overview to show 3 running jobs on 2 busy workers",
        )
        assert card(text, "waiting") == 0 and card(text, "idle") == 0
        plot = browser.find_element(By.ID, "throughput")
        assert plot.tag_name == "svg"
        assert len(plot.find_elements(By.CSS_SELECTOR, "rect.failed")) >= 1
        assert len(plot.find_elements(By.CSS_SELECTOR, "rect.finished")) >= 1
        assert "failed or timed out (1)" in text
        screenshot = os.environ.get("GOQ_WEB_SCREENSHOT")
        browser.save_screenshot(screenshot or str(tmp_path / "overview.png"))

        text = shows(browser, url + "workers", lambda t: "alpha" in t and "beta" in t, "workers")
        rows = {
            row.find_element(By.CLASS_NAME, "worker").text: row
            for row in browser.find_elements(By.CSS_SELECTOR, "tbody tr")
        }
        assert set(rows) == {"alpha", "beta"}
        linked: set[int] = set()
        for name, row in rows.items():
            assert "busy" in row.text, row.text
            ids = {int(a.text) for a in row.find_elements(By.TAG_NAME, "a")}
            assert ids, f"{name} lists no running job"
            linked |= ids
        assert linked == sleepers
        assert "0 / 2" in rows["alpha"].text  # cpus free / offered: both taken

        text = shows(browser, url + "jobs?state=failed", lambda t: "doomed" in t, "failed jobs")
        row = browser.find_element(By.CSS_SELECTOR, "tbody tr")
        assert row.text.split()[:4] == [str(failing), "doomed", "failed", "3"]
        assert str(ok) not in [
            r.text.split()[0] for r in browser.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]

        shows(browser, url + "jobs", lambda t: MARKUP_NAME in t, "the job named with markup")
        assert not browser.find_elements(By.CSS_SELECTOR, "tbody i")  # text, never markup
        shows(browser, url + "jobs?name=sleeper", lambda t: t.count("sleeper") == 3, "by name")

        text = shows(browser, url + f"jobs/{failing}", lambda t: "boom" in t, "the job page")
        assert browser.find_element(By.ID, "output").text.strip() == "boom <b>bold</b>"
        for field in ("exit_status", "output_path", "Attempts", "max_rss_kib", "directory"):
            assert field in text

        status, body = get(url + "metrics")
        assert status == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }
        assert samples[("goq_up", ())] == 1
        assert samples[("goq_jobs", (("state", "running"),))] == 3
        assert samples[("goq_workers", (("state", "busy"),))] == 2
        assert samples[("goq_worker_cpus", (("kind", "total"),))] == 3
        assert samples[("goq_worker_cpus", (("kind", "free"),))] == 0
        assert samples[("goq_jobs_submitted_total", ())] == 6
        assert samples[("goq_jobs_ended_total", (("outcome", "finished"),))] == 3
        assert ("goq_dropped_frames_total", (("reason", "replay"),)) in samples
        assert ("goq_batched_result_runs_total", ()) in samples

        status, body = get(url + "api/jobs?state=all")
        listed = json.loads(c.ok("jobs", "--json"))
        assert status == 200 and json.loads(body)["jobs"] == listed["jobs"]
        status, body = get(url + f"api/jobs/{failing}")
        assert json.loads(body) == json.loads(c.ok("show", "--json", str(failing)))
        request = urllib.request.Request(url, data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405


def test_off_loopback_every_request_needs_the_token_and_the_login_link_sets_it(
    tmp_path: Path, browser: webdriver.Chrome
) -> None:
    with initialised(tmp_path, server=True) as c:
        port = free_port()
        _, said = start_web(c, f"0.0.0.0:{port}")
        token = re.search(r"login\?token=(\S+)", said).group(1)
        url = f"http://127.0.0.1:{port}/"
        assert get(url)[0] == 401
        assert get(url + "metrics")[0] == 401
        assert get(url + "api/status", **{"X-Goq-Token": "wrong" * 5})[0] == 401
        status, body = get(url + "api/status", **{"X-Goq-Token": token})
        assert status == 200 and json.loads(body)["kind"] == "status"
        browser.delete_all_cookies()
        browser.get(url + "login?token=" + token)
        assert "Overview" in browser.find_element(By.TAG_NAME, "h1").text
        browser.get(url + "workers")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Workers"
        browser.delete_all_cookies()
        browser.get(url)
        assert "Token needed" in browser.find_element(By.TAG_NAME, "h1").text
