"""Measure how long after a node crash HostCraft's cluster report shows it, next to Swarm itself.

The script brings up its own lab ``hb`` (3 managers and 2 workers on 10.77.120.0/24) and forms
the swarm through HostCraft's API with a 1 s dispatcher heartbeat. Per scenario it then kills one
node's engine with SIGKILL: the leader, a follower manager or a worker. From the moment of the
kill, two pollers share one schedule. One reads ``GET /api/regions/{id}/cluster`` over HTTP, the
other lists the nodes on a surviving manager (what ``docker node ls`` shows). Each poller records
when its source first shows the node down. The lab is removed at the end, also when the run fails.

Needs root on Linux with the lab's programs installed:

    .venv/bin/python bench/detection.py --repetitions 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import docker
import docker.errors
import httpx
import uvicorn

import hostcraft
from hostcraft.api.app import create_app
from hostcraft.config import Settings
from hostcraft.errors import HostCraftError
from hostcraft.lab import Lab, LabNode, kill_node, lab_down, lab_up, leftovers, start_node
from hostcraft.runtime import Runtime
from hostcraft.services.tokens import create_token

LAB_NAME = "hb"
LAB_SUBNET = "10.77.120.0/24"
LAB_MANAGERS = 3
LAB_WORKERS = 2
DISPATCHER_HEARTBEAT_SECONDS = 1
ENGINE_API_VERSION = "1.41"
RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Per-request timeouts, the same for both sources. A request that takes longer is recorded as a
# failed poll, and the next poll starts on the following tick of the schedule. During a leader
# election a node list on a surviving manager blocked for up to 20 s in the runs recorded in
# docs/BENCHMARKS.md, so a shorter timeout would make the Swarm poller miss the moment it returns.
SWARM_REQUEST_TIMEOUT_SECONDS = 30
API_REQUEST_TIMEOUT_SECONDS = 30.0
API_START_TIMEOUT_SECONDS = 30.0

Scenario = Literal["leader", "follower", "worker"]
SCENARIOS: tuple[Scenario, ...] = ("leader", "follower", "worker")
Source = Literal["hostcraft", "swarm"]

logger = logging.getLogger("bench.detection")


class BenchError(RuntimeError):
    """A step of the benchmark failed. The message names the step and the reason."""


@dataclass(frozen=True)
class NodeView:
    """One node as both sources show it, so that one rule decides "down" for both."""

    hostname: str
    role: str | None
    state: str | None
    reachability: str | None
    leader: bool


@dataclass
class Observation:
    """One poll. Times are seconds after the kill, on the monotonic clock."""

    sent: float
    received: float
    detected: bool
    victim_state: str | None = None
    victim_reachability: str | None = None
    leader: str | None = None
    report: dict[str, Any] = field(default_factory=dict)  # HostCraft's status and source, empty for Swarm
    error: str | None = None


@dataclass
class Repetition:
    scenario: Scenario
    index: int
    victim: str
    observer: str
    kill_seconds: float
    detected_seconds: dict[Source, float | None]
    recovery_seconds: float | None  # from start_node to the first healthy cluster report
    observations: dict[Source, list[Observation]] = field(default_factory=dict)


Probe = Callable[[], tuple[list[NodeView], dict[str, Any]]]


def views_from_swarm(nodes: list[dict[str, Any]]) -> list[NodeView]:
    views = []
    for node in nodes:
        manager = node.get("ManagerStatus") or {}
        views.append(
            NodeView(
                hostname=(node.get("Description") or {}).get("Hostname") or node["ID"],
                role=(node.get("Spec") or {}).get("Role"),
                state=(node.get("Status") or {}).get("State"),
                reachability=manager.get("Reachability"),
                leader=bool(manager.get("Leader")),
            )
        )
    return views


def views_from_report(report: dict[str, Any]) -> list[NodeView]:
    return [
        NodeView(
            hostname=row["hostname"] or row["nodeId"],
            role=row["role"],
            state=row["state"],
            reachability=row["reachability"],
            leader=bool(row["leader"]),
        )
        for row in report["nodes"]
    ]


def victim_down(scenario: Scenario, victim: str, views: list[NodeView]) -> bool:
    """Decide whether a source shows the killed node as failed.

    A killed leader counts once it is unreachable and another manager leads, a follower once it
    is unreachable, and a worker once its state is ``down``.
    """
    row = next((view for view in views if view.hostname == victim), None)
    if row is None:
        return False
    if scenario == "worker":
        return row.state == "down"
    if row.reachability != "unreachable":
        return False
    if scenario == "leader":
        return any(view.leader and view.hostname != victim for view in views)
    return True


class Poller(threading.Thread):
    """Poll one source on the schedule ``killed_at + k * interval`` until it shows the victim down.

    A poll that outlasts the interval delays the next one to the first tick after it returns,
    so a slow source is sampled less often but never skews the other poller.
    """

    def __init__(
        self,
        source: Source,
        probe: Probe,
        *,
        scenario: Scenario,
        victim: str,
        killed_at: float,
        interval: float,
        deadline: float,
    ) -> None:
        super().__init__(name=f"poll-{source}", daemon=True)
        self.source = source
        self.probe = probe
        self.scenario = scenario
        self.victim = victim
        self.killed_at = killed_at
        self.interval = interval
        self.deadline = deadline
        self.observations: list[Observation] = []

    def run(self) -> None:
        tick = 0
        while time.monotonic() < self.deadline:
            observation = self._poll()
            self.observations.append(observation)
            if observation.detected:
                return
            elapsed = time.monotonic() - self.killed_at
            tick = max(tick + 1, math.ceil(elapsed / self.interval))
            time.sleep(max(0.0, self.killed_at + tick * self.interval - time.monotonic()))

    def detected_seconds(self) -> float | None:
        return next((o.received for o in self.observations if o.detected), None)

    def _poll(self) -> Observation:
        sent = time.monotonic() - self.killed_at
        try:
            views, report = self.probe()
        except (BenchError, httpx.HTTPError, docker.errors.DockerException, OSError, ValueError) as exc:
            received = time.monotonic() - self.killed_at
            message = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
            return Observation(sent=sent, received=received, detected=False, error=message)
        received = time.monotonic() - self.killed_at
        victim = next((view for view in views if view.hostname == self.victim), None)
        leader = next((view.hostname for view in views if view.leader), None)
        return Observation(
            sent=sent,
            received=received,
            detected=victim_down(self.scenario, self.victim, views),
            victim_state=victim.state if victim else None,
            victim_reachability=victim.reachability if victim else None,
            leader=leader,
            report=report,
        )


class Bench:
    """The lab, HostCraft's API client and the region whose swarm the lab's nodes form."""

    def __init__(self, lab: Lab, api: httpx.Client, options: argparse.Namespace) -> None:
        self.lab = lab
        self.api = api
        self.options = options
        self.region_id = 0

    def cluster_report(self) -> dict[str, Any]:
        response = self.api.get(f"/api/regions/{self.region_id}/cluster")
        if response.status_code != 200:
            raise BenchError(f"cluster report failed with HTTP {response.status_code}: {response.text[:300]}")
        return cast(dict[str, Any], response.json())

    def probe_hostcraft(self) -> tuple[list[NodeView], dict[str, Any]]:
        report = self.cluster_report()
        details = {
            "status": report["status"],
            "source": report["source"],
            "via": report["via"],
            "reachableManagers": report["managers"]["reachable"],
            "errors": [error[:200] for error in report["errors"]],
        }
        return views_from_report(report), details

    def wait_healthy(self, *, timeout: float, condition: str) -> dict[str, Any]:
        """Poll the cluster report until its status is ``healthy``, and raise BenchError on timeout."""
        deadline = time.monotonic() + timeout
        last = "no report yet"
        while time.monotonic() < deadline:
            try:
                report = self.cluster_report()
            except (BenchError, httpx.HTTPError) as exc:
                last = str(exc)
            else:
                if report["status"] == "healthy":
                    return report
                last = f"status {report['status']}, errors {report['errors']}"
            time.sleep(0.5)
        raise BenchError(f"timed out after {timeout:.0f} s waiting for {condition} (last: {last})")


def post(api: httpx.Client, path: str, body: dict[str, Any], *, expected: int) -> dict[str, Any]:
    response = api.post(path, json=body)
    if response.status_code != expected:
        raise BenchError(
            f"POST {path} failed with HTTP {response.status_code} (expected {expected}): "
            f"{response.text[:500]}"
        )
    return cast(dict[str, Any], response.json())


def form_swarm(bench: Bench) -> None:
    """Register every lab node as a server of one region and form the swarm through the API."""
    region = post(bench.api, "/api/regions", {"name": "Bench", "code": "hb", "priority": 1}, expected=201)
    bench.region_id = int(region["id"])
    server_ids: dict[str, int] = {}
    for node in bench.lab.nodes:
        server = post(
            bench.api,
            "/api/servers",
            {"name": node.name, "endpoint": node.endpoint, "regionId": bench.region_id},
            expected=201,
        )
        server_ids[node.name] = int(server["id"])

    first = bench.lab.nodes[0]
    logger.info("initializing the swarm on %s through the API", first.name)
    post(
        bench.api,
        f"/api/servers/{server_ids[first.name]}/swarm/init",
        {
            "advertiseAddress": first.address,
            "managerCount": LAB_MANAGERS,
            "dispatcherHeartbeatSeconds": DISPATCHER_HEARTBEAT_SECONDS,
        },
        expected=200,
    )
    for node in bench.lab.nodes[1:]:
        logger.info("joining %s as a %s through the API", node.name, node.role)
        post(
            bench.api,
            f"/api/servers/{server_ids[node.name]}/swarm/join",
            {"asManager": node.role == "manager"},
            expected=200,
        )
    bench.wait_healthy(timeout=bench.options.recovery_timeout, condition="the formed cluster to be healthy")


def swarm_facts(lab: Lab) -> dict[str, Any]:
    """Read the engine version and the dispatcher heartbeat that Swarm actually runs with."""
    client = docker.DockerClient(base_url=lab.managers[0].endpoint, version=ENGINE_API_VERSION, timeout=30)
    try:
        version = client.version()
        spec = client.api.inspect_swarm()["Spec"]
    finally:
        client.close()
    heartbeat_ns = (spec.get("Dispatcher") or {}).get("HeartbeatPeriod")
    return {
        "engineVersion": version.get("Version"),
        "engineApiVersion": version.get("ApiVersion"),
        "dispatcherHeartbeatSeconds": heartbeat_ns / 1e9 if heartbeat_ns else None,
    }


def pick_victim(scenario: Scenario, report: dict[str, Any], index: int) -> str:
    """Choose the node to kill. Followers and workers rotate across repetitions."""
    if scenario == "leader":
        if not report["leader"]:
            raise BenchError("the healthy cluster report names no leader")
        return str(report["leader"]["hostname"])
    if scenario == "follower":
        names = sorted(r["hostname"] for r in report["nodes"] if r["role"] == "manager" and not r["leader"])
    else:
        names = sorted(r["hostname"] for r in report["nodes"] if r["role"] == "worker")
    if not names:
        raise BenchError(f"the cluster report has no node for the {scenario} scenario")
    return str(names[index % len(names)])


def pick_observer(lab: Lab, report: dict[str, Any], victim: str) -> LabNode:
    """Choose the manager whose node list represents Swarm, which is the leader unless it is the victim.

    In one run of this script with a follower as the observer, HostCraft (reading through the
    leader) showed a killed worker down one poll earlier than the follower's list in 2 of 3 kills.
    The leader writes node states first, so its list is the strictest baseline.
    """
    leader = (report["leader"] or {}).get("hostname")
    if leader and leader != victim:
        return lab.node(str(leader))
    return next(node for node in lab.managers if node.name != victim)


def kill_and_watch(
    bench: Bench, scenario: Scenario, victim: str, swarm_client: docker.DockerClient
) -> tuple[dict[Source, Poller], float]:
    """Kill the victim while both pollers run, and return them with the kill's duration once both finish."""

    def probe_swarm() -> tuple[list[NodeView], dict[str, Any]]:
        return views_from_swarm(swarm_client.api.nodes()), {}

    # Time 0 is the call to kill_node, and both pollers run from then on. SIGKILL goes out once
    # kill_node has found the node's processes, within kill_seconds of time 0.
    killed_at = time.monotonic()
    probes: tuple[tuple[Source, Probe], ...] = (("hostcraft", bench.probe_hostcraft), ("swarm", probe_swarm))
    pollers = {
        source: Poller(
            source,
            probe,
            scenario=scenario,
            victim=victim,
            killed_at=killed_at,
            interval=bench.options.interval,
            deadline=killed_at + bench.options.detection_timeout,
        )
        for source, probe in probes
    }
    for poller in pollers.values():
        poller.start()
    kill_node(bench.lab, victim)
    kill_seconds = time.monotonic() - killed_at
    for poller in pollers.values():
        # A poll sent just before the deadline may still run for one request timeout.
        poller.join(timeout=bench.options.detection_timeout + API_REQUEST_TIMEOUT_SECONDS + 5)
    return pollers, kill_seconds


