"""What the Adapter base class derives for its subclasses, so each adapter says it once."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dmlp_adapters.cdr import CDRAdapter
from dmlp_integrations.cdr import RECIPE
from dmlp_plugin.adapter import Adapter, NpyLabelFile, validate_adapter_class
from dmlp_plugin.errors import AdapterError


class _Base(NpyLabelFile, Adapter):
    def get_labels(self, dataset):
        return self.dataset_attribute(dataset, "labels")

    def set_labels(self, dataset, labels):
        dataset.labels = labels


def test_an_adapter_with_a_recipe_takes_its_upstream_and_commits():
    class WithRecipe(_Base):
        name = "with-recipe"
        integration = RECIPE

    validate_adapter_class(WithRecipe)
    assert WithRecipe.upstream == "https://github.com/xiaoboxia/CDR"
    assert WithRecipe.upstream_commits == tuple(RECIPE.commits) and CDRAdapter.upstream_commits == RECIPE.commits


def test_what_an_adapter_sets_itself_wins():
    class Pinned(_Base):
        name = "pinned"
        integration = RECIPE
        upstream = "https://example.org/fork"
        upstream_commits = ("v2",)

    assert (Pinned.upstream, Pinned.upstream_commits) == ("https://example.org/fork", ("v2",))


def test_without_a_recipe_nothing_is_made_up():
    class Bare(_Base):
        name = "bare"

    with pytest.raises(AdapterError, match="upstream, upstream_commits"):
        validate_adapter_class(Bare)


def test_a_missing_dataset_attribute_names_the_adapter_and_the_dataset_it_expected():
    with pytest.raises(AdapterError, match=r"adapter 'cdr': SimpleNamespace has no 'train_labels'; expected "
                                           r"CDR's cifar10_dataset"):
        CDRAdapter().get_labels(SimpleNamespace(train=True))
    assert _Base.dataset_kind == "the upstream's dataset"
