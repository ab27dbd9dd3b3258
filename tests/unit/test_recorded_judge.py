"""Judging copies of objects not named by their hash against the catalog's record (pure)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from agents.manifest import sign_manifest
from drd.ledger import expected_sha256, is_restic_object, is_tracked
from drd.recorded.judge import Record, SeenCopy, judge_copies
from drd.recorded.keys import (
    CONFIG,
    ESCROW_KEY,
    is_drd_object,
    is_recorded_kind,
    is_sealed_manifest,
    manifest_keys,
    manifest_snapshot,
    sealed_manifest_keys,
    signature_document,
)

GOOD = hashlib.sha256(b"good config").hexdigest()
FORGED = hashlib.sha256(b"forged config").hexdigest()
RECORD = Record(GOOD, 155, "agent at enrollment")
SNAPSHOT = "ab" * 32


def copy(store: str, sha256: str | None = GOOD, size: int | None = 155,
         locked: bool = False) -> SeenCopy:
    return SeenCopy(store, sha256, size if sha256 else None, locked)


# -- the hostile test that found it: two unlocked forgeries outvote a locked good copy ----


def test_two_forged_unlocked_copies_never_outvote_the_record():
    copies = [copy("dc-a", FORGED), copy("dc-b", FORGED), copy("vault", locked=True)]
    judgement = judge_copies(copies, RECORD)
    assert judgement.expected == RECORD
    assert judgement.good == ("vault",) and judgement.best_source == "vault"
    assert judgement.damaged == ("dc-a", "dc-b")


def test_a_locked_copy_that_does_not_match_is_damaged_too():
    judgement = judge_copies([copy("vault", FORGED, locked=True), copy("dc-a")], RECORD)
    assert judgement.damaged == ("vault",) and judgement.good == ("dc-a",)


def test_a_copy_of_another_size_is_damaged_even_with_the_right_digest():
    judgement = judge_copies([copy("dc-a", size=154), copy("dc-b")], RECORD)
    assert judgement.damaged == ("dc-a",) and judgement.good == ("dc-b",)


def test_locked_good_copies_are_the_best_sources_then_the_policy_order():
    copies = [copy("a"), copy("b", locked=True), copy("c"), copy("d", locked=True),
              copy("e", None)]
    judgement = judge_copies(copies, RECORD)
    assert judgement.good == ("b", "d", "a", "c")
    assert judgement.missing == ("e",) and judgement.damaged == ()


def test_no_copy_matching_the_record_heals_nothing():
    judgement = judge_copies([copy("a", FORGED), copy("b", FORGED, locked=True)], RECORD)
    assert judgement.good == () and judgement.best_source is None
    assert judgement.damaged == ("a", "b")


# -- no record ------------------------------------------------------------------------


def test_without_a_record_nothing_is_judged():
    judgement = judge_copies([copy("a"), copy("b"), copy("c", FORGED)], None)
    assert judgement.expected is None and judgement.good == () and judgement.damaged == ()
    assert "no record" in judgement.problem


def test_without_a_record_the_locked_copy_is_learned_never_the_majority():
    copies = [copy("a", FORGED), copy("b", FORGED), copy("vault", locked=True)]
    judgement = judge_copies(copies, None, learn_from_locked=True)
    assert judgement.expected == Record(GOOD, 155, "locked copy in vault")
    assert judgement.learned_from == ("vault",)
    assert judgement.good == ("vault",) and judgement.damaged == ("a", "b")


def test_without_a_record_and_no_locked_copy_config_cannot_be_checked():
    judgement = judge_copies([copy("a"), copy("b"), copy("c", FORGED)], None,
                             learn_from_locked=True)
    assert judgement.expected is None and judgement.good == ()
    assert "no store holds a locked copy" in judgement.problem


def test_locked_copies_that_differ_teach_nothing():
    judgement = judge_copies([copy("a", locked=True), copy("b", FORGED, locked=True)], None,
                             learn_from_locked=True)
    assert judgement.expected is None and "locked copies differ (a, b)" in judgement.problem


@given(st.lists(st.tuples(st.sampled_from([GOOD, FORGED, None]), st.booleans()),
                max_size=6))
def test_a_copy_is_good_exactly_when_it_matches_the_record(seen):
    copies = [copy(f"s{index}", digest, locked=locked)
              for index, (digest, locked) in enumerate(seen)]
    judgement = judge_copies(copies, RECORD)
    assert set(judgement.good) == {c.store for c in copies if c.sha256 == GOOD}
    assert set(judgement.damaged) == {c.store for c in copies if c.sha256 == FORGED}
    # however many forgeries there are, the best source is a good copy or none
    assert judgement.best_source in {None} | {c.store for c in copies if c.sha256 == GOOD}


# -- keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("key,recorded", [
    (CONFIG, True), (ESCROW_KEY, True), (f"drd/manifests/{SNAPSHOT}.json", True),
    (f"drd/manifests/{SNAPSHOT}.json.sig", True),
    (f"drd/manifests/{SNAPSHOT}.json.sealed", True), ("drd/manifests/x.json", False),
    ("drd/manifests/x.json.sealed", False), (f"drd/manifests/{SNAPSHOT}.sealed", False),
    (f"drd/manifests/{SNAPSHOT}.json.sealed.sig", False),
    (f"drd/manifests/{SNAPSHOT}.json.old", False), (f"index/{GOOD}", False),
    ("drd/escrow/other", False)])
def test_recorded_kinds(key, recorded):
    assert is_recorded_kind(key) is recorded
    assert (manifest_snapshot(key) == SNAPSHOT) is (recorded and key.startswith("drd/m"))


def test_the_sealed_manifest_and_the_plaintext_one_share_the_signature_object():
    sealed, signature = sealed_manifest_keys(SNAPSHOT)
    assert sealed == f"drd/manifests/{SNAPSHOT}.json.sealed"
    assert signature == manifest_keys(SNAPSHOT)[1]
    assert is_sealed_manifest(sealed)
    assert not any(is_sealed_manifest(key) for key in (*manifest_keys(SNAPSHOT), CONFIG))


def test_the_ledger_tracks_recorded_keys_without_a_name_digest():
    for key in (CONFIG, ESCROW_KEY, *manifest_keys(SNAPSHOT), *sealed_manifest_keys(SNAPSHOT)):
        assert is_tracked(key) and expected_sha256(key) is None
    assert is_restic_object(CONFIG) and not is_drd_object(CONFIG)
    assert not is_restic_object(ESCROW_KEY) and is_drd_object(ESCROW_KEY)
    assert is_restic_object(f"index/{GOOD}") and expected_sha256(f"index/{GOOD}") == GOOD
    assert not is_tracked("drd/stray") and not is_restic_object("drd/stray")


def test_the_agent_writes_the_signature_document_the_centre_records():
    key = Ed25519PrivateKey.generate()
    signed = sign_manifest(key, {"snapshot_id": SNAPSHOT, "files": []})
    document = signature_document(signed.key_fingerprint, signed.signature_b64)
    assert signed.signature_document() == document
    assert json.loads(document)["signature"] == base64.b64encode(signed.signature).decode()
    assert signed.object_keys() == sealed_manifest_keys(SNAPSHOT)
