"""Instruction counts of the loops of one CUDA L1 kernel, from its SASS, without a GPU: the counts per triple that
docs/performance.md quotes ("N SASS instructions per stage / per triple").

Builds harmonic/kernels/l1_cuda/l1_<family>.cu with `nvcc -O3 -std=c++17 -arch=sm_90 -cubin` (nvcc on PATH),
disassembles it with `cuobjdump -sass` (on PATH, or the copy Triton ships), and prints, for the kernel whose mangled
name contains every --match string, its --loops largest loops (a backward branch to an earlier address): instruction
count and the most frequent opcodes. Divide by the triples one pass of the loop covers (e.g. the factor sweep's
8-feature stage: 8 x 64 per thread) for instructions per triple.

    python benchmarks/sass_loops.py maximum forward_kernel __nv_bfloat16Li3 --loops 8
"""

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "harmonic" / "kernels" / "l1_cuda"


def cuobjdump() -> str:
    found = shutil.which("cuobjdump")
    if found:
        return found
    import triton  # its NVIDIA backend ships the CUDA binary utilities

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump")


def sass_functions(family: str) -> dict[str, list[tuple[int, str, str]]]:
    """{mangled kernel name: [(address, opcode, operands)]} of l1_<family>.cu built for sm_90."""
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / f"{family}.cubin"
        subprocess.run(["nvcc", "-O3", "-std=c++17", "-arch=sm_90", "-cubin", f"-I{SOURCES}",
                        str(SOURCES / f"l1_{family}.cu"), "-o", str(cubin)], check=True)  # fmt: skip
        text = subprocess.run([cuobjdump(), "-sass", str(cubin)], check=True, capture_output=True, text=True).stdout
    functions, current = {}, None
    for line in text.splitlines():
        name = re.search(r"Function : (\S+)", line)
        if name:
            current = functions.setdefault(name.group(1), [])
            continue
        ins = re.search(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z0-9_.]+)(.*?);", line)
        if ins and current is not None:
            current.append((int(ins.group(1), 16), ins.group(3), ins.group(4)))
    return functions


def loops(instructions):
    """(size, first, last) of every backward branch's loop, largest first."""
    index = {address: i for i, (address, _, _) in enumerate(instructions)}
    found = []
    for i, (address, opcode, operands) in enumerate(instructions):
        target = re.search(r"0x([0-9a-f]+)", operands) if opcode == "BRA" else None
        if target and int(target.group(1), 16) < address and int(target.group(1), 16) in index:
            start = index[int(target.group(1), 16)]
            found.append((i - start, start, i))
    return sorted(found, reverse=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", help="sign, braycurtis, maximum or power (l1_<family>.cu)")
    parser.add_argument("match", nargs="+", help="substrings of the kernel's mangled name")
    parser.add_argument("--loops", type=int, default=4)
    args = parser.parse_args(argv)
    functions = sass_functions(args.family)
    names = [name for name in functions if all(m in name for m in args.match)]
    if len(names) != 1:
        sys.exit(f"{len(names)} kernels match {args.match}: {names[:6]}")
    instructions = functions[names[0]]
    print(names[0])
    for size, first, last in loops(instructions)[: args.loops]:
        ops = collections.Counter(opcode for _, opcode, _ in instructions[first : last + 1])
        print(f"loop of {size} instructions: " + ", ".join(f"{k} {v}" for k, v in ops.most_common(8)))


if __name__ == "__main__":
    main()
