"""`python -m shortsci_bench.evaluate ckpt=...` and what a run shows on a terminal
(the step progress bar and the resolved config tree)."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest
from rich.console import Console

from shortsci_bench.collect.records import find_record_paths
from shortsci_bench.evaluate import main as evaluate_main
from shortsci_bench.progress import StepProgressBar, config_tree
from tests.conftest import compose_cfg, mnist_available, run_cfg

needs_mnist = pytest.mark.skipif(not mnist_available(), reason="MNIST not in the mirror")


@needs_mnist
def test_evaluate_scores_a_checkpoint_as_training_did(tmp_path, capsys):
    rec = run_cfg(["+experiment=batchnorm_mnist", "tier=smoke", "seed=1"], tmp_path)
    assert rec.status == "completed"
    run_dir = next(p.parent for p in find_record_paths([tmp_path]))
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    out = tmp_path / "eval.json"
    assert evaluate_main([f"ckpt={ckpt}", f"out={out}", "threads=1"]) == 0
    ev = json.loads(out.read_text())
    # The same weights through the same evaluation: the training run's last evaluation.
    last = {k: v for k, v in rec.history[-1].items() if k not in ("step", "train/loss_window")}
    assert ev["metrics"].keys() == last.keys()
    for key, value in last.items():
        assert ev["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert ev["evaluation"]["step"] == int(rec.history[-1]["step"])
    assert len(ev["evaluation"]["checkpoint_sha256"]) == 64
    assert ev["evaluation"]["training_status"] == "completed"
    assert "not a training run" in ev["notes"][-1]
    # Never read as a training run by the collector.
    assert find_record_paths([tmp_path]) == [run_dir / "result.json"]
    assert "evaluation record" in capsys.readouterr().out


def test_evaluate_bad_input_is_one_line(tmp_path, capsys):
    assert evaluate_main([f"ckpt={tmp_path / 'nope.ckpt'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err
    assert evaluate_main(["ckpt=x", "epochs=3"]) == 2
    assert "unknown argument 'epochs=3'" in capsys.readouterr().err
    stray = tmp_path / "last.ckpt"
    stray.write_bytes(b"x")
    assert evaluate_main([str(stray)]) == 2  # no run folder around it
    assert "config.yaml not found" in capsys.readouterr().err


def test_progress_bar_counts_global_steps_from_a_resume():
    """After a resume at step 250 of 400 the bar starts at 250/400 (Lightning's own bar
    showed '669/619' and 'Epoch 0/-2' for step-bounded runs)."""
    out = io.StringIO()
    bar = StepProgressBar("exp arm seed 0", ["test/acc"], Console(file=out, width=120))
    trainer = SimpleNamespace(global_step=250, max_steps=400, sanity_checking=False)
    task = SimpleNamespace(history=[{"step": 200.0, "test/acc": 0.875}])
    task._loss_window, task._loss_window_n = 3.0, 4
    assert bar.steps(trainer) == (250, 400)
    bar.on_train_start(trainer, task)
    trainer.global_step = 251
    bar.on_train_batch_end(trainer, task, None, None, 0)
    assert bar.loss == pytest.approx(0.75)  # the mean loss since the last evaluation
    task.history.append({"step": 300.0, "test/acc": 0.9})
    bar.on_validation_end(trainer, task)
    assert bar.metric == ("test/acc", 0.9)
    bar.on_train_end(trainer, task)
    shown = out.getvalue()
    assert "251/400" in shown and "loss 0.75" in shown and "test/acc 0.9" in shown
    assert bar.steps(SimpleNamespace(global_step=5, max_steps=-1)) == (5, None)


def test_config_tree_shows_the_resolved_blocks(tmp_path):
    cfg = compose_cfg(["+experiment=batchnorm_mnist", "tier=smoke"])
    out = io.StringIO()
    Console(file=out, width=120).print(config_tree(cfg, tmp_path / "run"))
    text = out.getvalue()
    assert "resolved config of batchnorm_mnist arm=bn seed=0" in text and str(tmp_path) in text
    for block in ("model", "task", "dataset", "trainer"):
        assert f"── {block}" in text
    assert "hidden:" in text and "tiers" not in text  # overlays applied, not shown again
