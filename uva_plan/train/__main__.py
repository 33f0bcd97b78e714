"""``python -m uva_plan.train train=<option> [overrides]``: the hydra command over configs/train.yaml."""

import hydra
from omegaconf import DictConfig

from uva_plan.train.loop import train


@hydra.main(config_path="../../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    return train(cfg)


if __name__ == "__main__":
    main()
