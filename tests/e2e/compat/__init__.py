"""A fleet that upgrades unevenly: the previous release, checked out from git history, run against the
current code (its device with the current cloud, the current device with its cloud)."""
