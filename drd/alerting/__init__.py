"""Alerting: the rules that open and resolve alerts (:mod:`drd.alerting.rules`), the store
probe (:mod:`drd.alerting.probe`), and the channels that tell people about alerts."""
