"""Backups with restic: repositories, the restic runner, jobs on Swarm nodes and restores."""
