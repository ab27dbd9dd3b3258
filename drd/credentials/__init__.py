"""Systems' own store keys: the plan (:mod:`.plan`, pure) and carrying it out
(:mod:`.reconcile`). The brokers that talk to the stores live in
:mod:`drd.stores.credentials`."""
