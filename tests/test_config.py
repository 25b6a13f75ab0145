"""Config composition: sparse tier and arm overlays, the command line over both, the tier
choice, the config hash, threads."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf, open_dict

from shortsci_bench import config
from tests.conftest import compose_cfg


def test_tier_and_arm_overlays_set_values_at_their_paths():
    cfg = compose_cfg(["+experiment=batchnorm_mnist", "arm=plain", "tier=smoke"])
    assert cfg.model.batchnorm is False
    assert cfg.trainer.max_steps == 40 and cfg.dataset.steps == 40
    cfg = compose_cfg(["+experiment=batchnorm_mnist", "arm=bn", "tier=paper"])
    assert cfg.model.batchnorm is True
    assert cfg.trainer.max_steps == 50_000
    assert cfg.dataset.batch_size == 60


def test_command_line_beats_the_tier_and_arm_overlays():
    cfg = compose_cfg(["+experiment=batchnorm_mnist", "tier=quick", "trainer.max_steps=7"])
    assert cfg.trainer.max_steps == 7
    assert cfg.dataset.steps == 7  # the datamodule follows the trainer
    cfg = compose_cfg(["+experiment=batchnorm_mnist", "arm=plain", "model.batchnorm=true"])
    assert cfg.model.batchnorm is True
    cfg = compose_cfg(["+experiment=vardrop_mnist", "tier=smoke", "width=7"])
    assert list(cfg.model.hidden) == [7, 7, 7]


def test_an_arm_with_another_target_replaces_the_block():
    cfg = compose_cfg(
        ["+experiment=transducer_timit", "dataset=timit_stub", "arm=ctc", "tier=smoke"]
    )
    assert cfg.model._target_.endswith("CTCRecognizer")
    assert "attention" not in cfg.model and cfg.model.encoder_hidden == 16
    cfg = compose_cfg(["+experiment=mann_omniglot", "arm=knn_15c", "tier=smoke"])
    assert cfg.model._target_.endswith("StreamNearestNeighbour")
    assert cfg.model.n_classes == 15 and cfg.dataset.way == 15 and cfg.task.fit_free


def test_an_overlay_naming_a_missing_setting_is_refused():
    cfg = compose_cfg(["+experiment=batchnorm_mnist", "tier=smoke"], finalize=False)
    with open_dict(cfg):
        cfg.tiers.smoke.model = {"hiden": [3]}
    with pytest.raises(config.ConfigError, match=r"tier 'smoke'.*`model.hiden`"):
        config.finalize(cfg, gpu_available=False)


def test_finalize_is_applied_once():
    cfg = compose_cfg(["+experiment=batchnorm_mnist", "tier=smoke", "trainer.max_steps=9"])
    assert cfg.finalized and config.finalize(cfg)[0] == "smoke"
    assert cfg.trainer.max_steps == 9


def test_unknown_arm_names_the_choices():
    with pytest.raises(config.ConfigError, match=r"arm 'nonsense'.*\['bn', 'plain'\]"):
        compose_cfg(["+experiment=batchnorm_mnist", "arm=nonsense", "tier=smoke"])


def test_auto_tier_follows_the_gpu():
    cfg = compose_cfg(["+experiment=batchnorm_mnist"], finalize=False)
    assert cfg.tier == "auto"
    tier, why = config.resolve_tier(cfg, gpu_available=False)
    assert tier == "quick" and "no GPU" in why and cfg.tier == "quick"
    cfg = compose_cfg(["+experiment=batchnorm_mnist"], gpu_available=True)
    assert cfg.tier == "paper" and cfg.trainer.max_steps == 50_000


def test_scale_is_kept_as_the_old_spelling_of_tier():
    old = compose_cfg(["+experiment=batchnorm_mnist", "scale=smoke"])
    new = compose_cfg(["+experiment=batchnorm_mnist", "tier=smoke"])
    assert old.tier == "smoke" and config.config_hash(old) == config.config_hash(new)


def test_bad_tier_is_refused():
    with pytest.raises(config.ConfigError, match="not a tier"):
        compose_cfg(["+experiment=batchnorm_mnist", "tier=huge"])


def test_hash_ignores_where_and_how_but_not_what():
    base = ["+experiment=batchnorm_mnist", "tier=smoke"]
    h = config.config_hash(compose_cfg(base))
    assert (
        config.config_hash(compose_cfg([*base, "runs_dir=/elsewhere", "threads=3", "force=true"]))
        == h
    )
    assert (
        config.config_hash(compose_cfg([*base, "dataset.root=/mnt/data", "logger=tensorboard"]))
        == h
    )
    # the launch mode is not what is computed: the sweep preset gives the same hash
    assert config.config_hash(compose_cfg([*base, "+sweep=claims"])) == h
    assert config.config_hash(compose_cfg([*base, "seed=1"])) != h
    assert config.config_hash(compose_cfg([*base, "arm=plain"])) != h
    assert config.config_hash(compose_cfg([*base, "task.optimizer.lr=0.01"])) != h


def test_command_line_keys_leave_out_group_choices():
    keys = config.command_line_keys(
        ["+experiment=x", "dataset=timit_stub", "tier=smoke", "a.b=1", "++c=2", "~d", "hydra.x=1"]
    )
    assert keys == ["tier", "a.b", "c"]


def test_threads_setting():
    assert config.cpu_threads(3) == 3
    assert config.cpu_threads("auto") >= 1
    with pytest.raises(config.ConfigError):
        config.cpu_threads(0)


def test_resolved_config_has_no_tables_left_to_read():
    cfg = compose_cfg(["+experiment=swapout_cifar", "arm=resnet", "tier=quick"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["model"]["kind"] == "none" and resolved["model"]["depth"] == 8
    assert resolved["task"]["scheduler"]["milestones"] == [930, 1085]


def test_a_changed_setting_makes_a_variant_not_the_tier():
    plain = compose_cfg(["+experiment=batchnorm_mnist", "tier=paper", "seed=2", "arm=plain"])
    assert plain.variant is None  # seed and arm are not settings of the tier
    changed = compose_cfg(["+experiment=batchnorm_mnist", "tier=paper", "trainer.max_steps=1000"])
    assert changed.tier == "paper" and changed.variant.startswith("custom-")
    named = compose_cfg(
        ["+experiment=batchnorm_mnist", "tier=paper", "task.optimizer.lr=0.2", "variant=lr02"]
    )
    assert named.variant == "lr02"
    # the same settings give the same variant for every seed, so its seeds pool together
    seed1 = compose_cfg(
        ["+experiment=batchnorm_mnist", "tier=paper", "trainer.max_steps=1000", "seed=1"]
    )
    assert seed1.variant == changed.variant
    assert config.settings_hash(seed1) == config.settings_hash(changed)
    assert config.config_hash(seed1) != config.config_hash(changed)


def test_launch_mode_does_not_change_a_runs_identity():
    """A job of `+sweep=claims` is the same run as the single command for its arm and seed:
    a sweep after single runs (or the reverse) skips what is done."""
    single = compose_cfg(["+experiment=batchnorm_mnist", "tier=quick", "arm=plain", "seed=1"])
    swept = compose_cfg(
        ["+experiment=batchnorm_mnist", "+sweep=claims", "tier=quick", "arm=plain", "seed=1"]
    )
    assert config.config_hash(single) == config.config_hash(swept)


def test_sweeping_the_presets_own_lists_is_refused_with_the_fix():
    from shortsci_bench.validate import unknown_keys

    msg = unknown_keys(["-m", "+experiment=batchnorm_mnist", "+sweep=claims", "sweep.seeds=0,1"])
    assert msg is not None and "write `seed=0,1`" in msg and "\n" not in msg
    msg = unknown_keys(["-m", "+experiment=batchnorm_mnist", "+sweep=claims", "sweep.arms=bn"])
    assert msg is None  # one value is no sweep
    assert unknown_keys(["-m", "+experiment=batchnorm_mnist", "+sweep=claims", "seed=0,1"]) is None
    bad = unknown_keys(["+experiment=batchnorm_mnist", "trainer.max_stpes=3"])
    assert bad is not None and "trainer.max_steps" in bad


def test_threads_on_the_command_line_size_the_blas_pool_too():
    """`threads=N` reaches numpy's BLAS pool (read before numpy loads); the user's own
    variables and `threads=auto` are left alone."""
    import os
    import subprocess
    import sys

    from shortsci_bench.threads import BLAS_VARS, blas_threads_from_argv

    env: dict[str, str] = {"MKL_NUM_THREADS": "4"}
    blas_threads_from_argv(["prog", "+experiment=x", "threads=1"], env)
    assert env == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "4"}
    for argv in (["prog", "threads=auto"], ["prog", "seed=1"], ["prog", "threads=0"]):
        untouched: dict[str, str] = {}
        blas_threads_from_argv(argv, untouched)
        assert untouched == {}, argv
    assert set(BLAS_VARS) == {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}
    # it works only if nothing before it loads numpy: the package itself must not
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, shortsci_bench; print('numpy' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "False"
    # and the evaluator's command line does the same, before it loads anything heavy (no
    # checkpoint given: it stops at its argument check, after reading threads=)
    script = (
        "import os, runpy, sys\n"
        "sys.argv = ['evaluate', 'threads=1']\n"
        "try:\n"
        "    runpy.run_module('shortsci_bench.evaluate', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(os.environ.get('OPENBLAS_NUM_THREADS'))\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in BLAS_VARS}
    evaluated = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=clean
    )
    assert evaluated.stdout.strip().splitlines()[-1] == "1", evaluated.stderr