def run_repetition(bench: Bench, scenario: Scenario, index: int) -> Repetition:
    """Kill one node, poll both sources until each shows it down, then restore the node."""
    report = bench.wait_healthy(
        timeout=bench.options.recovery_timeout, condition="a healthy cluster before the kill"
    )
    victim = pick_victim(scenario, report, index)
    observer = pick_observer(bench.lab, report, victim)
    swarm_client = docker.DockerClient(
        base_url=observer.endpoint, version=ENGINE_API_VERSION, timeout=SWARM_REQUEST_TIMEOUT_SECONDS
    )
    logger.info("%s #%d: killing %s, Swarm read through %s", scenario, index + 1, victim, observer.name)
    try:
        pollers, kill_seconds = kill_and_watch(bench, scenario, victim, swarm_client)
    finally:
        swarm_client.close()
        logger.info("%s #%d: starting %s again", scenario, index + 1, victim)
        restart_started = time.monotonic()
        start_node(bench.lab, victim)

    recovery: float | None = None
    try:
        bench.wait_healthy(
            timeout=bench.options.recovery_timeout, condition=f"{victim} back in a healthy cluster"
        )
        recovery = time.monotonic() - restart_started
    except BenchError as exc:
        logger.error("failed to recover %s: %s", victim, exc)

    detected = {source: poller.detected_seconds() for source, poller in pollers.items()}
    logger.info(
        "%s #%d: HostCraft %s, Swarm %s",
        scenario,
        index + 1,
        format_seconds(detected["hostcraft"]),
        format_seconds(detected["swarm"]),
    )
    return Repetition(
        scenario=scenario,
        index=index,
        victim=victim,
        observer=observer.name,
        kill_seconds=kill_seconds,
        detected_seconds=detected,
        recovery_seconds=recovery,
        observations={source: poller.observations for source, poller in pollers.items()},
    )


