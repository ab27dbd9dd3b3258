"""How a service's report becomes a run's outcome (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

from drd.daemon.workers import result_of


@dataclass
class Report:
    ok: bool
    bytes_copied: int = 0
    stores: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "stores": self.stores}


def test_a_good_report_succeeds_with_its_bytes() -> None:
    result = result_of(Report(True, 1234), "bytes_copied")
    assert (result.outcome, result.bytes_processed, result.error) == ("succeeded", 1234, None)


def test_a_bad_report_names_its_first_errors_by_store() -> None:
    report = Report(False, 0, [
        {"store": "dc-a", "ok": True, "errors": []},
        {"store": "dc-b", "ok": False,
         "errors": ["cannot list: s3://key:hunter22@host unavailable", "second"]},
    ])
    result = result_of(report, "bytes_copied")
    assert result.outcome == "failed" and result.bytes_processed == 0
    assert result.error.startswith("dc-b: cannot list")
    assert "hunter22" not in result.error and "second" in result.error


def test_a_bad_report_that_made_progress_is_partial() -> None:
    result = result_of(Report(False, 10, []), "bytes_copied")
    assert result.outcome == "partial" and "reported problems" in result.error


def test_a_report_that_stopped_early_is_not_done_even_when_ok() -> None:
    report = Report(True, 99)
    report.stopped = True  # verification reports ok for what it read before a stop
    result = result_of(report, "bytes_copied")
    assert result.outcome == "partial" and "stopped" in result.error


@dataclass
class Run:
    lost: list = field(default_factory=list)
    unhealed: list = field(default_factory=list)
    errors: list = field(default_factory=list)


@dataclass
class Verification:
    runs: list


def test_only_losses_are_not_worth_a_retry_but_errors_and_unhealed_ones_are() -> None:
    from drd.daemon.workers import only_losses

    assert only_losses(Verification([Run(lost=["k"]), Run()]))
    assert not only_losses(Verification([Run(lost=["k"], unhealed=["j"])]))
    assert not only_losses(Verification([Run(lost=["k"]), Run(errors=["store down"])]))
    assert not only_losses(Verification([Run()]))
    assert not only_losses(Verification([]))
