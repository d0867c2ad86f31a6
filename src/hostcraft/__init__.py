"""HostCraft: a control plane for Docker Swarm built around high availability and recovery."""

__version__ = "0.1.0"
