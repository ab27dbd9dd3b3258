"""The agent that runs on a department's system: ``drd-agent``.

It enrolls with a centre, keeps its own backup schedule (working while the centre is
down), runs restic once per backup and fans the objects out to every store of its
policy. At this stage only ``drd-agent status`` exists; enrollment, the schedule and
the fan-out endpoint are being built (see the project's issues).
"""
