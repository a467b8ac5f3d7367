"""Start-up time of the cheap commands, beside commands that need torch.

Each command runs in a fresh interpreter (``python -m dmlp_plugin ...``), ``--repeats``
times; the table gives the fastest and the median wall time, and whether the command
imported torch (read from ``sys.modules`` in one extra run of each). The target (issue 31):
``dmlp --help``, ``dmlp adapters list``, ``dmlp integrate --check`` and ``dmlp trusted``
under 2 s, without torch. ``python -c "import torch"`` and ``dmlp trusted`` from an image
folder (which reads the images through torch's Dataset) show what torch costs.

    python benchmarks/startup.py                      # prints the table
    python benchmarks/startup.py --write-results      # and writes it into RESULTS.md

``dmlp integrate --check`` runs on ``$DMLP_UPSTREAM_ROOT/Co-teaching`` when that is set, else
on a stand-in folder (which it reports as unsupported, after the same imports).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from driver import RESULTS, Section, add_write_results, load_average, run_context, write_json

SECTION = Section("startup")
TARGET_S = 2.0

# Runs the CLI and reports whether torch was imported (stderr, last line).
PROBE = """
import sys
from dmlp_plugin.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("TORCH=" + str("torch" in sys.modules), file=sys.stderr)
"""


def commands(work: Path) -> list[tuple[str, list[str], bool]]:
    """``(label, argv after python, cheap?)``: the cheap commands, then the torch references."""
    np.save(work / "labels.npy", np.arange(50_000) % 10)
    upstream = os.environ.get("DMLP_UPSTREAM_ROOT")
    clone = Path(upstream) / "Co-teaching" if upstream else work / "clone"
    if not upstream:
        clone.mkdir(exist_ok=True)
        (clone / "main.py").write_text("# a stand-in, not Co-teaching\n")
    images = work / "images"
    for c in range(2):
        (images / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(4):
            from PIL import Image

            Image.new("RGB", (8, 8), (60 * i, 120 * c, 0)).save(images / f"class{c}" / f"{i}.png")
    dmlp = ["-m", "dmlp_plugin"]
    return [
        ("dmlp --help", [*dmlp, "--help"], True),
        ("dmlp adapters list", [*dmlp, "adapters", "list"], True),
        ("dmlp integrate coteaching CLONE --check", [*dmlp, "integrate", "coteaching", str(clone), "--check"], True),
        ("dmlp trusted --labels 50,000 labels", [*dmlp, "trusted", "--labels", str(work / "labels.npy"),
                                                 "--per-class", "100", "-o", str(work / "t.npy")], True),
        ('python -c "import torch"', ["-c", "import torch"], False),
        ("dmlp trusted --dataset imagefolder (needs torch)",
         [*dmlp, "trusted", "--dataset", "imagefolder", "--root", str(images), "--per-class", "1",
          "-o", str(work / "t2.npy")], False),
    ]


def time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def imports_torch(argv: list[str]) -> bool:
    if argv[0] == "-c":
        return "torch" in argv[1]
    done = subprocess.run([sys.executable, "-c", PROBE, *argv[2:]], capture_output=True, text=True)
    return done.stderr.strip().splitlines()[-1] == "TORCH=True"


def measure(repeats: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, argv, cheap in commands(Path(tmp)):
            time_once(argv)  # warm the file cache, as a user's second run would be
            times = [time_once(argv) for _ in range(repeats)]
            rows.append({"command": label, "torch": imports_torch(argv), "cheap": cheap,
                         "min_s": min(times), "median_s": statistics.median(times)})
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = ["| command | imports torch | fastest (s) | median (s) | under 2 s |", "|---|---|---:|---:|---|"]
    for r in rows:
        verdict = ("yes" if r["median_s"] < TARGET_S else "**no**") if r["cheap"] else "(reference)"
        lines.append(f"| `{r['command']}` | {'yes' if r['torch'] else 'no'} | {r['min_s']:.2f} | "
                     f"{r['median_s']:.2f} | {verdict} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="timed runs per command (default: 5)")
    add_write_results(p, SECTION)
    p.add_argument("--json", type=Path, help="also write the measurements as JSON")
    args = p.parse_args(argv)
    began, load_start = datetime.datetime.now(), load_average()
    rows = measure(args.repeats)
    lines = table(rows)
    print("\n".join(lines))
    if args.json:
        write_json(args.json, rows, indent=2)
    if args.write_results:
        sentence, command = run_context("startup.py", began, load_start, argv)
        section = SECTION.wrap(["## Start-up time of the CLI", "", f"{sentence} Each command in a fresh "
                                f"interpreter, {args.repeats} timed runs after one warm-up.", "", *lines, "",
                                "Command:", "", f"    {command}"])
        SECTION.write(section, RESULTS)
    cheap_ok = all(r["median_s"] < TARGET_S and not r["torch"] for r in rows if r["cheap"])
    return 0 if cheap_ok else 1


if __name__ == "__main__":
    sys.exit(main())
