"""nasi-jax against an eager-PyTorch NASI step, side by side in one run (issue 17's table).

    python benchmarks/vs_reference.py --reference ../shared/reference/nasi_step_torch.py \\
        --torch-python /path/to/venv-with-torch/bin/python [--batches 64,8] [--steps 100] \\
        [--output docs/runs/vs_reference_cpu.json]

The same job on both sides: the NB201 supernet (C = 16, N = 5), one seed, T steps of NASI's
Algorithm 1 on random data (Gaussian inputs, random labels), float32, with the same knobs: at
b = 64 the paper's (tau 1, mu 2, nu 100: ``--preset paper``), at other batch sizes the project's
tuned data-agnostic preset (``nb201-random``: tau 0.5, mu 1, nu 91.22). PyTorch is not a
dependency of ours: ``--torch-python`` names an interpreter that has it (CPU build, threads
from ``--threads``, default 2, as XLA:CPU uses both cores).

For each batch size, one after another (nothing else should run meanwhile):

* PyTorch ``--phase b``: one step, the median of ``--reps`` after two warm-up steps;
* PyTorch ``--phase c``: a T-step search, its process wall time and peak RSS;
* ``nasi search`` twice with a fresh compilation cache: the first run compiles (cold), the
  second loads the compiled programs (warm), each its process wall time, peak RSS, and the
  compile and per-step times it records.

Wall times are whole processes (interpreter start, imports, data, compile, steps), measured
here with ``os.wait4``, so both sides pay their start-up. Ratios are PyTorch over nasi-jax
(above 1: nasi-jax is faster). The table is printed as Markdown, the figures written as JSON
(atomically) with the versions of both sides; the last line on stdout is one JSON object of
the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _run(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd``; its wall time, peak RSS (MiB, this child alone) and output. Raises with the
    output's tail when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024.0, "output": out}


def _torch_result(out: str) -> dict:
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"the reference printed no RESULT line:\n{out[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _knobs(batch: int) -> dict:
    if batch == 64:
        return {"preset": "paper", "tau": 1.0, "mu": 2.0, "nu": 100.0}
    return {"preset": "nb201-random", "tau": 0.5, "mu": 1.0, "nu": 91.22}


def torch_side(args, batch: int) -> dict:
    k = _knobs(batch)
    base = [args.torch_python, args.reference, "--csv", args.csv, "--batch", str(batch),
            "--threads", str(args.threads), "--tau", str(k["tau"]), "--mu", str(k["mu"]), "--nu", str(k["nu"])]
    tmp = tempfile.mkdtemp(prefix="vsref-torch-")
    try:
        b = _run(base + ["--phase", "b", "--reps", str(args.reps), "--out", os.path.join(tmp, "b.json")])
        c = _run(base + ["--phase", "c", "--T", str(args.steps), "--out", os.path.join(tmp, "c.json")])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rb, rc = _torch_result(b["output"]), _torch_result(c["output"])
    return {"step_median_s": rb["median_s"], "step_min_s": rb["min_s"], "step_reps": rb["all_s"],
            "step_peak_rss_mib": rb.get("peak_rss_mib"),
            "search_process_wall_s": c["wall_s"], "search_loop_wall_s": rc["wall_s"],
            "search_median_step_s": rc["median_step_s"],
            # the reference runs each phase in a subprocess of its own and reports its peak RSS
            "search_peak_rss_mib": rc.get("peak_rss_mib") or c["peak_rss_mib"],
            "chosen_arch": rc.get("chosen_arch")}


def jax_side(args, batch: int) -> dict:
    k = _knobs(batch)
    cache = tempfile.mkdtemp(prefix="vsref-cache-")
    out_json = os.path.join(cache, "result.json")
    cmd = [sys.executable, "-m", "nasi_jax.cli", "search", "--space", "nb201", "--preset", k["preset"],
           "--data", "random", "--batch-size", str(batch), "--steps", str(args.steps), "--seeds", "1",
           "--first-seed", str(args.seed), "--compilation-cache", cache, "--no-progress", "--output", out_json]
    runs = {}
    try:
        for name in ("cold", "warm"):
            r = _run(cmd)
            with open(out_json) as fh:
                res = json.load(fh)
            runs[name] = {"process_wall_s": r["wall_s"], "peak_rss_mib": r["peak_rss_mib"],
                          "wall_time_s": res["wall_time_s"], "compile_time_s": res["compile_time_s"],
                          "search_time_s": res["search_time_s"], "per_step_s": res["per_step_s"],
                          "compilation_cache": res["compilation_cache"], "arch": res["seeds"][0]["arch"]}
        runs["versions"] = res["versions"]
        runs["execution"] = res["execution"]
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return runs


def _torch_version(py: str) -> str:
    try:
        return subprocess.run([py, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"--torch-python {py!r} cannot import torch ({e}). Make a separate venv for it, "
                         "e.g. python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 "
                         "(a CPU build); it is not a dependency of nasi-jax.")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--reference", required=True, help="the eager-PyTorch NASI step (nasi_step_torch.py)")
    p.add_argument("--torch-python", required=True, help="a Python interpreter with torch installed")
    data = os.environ.get("NASI_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
    p.add_argument("--csv", default=os.path.join(data, "nb201", "nb201_accuracies.csv"),
                   help="NB201 accuracy table (the reference reads it)")
    p.add_argument("--batches", default="64,8", help="comma-separated batch sizes")
    p.add_argument("--steps", type=int, default=100, help="T of the searches")
    p.add_argument("--reps", type=int, default=3, help="PyTorch one-step repeats (after 2 warm-up steps)")
    p.add_argument("--threads", type=int, default=2, help="PyTorch threads")
    p.add_argument("--seed", type=int, default=0, help="nasi-jax's seed")
    p.add_argument("--output", help="write the figures here as JSON (atomically)")
    args = p.parse_args(argv)
    for path, what in ((args.reference, "--reference"), (args.csv, "--csv")):
        if not os.path.isfile(path):
            raise SystemExit(f"{what}: no file {path!r}")
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    if not batches or min(batches) < 1 or args.steps < 1:
        raise SystemExit("--batches needs positive batch sizes and --steps a positive T")
    torch_version = _torch_version(args.torch_python)
    rows = []
    for b in batches:
        print(f"[vs-reference] batch {b}: PyTorch (phase b, phase c T={args.steps})...", file=sys.stderr, flush=True)
        t = torch_side(args, b)
        print(f"[vs-reference] batch {b}: nasi-jax (cold, then warm cache)...", file=sys.stderr, flush=True)
        j = jax_side(args, b)
        warm, cold = j["warm"], j["cold"]
        rows.append({"batch": b, "knobs": _knobs(b), "torch": t, "jax": j,
                     "step_ratio": t["step_median_s"] / warm["per_step_s"],
                     "search_step_ratio": t["search_median_step_s"] / warm["per_step_s"],
                     "search_wall_ratio_warm": t["search_process_wall_s"] / warm["process_wall_s"],
                     "search_wall_ratio_cold": t["search_process_wall_s"] / cold["process_wall_s"],
                     "peak_rss_ratio_warm": warm["peak_rss_mib"] / t["search_peak_rss_mib"]})
    T = args.steps
    print(f"\n| batch | nasi-jax T={T} wall, cold (compile + steps) | nasi-jax wall, warm cache (load + steps) "
          f"| PyTorch T={T} wall | per step jax / PyTorch | T={T} search PyTorch / jax (warm) | peak RSS jax (warm) / PyTorch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        t, c, w = r["torch"], r["jax"]["cold"], r["jax"]["warm"]
        print(f"| {r['batch']} | {c['process_wall_s']:.0f} s ({c['compile_time_s']:.0f} s + {T} x {c['per_step_s']:.2f} s) "
              f"| {w['process_wall_s']:.0f} s ({w['compile_time_s']:.0f} s + {T} x {w['per_step_s']:.2f} s) "
              f"| {t['search_process_wall_s']:.0f} s | {w['per_step_s']:.2f} s / {t['step_median_s']:.2f} s "
              f"({r['step_ratio']:.2f}x) | {r['search_wall_ratio_warm']:.2f}x "
              f"| {w['peak_rss_mib'] / 1024:.1f} / {t['search_peak_rss_mib'] / 1024:.1f} GB |")
    result = {"command": " ".join([os.path.relpath(__file__, ROOT)] + (argv if argv is not None else sys.argv[1:])),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "steps": T,
              "threads_torch": args.threads, "torch_version": torch_version, "rows": rows}
    if args.output:
        sys.path.insert(0, ROOT)
        from nasi_jax import records
        records.write_json_atomic(args.output, result)
        print(f"wrote {args.output}", file=sys.stderr)
    print(json.dumps({f"b{r['batch']}": {k: round(r[k], 3) for k in ("step_ratio", "search_wall_ratio_warm",
                                                                      "search_wall_ratio_cold", "peak_rss_ratio_warm")}
                      for r in rows}))
    return 0


if __name__ == "__main__":
    from nasi_jax.hugepages import rerun_with_hugepages
    rerun_with_hugepages()  # before the work: XLA:CPU's buffers on huge pages, where the system has them
    sys.exit(main())
