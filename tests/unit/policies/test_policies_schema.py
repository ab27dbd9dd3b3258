"""policies.schema: every field typed, described and exemplified; examples that validate."""

from datetime import timedelta

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from policies import schema
from policies.introspect import nested_models
from policies.loader import parse_policy_text
from policies.sample import example_policy_yaml
from policies.schema import CommandSource, PathSource, Policy, Retention, policy_json_schema

from .policies_cases import DEMO_REGIONS, VALID

MODELS = [value for value in vars(schema).values()
          if isinstance(value, type) and issubclass(value, BaseModel)
          and value.__module__ == schema.__name__ and not value.__name__.startswith("_")]
FIELDS = [(model, name) for model in MODELS for name in model.model_fields]


def test_every_model_is_seen():
    assert {model.__name__ for model in MODELS} == {
        "PathSource", "CommandSource", "Retention", "Manifest", "Verification",
        "DrillCheck", "DrillRestore", "DrillSandbox", "Drill", "Replication", "Prune", "Policy"}


@pytest.mark.parametrize(("model", "name"), FIELDS, ids=lambda v: getattr(v, "__name__", v))
def test_every_field_has_a_type_a_description_and_examples(model, name):
    info = model.model_fields[name]
    assert info.annotation is not None
    assert info.description and len(info.description) > 10
    assert info.examples


@pytest.mark.parametrize(("model", "name"), FIELDS, ids=lambda v: getattr(v, "__name__", v))
def test_every_example_validates(model, name):
    info = model.model_fields[name]
    probe = create_model("Probe", __config__=ConfigDict(strict=True, extra="forbid"),
                         value=(info.annotation, info))
    for example in info.examples:
        probe.model_validate({"value": example})


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_unknown_keys_are_forbidden_in_every_model(model):
    assert model.model_config["extra"] == "forbid"
    with pytest.raises(ValidationError) as caught:
        model.model_validate({"no_such_field": 1})
    assert "extra_forbidden" in {error["type"] for error in caught.value.errors()}


def all_fields_set(model_instance, path=()):
    """Every field path that was not set explicitly, recursively."""
    unset = [path + (name,) for name in type(model_instance).model_fields
             if name not in model_instance.model_fields_set]
    for name in type(model_instance).model_fields:
        value = getattr(model_instance, name)
        if isinstance(value, BaseModel):
            unset += all_fields_set(value, path + (name,))
        if isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    unset += all_fields_set(item, path + (name, index))
    return unset


def test_the_generated_sample_is_valid_and_sets_every_field():
    policy = parse_policy_text(example_policy_yaml(), "sample.yaml", DEMO_REGIONS)
    unset = all_fields_set(policy)
    # sources hold one path and one command source, each with every field of its kind
    assert unset == [], unset


def test_the_generated_sample_documents_every_field():
    text = example_policy_yaml()
    for model, name in FIELDS:
        if model in (PathSource, CommandSource, schema.DrillCheck):
            continue  # list items: present as example values, described by their list
        description = model.model_fields[name].description
        assert f"# {description.split()[0]}" in text
        assert f"{name}:" in text


def test_the_json_schema_carries_descriptions_and_examples():
    document = policy_json_schema()
    properties = document["properties"]
    assert set(properties) == set(Policy.model_fields)
    for name, info in Policy.model_fields.items():
        assert properties[name]["description"] == info.description
        assert properties[name]["examples"] == info.examples
    assert document["additionalProperties"] is False


def test_a_policy_can_be_built_in_code_and_round_trips_through_json():
    policy = parse_policy_text(VALID)
    rebuilt = Policy.model_validate(policy.model_dump(mode="json"))
    assert rebuilt.model_dump() == policy.model_dump()
    assert policy.model_dump(mode="json")["rpo"] == "1h"
    assert policy.rpo == timedelta(hours=1)
    assert rebuilt.source_path is None and rebuilt.source_sha256 is None


def test_sources_are_told_apart_by_their_keys():
    policy = parse_policy_text(VALID)
    assert [type(source) for source in policy.sources] == [PathSource, CommandSource]
    assert policy.sources[0].exclude == ["*.tmp"]


def test_values_are_taken_as_written():
    with pytest.raises(ValidationError):
        Retention.model_validate({"keep_daily": "7"})
    with pytest.raises(ValidationError):
        Retention.model_validate({"keep_daily": True})
    assert Retention.model_validate({"keep_within": timedelta(days=2)}).keep_within.days == 2


def test_defaults():
    policy = parse_policy_text(VALID)
    assert policy.single_region_ok is False
    assert policy.verification.period == timedelta(days=30)
    assert policy.manifest.sample_percent == 100
    assert policy.before == [] and policy.after == []
    assert policy.drill.checks[0].expect_exit == 0
    assert policy.drill.checks[0].expect_stdout is None
    assert Retention().is_empty()


def test_nested_models_sees_optional_models_lists_and_unions():
    def models(model, name, **options):
        return nested_models(model.model_fields[name].annotation, **options)

    assert models(Policy, "drill") == [schema.Drill]
    assert models(Policy, "retention") == [Retention]
    assert models(Policy, "stores") == []
    assert models(Policy, "rpo") == []
    assert models(Policy, "sources") == [PathSource, CommandSource]
    assert models(Policy, "sources", in_lists=False) == []
    assert models(schema.Drill, "checks") == [schema.DrillCheck]
    assert models(schema.Drill, "checks", in_lists=False) == []


def test_sample_and_reference_share_one_helper():
    from policies import reference, sample

    assert not hasattr(sample, "_nested_model")
    assert not hasattr(reference, "_nested_models")
    assert sample.nested_models is reference.nested_models is nested_models
