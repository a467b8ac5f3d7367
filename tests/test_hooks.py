"""Each hook's contract, plus the catalogue checks: every hook is documented and tested."""

from __future__ import annotations

import argparse
import ast
import inspect
import re
from pathlib import Path

import numpy as np
import pytest
from plugin_fixtures import AdapterPlugin, clean_env, fresh_plugins, make_adapter, pm, registered  # noqa: F401

from dmlp_plugin import hookimpl, hookspecs, plugins
from dmlp_plugin.config import PurifyConfig
from dmlp_plugin.errors import AdapterError, ConfigError, ShapeError

ROOT = Path(__file__).resolve().parents[1]
HOOKS = {name: fn for name, fn in vars(hookspecs).items() if name.startswith("dmlp_")}


def _spec_opts(fn) -> dict:
    return getattr(fn, "dmlp_plugin_spec")


# -- the catalogue ---------------------------------------------------------------------------


def test_hooks_are_prefixed_typed_and_specified():
    assert len(HOOKS) >= 7
    for name, fn in HOOKS.items():
        assert _spec_opts(fn) is not None, f"{name} is not marked with @hookspec"
        sig = inspect.signature(fn)
        untyped = [p for p, param in sig.parameters.items() if param.annotation is inspect.Parameter.empty]
        assert not untyped, f"{name}: parameters without a type: {untyped}"
        assert sig.return_annotation is not inspect.Signature.empty, f"{name} has no return type"


def test_every_hook_docstring_is_reference_documentation():
    for name, fn in HOOKS.items():
        doc = inspect.getdoc(fn) or ""
        for param in inspect.signature(fn).parameters:
            assert f":param {param}:" in doc, f"{name}: docstring lacks ':param {param}:'"
        assert ":return:" in doc, f"{name}: docstring does not say what it returns"
        opts = _spec_opts(fn)
        assert ("Stops at first non-None result" in doc) == bool(opts["firstresult"]), name
        assert ("historic" in doc) == bool(opts["historic"]), name


def test_every_hook_is_documented():
    text = (ROOT / "docs" / "hooks.md").read_text()
    sections = dict(re.findall(r"^### (dmlp_\w+)\((.*)\)$", text, flags=re.M))
    assert set(sections) == set(HOOKS), (f"undocumented: {sorted(set(HOOKS) - set(sections))}; "
                                         f"documented but not a hook: {sorted(set(sections) - set(HOOKS))}")
    for name, fn in HOOKS.items():
        assert sections[name] == ", ".join(inspect.signature(fn).parameters), f"docs/hooks.md heading of {name}"
        body = text.split(f"### {name}(", 1)[1].split("\n### ", 1)[0]
        assert f"def {name}(" in body, f"docs/hooks.md has no example implementing {name}"
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        compile(block, "docs/hooks.md", "exec")  # examples must at least be valid Python


def test_every_hook_has_a_test():
    tested = set()
    for path in sorted((ROOT / "tests").glob("test_hooks*.py")):
        tree = ast.parse(path.read_text())
        tested |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    missing = [name for name in HOOKS if not any(t.startswith(f"test_hook_{name}") for t in tested)]
    assert not missing, f"hooks without a test_hook_<name> test in tests/test_hooks*.py: {missing}"


# -- one test (at least) per hook ------------------------------------------------------------


def test_hook_dmlp_register_adapters(pm):
    cls = make_adapter("via-hook")
    with registered(pm, AdapterPlugin(cls), name="via-hook-plugin"):
        assert plugins.get_plugin_manager().adapters["via-hook"].cls is cls

    class RegistersNonsense:
        @hookimpl
        def dmlp_register_adapters(self, register):
            register(dict)

    with registered(pm, RegistersNonsense(), name="nonsense"):
        with pytest.raises(AdapterError, match="'nonsense'.*not a subclass of dmlp_plugin.adapter.Adapter"):
            pm.adapters


def test_hook_dmlp_add_options_is_historic(pm):
    class Early:
        @hookimpl
        def dmlp_add_options(self, parser):
            parser.add_argument("--early-flag", action="store_true")

    class Late:
        @hookimpl
        def dmlp_add_options(self, parser):
            parser.add_argument("--late-value", type=int, default=0)

    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float)
    with registered(pm, Early(), name="early"):
        plugins.add_options(parser)
        with registered(pm, Late(), name="late"):  # registers after the call, is called anyway
            args = parser.parse_args(["--lr", "0.1", "--early-flag", "--late-value", "7"])
    assert (args.lr, args.early_flag, args.late_value) == (0.1, True, 7)


