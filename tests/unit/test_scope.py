"""Scopes of systems, and statements kept per question and shape (drd.services.scope)."""

from __future__ import annotations

import sqlalchemy as sa

from drd.catalog.models import System
from drd.services.scope import Scope, statement


def _build_counter():
    built = []

    def build(condition):
        built.append(condition)
        return sa.select(System.id).where(condition)

    return built, build


def test_a_shaped_scope_builds_its_statement_once_and_binds_its_own_values():
    built, build = _build_counter()
    first = statement(("test-shaped", 1), Scope.one(1), build)
    second = statement(("test-shaped", 1), Scope.one(2), build)
    assert first is second and len(built) == 1
    compiled = first.compile()
    assert compiled.construct_params(Scope.one(2).params)["scope_system"] == 2


def test_each_shape_and_question_has_its_own_statement():
    built, build = _build_counter()
    statement(("test-shapes",), Scope.one(1), build)
    statement(("test-shapes",), Scope.ids([1, 2]), build)
    statement(("test-shapes",), Scope.names_between("a", "b"), build)
    statement(("test-shapes", "other"), Scope.one(1), build)
    assert len(built) == 4


def test_an_ad_hoc_scope_is_built_every_time():
    built, build = _build_counter()
    condition = System.name == "x"
    statement(("test-ad-hoc",), Scope.where(condition), build)
    statement(("test-ad-hoc",), Scope.of(condition), build)
    assert len(built) == 2
    assert Scope.of(None).shape == "every"
