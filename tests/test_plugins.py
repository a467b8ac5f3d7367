"""The plugin manager: lazy building, entry-point loading, environment switches, bad plugins."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pluggy
import pytest
from plugin_fixtures import (ADAPTER_PLUGIN_SOURCE, AdapterPlugin, clean_env, fake_dist,  # noqa: F401
                             fresh_plugins, make_adapter, pm, registered)

from dmlp_plugin import cli, get_adapter, hookimpl, list_adapters, plugins
from dmlp_plugin.errors import AdapterError, PluginLoadError

#: The adapters dmlp-plugin itself registers through its entry points.
BUILTINS = {"torchvision", "dividemix", "elr_plus", "cdr", "coteaching"}


def _healthy(fake_dist, dist="dmlp-fake", version="1.2.3", plugin="fake", adapter="fake-adapter"):
    module = f"{dist.replace('-', '_')}_plugin"
    fake_dist(dist, version, {plugin: module}, {module: ADAPTER_PLUGIN_SOURCE.format(name=adapter)})


def _broken(fake_dist, dist="dmlp-broken", version="0.0.1"):
    fake_dist(dist, version, {"broken": "dmlp_broken_plugin"},
              {"dmlp_broken_plugin": "raise RuntimeError('cannot find libfoo.so')\n"})


# -- lazy, cached manager ----------------------------------------------------------------------


def test_importing_builds_nothing():
    code = ("import sys, dmlp_plugin, dmlp_plugin.plugins as p, dmlp_plugin.adapter\n"
            "print(p._manager is None, 'dmlp_adapters.torchvision' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "False"]


def test_manager_is_cached_until_reset(fresh_plugins):
    first = plugins.get_plugin_manager()
    assert plugins.get_plugin_manager() is first
    plugins.reset_plugin_manager()
    assert plugins.get_plugin_manager() is not first


def test_builtin_adapter_comes_through_its_entry_point(pm):
    source = pm.sources["torchvision"]
    assert source.distribution == "dmlp-plugin" and source.is_builtin
    assert source.entry_point == "torchvision = dmlp_adapters.torchvision"
    assert pm.adapters["torchvision"].source == source
    pm.check_pending()  # every built-in hook implementation matches a spec


# -- registering in-process plugins ------------------------------------------------------------


def test_register_and_unregister_a_plugin(pm):
    plugin = AdapterPlugin(make_adapter("inproc"))
    assert "inproc" not in list_adapters()
    with registered(pm, plugin, name="inproc-plugin"):
        assert "inproc" in list_adapters()
        assert get_adapter("inproc") is plugin.classes[0]
        assert pm.adapters["inproc"].source.describe() == "plugin 'inproc-plugin' (registered in-process)"
    assert "inproc" not in list_adapters()
    assert "inproc-plugin" not in pm.sources


def test_adapter_missing_attributes_is_rejected_with_their_names(pm):
    from dmlp_plugin.adapter import Adapter

    class Incomplete(Adapter):
        name = "incomplete"

        def get_labels(self, dataset): ...

    with registered(pm, AdapterPlugin(Incomplete), name="bad-plugin"):
        with pytest.raises(AdapterError) as info:
            pm.adapters
    message = str(info.value)
    assert "bad-plugin" in message
    for missing in ("upstream", "upstream_commits", "label_format", "read_labels", "set_labels", "write_labels"):
        assert missing in message
    assert "get_labels" not in message and "'name'" not in message


def test_wrong_hook_signature_names_the_plugin(pm):
    class WrongArgs:
        @hookimpl
        def dmlp_configure(self, config, verbose):
            return None

    with pytest.raises(pluggy.PluginValidationError) as info:
        pm.register(WrongArgs(), name="wrong-args")
    assert "wrong-args" in str(info.value) and "verbose" in str(info.value)
    assert not pm.has_plugin("wrong-args")
    assert pm.hook.dmlp_configure.get_hookimpls() == []  # nothing half-registered


def test_misspelt_hook_is_caught_with_a_suggestion(pm):
    class Typo:
        @hookimpl
        def dmlp_register_adapter(self, register):  # missing "s"
            pass

    with pytest.raises(pluggy.PluginValidationError, match="did you mean 'dmlp_register_adapters'"):
        pm.register(Typo(), name="typo")
    assert not pm.has_plugin("typo")
    pm.check_pending()  # the rejected plugin left nothing pending behind


def test_optional_hooks_from_newer_versions_are_allowed(pm):
    class Newer:
        @hookimpl(optionalhook=True)
        def dmlp_some_future_hook(self):
            pass

    with registered(pm, Newer(), name="newer"):
        assert pm.has_plugin("newer")


def test_duplicate_adapter_names_name_both_plugins(pm):
    first, second = AdapterPlugin(make_adapter("twin")), AdapterPlugin(make_adapter("twin"))
    with registered(pm, first, name="first-plugin"), registered(pm, second, name="second-plugin"):
        with pytest.raises(AdapterError, match="two adapters are named 'twin'") as info:
            pm.adapters
    assert "first-plugin" in str(info.value) and "second-plugin" in str(info.value)


def test_registering_the_same_class_twice_is_not_a_conflict(pm):
    cls = make_adapter("same")
    with registered(pm, AdapterPlugin(cls, cls), name="twice"):
        assert pm.adapters["same"].cls is cls


def test_register_hook_that_raises_names_the_plugin(pm):
    class Crashes:
        @hookimpl
        def dmlp_register_adapters(self, register):
            raise KeyError("boom")

    with registered(pm, Crashes(), name="crashes"):
        with pytest.raises(PluginLoadError, match="crashes.*dmlp_register_adapters raised KeyError") as info:
            pm.adapters
    assert isinstance(info.value.__cause__, KeyError)


# -- entry points of installed distributions ---------------------------------------------------


def test_entry_point_plugin_is_loaded_with_its_distribution(fresh_plugins, fake_dist):
    _healthy(fake_dist)
    pm = plugins.get_plugin_manager()
    entry = pm.adapters["fake-adapter"]
    assert (entry.source.distribution, entry.source.version) == ("dmlp-fake", "1.2.3")
    assert entry.source.entry_point == "fake = dmlp_fake_plugin"
    assert "torchvision" in pm.adapters  # the built-ins still load alongside


def test_failing_plugin_raises_named_chained_error(fresh_plugins, fake_dist):
    _healthy(fake_dist)
    _broken(fake_dist)
    with pytest.raises(PluginLoadError) as info:
        plugins.get_plugin_manager()
    assert "'broken' from dmlp-broken 0.0.1" in str(info.value)
    assert "RuntimeError: cannot find libfoo.so" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert plugins._manager is None  # nothing half-built is cached


def test_skip_broken_lists_the_healthy_plugins(fresh_plugins, fake_dist):
    _healthy(fake_dist)
    _broken(fake_dist)
    pm = plugins.build_plugin_manager(skip_broken=True)
    assert {"torchvision", "fake-adapter"} <= set(pm.adapters)
    [broken] = pm.broken
    assert broken.source.distribution == "dmlp-broken"
    assert isinstance(broken.error, PluginLoadError)
    assert isinstance(broken.error.__cause__, RuntimeError)


def test_duplicate_adapters_from_two_distributions_name_both(fresh_plugins, fake_dist):
    _healthy(fake_dist, dist="dmlp-one", version="1.0", plugin="one", adapter="clash")
    _healthy(fake_dist, dist="dmlp-two", version="2.0", plugin="two", adapter="clash")
    with pytest.raises(AdapterError) as info:
        plugins.get_plugin_manager().adapters
    assert "dmlp-one 1.0" in str(info.value) and "dmlp-two 2.0" in str(info.value)

    lenient = plugins.build_plugin_manager(skip_broken=True)
    assert "clash" in lenient.adapters  # the first registration is kept
    [broken] = lenient.broken
    assert "two adapters are named 'clash'" in str(broken.error)


def test_wrong_signature_in_entry_point_names_the_distribution(fresh_plugins, fake_dist):
    fake_dist("dmlp-sig", "3.1", {"sig": "dmlp_sig_plugin"}, {"dmlp_sig_plugin": '''
        from dmlp_plugin import hookimpl

        @hookimpl
        def dmlp_purify_epoch(epoch, record, loss):
            pass
    '''})
    with pytest.raises(PluginLoadError, match="'sig' from dmlp-sig 3.1") as info:
        plugins.get_plugin_manager()
    assert isinstance(info.value.__cause__, pluggy.PluginValidationError)
    assert "loss" in str(info.value)


def test_misspelt_hook_in_entry_point_names_the_distribution(fresh_plugins, fake_dist):
    fake_dist("dmlp-typo", "0.1", {"typo": "dmlp_typo_plugin"}, {"dmlp_typo_plugin": '''
        from dmlp_plugin import hookimpl

        @hookimpl
        def dmlp_purify_ends(result):
            pass
    '''})
    with pytest.raises(PluginLoadError, match="dmlp-typo 0.1.*did you mean 'dmlp_purify_end'"):
        plugins.get_plugin_manager()


def test_entry_point_name_taken_by_another_distribution(fresh_plugins, fake_dist):
    _healthy(fake_dist, dist="dmlp-aa", version="1", plugin="samename", adapter="a-adapter")
    _healthy(fake_dist, dist="dmlp-bb", version="2", plugin="samename", adapter="b-adapter")
    with pytest.raises(PluginLoadError, match="plugin name 'samename', already taken by") as info:
        plugins.get_plugin_manager()
    assert "dmlp-aa" in str(info.value) and "dmlp-bb" in str(info.value)


# -- environment switches ----------------------------------------------------------------------


def test_disable_autoload_keeps_only_the_builtins(fresh_plugins, fake_dist, clean_env):
    _healthy(fake_dist)
    _broken(fake_dist)
    clean_env.setenv("DMLP_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = plugins.get_plugin_manager()  # the broken plugin is never imported
    assert set(pm.adapters) == BUILTINS


def test_disable_autoload_still_loads_plugins_named_explicitly(fresh_plugins, fake_dist, clean_env):
    _healthy(fake_dist)
    clean_env.setenv("DMLP_DISABLE_PLUGIN_AUTOLOAD", "true")
    clean_env.setenv("DMLP_PLUGINS", "fake")
    assert set(plugins.get_plugin_manager().adapters) == BUILTINS | {"fake-adapter"}


@pytest.mark.parametrize("selector", ["one", "dmlp-one", "DMLP_One"])
def test_dmlp_plugins_loads_only_the_named(fresh_plugins, fake_dist, clean_env, selector):
    _healthy(fake_dist, dist="dmlp-one", plugin="one", adapter="adapter-one")
    _healthy(fake_dist, dist="dmlp-two", plugin="two", adapter="adapter-two")
    _broken(fake_dist)
    clean_env.setenv("DMLP_PLUGINS", selector)
    assert set(plugins.get_plugin_manager().adapters) == BUILTINS | {"adapter-one"}


def test_dmlp_plugins_warns_about_unknown_names(fresh_plugins, fake_dist, clean_env):
    _healthy(fake_dist)
    clean_env.setenv("DMLP_PLUGINS", "fake, nonexistent, torchvision")  # naming a built-in is fine
    with pytest.warns(UserWarning, match="DMLP_PLUGINS names nonexistent, but") as record:
        pm = plugins.get_plugin_manager()
    assert len(record) == 1
    assert "fake-adapter" in pm.adapters


def test_empty_dmlp_plugins_means_no_third_party(fresh_plugins, fake_dist, clean_env):
    _healthy(fake_dist)
    clean_env.setenv("DMLP_PLUGINS", "")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set(plugins.get_plugin_manager().adapters) == BUILTINS


# -- dmlp adapters list ------------------------------------------------------------------------


@pytest.fixture
def run_list(monkeypatch):
    """``dmlp adapters list ARGS`` through the real ``main``, with only this subcommand registered."""
    monkeypatch.setattr(cli, "COMMANDS", ("adapters",))
    return lambda *argv: cli.main(["adapters", "list", *argv])


def test_adapters_list_table(fresh_plugins, fake_dist, run_list, capsys):
    _healthy(fake_dist)
    assert run_list() == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "fake-adapter" in line)
    for cell in ("https://example.org/fake-adapter", "1.2.3", "dmlp-fake"):
        assert cell in row
    assert "torchvision" in out and "dmlp-plugin" in out


def test_adapters_list_skip_broken_reports_the_broken(fresh_plugins, fake_dist, run_list, capsys):
    _healthy(fake_dist)
    _broken(fake_dist)
    assert run_list() == 2
    err = " ".join(capsys.readouterr().err.split())  # undo rich's line wrapping
    assert "error: plugin 'broken' from dmlp-broken 0.0.1 failed to import" in err and "--skip-broken" in err
    assert run_list("--skip-broken") == 0
    captured = capsys.readouterr()
    assert "fake-adapter" in captured.out and "torchvision" in captured.out
    err = " ".join(captured.err.split())
    assert "skipped: plugin 'broken' from dmlp-broken 0.0.1" in err and "libfoo" in err
