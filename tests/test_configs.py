"""Every YAML under configs/ composes, and every _target_ in it instantiates."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

import uva_plan  # noqa: F401

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
EXAMPLES = CONFIGS / "examples"  # the examples' own primary configs (own directory: no group clashes)
EXPERIMENTS = CONFIGS / "experiment"  # the experiments' primary configs (examples/blockpush_guidance.py, ...)
GROUPS = {group.name: sorted(p.stem for p in group.glob("*.yaml"))
          for group in CONFIGS.iterdir() if group.is_dir() and group not in (EXAMPLES, EXPERIMENTS)}
PRIMARY = sorted(p.stem for p in CONFIGS.glob("*.yaml"))


@pytest.fixture()
def hydra_ctx():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        yield
    GlobalHydra.instance().clear()


def test_every_group_option_is_listed():
    assert {"env", "planner", "objective", "dynamics", "proposer"} <= set(GROUPS)
    assert set(GROUPS["planner"]) >= {"best_of_n", "cem", "mppi", "icem"}


@pytest.mark.parametrize("name", PRIMARY)
def test_primary_configs_compose(hydra_ctx, name):
    cfg = compose(config_name=name, return_hydra_config=True)
    assert cfg is not None


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.yaml")))
def test_example_configs_compose(name):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(EXAMPLES), version_base="1.3"):
        cfg = compose(config_name=name, overrides=["planner=cem", "objective=goal_image"],
                      return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.planner == "cem" and cfg.objective == "goal_image"


@pytest.mark.parametrize("name", sorted(p.stem for p in EXPERIMENTS.glob("*.yaml")))
def test_experiment_configs_compose_into_their_dataclasses(name):
    from omegaconf import OmegaConf

    from uva_plan.experiments.guidance import GuidanceConfig
    from uva_plan.experiments.ranking import RankingConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(EXPERIMENTS), version_base="1.3"):
        cfg = compose(config_name=name, overrides=["out_dir=unused"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.hydra.run.dir == "unused" and cfg.hydra.output_subdir is None and not cfg.hydra.job.chdir
    options = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    config = {"guidance": GuidanceConfig, "ranking_fidelity": RankingConfig}[name](**options)
    assert config.out_dir == "unused"


@pytest.mark.parametrize("group, option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_group_options_compose_and_instantiate(hydra_ctx, group, option):
    if group == "train":  # the training config's own group (package _global_)
        from omegaconf import OmegaConf

        from uva_plan.train import TrainConfig

        cfg = compose(config_name="train", overrides=[f"train={option}", "out_dir=unused"])
        assert TrainConfig.from_dict(OmegaConf.to_container(cfg, resolve=True)).kind
        return
    overrides = [f"{group}={option}"]
    if group == "env" and option == "blockpush" or group == "objective" and option == "blockpush_sim":
        overrides = ["env=blockpush", "objective=blockpush_sim"] + ([] if group in ("env", "objective") else overrides)
    cfg = compose(config_name="plan", overrides=overrides, return_hydra_config=True)
    node = cfg[group]
    if "_target_" in node:
        obj = instantiate(node)
        assert obj is not None
    else:
        assert node.id.startswith("uva_plan/")
