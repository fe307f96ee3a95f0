"""Cover features throughput: the process pool against a serial run, as a ratio (same process,
same covers).

    python bench/bench_features.py [N_COVERS]     # 200 by default
    python bench/bench_features.py --smoke        # seconds, tiny data: does it still run?
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from coverpop.analyze.features import features_table

GRACE = Path(__import__("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"


def make_covers(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    face = Image.open(GRACE).convert("RGB").crop((110, 60, 420, 370))
    paths = []
    for i in range(n):
        cover = Image.new("RGB", (300, 300), tuple(int(v) for v in rng.integers(0, 255, 3)))
        if i % 2:
            side = int(300 * rng.uniform(0.4, 0.65))
            cover.paste(face.resize((side, side)), (10, 20))
        paths.append(folder / f"{i}.jpg")
        cover.save(paths[-1])
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, nargs="?", default=200, help="covers")
    ap.add_argument("--smoke", action="store_true", help="seconds, tiny data: does it still run?")
    args = ap.parse_args()
    n = 4 if args.smoke else args.n
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_covers(Path(tmp), n)
        timings = {}
        for workers in (1, None):
            start = time.perf_counter()
            features_table(paths, workers=workers, progress=False)
            timings[workers] = time.perf_counter() - start
    print(f"{n} covers: serial {n / timings[1]:.1f} covers/s, pool {n / timings[None]:.1f} "
          f"covers/s, pool/serial speed-up {timings[1] / timings[None]:.2f}x "
          "(pool time includes starting the worker processes)")


if __name__ == "__main__":
    main()