def run_scenarios(bench: Bench, *, started: float) -> tuple[list[Repetition], bool]:
    """Run every repetition of every scenario, and return them with whether the time budget ran out."""
    budget_seconds = bench.options.max_minutes * 60
    repetitions: list[Repetition] = []
    for scenario in bench.options.scenarios:
        for index in range(bench.options.repetitions):
            if time.monotonic() - started > budget_seconds:
                logger.error(
                    "time budget of %.0f min used up, so no further repetitions start",
                    bench.options.max_minutes,
                )
                return repetitions, True
            repetition = run_repetition(bench, scenario, index)
            repetitions.append(repetition)
            if repetition.recovery_seconds is None:
                raise BenchError(
                    f"{repetition.victim} did not recover, so later repetitions would be invalid"
                )
    return repetitions, False


@contextmanager
def hostcraft_api(data_dir: Path) -> Iterator[httpx.Client]:
    """Run HostCraft's API in this process on a free loopback port and yield an admin client."""
    runtime = Runtime.create(Settings(data_dir=data_dir, engine_enabled=False))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    try:
        with runtime.store.session() as session:
            _, token = create_token(session, name="bench-admin", role="admin")
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        config = uvicorn.Config(create_app(runtime, run_engine=False), log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="api", daemon=True)
        thread.start()
        deadline = time.monotonic() + API_START_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise BenchError(
                    f"HostCraft's API failed to start on 127.0.0.1:{port} within "
                    f"{API_START_TIMEOUT_SECONDS:.0f} s: see the log above"
                )
            time.sleep(0.05)
        # trust_env=False: a proxy from the environment must not carry loopback requests elsewhere.
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=API_REQUEST_TIMEOUT_SECONDS,
            trust_env=False,
        ) as client:
            yield client
    finally:
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=API_START_TIMEOUT_SECONDS)
        listener.close()
        runtime.close()


