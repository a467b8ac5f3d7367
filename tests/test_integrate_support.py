"""The pieces around the recipes: stand-in modules, CPU fallbacks, md5 switches, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from itertools import product

import numpy as np
import pytest

from dmlp_integrations import apply
from dmlp_integrations.recipe import Insert, Recipe
from dmlp_integrations.shims import AUCMeter, provide
from dmlp_plugin.cli import integrate as integrate_cli
from dmlp_plugin.cli import main
from dmlp_plugin.cli.run import build_command
from dmlp_plugin.errors import InputError


def brute_force_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    pos, neg = scores[targets == 1], scores[targets == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_meter_matches_the_pairwise_definition(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(120), 1)  # many ties
    targets = (rng.random(120) < scores).astype(int)
    meter = AUCMeter()
    meter.add(scores[:50], targets[:50])
    meter.add(scores[50:], targets[50:])  # accumulates, as DivideMix calls it
    area, tpr, fpr = meter.value()
    assert area == pytest.approx(brute_force_auc(scores, targets))
    assert tpr[-1] == 1.0 and fpr[-1] == 1.0 and np.all(np.diff(tpr) >= 0)
    meter.reset()
    assert meter.value()[0] == 0.5


def test_auc_meter_rejects_non_binary_targets():
    with pytest.raises(ValueError, match="targets must be 0 or 1"):
        AUCMeter().add(np.ones(3), np.array([0, 2, 1]))


def run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_stand_ins_only_replace_missing_packages():
    out = run_python("""
        import importlib.util
        from dmlp_integrations.shims import provide
        missing = importlib.util.find_spec("torchnet") is None
        assert provide("torchnet") is missing
        from torchnet.meter import AUCMeter
        assert provide("json") is False
        assert provide("mlflow") is True
        import mlflow, mlflow.pytorch, inspect
        with mlflow.start_run():
            mlflow.log_param("a", 1)
        inspect.getmodule(mlflow.pytorch)  # introspection sees no fake __file__
        print(AUCMeter.__module__)
    """)
    assert out.strip() == "dmlp_integrations.shims"
    with pytest.raises(ValueError, match="no stand-in for 'numpy2'"):
        provide("numpy2")


def test_cpu_fallbacks_keep_cuda_calls_on_the_cpu():
    out = run_python("""
        import torch
        from dmlp_integrations import cpu
        assert cpu.install_cpu_fallbacks() is True
        assert cpu.install_cpu_fallbacks() is False  # once
        x = torch.ones(3).cuda()
        net = torch.nn.Linear(2, 2).cuda().to("cuda:0")
        y = torch.zeros(2).to(torch.device("cuda", 0)).type(torch.cuda.FloatTensor)
        torch.cuda.set_device(0)
        print(x.device, next(net.parameters()).device, y.device, y.dtype, torch.cuda.device_count())
    """)
    assert out.split() == ["cpu", "cpu", "cpu", "torch.float32", "1"]


def test_cpu_fallbacks_change_nothing_where_cuda_is_available():
    out = run_python("""
        import torch
        torch.cuda.is_available = lambda: True  # as on a GPU machine
        originals = (torch.Tensor.cuda, torch.nn.Module.cuda, torch.Tensor.to, torch.cuda.set_device,
                     torch.cuda.device_count)
        from dmlp_integrations import cpu
        from dmlp_integrations.launch import prepare
        assert cpu.install_cpu_fallbacks() is False
        assert prepare() == []  # no options given: nothing installed
        print(originals == (torch.Tensor.cuda, torch.nn.Module.cuda, torch.Tensor.to, torch.cuda.set_device,
                            torch.cuda.device_count))
    """)
    assert out.strip() == "True"


def test_skip_md5_accepts_files_in_modules_imported_before_and_after(tmp_path):
    (tmp_path / "upstream_utils.py").write_text("def check_integrity(path, md5=None):\n    return False\n")
    (tmp_path / "upstream_data.py").write_text(textwrap.dedent("""
        from upstream_utils import check_integrity
        class CIFAR10:
            def _check_integrity(self):
                return check_integrity('x', 'y')
    """))
    out = run_python(f"""
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        import torchvision.datasets.cifar as tv
        from dmlp_integrations import cpu
        cpu.skip_integrity_checks()
        import upstream_data
        print(tv.check_integrity('missing', 'md5'), upstream_data.check_integrity('a'),
              upstream_data.CIFAR10()._check_integrity())
    """)
    assert out.split() == ["True", "True", "True"]


def test_run_builds_the_launcher_command():
    assert build_command(["--", "python", "-u", "main.py", "--lr", "1"]) == [
        "python", "-u", "-m", "dmlp_integrations.launch", "main.py", "--lr", "1"]
    with pytest.raises(InputError, match="needs a command after `--`"):
        build_command([])
    with pytest.raises(InputError, match="expected `python SCRIPT.py ...`, got 'bash'"):
        build_command(["bash", "run.sh"])
    with pytest.raises(InputError, match="not -m or -c"):
        build_command(["python", "-m", "train"])


def err(capsys) -> str:
    """Standard error with the console's line wrapping undone."""
    return " ".join(capsys.readouterr().err.split())