def test_hook_dmlp_configure_merges_overrides(pm):
    class Lower:
        @hookimpl(trylast=True)
        def dmlp_configure(self, config):
            return {"rounds": 3, "round_eta": 0.3}

    class Higher:
        @hookimpl
        def dmlp_configure(self, config):
            assert config.rounds == 5  # plugins see the user's config, not each other's
            return {"rounds": config.rounds * 2}

    class Silent:
        @hookimpl
        def dmlp_configure(self):
            return None

    base = PurifyConfig()
    with registered(pm, Silent(), name="silent"):
        assert plugins.configure(base) is base
        with registered(pm, Lower(), name="lower"), registered(pm, Higher(), name="higher"):
            merged = plugins.configure(base)
    assert (merged.rounds, merged.round_eta, merged.ridge) == (10, 0.3, base.ridge)


def test_hook_dmlp_configure_sets_the_fields_of_the_configs_own_pipeline(pm):
    class Short:
        @hookimpl
        def dmlp_configure(self, config):
            return {"epochs": 10} if config.mode == "paper" else {"rounds": 2}

    with registered(pm, Short(), name="short"):
        assert plugins.configure(PurifyConfig.paper()) == PurifyConfig.paper(epochs=10)
        assert plugins.configure(PurifyConfig()) == PurifyConfig(rounds=2)


@pytest.mark.parametrize("returned, message", [
    (["rounds", 3], "returned list"),
    ({"roundz": 3}, "unknown PurifyConfig field.*did you mean 'rounds'"),
    ({"epochs": 3}, "'epochs' \\(a setting of the paper pipeline"),
    ({"rounds": 0}, "rounds must be a positive integer"),
])
def test_hook_dmlp_configure_rejects_bad_overrides(pm, returned, message):
    class Bad:
        @hookimpl
        def dmlp_configure(self, config):
            return returned

    with registered(pm, Bad(), name="bad"):
        with pytest.raises(ConfigError, match=message):
            plugins.configure(PurifyConfig())


def test_hook_dmlp_extract_features_first_result_wins(pm):
    import torch

    calls = []

    class Generic:
        @hookimpl
        def dmlp_extract_features(self, dataset, backbone):
            calls.append("generic")
            return np.ones((len(dataset), 3)) if backbone in ("mine", "both") else None

    class Specific:  # registered later, so called first
        @hookimpl
        def dmlp_extract_features(self, dataset, backbone, device):
            calls.append("specific")
            return torch.zeros(len(dataset), 2) if backbone == "both" else None

    dataset = list(range(5))
    with registered(pm, Generic(), name="generic"), registered(pm, Specific(), name="specific"):
        both = plugins.extract_features(dataset, "both", "cpu")
        assert isinstance(both, np.ndarray) and both.shape == (5, 2) and calls == ["specific"]
        assert plugins.extract_features(dataset, "mine", "cpu").shape == (5, 3)
        assert plugins.extract_features(dataset, "nobody", "cpu") is None


def test_hook_dmlp_extract_features_checks_rows(pm):
    class WrongRows:
        @hookimpl
        def dmlp_extract_features(self, dataset):
            return np.ones((len(dataset) - 1, 4))

    with registered(pm, WrongRows(), name="wrong-rows"):
        with pytest.raises(ShapeError, match=r"shape \(9, 4\).*expected \(10, D\)"):
            plugins.extract_features(list(range(10)), "any", "cpu")


def test_hook_dmlp_extract_features_used_by_purify_and_the_features_command(pm, tmp_path):
    """Both ways of turning a dataset into features ask plugins before the built-ins."""
    from dmlp_plugin.cli import main
    from PIL import Image

    from dmlp_plugin.data import ArrayDataset
    from dmlp_plugin.io import array_checksum
    from dmlp_plugin.purify import purify_dataset

    rng = np.random.default_rng(0)
    clean = np.repeat([0, 1], 30)
    dataset = ArrayDataset(rng.integers(0, 255, (60, 8, 8, 3)).astype(np.uint8), clean)
    planted = (np.eye(2)[clean] * 4 + rng.normal(0, 1, (60, 2))).astype(np.float32)

    class Oracle:
        @hookimpl
        def dmlp_extract_features(self, dataset, backbone):
            return planted if backbone == "oracle" else None

    with registered(pm, Oracle(), name="oracle"):
        with pytest.warns(RuntimeWarning, match="only 4 samples"):
            result = purify_dataset(dataset, backbone="oracle", val_indices=[0, 1, 30, 31],
                                    val_labels=[0, 0, 1, 1], seed=0)
        assert result.metadata["features_sha"] == array_checksum(planted)
        for k in range(2):
            (tmp_path / "imgs" / f"c{k}").mkdir(parents=True)
            for i in range(30):
                Image.fromarray(dataset.images[k * 30 + i]).save(tmp_path / "imgs" / f"c{k}" / f"{i:02d}.png")
        out = tmp_path / "f.npy"
        assert main(["features", "--dataset", "imagefolder", "--root", str(tmp_path / "imgs"),
                     "--backbone", "oracle", "-o", str(out), "--no-cache"]) == 0
        np.testing.assert_array_equal(np.load(out), planted)


