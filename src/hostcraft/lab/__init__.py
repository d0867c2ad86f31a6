"""A local multi-node Docker Swarm for tests and demos, on one Linux machine.

Each node is its own ``dockerd`` in its own network namespace and hostname, attached to a
lab bridge with its own subnet, next to a real image registry on the bridge address.
Everything here needs root and Linux, and raises ``LabError`` otherwise.
"""

from hostcraft.lab.database_images import ensure_database_images, push_database_images
from hostcraft.lab.images import build_images, push_backup_image
from hostcraft.lab.lifecycle import (
    heal_node,
    kill_node,
    lab_down,
    lab_up,
    leftovers,
    list_labs,
    node_running,
    partition_node,
    region_outage,
    start_node,
    stop_node,
)
from hostcraft.lab.s3 import s3_endpoint, start_s3_server, stop_s3_server
from hostcraft.lab.state import Lab, LabNode
from hostcraft.lab.swarm import DISPATCHER_HEARTBEAT_NS, node_client

__all__ = [
    "DISPATCHER_HEARTBEAT_NS",
    "Lab",
    "LabNode",
    "build_images",
    "ensure_database_images",
    "heal_node",
    "kill_node",
    "lab_down",
    "lab_up",
    "leftovers",
    "list_labs",
    "node_client",
    "node_running",
    "partition_node",
    "push_backup_image",
    "push_database_images",
    "region_outage",
    "s3_endpoint",
    "start_node",
    "start_s3_server",
    "stop_node",
    "stop_s3_server",
]
