"""The world model's object-level scorecard: does UVA keep the pusher and the pushed objects in
the frames it imagines?

Frame-averaged metrics (PSNR, latent MSE) reward a blurred frame whose objects have vanished
over a sharp one that puts them a little off. The scorecard reads each object (the pusher;
BlockPush's two blocks; the Push-T T, position and angle) with the colour locator from the
decoded future frames of a fixed set of held-out windows, and reports per source (imagined,
video only, copy-last, VAE ceiling, real) how often it is found and how far it is from the true
state, at t+4, t+8, t+12 and t+16, over all windows and over those where an object moves.

    python -m uva_plan.scorecard --env blockpush --uva blockpush

- ``windows``: the held-out store (collected once, seeds from ``HELDOUT_SEED``) and the window
  selection stored beside it;
- ``errors``: object errors from located frames against true states, and their aggregation;
- ``sources``: the future frames of each row; ``gallery``: real against imagined frames;
- ``cli``: the command.
"""

from uva_plan.scorecard.errors import frame_errors, object_errors, scorecard_rows, summarise
from uva_plan.scorecard.windows import (HELDOUT_SEED, candidate_windows, choose_windows, heldout_store,
                                        select_windows, store_fingerprint, window_batch)

__all__ = ["HELDOUT_SEED", "candidate_windows", "choose_windows", "frame_errors", "heldout_store",
           "object_errors", "scorecard_rows", "select_windows", "store_fingerprint", "summarise", "window_batch"]
