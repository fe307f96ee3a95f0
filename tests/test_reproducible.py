"""Same inputs -> same bytes: a tiny demo pipeline run twice from scratch, in two folders with
two empty caches (and two scrape worker counts, which must not matter), records the same hash
for every dep and output of every stage."""

import pytest
import yaml

pytestmark = pytest.mark.slow

def lock_hashes(repo) -> dict[tuple[str, str, str], str]:
    """(stage, deps|outs, path) -> md5 for every entry of dvc.lock."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {(stage, kind, entry["path"]): entry.get("md5")
            for stage, body in lock["stages"].items()
            for kind in ("deps", "outs") for entry in body.get(kind, [])}


def test_two_runs_from_scratch_give_the_same_bytes(built_pristine, built_again):
    # both are the session's (conftest.py): each its own folder and empty cache, and the second
    # scrapes with another number of workers
    repo = built_again
    first, second = lock_hashes(built_pristine), lock_hashes(repo)
    assert set(first) == set(second)
    assert {stage for stage, _, _ in first} >= {"inputs", "fetch_csv", "select_tracks",
                                               "scrape_images", "dedupe_split", "train",
                                               "evaluate", "analyze"}
    differ = sorted(f"{stage} {kind} {path}" for (stage, kind, path), md5 in first.items()
                    if md5 != second[(stage, kind, path)])
    assert not differ, "not byte-identical across two runs from scratch: " + "; ".join(differ)
    # the model and the covers really are compared, not skipped for want of a hash
    assert first[("train", "outs", "models/model.pt")]
    assert first[("scrape_images", "outs", "data/shards")]   # the cover store
