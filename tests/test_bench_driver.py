"""``benchmarks/driver.py``, the module every benchmark script shares: sections of RESULTS.md,
atomic caches, options, child processes; and two rules over all the scripts (one section name
per script, no plain unpickling)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import driver  # noqa: E402


def test_a_section_replaces_only_itself_and_is_appended_when_missing(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\n<!-- other:start -->\nkeep me\n<!-- other:end -->\n")
    section = driver.Section("mine")
    section.write(section.wrap(["## Mine", "one"]), path, quiet=True)
    section.write(section.wrap(["## Mine", "two"]), path, quiet=True)
    text = path.read_text()
    assert "keep me\n<!-- other:end -->" in text
    assert text.count("<!-- mine:start -->") == 1 and "two" in text and "one" not in text
    assert text.rstrip().endswith("<!-- mine:start -->\n## Mine\ntwo\n<!-- mine:end -->")


def test_wrap_run_puts_the_dated_sentence_the_command_and_the_table_in_order():
    text = driver.Section("s").wrap_run("## T", ("Run X.", "python benchmarks/x.py --a"), "More.", ["| a |"],
                                        ["after"])
    assert text.split("\n") == ["<!-- s:start -->", "## T", "", "Run X. More.", "",
                                "    python benchmarks/x.py --a", "", "| a |", "", "after", "<!-- s:end -->"]


def test_a_missing_or_half_written_cache_file_is_a_miss_and_writes_leave_no_temporaries(tmp_path):
    path = tmp_path / "deep" / "run.json"
    assert driver.read_json(path) is None
    driver.write_json(path, {"label_acc": 0.5, "info": {"C": 0.1}})
    assert driver.read_json(path) == {"label_acc": 0.5, "info": {"C": 0.1}}
    path.write_text('{"label_acc": 0.')  # a writer killed half way, before writes were atomic
    assert driver.read_json(path) is None
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]


def test_comma_lists_and_the_protocol_options():
    assert driver.comma_list("a, b,,c") == ["a", "b", "c"]
    assert driver.comma_list("") == [] and driver.comma_list("1,2", int) == [1, 2]
    p = argparse.ArgumentParser()
    driver.add_protocol(p, seeds="0,1", cifar_n_keys=True)
    args = p.parse_args(["--rates", "0.2, 0.8", "--asym-rates", "", "--cifar-n-keys", "worse_label"])
    driver.parse_protocol(args)
    assert (args.rate_list, args.asym_list, args.seed_list, args.key_list) == ([0.2, 0.8], [], [0, 1],
                                                                                ["worse_label"])
    assert driver.command_line("x.py", ["--a", "1"]) == "python benchmarks/x.py --a 1"


def test_a_child_returns_its_last_json_line_and_a_failed_one_says_why():
    assert driver.run_child(["-c", "print('noise'); print('{\"peak\": 3}')"]) == {"peak": 3}
    with pytest.raises(RuntimeError, match="(?s)status 3.*went wrong"):
        driver.run_child(["-c", "import sys; sys.stderr.write('went wrong'); sys.exit(3)"])
    current, peak = driver.rss_bytes()
    assert 0 < current <= peak


def test_every_script_names_its_own_section_and_none_unpickles_with_pickle_load():
    names: dict[str, str] = {}
    for script in sorted(BENCH.glob("*.py")):
        text = script.read_text()
        for name in re.findall(r'Section\("([\w-]+)"\)', text):
            assert name not in names, f"{script.name} and {names[name]} both write the section {name!r}"
            names[name] = script.name
    assert {"purify", "suite", "cost", "backbones", "paper-regime"} <= set(names)
    for script in [*BENCH.glob("*.py"), BENCH / "gpu_check.sh"]:
        assert not re.search(r"pickle\.loads?\(", script.read_text()), (
            f"{script.name} unpickles without the package's restricted reader")
