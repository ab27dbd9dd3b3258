"""Restore drills: restore a snapshot from one store into a sandbox, check it, time it,
and sign the report (see DESIGN.md, "Restore drills"). Built in a later issue; the
package exists so that the layout and the packaging are settled from the start.
"""
