"""restore_drills.posture: the 3-2-1-1-0 summary of a system."""

import pytest

from restore_drills.posture import StoreCopy, assess

DC_A = StoreCopy("dc-a", "eu-1", complete=True, object_lock=False)
DC_B = StoreCopy("dc-b", "eu-1", complete=True, object_lock=False)
REGION_B = StoreCopy("region-b", "eu-2", complete=True, object_lock=True)
THREE = [DC_A, DC_B, REGION_B]


def test_three_copies_two_regions_one_offsite_one_immutable_no_errors_is_met():
    posture = assess(THREE, 0, 0, object_lock_days=7)
    assert posture.as_dict() == {
        "copies": 3, "regions": 2, "offsite": 1, "immutable": 1, "errors": 0, "met": True,
        "stores": [{"name": "dc-a", "region": "eu-1", "complete": True, "object_lock": False},
                   {"name": "dc-b", "region": "eu-1", "complete": True, "object_lock": False},
                   {"name": "region-b", "region": "eu-2", "complete": True,
                    "object_lock": True}],
        "notes": []}
    assert list(posture.as_dict()) == ["copies", "regions", "offsite", "immutable", "errors",
                                       "met", "stores", "notes"]


def test_an_incomplete_copy_counts_for_nothing_but_is_listed():
    incomplete = StoreCopy("region-b", "eu-2", complete=False, object_lock=True)
    posture = assess([DC_A, DC_B, incomplete], 0, 0, object_lock_days=7)
    assert (posture.copies, posture.regions, posture.offsite, posture.immutable) == (2, 1, 0, 0)
    assert not posture.met
    assert posture.notes == (
        "only 2 complete copies; 3-2-1-1-0 needs 3",
        "complete copies in only 1 region; 3-2-1-1-0 needs 2",
        "no complete copy outside the region 'eu-1'; 3-2-1-1-0 needs 1 off-site",
        "no complete copy on an Object Lock store; 3-2-1-1-0 needs 1 immutable")
    assert posture.as_dict()["stores"][2]["complete"] is False


def test_without_object_lock_days_nothing_is_immutable():
    posture = assess(THREE, 0, 0, object_lock_days=0)
    assert (posture.immutable, posture.met) == (0, False)
    assert posture.notes == ("no immutable copy: the policy locks nothing "
                             "(object_lock_days is 0); 3-2-1-1-0 needs 1",)


def test_errors_of_the_last_verification_and_drill_add_up():
    posture = assess(THREE, 1, 2, object_lock_days=7)
    assert (posture.errors, posture.met) == (3, False)
    assert posture.notes == ("3 errors (1 in the last verification, 2 in the last drill); "
                             "3-2-1-1-0 needs 0",)


def test_offsite_is_counted_against_the_first_stores_region_or_the_one_given():
    first_offsite = [REGION_B, DC_A, DC_B]  # the policy lists the eu-2 store first
    assert assess(first_offsite, 0, 0, object_lock_days=7).offsite == 2
    assert assess(THREE, 0, 0, "eu-2", object_lock_days=7).offsite == 2
    assert assess(THREE, 0, 0, "eu-9", object_lock_days=7).offsite == 3


def test_an_unknown_region_counts_as_a_copy_only():
    unknown = StoreCopy("tape", None, complete=True, object_lock=False)
    posture = assess([DC_A, DC_B, unknown], 0, 0, object_lock_days=0)
    assert (posture.copies, posture.regions, posture.offsite) == (3, 1, 0)
    # with the first store's region unknown, nothing is known to be off-site
    assert assess([unknown, REGION_B], 0, 0, object_lock_days=7).offsite == 0


def test_one_copy_and_no_stores():
    assert assess([DC_A], 0, 0, object_lock_days=0).notes[0] == (
        "only 1 complete copy; 3-2-1-1-0 needs 3")
    empty = assess([], 0, 0, object_lock_days=0)
    assert (empty.copies, empty.met, empty.as_dict()["stores"]) == (0, False, [])


def test_negative_counts_are_refused():
    with pytest.raises(ValueError):
        assess(THREE, -1, 0, object_lock_days=7)
    with pytest.raises(ValueError):
        assess(THREE, 0, 0, object_lock_days=-1)