def format_seconds(value: float | None) -> str:
    return "not seen" if value is None else f"{value:.2f} s"


def describe(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(repetitions: list[Repetition]) -> dict[str, dict[str, Any]]:
    """Median, min and max per scenario for both sources, and of the per-repetition difference."""
    summary: dict[str, dict[str, Any]] = {}
    for scenario in SCENARIOS:
        runs = [r for r in repetitions if r.scenario == scenario]
        if not runs:
            continue
        pairs = [
            (hostcraft, swarm)
            for r in runs
            if (hostcraft := r.detected_seconds["hostcraft"]) is not None
            and (swarm := r.detected_seconds["swarm"]) is not None
        ]
        latencies = [
            o.received - o.sent for r in runs for o in r.observations["hostcraft"] if o.error is None
        ]
        hostcraft_stats = describe([h for h, _ in pairs])
        swarm_stats = describe([s for _, s in pairs])
        ratio = None
        if hostcraft_stats and swarm_stats and swarm_stats["median"] > 0:
            ratio = hostcraft_stats["median"] / swarm_stats["median"]
        summary[scenario] = {
            "repetitions": len(runs),
            "detectedByBoth": len(pairs),
            "hostcraft": hostcraft_stats,
            "swarm": swarm_stats,
            "difference": describe([h - s for h, s in pairs]),
            "ratioOfMedians": ratio,
            "reportLatency": describe(latencies),
        }
    return summary


def format_table(summary: dict[str, dict[str, Any]], interval: float) -> str:
    def cell(stats: dict[str, float] | None, signed: bool = False) -> str:
        if stats is None:
            return "n/a"
        sign = "+" if signed else ""
        return f"{stats['median']:{sign}.2f} ({stats['min']:{sign}.2f} to {stats['max']:{sign}.2f})"

    lines = [
        f"Seconds from the kill_node call until first shown down, polling every {interval:g} s, "
        "as median (min to max).",
        "",
        "| scenario | n | HostCraft report | Swarm node list | HostCraft minus Swarm | ratio of medians |",
        "|---|---|---|---|---|---|",
    ]
    for scenario, row in summary.items():
        ratio = "n/a" if row["ratioOfMedians"] is None else f"{row['ratioOfMedians']:.2f}"
        lines.append(
            f"| {scenario} | {row['detectedByBoth']}/{row['repetitions']} | {cell(row['hostcraft'])} "
            f"| {cell(row['swarm'])} | {cell(row['difference'], signed=True)} | {ratio} |"
        )
    return "\n".join(lines)


def machine_facts() -> dict[str, Any]:
    os_name = None
    os_release = Path("/etc/os-release")
    if os_release.exists():
        for line in os_release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {
        "cpus": os.cpu_count(),
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "hostcraftVersion": hostcraft.__version__,
    }


def source_revision() -> dict[str, Any]:
    """Read the git commit of the checkout and whether ``src/`` differs from it."""
    repository = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repository), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(repository), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        logger.warning("failed to read the git commit: %s", exc)
        return {"commit": None, "sourceChanged": None}
    return {"commit": commit, "sourceChanged": bool(changes.strip())}


