"""The experiments the examples run, as library code that takes plain dataclasses.

``guidance``: the block-pushing guidance experiment (one row per controller, resumable).
``ranking``: ranking fidelity, whether UVA ranks candidate plans as the real physics would.
The hydra mains in examples/ turn their configs (configs/experiment/) into these dataclasses.
"""
