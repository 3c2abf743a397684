#!/usr/bin/env python3
"""Driver of the model benchmark (issue 6); `bench/run.sh` builds the binaries and calls it.

Runs every measurement in its own process, on the inputs made by bench/make_checkpoints.py:
PyTorch (bench/model_torch.py), ONNX Runtime (bench/model_ort.py) and zeroclip
(target/release/examples/bench_model), all with 2 threads; then the reference example end to end
(bench/model_reference_example.py against `target/release/zeroclip classify`), wall time and peak
RSS from `os.wait4`. Checks that the frameworks computed the same embeddings, prints the table
with the ratios against the issue's targets, saves bench/out/model/results.json and rewrites the
generated block of the `## Model (issue 6)` section of docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata as md
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import model_common as mc

ROOT = mc.ROOT
OUT = mc.OUT
PY = sys.executable
BENCH_BIN = ROOT / "target" / "release" / "examples" / "bench_model"
CLI_BIN = ROOT / "target" / "release" / "zeroclip"
IMAGE = (ROOT / ".." / "shared" / "fixtures" / "CLIP.png").resolve()
DOC = ROOT / "docs" / "PERFORMANCE.md"
SECTION = "## Model (issue 6)"
BEGIN, END = "<!-- model-bench:begin (written by bench/run.sh) -->", "<!-- model-bench:end -->"
LABELS = ["a diagram", "a dog", "a cat"]
THREADS = 2
ENV = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS),
           RAYON_NUM_THREADS=str(THREADS), CANDLE_NUM_THREADS=str(THREADS))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd: str) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def measure(cmd: list, env: dict | None = None) -> list:
    """Runs one measurement process (in `env`, default ENV); returns its JSON records."""
    log(" ".join(str(c) for c in cmd))
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env or ENV,
                          cwd=ROOT / "bench")
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"measurement failed (exit {proc.returncode}): {' '.join(map(str, cmd))}")
    records = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    for r in records:
        short = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "times_s"}
        log(f"  {short}")
    return records


def run_process(cmd: list, stdout_path: Path, env: dict | None = None) -> dict:
    """Wall time and peak RSS (the child's ru_maxrss) of one process (in `env`, default ENV)."""
    with open(stdout_path, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=subprocess.PIPE,
                                env=env or ENV, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{cmd[0]} exited {code}: {err[-2000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "user_s": usage.ru_utime,
            "sys_s": usage.ru_stime}


def machine() -> dict:
    lscpu = sh("lscpu")
    field = lambda k: next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith(k + ":")), "?")
    flags = field("Flags").split()
    simd = [f for f in flags if re.match(r"^(sse4_2|avx|avx2|fma|f16c|avx512f|avx512bw|avx512vl|avx512_vnni|avx512_bf16|avx_vnni|amx\w*)$", f)]
    mem_kb = int(next(l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")))
    lock = (ROOT / "Cargo.lock").read_text()
    ver = lambda name: (re.search(rf'name = "{name}"\nversion = "([^"]+)"', lock) or [None, "?"])[1]
    pyver = lambda p: md.version(p) if _has(p) else "?"
    return {
        "cpu": field("Model name"), "cores": field("CPU(s)"), "threads_per_core": field("Thread(s) per core"),
        "simd_flags": simd, "memory_gib": round(mem_kb / 2**20, 1), "kernel": platform.release(),
        "hypervisor": field("Hypervisor vendor"),
        "rustc": sh("rustc --version"), "candle": ver("candle-core"), "gemm": ver("gemm"),
        "rustflags": os.environ.get("RUSTFLAGS", ""),
        "python": platform.python_version(), "torch": pyver("torch"), "openai-clip": pyver("openai-clip"),
        "onnxruntime": pyver("onnxruntime"), "numpy": pyver("numpy"),
    }


def _has(pkg: str) -> bool:
    try:
        md.version(pkg)
        return True
    except md.PackageNotFoundError:
        return False


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def agreement(name_a: str, name_b: str) -> float:
    """max |a - b| / max |b| between two dumped embedding files (nan if one is missing)."""
    pa, pb = OUT / "embeddings" / name_a, OUT / "embeddings" / name_b
    if not (pa.exists() and pb.exists()):
        return float("nan")
    a, b = np.fromfile(pa, "<f4"), np.fromfile(pb, "<f4")
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def speed_round(fw, img_runs, runs_text, prompts, px, dump) -> list:
    """One round of the throughput measurements: per model the three frameworks one after the
    other, batch 1 then 16; then the text tower (ViT-B/32's; RN50's has the same shapes)."""
    rec = []
    for model in ("ViT-B-32", "RN50"):
        ckpt = OUT / f"{model}.pt"
        for b in img_runs([]):
            if "pytorch" in fw:
                rec += measure([PY, "model_torch.py", "image", "--model", model] + b)
            if "onnxruntime" in fw:
                rec += measure([PY, "model_ort.py", "image", "--model", model] + b)
            if "zeroclip" in fw:
                rec += measure([BENCH_BIN, "image", "--model", ckpt, "--pixels", px, "--dump", dump,
                                "--threads", THREADS] + b)
    # Text tower (ViT-B/32's; RN50's has the same shapes): tokenize + encode 16 prompts.
    for kind in ("short", "long"):
        common = ["--warmup", "2", "--runs", str(runs_text)]
        if "pytorch" in fw:
            rec += measure([PY, "model_torch.py", "text", "--model", "ViT-B-32", "--kind", kind] + common)
        if "zeroclip" in fw:
            rec += measure([BENCH_BIN, "text", "--model", OUT / "ViT-B-32.pt", "--prompts", prompts[kind],
                            "--dump", dump, "--threads", THREADS] + (["--truncate"] if kind == "long" else [])
                           + common)
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few runs, to try the harness")
    ap.add_argument("--frameworks", nargs="*", default=["pytorch", "onnxruntime", "zeroclip"])
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/PERFORMANCE.md")
    ap.add_argument("--rounds", type=int, default=2,
                    help="throughput rounds; the table keeps each measurement's best round")
    ap.add_argument("--note", default="", help="a line written beside the results (e.g. the machine's state)")
    args = ap.parse_args()
    q = args.quick
    runs_b1, runs_b16, runs_text, reps_load, reps_py, reps_zc = (3, 2, 2, 1, 1, 2) if q else (15, 5, 7, 3, 3, 5)
    warm_b1, warm_b16 = (1, 1) if q else (3, 1)
    fw = set(args.frameworks)
    (OUT / "embeddings").mkdir(parents=True, exist_ok=True)
    for f in (OUT / "embeddings").glob("*.f32"):
        f.unlink()
    prompts = mc.write_prompt_files()
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = loadavg()
    info = machine()
    log(f"machine: {info['cpu']}, {info['cores']} cores, load {load_before}")
    rec = []
    px = OUT / f"pixels_{mc.RES}x16.f32"
    dump = OUT / "embeddings"

    def img_runs(extra):
        return extra + ["--batch", "1", "--warmup", str(warm_b1), "--runs", str(runs_b1)], \
            extra + ["--batch", "16", "--warmup", str(warm_b16), "--runs", str(runs_b16)]

    for rnd in range(args.rounds):
        log(f"round {rnd + 1} of {args.rounds}")
        rec += speed_round(fw, img_runs, runs_text, prompts, px, dump)
    # Load time and peak RSS: one fresh process per load, repeated.
    for model in ("ViT-B-32", "RN50"):
        for _ in range(reps_load):
            if "pytorch" in fw:
                rec += measure([PY, "model_torch.py", "load", "--model", model])
            if "onnxruntime" in fw:
                rec += measure([PY, "model_ort.py", "load", "--model", model])
            if "zeroclip" in fw:
                rec += measure([BENCH_BIN, "load", "--model", OUT / f"{model}.pt", "--threads", THREADS])
    # The reference example end to end, as processes; one untimed run of each first (page cache).
    e2e = {}
    ckpt = OUT / "ViT-B-32.pt"
    if IMAGE.exists():
        py_cmd = [PY, ROOT / "bench" / "model_reference_example.py", ckpt, IMAGE]
        zc_base = [CLI_BIN, "classify", IMAGE, "--labels", *LABELS, "--model", ckpt, "--threads", THREADS]
        variants = {}
        if "pytorch" in fw:
            variants["python"] = (py_cmd, reps_py)
        if "zeroclip" in fw:
            variants["zeroclip"] = (zc_base + ["--no-cache"], reps_zc)
            variants["zeroclip_cached"] = (zc_base + ["--cache-dir", OUT / "label-cache"], reps_zc)
        for name, (cmd, reps) in variants.items():
            out_file = OUT / f"e2e_{name}.txt"
            log(" ".join(map(str, cmd)))
            run_process(cmd, out_file)  # warm-up (and fills the label cache for the cached variant)
            runs = [run_process(cmd, out_file) for _ in range(reps)]
            e2e[name] = {
                "wall_s": statistics.median(r["wall_s"] for r in runs),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                "cpu_s": statistics.median(r["user_s"] + r["sys_s"] for r in runs),
                "runs": runs, "output": out_file.read_text().strip()[:600],
            }
            log(f"  {name}: {e2e[name]['wall_s']:.2f} s, {e2e[name]['peak_rss_mb']:.0f} MB")
    else:
        log(f"{IMAGE} is missing: skipping the end-to-end comparison")
    # GEMM alone on ViT-B/32's Linear shapes (for the profile's reading; not a target).
    gemm = []
    if "zeroclip" in fw:
        gemm += measure([BENCH_BIN, "matmul", "--runs", "3" if q else "9", "--threads", THREADS])
    if "pytorch" in fw:
        gemm += measure([PY, "model_torch.py", "matmul", "--runs", "3" if q else "9"])
    finished = datetime.datetime.now(datetime.timezone.utc)
    result = {"machine": info, "started": started.isoformat(timespec="seconds"),
              "finished": finished.isoformat(timespec="seconds"), "load_before": load_before,
              "load_after": loadavg(), "note": args.note, "quick": q, "rounds": args.rounds, "records": rec, "e2e": e2e, "gemm": gemm}
    result["agreement"] = {
        f"{f} vs pytorch, {what}": agreement(f"{f}_{what}.f32", f"pytorch_{what}.f32")
        for f in ("zeroclip", "onnxruntime")
        for what in ("ViT-B-32_image_b16", "RN50_image_b16", "ViT-B-32_text_short", "ViT-B-32_text_long")
        if (OUT / "embeddings" / f"{f}_{what}.f32").exists()
    }
    (OUT / "results.json").write_text(json.dumps(result, indent=1))
    block = render(result)
    print(block)
    if not args.no_doc:
        write_doc(block)
        log(f"wrote {DOC.relative_to(ROOT)} ({SECTION})")


def pick(rec, **kw):
    hits = [r for r in rec if all(r.get(k) == v for k, v in kw.items())]
    return hits


def render(res: dict) -> str:
    rec, e2e, m = res["records"], res["e2e"], res["machine"]

    def hits(fw, model, batch, kind, task):
        kw = dict(framework=fw, model=model, task=task)
        if batch is not None:
            kw["batch"] = batch
        if kind is not None:
            kw["kind"] = kind
        return pick(rec, **kw)

    def thr(fw, model, batch=None, kind=None, task="image"):
        found = hits(fw, model, batch, kind, task)
        return max(h["items_per_s"] for h in found) if found else None

    def best(fw, model, batch=None, kind=None, task="image"):
        found = hits(fw, model, batch, kind, task)
        return max(h["batch"] / h["min_s"] for h in found) if found else None

    def cell(fw, model, batch=None, kind=None, task="image"):
        v = thr(fw, model, batch, kind, task)
        return "—" if v is None else f"{v:.1f} ({best(fw, model, batch, kind, task):.1f})"

    def fmt(v, nd=1):
        return "—" if v is None else f"{v:.{nd}f}"

    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    def verdict(r, target, higher=True):
        if r is None:
            return "—"
        ok = r >= target if higher else r <= target
        return "**met**" if ok else "not met"

    lines = [BEGIN, ""]
    lines.append(f"Run {res['started']} → {res['finished']} UTC{' (--quick)' if res['quick'] else ''}; "
                 f"load average {res['load_before']} before, {res['load_after']} after "
                 f"(2 cores: a load above 2 means other processes competed for the CPU)."
                 + (f" {res['note']}" if res["note"] else ""))
    lines.append("")
    lines.append(f"Machine: {m['cpu']} ({m['hypervisor']} guest), {m['cores']} cores × {m['threads_per_core']} "
                 f"thread, {m['memory_gib']} GiB, Linux {m['kernel']}; SIMD: {', '.join(m['simd_flags'])}. "
                 f"{m['rustc']}, candle {m['candle']}, gemm {m['gemm']}, RUSTFLAGS=\"{m['rustflags']}\"; "
                 f"Python {m['python']}, torch {m['torch']}, openai-clip {m['openai-clip']}, "
                 f"onnxruntime {m['onnxruntime']}, numpy {m['numpy']}. Every framework: 2 threads, fp32.")
    lines.append("")
    lines.append(f"Throughputs: median of the timed calls (the single fastest call in parentheses), "
                 + ("one round" if res.get("rounds", 1) == 1 else f"the better of {res['rounds']} rounds")
                 + "; ratios from the medians.")
    lines.append("")
    lines.append("| measurement | PyTorch | ONNX Runtime | zeroclip | zeroclip ÷ PyTorch | zeroclip ÷ ORT | target | |")
    lines.append("|---|---|---|---|---|---|---|---|")
    targets = {("ViT-B-32", 1): ("ort", 1.5), ("ViT-B-32", 16): ("ort", 1.6), ("RN50", 16): ("pt", 1.5)}
    for model in ("ViT-B-32", "RN50"):
        for batch in (1, 16):
            pt, ox, zc = (thr(f, model, batch) for f in ("pytorch", "onnxruntime", "zeroclip"))
            rp, ro = ratio(zc, pt), ratio(zc, ox)
            t = targets.get((model, batch))
            tgt, ver = ("", "")
            if t:
                tgt = f"≥ {t[1]}× {'ORT' if t[0] == 'ort' else 'PyTorch'}"
                ver = verdict(ro if t[0] == "ort" else rp, t[1])
            c = [cell(f, model, batch) for f in ("pytorch", "onnxruntime", "zeroclip")]
            lines.append(f"| {model} image, batch {batch} (images/s) | {c[0]} | {c[1]} | {c[2]} | "
                         f"{fmt(rp, 2)}× | {fmt(ro, 2)}× | {tgt} | {ver} |")
    for kind, desc in (("short", "short prompts \"a photo of a {class}\" (7-8 tokens)"),
                       ("long", "77-token prompts")):
        pt, zc = thr("pytorch", "ViT-B-32", kind=kind, task="text"), thr("zeroclip", "ViT-B-32", kind=kind, task="text")
        rp = ratio(zc, pt)
        tgt, ver = ("≥ 10× PyTorch", verdict(rp, 10)) if kind == "short" else ("", "")
        lines.append(f"| text, {desc}, 16 per call, tokenize + encode (prompts/s) | "
                     f"{cell('pytorch', 'ViT-B-32', kind=kind, task='text')} | — | "
                     f"{cell('zeroclip', 'ViT-B-32', kind=kind, task='text')} | "
                     f"{fmt(rp, 2)}× | — | {tgt} | {ver} |")
    for model in ("ViT-B-32", "RN50"):
        loads = {f: pick(rec, framework=f, model=model, task="load") for f in ("pytorch", "onnxruntime", "zeroclip")}
        med = {f: (statistics.median(r["load_s"] for r in v) if v else None) for f, v in loads.items()}
        peak = {f: (max(r["peak_rss_mb"] for r in v) if v else None) for f, v in loads.items()}
        base = {f: (statistics.median(r["rss_before_mb"] for r in v) if v else None) for f, v in loads.items()}
        lines.append(f"| {model} load, median of {len(loads['zeroclip']) or len(loads['pytorch'])} processes (s) | "
                     f"{fmt(med['pytorch'], 2)} | {fmt(med['onnxruntime'], 2)} (image tower only) | "
                     f"{fmt(med['zeroclip'], 2)} | {fmt(ratio(med['pytorch'], med['zeroclip']), 1)}× faster | | | |")
        lines.append(f"| {model} peak RSS after load (MB; RSS before load in parentheses) | "
                     f"{fmt(peak['pytorch'], 0)} ({fmt(base['pytorch'], 0)}) | "
                     f"{fmt(peak['onnxruntime'], 0)} ({fmt(base['onnxruntime'], 0)}) | "
                     f"{fmt(peak['zeroclip'], 0)} ({fmt(base['zeroclip'], 0)}) | "
                     f"{fmt(ratio(peak['zeroclip'], peak['pytorch']), 2)}× | | | |")
    py, zc, zcc = e2e.get("python"), e2e.get("zeroclip"), e2e.get("zeroclip_cached")
    if py or zc:
        g = lambda d, k: d[k] if d else None
        sp = ratio(g(py, "wall_s"), g(zc, "wall_s"))
        mem = ratio(g(zc, "peak_rss_mb"), g(py, "peak_rss_mb"))
        lines.append(f"| reference example end to end, wall (s), median | {fmt(g(py, 'wall_s'), 2)} (Python script) | — | "
                     f"{fmt(g(zc, 'wall_s'), 2)} (`classify --no-cache`) | {fmt(sp, 1)}× faster | — | ≥ 8× faster | "
                     f"{verdict(sp, 8)} |")
        lines.append(f"| reference example end to end, peak RSS (MB) | {fmt(g(py, 'peak_rss_mb'), 0)} | — | "
                     f"{fmt(g(zc, 'peak_rss_mb'), 0)} | {fmt(mem, 2)}× | — | ≤ 0.5× | {verdict(mem, 0.5, higher=False)} |")
        if zcc:
            lines.append(f"| … with the label cache warm, wall (s) / peak RSS (MB) | — | — | "
                         f"{fmt(zcc['wall_s'], 2)} / {fmt(zcc['peak_rss_mb'], 0)} | "
                         f"{fmt(ratio(g(py, 'wall_s'), zcc['wall_s']), 1)}× faster | — | | |")
    lines.append("")
    if res["agreement"]:
        agree = "; ".join(f"{k}: {v:.1e}" for k, v in res["agreement"].items())
        lines.append(f"Same computation: max |Δ| / max |value| of the embeddings against PyTorch's on the same inputs — {agree}.")
        lines.append("")
    if py and zc:
        lines.append(f"End-to-end outputs — Python: `{py['output'].splitlines()[-1] if py['output'] else ''}`; "
                     f"zeroclip: `{' / '.join(l.strip() for l in zc['output'].splitlines()[:4])}`.")
        lines.append("")
    gemm = res.get("gemm") or []
    shapes = list(dict.fromkeys(r["shape"] for r in gemm))
    if shapes:
        lines.append("GEMM alone, ViT-B/32's Linear shapes `[m, k] × [k, n]`, GFLOP/s (median; zeroclip's GEMM "
                     "with the weight packed at load, as the model runs it; candle's matmul with the weight read "
                     "transposed as stored, as the model ran before speed round 2; PyTorch's `F.linear`):")
        lines.append("")
        lines.append("| shape | zeroclip, packed weight | candle matmul | PyTorch |")
        lines.append("|---|---|---|---|")
        for sh in shapes:
            zc = next((r for r in gemm if r["shape"] == sh and r["framework"] == "zeroclip"), {})
            pt = next((r for r in gemm if r["shape"] == sh and r["framework"] == "pytorch"), {})
            lines.append(f"| {sh} | {fmt(zc.get('gflops_packed'))} | "
                         f"{fmt(zc.get('gflops_weight_as_stored'))} | {fmt(pt.get('gflops'))} |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_doc(block: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    if SECTION not in text:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{block}\n"
    else:
        start = text.index(SECTION)
        nxt = text.find("\n## ", start + len(SECTION))
        end_sec = len(text) if nxt < 0 else nxt + 1
        sec = text[start:end_sec]
        if BEGIN in sec and END in sec:
            sec = sec[:sec.index(BEGIN)] + block + sec[sec.index(END) + len(END):]
        else:
            sec = sec.rstrip("\n") + f"\n\n{block}\n\n"
        text = text[:start] + sec + text[end_sec:]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


if __name__ == "__main__":
    main()
