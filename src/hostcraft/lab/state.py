"""The lab's model, its on-disk layout and its state file.

A lab named ``NAME`` keeps its state JSON, pid files, sockets, exec roots and logs under
``/run/hostcraft-lab/NAME/`` and its data roots and registry storage under
``/var/lib/hostcraft-lab/NAME/``. Kernel objects carry the name too: network namespaces are
called ``hclab-<node>`` and every link the lab creates has the alias ``hostcraft-lab:NAME``,
so a lab whose state file is lost can still be found and removed.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from hostcraft.errors import LabError

RUN_ROOT = Path("/run/hostcraft-lab")
DATA_ROOT = Path("/var/lib/hostcraft-lab")
REGISTRY_PORT = 5000
STATE_VERSION = 1

LAB_NAME_PATTERN = re.compile(r"[a-z][a-z0-9]{0,7}")
NETNS_PREFIX = "hclab-"
LINK_ALIAS_PREFIX = "hostcraft-lab:"
IPTABLES_COMMENT_PREFIX = "hostcraft-lab-"

logger = logging.getLogger(__name__)

Role = Literal["manager", "worker"]


@dataclass(frozen=True)
class LabNode:
    """One Docker engine of a lab, running in its own network namespace."""

    name: str
    role: Role
    address: str
    endpoint: str
    netns: str
    veth: str


@dataclass(frozen=True)
class Lab:
    """A running (or recorded) lab: a bridge, a registry and one engine per node."""

    name: str
    index: int
    subnet: str
    bridge: str
    bridge_address: str
    registry: str
    nodes: list[LabNode]

    @classmethod
    def load(cls, name: str) -> Lab:
        """Read the lab from its state file, raising LabError when the lab does not exist."""
        path = state_path(validate_lab_name(name))
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise LabError(
                f"lab {name!r} not found: no state file at {path}; create it with `lab up {name}`",
                details={"lab": name},
            ) from None
        except (OSError, ValueError) as exc:
            raise LabError(
                f"failed to read the state of lab {name!r} from {path}: {exc}; "
                f"remove it with `lab down {name}`",
                details={"lab": name},
            ) from exc
        return _lab_from_state(raw, path)

    def node(self, node_name: str) -> LabNode:
        """Return the node called ``node_name``, raising LabError when the lab has none."""
        for node in self.nodes:
            if node.name == node_name:
                return node
        known = ", ".join(node.name for node in self.nodes)
        raise LabError(
            f"node {node_name!r} not found in lab {self.name!r}; its nodes are {known}",
            details={"lab": self.name, "node": node_name},
        )

    @property
    def managers(self) -> list[LabNode]:
        return [node for node in self.nodes if node.role == "manager"]

    @property
    def workers(self) -> list[LabNode]:
        return [node for node in self.nodes if node.role == "worker"]

    def images(self) -> dict[str, str]:
        """Map each lab image's logical name to its reference in the lab registry.

        The references are where ``build_images`` pushes; this method does not check that
        the images are there.
        """
        return {
            "busybox": f"{self.registry}/hostcraft/busybox:1",
            "webapp:v1": f"{self.registry}/hostcraft/webapp:v1",
            "webapp:v2": f"{self.registry}/hostcraft/webapp:v2",
        }

    def backup_image(self) -> str:
        """Return the reference of the backup job image in the lab registry (``push_backup_image``)."""
        return f"{self.registry}/hostcraft/restic:0.14"

    def database_images(self) -> dict[str, str]:
        """Map each database engine to its image reference in the lab registry.

        The references are where ``push_database_images`` pushes; this method does not check
        that the images are there.
        """
        return {
            "postgresql": f"{self.registry}/hostcraft/postgres:15",
            "mariadb": f"{self.registry}/hostcraft/mariadb:10.11",
            "redis": f"{self.registry}/hostcraft/redis:7",
        }


def validate_lab_name(name: str) -> str:
    """Return ``name`` if it is a valid lab name, else raise LabError."""
    if not LAB_NAME_PATTERN.fullmatch(name):
        raise LabError(
            f"invalid lab name {name!r}: use 1 to 8 characters, a lowercase letter first, "
            "then lowercase letters or digits (for example 'lab1')",
            details={"lab": name},
        )
    return name


def lab_run_dir(name: str) -> Path:
    return RUN_ROOT / name


def lab_data_dir(name: str) -> Path:
    return DATA_ROOT / name


def state_path(name: str) -> Path:
    return lab_run_dir(name) / "state.json"


def lock_path(name: str) -> Path:
    return RUN_ROOT / f"{name}.lock"


def node_run_dir(lab_name: str, node_name: str) -> Path:
    """Return the directory of a node's socket, pid file, exec root, daemon config and log."""
    return lab_run_dir(lab_name) / node_name


def node_data_root(lab_name: str, node_name: str) -> Path:
    return lab_data_dir(lab_name) / node_name


def node_socket(lab_name: str, node_name: str) -> Path:
    return node_run_dir(lab_name, node_name) / "docker.sock"


def netns_name(node_name: str) -> str:
    return f"{NETNS_PREFIX}{node_name}"


def link_alias(lab_name: str) -> str:
    return f"{LINK_ALIAS_PREFIX}{lab_name}"


def iptables_comment(lab_name: str) -> str:
    return f"{IPTABLES_COMMENT_PREFIX}{lab_name}"


def bridge_name(index: int) -> str:
    return f"hclab{index}"


def veth_name(index: int, position: int) -> str:
    """Return the name of the bridge-side veth of the node at ``position`` (1-based)."""
    return f"hcl{index}v{position}"


def veth_peer_name(index: int, position: int) -> str:
    """Return the temporary name of the namespace side, used until it is renamed ``eth0``."""
    return f"hcl{index}p{position}"


def node_names(lab_name: str, managers: int, workers: int) -> Iterator[tuple[str, Role]]:
    for number in range(1, managers + 1):
        yield f"{lab_name}-m{number}", "manager"
    for number in range(1, workers + 1):
        yield f"{lab_name}-w{number}", "worker"


def save_state(lab: Lab) -> None:
    """Write the lab's state file atomically."""
    path = state_path(lab.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"version": STATE_VERSION, **asdict(lab)}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(temporary, path)


def recorded_lab_names() -> list[str]:
    """Return the names of the labs that have a state file, sorted."""
    if not RUN_ROOT.is_dir():
        return []
    names = [
        entry.name
        for entry in RUN_ROOT.iterdir()
        if LAB_NAME_PATTERN.fullmatch(entry.name) and (entry / "state.json").is_file()
    ]
    return sorted(names)


def existing_lab(name: str) -> Lab | None:
    """Return the lab from its state file, or None if it has none or an unreadable one."""
    if not (lab_run_dir(name) / "state.json").is_file():
        return None
    try:
        return Lab.load(name)
    except LabError as exc:
        logger.warning("ignoring unreadable lab state", extra={"lab": name, "error": str(exc)})
        return None


def _lab_from_state(raw: Any, path: Path) -> Lab:
    try:
        nodes = [LabNode(**node) for node in raw["nodes"]]
        return Lab(
            name=raw["name"],
            index=int(raw["index"]),
            subnet=raw["subnet"],
            bridge=raw["bridge"],
            bridge_address=raw["bridge_address"],
            registry=raw["registry"],
            nodes=nodes,
        )
    except (KeyError, TypeError, ValueError) as exc:
        name = path.parent.name
        raise LabError(
            f"invalid state file {path}: {exc!r}; remove the lab with `lab down {name}`",
            details={"lab": name},
        ) from exc
