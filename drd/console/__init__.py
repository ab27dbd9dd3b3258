"""Terminal output and exit codes shared by the ``drd`` and ``drd-agent`` commands.

Below both CLIs (``drd.cli`` and ``agents.cli``), so the agent does not reach into the
centre's command layer.
"""
