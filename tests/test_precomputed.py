"""Precomputed results stay in step with the scripts that make them (rerun the script when this fails)."""
import importlib.util
import json
from pathlib import Path

from course_utils import data

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_batchnorm_grid_was_made_by_the_script_as_it_is_now():
    script = _script("bn_lr_grid")
    stored = json.loads(script.OUT.read_text())
    assert stored["config"] == script.CONFIG, "scripts/bn_lr_grid.py changed: rerun it (make precompute)"
    mean, std = data.channel_stats(data.split(data.load("digits")).train)  # as the script computes them
    width = script.CONFIG["width"]
    assert stored["architecture"] == {"without": repr(script.make_cnn(False, mean, std, width)),
                                      "with": repr(script.make_cnn(True, mean, std, width))}, \
        "the CNN in scripts/bn_lr_grid.py changed: rerun it (make precompute)"
    runs = stored["runs"]
    seen = {(r["batchnorm"], r["lr"], r["seed"]) for r in runs}
    expected = {(bn, lr, seed) for bn in (False, True) for lr in script.CONFIG["learning_rates"]
                for seed in script.CONFIG["seeds"]}
    assert seen == expected, "the stored grid is not the whole grid of the script's settings"


def test_the_transfer_table_was_made_by_the_script_as_it_is_now_from_the_committed_checkpoint():
    from course_utils import pretrained

    script = _script("transfer_table")
    stored = json.loads(script.OUT.read_text())
    assert stored["config"] == script.CONFIG, "scripts/transfer_table.py changed: rerun it"
    assert "--quick" not in stored["command"], "the stored table is a --quick run: rerun the script in full"
    assert stored["source"]["sha256"] == pretrained.info(script.CONFIG["source"])["sha256"], \
        "the checkpoint changed since the table was made: rerun scripts/transfer_table.py"
    seen = {(r["target"], r["size"], r["strategy"], r["seed"]) for r in stored["runs"]}
    expected = {(t, s, k, seed) for t in script.CONFIG["targets"] for s in script.CONFIG["per_class"]
                for k in script.CONFIG["strategies"] for seed in script.CONFIG["seeds"]}
    assert seen == expected and len(stored["runs"]) == len(expected), \
        "the stored table is not the whole grid of the script's settings"
    variants = script.CONFIG["variants"]
    seen = {(r["target"], r["size"], r["strategy"], r["seed"]) for r in stored["variant_runs"]}
    expected = {(t, s, k, seed) for k, where in variants.items() for t in where["targets"] for s in where["sizes"]
                for seed in script.CONFIG["seeds"]}
    assert seen == expected and len(stored["variant_runs"]) == len(expected), \
        "the stored variant runs are not those of the script's settings"
    for run in stored["runs"] + stored["variant_runs"]:
        assert run["n_train"] == 10 * script.CONFIG["per_class"][run["size"]]
        assert len(run["val_acc"]) == len(run["train_acc"]) == script.CONFIG["epochs"][run["size"]]
        assert 0 <= run["train_acc_eval"] <= 1 and 0 <= run["test_acc"] <= 1
    jobs = stored["jobs"]
    assert stored["command"] == "python scripts/transfer_table.py" + (f" --jobs {jobs}" if jobs > 1 else ""), \
        f"the stored command {stored['command']!r} does not say how the table was made ({jobs} processes)"
