"""Stage inputs: content hashes of what data.source reads from outside the repo.

Runs on every `dvc repro` (always_changed) and stays cheap: no pandas, no torch, and files whose
size and mtime are unchanged are not re-read. Its outputs change only when some content did.
"""

import _env  # noqa: F401  (first: a one-line error when the environment is not active)

from coverpop.core.errors import run_stage
from coverpop.core.params import load_params, stage_paths
from coverpop.tracks.inputs import write_fingerprints


def main() -> None:
    args = stage_paths("tracks_out", "images_out")
    print(write_fingerprints(load_params()["data"], args.tracks_out, args.images_out))


if __name__ == "__main__":
    run_stage(main)