def write_results(payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"detection-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=asdict) + "\n")
    return path


def parse_scenarios(value: str) -> list[Scenario]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"invalid scenarios {value!r}: expected a comma-separated list of {', '.join(SCENARIOS)}"
        )
    return cast(list[Scenario], names)


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: expected a number above 0")
    return number


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: expected an integer of at least 1")
    return number


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repetitions", type=positive_int, default=3, help="kills per scenario (default 3)")
    parser.add_argument(
        "--interval",
        type=positive_float,
        default=0.25,
        help="seconds between polls of each source (default 0.25)",
    )
    parser.add_argument(
        "--scenarios",
        type=parse_scenarios,
        default=list(SCENARIOS),
        help="comma-separated scenarios to run, in order (default leader,follower,worker)",
    )
    parser.add_argument(
        "--detection-timeout",
        type=positive_float,
        default=90.0,
        help="seconds a source gets after a kill to show the node down before the kill counts as missed "
        "(default 90)",
    )
    parser.add_argument(
        "--recovery-timeout",
        type=positive_float,
        default=180.0,
        help="seconds to wait for the cluster report to be healthy after forming the swarm or restarting "
        "a node (default 180)",
    )
    parser.add_argument(
        "--max-minutes",
        type=positive_float,
        default=30.0,
        help="minutes after which no further repetition starts, but a running one finishes (default 30)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll would bury the progress
    started = time.monotonic()
    # HostCraft's modules were imported before main() ran, so this is the source this run measures
    # even when someone edits the checkout during the run.
    revision = source_revision()
    repetitions: list[Repetition] = []
    budget_exhausted = False
    facts: dict[str, Any] = {}
    failure: str | None = None

    # An hb lab left by an interrupted run would still hold its old swarm, which init would reject.
    lab_down(LAB_NAME)
    try:
        logger.info("bringing up lab %s on %s", LAB_NAME, LAB_SUBNET)
        lab = lab_up(LAB_NAME, managers=LAB_MANAGERS, workers=LAB_WORKERS, subnet=LAB_SUBNET, swarm=False)
        with (
            tempfile.TemporaryDirectory(prefix="hostcraft-bench-") as data_dir,
            hostcraft_api(Path(data_dir)) as api,
        ):
            bench = Bench(lab, api, options)
            form_swarm(bench)
            facts = swarm_facts(lab)
            logger.info("swarm formed: %s", facts)
            repetitions, budget_exhausted = run_scenarios(bench, started=started)
    except (BenchError, HostCraftError, httpx.HTTPError, docker.errors.DockerException) as exc:
        failure = str(exc)
        logger.error("benchmark failed: %s", exc)
    finally:
        logger.info("removing lab %s", LAB_NAME)
        lab_down(LAB_NAME)
        remaining = leftovers(LAB_NAME)
        if remaining:
            logger.error("lab %s left objects behind: %s", LAB_NAME, "; ".join(remaining))

    summary = summarize(repetitions)
    table = format_table(summary, options.interval)
    print(table)
    path = write_results(
        {
            "benchmark": "detection",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "options": {key: value for key, value in vars(options).items()},
            "lab": {"name": LAB_NAME, "subnet": LAB_SUBNET, "managers": LAB_MANAGERS, "workers": LAB_WORKERS},
            "machine": {**machine_facts(), **facts},
            "hostcraftSource": revision,
            "totalSeconds": time.monotonic() - started,
            "budgetExhausted": budget_exhausted,
            "failure": failure,
            "leftovers": remaining,
            "summary": summary,
            "repetitions": repetitions,
        }
    )
    print(f"\nresults written to {path}")
    complete = all(None not in r.detected_seconds.values() for r in repetitions)
    return 0 if complete and repetitions and not (failure or budget_exhausted or remaining) else 1


if __name__ == "__main__":
    sys.exit(main())
