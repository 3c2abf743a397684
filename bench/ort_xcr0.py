#!/usr/bin/env python3
"""ONNX Runtime held to the AVX2 class on a machine without CPUID faulting: a copy of the
installed `onnxruntime` package whose native libraries read XCR0 as x87 | SSE | AVX (7), as on an
operating system that does not enable the AVX-512 register state.

MLAS, and the cpuinfo library ONNX Runtime uses for its own checks, only take an AVX-512 path when
XGETBV reports the opmask and ZMM state enabled; with that state off they choose their AVX2 + FMA
kernels (and the AVX2 int8 ones), exactly what they run on an AVX2-only CPU. bench/cpuid_mask.c
does this through CPUID faulting where the machine offers it; this is the fallback for `--isa avx2`
elsewhere. It cannot express the AVX-512-without-VNNI class (that needs CPUID's feature bits).

Each XGETBV found by `objdump -d` in the libraries' executable sections is rewritten in place:
- right after `xor %ecx,%ecx` (XCR0 asked for, ECX known zero): `lea 0x7(%rcx),%eax` (3 bytes);
- right before `mov %eax,%eax` (5 bytes together): `mov $0x7,%eax`.
A site matching neither makes the patch fail, so no XGETBV is left reading the real XCR0. EDX
(XCR0's upper half, zero on current CPUs) keeps whatever it held: the callers in onnxruntime
1.32 test only bits of the lower half (0x6, 0xe0, 0xe6, 0x60000); check a newer version's sites
before trusting it.

    ort_xcr0.py [--out DIR]     # prints the directory to put first on PYTHONPATH

`onnxruntime.capi` then loads the patched libraries; check with `perf record` that the hot loops
use ymm, not zmm, registers (docs/PERFORMANCE.md, eighth session).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

LEA_EAX_RCX_7 = bytes.fromhex("8d4107")
MOV_EAX_7 = bytes.fromhex("b807000000")
XGETBV = bytes.fromhex("0f01d0")
MOV_EAX_EAX = bytes.fromhex("89c0")
INSN = re.compile(r"^\s*([0-9a-f]+):\s+((?:[0-9a-f]{2} )+)\s*(.*)$")


def sections(lib: Path) -> list:
    """(vma, size, file offset) of each section of `lib` that holds code."""
    out = subprocess.run(["objdump", "-h", str(lib)], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    found = []
    for i, line in enumerate(lines):
        f = line.split()
        if len(f) >= 7 and f[0].isdigit() and i + 1 < len(lines) and "CODE" in lines[i + 1]:
            found.append((int(f[3], 16), int(f[2], 16), int(f[5], 16)))
    return found


def patch(lib: Path) -> int:
    """Rewrites every XGETBV of `lib` in place; returns how many."""
    secs = sections(lib)
    dis = subprocess.run(["objdump", "-d", "-w", str(lib)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    insns = [(int(m[1], 16), bytes.fromhex(m[2].replace(" ", "")), m[3]) for m in map(INSN.match, dis) if m]
    data = bytearray(lib.read_bytes())

    def offset(vma: int) -> int:
        for start, size, off in secs:
            if start <= vma < start + size:
                return vma - start + off
        raise SystemExit(f"{lib}: {vma:#x} is in no code section")

    count = 0
    for i, (vma, raw, text) in enumerate(insns):
        if raw != XGETBV:
            continue
        off = offset(vma)
        assert data[off:off + 3] == XGETBV, f"{lib}: {vma:#x} does not hold XGETBV"
        prev = insns[i - 1] if i > 0 else (0, b"", "")
        nxt = insns[i + 1] if i + 1 < len(insns) else (0, b"", "")
        if prev[2].split()[:2] == ["xor", "%ecx,%ecx"] and prev[0] + len(prev[1]) == vma:
            data[off:off + 3] = LEA_EAX_RCX_7
        elif nxt[1] == MOV_EAX_EAX and nxt[0] == vma + 3:
            data[off:off + 5] = MOV_EAX_7
        else:
            raise SystemExit(f"{lib}: XGETBV at {vma:#x} has no known neighbour to patch around")
        count += 1
    lib.write_bytes(data)
    return count


def build(out: Path) -> Path:
    """The patched copy of the `onnxruntime` package under `out`; returns `out` (for PYTHONPATH)."""
    import importlib.metadata
    import importlib.util

    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or spec.origin is None:
        raise SystemExit("onnxruntime is not installed in this interpreter")
    src = Path(spec.origin).parent
    dst = out / "onnxruntime"
    # The source's path, version and libraries' sizes and times: a reinstall rebuilds the copy.
    libs = sorted((src / "capi").glob("*.so*"))
    source = "\n".join([str(src), importlib.metadata.version("onnxruntime")]
                       + [f"{l.name} {l.stat().st_size} {l.stat().st_mtime_ns}" for l in libs])
    stamp = out / "patched-from"
    if stamp.exists() and stamp.read_text() == source and dst.exists():
        return out
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)
    total = 0
    for lib in sorted((dst / "capi").glob("*.so*")):
        if lib.is_symlink():
            continue
        n = patch(lib)
        print(f"{lib.name}: {n} XGETBV patched", file=sys.stderr)
        total += n
    if total == 0:
        raise SystemExit("no XGETBV found: this onnxruntime cannot be held to AVX2 this way")
    stamp.write_text(source)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "ort-avx2")
    print(build(ap.parse_args().out.resolve()))


if __name__ == "__main__":
    main()
