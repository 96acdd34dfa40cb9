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