class Recorder:
    """Records every purification hook call; implements each with a subset of arguments."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def dmlp_purify_start(self, num_classes, config, num_samples):
        self.calls.append(("start", num_samples, num_classes, config))

    @hookimpl
    def dmlp_purify_epoch(self, epoch, record):
        self.calls.append(("epoch", epoch, dict(record)))
        return "ignored"

    @hookimpl
    def dmlp_purify_end(self, result):
        self.calls.append(("end", result))


def _synthetic_result(n=20, c=4, seed=0):
    from dmlp_plugin.result import PurifyResult

    rng = np.random.default_rng(seed)
    soft = rng.dirichlet(np.ones(c), size=n).astype(np.float32)
    return PurifyResult.from_soft_labels(soft, rng.integers(0, c, n))


def test_hook_dmlp_purify_start(pm):
    recorder = Recorder()
    with registered(pm, recorder, name="recorder"):
        out = pm.hook.dmlp_purify_start(config=PurifyConfig(rounds=7), num_samples=50, num_classes=10)
    assert recorder.calls == [("start", 50, 10, PurifyConfig(rounds=7))]
    assert out == []  # nothing to return


def test_hook_dmlp_purify_epoch(pm):
    recorder = Recorder()
    with registered(pm, recorder, name="recorder"):
        for epoch in (1, 2):
            pm.hook.dmlp_purify_epoch(epoch=epoch, record={"loss": 1.0 / epoch})
    assert recorder.calls == [("epoch", 1, {"loss": 1.0}), ("epoch", 2, {"loss": 0.5})]


def test_hook_dmlp_purify_end(pm):
    recorder = Recorder()
    result = _synthetic_result()
    with registered(pm, recorder, name="recorder"):
        pm.hook.dmlp_purify_end(result=result)
    assert recorder.calls == [("end", result)]


# -- purify_dataset calls the hooks ------------------------------------------------------------

def _blobs(n=240, c=3, d=8, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, c, n)
    features = rng.normal(0, 1, (c, d))[clean] * 3 + rng.normal(0, 1, (n, d))
    noisy = np.where(rng.random(n) < 0.3, (clean + 1) % c, clean)
    trusted = np.arange(0, n, 8)
    return features.astype(np.float32), noisy, clean, trusted


@pytest.mark.parametrize("config, key", [
    (PurifyConfig(rounds=3), "round"),  # the default: once per least-squares round
    (PurifyConfig.paper(epochs=3, batch_size=100), "epoch"),  # paper mode: once per epoch
], ids=["default", "paper"])
def test_hook_dmlp_purify_start_epoch_end_called_by_purify_dataset(pm, config, key):
    from dmlp_plugin.purify import purify_dataset

    features, noisy, clean, trusted = _blobs()
    recorder = Recorder()
    with registered(pm, recorder, name="recorder"):
        result = purify_dataset(features, noisy, val_indices=trusted, val_labels=clean[trusted], num_classes=3,
                                config=config, seed=0, device="cpu")
    kinds = [call[0] for call in recorder.calls]
    assert kinds == ["start", "epoch", "epoch", "epoch", "end"]
    assert recorder.calls[0] == ("start", 240, 3, config)
    assert [call[1] for call in recorder.calls[1:4]] == [1, 2, 3]
    assert [call[2] for call in recorder.calls[1:4]] == result.history
    assert [record[key] for record in result.history] == [1, 2, 3]
    assert recorder.calls[-1][1] is result


@pytest.mark.parametrize("config, override, field", [
    (PurifyConfig(rounds=5), {"rounds": 2}, "rounds"),
    (PurifyConfig.paper(epochs=5, batch_size=100), {"epochs": 2}, "epochs"),
], ids=["default", "paper"])
def test_hook_dmlp_configure_applied_by_purify_dataset(pm, config, override, field):
    from dmlp_plugin.purify import purify_dataset

    class Two:
        @hookimpl
        def dmlp_configure(self, config):
            return override

    features, noisy, clean, trusted = _blobs()
    with registered(pm, Two(), name="two"):
        result = purify_dataset(features, noisy, val_indices=trusted, val_labels=clean[trusted], num_classes=3,
                                config=config, seed=0, device="cpu")
    assert getattr(result.config, field) == 2 and len(result.history) == 2
