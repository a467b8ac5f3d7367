"""Cheap commands start without torch: `dmlp --help`, `dmlp adapters list`,
`dmlp integrate --check` and `dmlp trusted` (with a labels file) never import it, nor does
`import dmlp_plugin` or its lazy packages. Their times are measured in benchmarks/startup.py."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

HEAVY = ("torch", "torchvision", "timm", "matplotlib", "sklearn", "scipy")

# Runs the CLI in a fresh interpreter and reports the exit status and the heavy modules loaded.
PROBE = """
import json, sys
from dmlp_plugin.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(%r)))
print(json.dumps({"rc": rc, "heavy": heavy}), file=sys.stderr)
""" % json.dumps(HEAVY)


def probe(*args: str, cwd=None) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["adapters", "list"], ["integrate", "coteaching", "CLONE", "--check"],
                                  ["trusted", "--labels", "y.npy", "--per-class", "2", "-o", "t.npy"]])
def test_cheap_commands_do_not_import_torch(tmp_path, args):
    np.save(tmp_path / "y.npy", np.arange(40) % 4)
    (tmp_path / "CLONE").mkdir()
    (tmp_path / "CLONE" / "main.py").write_text("print('not Co-teaching')\n")
    seen = probe(*args, cwd=tmp_path)
    assert seen["heavy"] == [], f"dmlp {' '.join(args)} imported {seen['heavy']}"
    if args[0] == "trusted":  # it did its work
        assert seen["rc"] == 0 and len(np.load(tmp_path / "t.npy")) == 8
    if args[0] == "integrate":  # a folder that is not a Co-teaching clone: said, not crashed
        assert seen["rc"] == 1


def test_a_command_that_needs_torch_still_gets_it(tmp_path):
    # the probe can see torch: `dmlp trusted` from a dataset folder reads it through torch's Dataset
    for c in range(2):
        (tmp_path / "imgs" / f"class{c}").mkdir(parents=True)
        for i in range(3):
            from PIL import Image

            Image.new("RGB", (8, 8), (40 * i, 80 * c, 0)).save(tmp_path / "imgs" / f"class{c}" / f"{i}.png")
    seen = probe("trusted", "--dataset", "imagefolder", "--root", str(tmp_path / "imgs"), "--per-class", "1",
                 "-o", str(tmp_path / "t.npy"))
    assert seen["rc"] == 0 and "torch" in seen["heavy"]


def test_the_package_and_its_lazy_names():
    code = ("import sys, dmlp_plugin, dmlp_plugin.features as f; "
            "names = dir(dmlp_plugin) + dir(f); "
            "print(int('torch' in sys.modules), len(names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.split()
    assert out[0] == "0" and int(out[1]) > 40
    import dmlp_plugin
    import dmlp_plugin.features as features

    for package in (dmlp_plugin, features):
        for name in package.__all__:
            assert getattr(package, name) is not None  # every listed name resolves
        with pytest.raises(AttributeError, match="has no attribute 'nope'"):
            package.nope  # noqa: B018
    assert dmlp_plugin.PurifyConfig.__module__ == "dmlp_plugin.config"
    assert features.kmeans_features.__module__ == "dmlp_plugin.features.kmeans"
