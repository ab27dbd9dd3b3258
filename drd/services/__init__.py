"""Services: what a command does, between the CLI (or API) and restic, stores, catalog.

Each module takes what it needs as arguments (a catalog, a master key, a store factory)
and returns plain results; printing and exit codes are the caller's business.
"""