def test_run_refuses_a_folder_that_is_not_integrated(tmp_path, capsys):
    (tmp_path / "main.py").write_text("print('ran')\n")
    code = main(["run", "cdr", "--cwd", str(tmp_path), "--", "python", "main.py"])
    assert code == 2 and "is not inside an integrated clone" in err(capsys)
    marker = {"schema": 2, "state": "done", "method": "dividemix", "recipe_version": 1, "files": {"x.py": {}}}
    (tmp_path / ".dmlp-integration.json").write_text(json.dumps(marker))
    assert main(["run", "cdr", "--cwd", str(tmp_path), "--", "python", "main.py"]) == 2
    assert "integrated for 'dividemix', not 'cdr'" in err(capsys)


MAIN = """import os, sys
print(os.environ.get("DMLP_RUN_MAX_ITERS"), os.environ.get("DMLP_RUN_SKIP_MD5"), sys.argv[1:])
sys.exit(3)
"""
#: A recipe for a one-file clone, registered as cdr's for the `dmlp run` tests.
TOY = Recipe("cdr", "u", ("c",), "main.py", edits=(Insert("main.py", "import os, sys", lines=("x = 1",)),))


@pytest.fixture
def toy_clone(tmp_path, monkeypatch):
    """A clone integrated with :data:`TOY`, which `dmlp run cdr` takes for cdr's recipe."""
    monkeypatch.setattr(integrate_cli, "recipe_for", lambda method: TOY)
    (tmp_path / "main.py").write_text(MAIN)
    apply.integrate(TOY, tmp_path)
    return tmp_path


def test_run_passes_the_exit_status_and_options_through(toy_clone, capfd):
    code = main(["run", "cdr", "--max-iters", "5", "--skip-md5", "--cwd", str(toy_clone), "--", "python", "main.py",
                 "--noise_rate", "0.2"])
    assert code == 3
    assert capfd.readouterr().out.strip() == "5 1 ['--noise_rate', '0.2']"


def test_run_refuses_a_clone_that_is_not_cleanly_integrated(toy_clone, capsys):
    with open(toy_clone / "main.py", "a") as fh:  # edited after integration
        fh.write("# mine\n")
    assert main(["run", "cdr", "--cwd", str(toy_clone), "--", "python", "main.py"]) == 2
    assert "is not cleanly integrated for cdr: integrated, but edited since: main.py" in err(capsys)
    (toy_clone / "main.py").write_text(MAIN)  # as if integration stopped before renaming it
    assert main(["run", "cdr", "--cwd", str(toy_clone), "--", "python", "main.py"]) == 2
    assert "interrupted: an integration or revert stopped part-way" in err(capsys)


def test_integrate_cli_errors_are_clear(tmp_path, capsys):
    assert main(["integrate", "torchvision", str(tmp_path)]) == 2
    assert "adapter 'torchvision' has no integration recipe" in err(capsys)
    assert main(["integrate", "dividemixx", str(tmp_path)]) == 2
    assert "did you mean 'dividemix'" in err(capsys)
    assert main(["integrate", "dividemix", str(tmp_path / "missing")]) == 2
    assert "clone not found" in err(capsys)
    assert main(["integrate", "dividemix", str(tmp_path), "--check"]) == 1
    assert "Train_cifar.py not found" in capsys.readouterr().out.replace("\n", " ")


def test_arguments_after_dashdash_are_only_for_run(capsys):
    with pytest.raises(SystemExit):
        main(["adapters", "list", "--", "python", "x.py"])
    assert "unexpected arguments after `--`" in capsys.readouterr().err
