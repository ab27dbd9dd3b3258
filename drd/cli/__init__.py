"""The ``drd`` command line: parsing, output and exit codes. No decisions live here."""
