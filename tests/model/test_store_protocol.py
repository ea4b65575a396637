"""The Store protocol matches both stores the daemon may hand to the stages."""

from __future__ import annotations

import inspect

import pytest

from spyderd.graph.guard import GuardedStore
from spyderd.graph.store import Store as LmdbStore
from spyderd.model.store import Store

METHODS = [n for n, v in vars(Store).items() if inspect.isfunction(v) and not n.startswith("_")]


def params(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


@pytest.mark.parametrize("cls", [LmdbStore, GuardedStore])
def test_signatures_match_the_protocol(cls):
    for name in METHODS:
        impl = cls.__dict__.get(name)
        if impl is None:
            assert cls is GuardedStore, f"{cls.__name__} lacks {name}"
            impl = getattr(LmdbStore, name)  # GuardedStore delegates it (__getattr__)
        assert params(impl) == params(getattr(Store, name)), (cls.__name__, name)


def test_real_stores_are_instances(tmp_path):
    lmdb = LmdbStore(tmp_path / "s")
    try:
        assert isinstance(lmdb, Store)
        assert isinstance(GuardedStore(lmdb), Store)
    finally:
        lmdb.close()
    assert not isinstance(object(), Store)
