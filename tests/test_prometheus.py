"""A real Prometheus (Debian's ``prometheus``) scraping a gunicorn fleet's ``health/metrics``,
and README's alert rules under ``promtool test rules``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from testproject.supervisor import NotReady, free_port, start
from tests.helpers import TOKEN, gunicorn, listener_env, pools_of_every_worker, wait_for

if TYPE_CHECKING:
    from tests.conftest import RedisDB

ROOT = Path(__file__).resolve().parent.parent


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (Debian package prometheus; .ci/run installs it)")
    return found


def query(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]  # type: ignore[no-any-return]


@pytest.mark.gunicorn
def test_prometheus_scrapes_the_fleet_with_the_token(redis_db: RedisDB, tmp_path: Path) -> None:
    prometheus = tool("prometheus")
    probe_port = free_port()
    env = listener_env(redis_db.url, tmp_path, probe_port, CONNHEALTH_TOKEN=TOKEN)
    args = ["-k", "gthread", "-w", "3", "--threads", "4"]
    with gunicorn(args, env, tmp_path / "gunicorn.log", workers=3) as (base, _, workers):
        pools_of_every_worker(base, workers)
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: connhealth\n"
            "    metrics_path: /metrics\n"
            f"    authorization: {{credentials: {TOKEN}}}\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{probe_port}']}}]\n"
            "  - job_name: anonymous\n"
            "    metrics_path: /health/metrics\n"
            f"    static_configs: [{{targets: ['{base.removeprefix('http://')}']}}]\n"
        )
        cmd = [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        server = start(cmd, name="prometheus", log=tmp_path / "prometheus.log")
        api = f"http://127.0.0.1:{port}"
        try:
            try:
                server.wait_until(lambda: _ready(api), 60, "Prometheus answering")
            except NotReady as error:
                pytest.fail(str(error))

            def fleet_summed() -> bool:
                found = query(api, "sum(connhealth_pool_max_connections)")
                return bool(found) and found[0]["value"][1] == "18"

            wait_for(fleet_summed, what="sum(connhealth_pool_max_connections) == 18")
            wait_for(lambda: len(query(api, "up")) == 2, what="both jobs scraped")
            pids = {
                int(series["metric"]["pid"])
                for series in query(api, "connhealth_pool_max_connections")
            }
            ups = {series["metric"]["job"]: series["value"][1] for series in query(api, "up")}
            ready = query(api, "connhealth_ready")
        finally:
            server.stop(30)
    assert pids == set(workers)
    # the anonymous job is refused (403): Prometheus marks it down
    assert ups == {"connhealth": "1", "anonymous": "0"}
    assert [series["value"][1] for series in ready] == ["1"]


def _ready(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def readme_rules() -> str:
    """The alert rules README gives, as users paste them."""
    text = (ROOT / "README.rst").read_text()
    block = text.split(".. code:: yaml\n    :name: alert-rules\n", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip() + "\n"


RULE_TESTS = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'connhealth_server_maxclients{alias="default",instance="a"}'
        values: '100x20'
      - series: 'connhealth_server_connected_clients{alias="default",instance="a"}'
        values: '50x5 95x15'
      - series: 'connhealth_pool_timeouts_total{alias="default",host="web-1",pid="7"}'
        values: '0x5 0+5x15'
      - series: 'connhealth_pool_connections{alias="default",host="web-1",pid="7",state="used"}'
        values: '1x5 6x15'
      - series: 'connhealth_pool_max_connections{alias="default",host="web-1",pid="7"}'
        values: '6x20'
    alert_rule_test:
      - eval_time: 4m
        alertname: ConnhealthRedisNearMaxclients
        exp_alerts: []
      - eval_time: 15m
        alertname: ConnhealthRedisNearMaxclients
        exp_alerts:
          - exp_labels: {severity: warning, alias: default, instance: a}
            exp_annotations:
              summary: The Redis of cache default holds over 90% of its maxclients
      - eval_time: 4m
        alertname: ConnhealthPoolTimeouts
        exp_alerts: []
      - eval_time: 15m
        alertname: ConnhealthPoolTimeouts
        exp_alerts:
          - exp_labels: {severity: warning, alias: default, host: web-1, pid: '7'}
            exp_annotations: {summary: 'Pool waits time out in web-1:7 (default)'}
      - eval_time: 4m
        alertname: ConnhealthPoolWithoutHeadroom
        exp_alerts: []
      - eval_time: 15m
        alertname: ConnhealthPoolWithoutHeadroom
        exp_alerts:
          - exp_labels: {severity: warning, alias: default, host: web-1, pid: '7'}
            exp_annotations:
              summary: 'Every connection of web-1:7 (default) is in use'
"""


def test_readme_alert_rules_fire_when_they_should(tmp_path: Path) -> None:
    promtool = tool("promtool")
    (tmp_path / "rules.yml").write_text(readme_rules())
    (tmp_path / "tests.yml").write_text(RULE_TESTS)
    checked = subprocess.run(
        [promtool, "check", "rules", "rules.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert re.search(r"SUCCESS: 3 rules found", checked.stdout), checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
