# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv, install the CPU build of torch 2.13.0 first (a bare `torch` requirement
# would pull a multi-GB CUDA build), then this package with its dev extra.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
TORCH ?= torch==2.13.0
JOBS ?= 2

.PHONY: install test demo bench pretrained clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) tests

demo: $(STAMP)
	$(PY) examples/pusht_plan.py

bench: $(STAMP)
	$(PY) benchmarks/bench_envs.py
	$(PY) benchmarks/dp_fidelity.py --restore-mode episode
	$(PY) benchmarks/dp_fidelity.py --restore-mode anchor
	$(PY) benchmarks/bad_inputs.py
	$(PY) benchmarks/soak.py --n-calls 1000
	$(PY) benchmarks/soak.py --dynamics uva --n-samples 8 --n-action-steps 8 --n-calls 1000
	$(PY) benchmarks/bench_ddim.py
	$(PY) benchmarks/bench_planning.py --env pusht
	$(PY) benchmarks/bench_planning.py --env blockpush --skip training

# Collect the data and train every shipped model on this CPU, then export them (fp16) into
# uva_plan/pretrained/. Each step resumes if killed; a finished step is skipped when rerun.
# The two environments' models train side by side, one thread each; the play-data fine-tunes
# (configs/train/uva_play.yaml) run one after the other on both threads (~385 windows/s on a
# quiet 2-core machine; a second job on the same cores cuts that more than tenfold).
TRAIN := $(PY) -m uva_plan.train
VAE := vae_checkpoint=outputs/train/vae/final
pretrained: $(STAMP)
	$(PY) -m uva_plan.data.collect --env uva_plan/PushT-v0 --expert pusht --n-episodes 200 --out data/pusht --workers $(JOBS)
	$(PY) -m uva_plan.data.collect --env uva_plan/BlockPush-v0 --expert blockpush --n-episodes 500 --out data/blockpush --workers $(JOBS)
	$(TRAIN) train=vae
	$(PY) -m uva_plan.hub export vae outputs/train/vae/final
	pids=; for e in pusht blockpush; do $(TRAIN) train=uva "data.stores=[data/$$e]" $(VAE) out_dir=outputs/train/uva_$$e & pids="$$pids $$!"; done; for p in $$pids; do wait $$p || exit 1; done
	$(PY) -m uva_plan.data.collect --env uva_plan/PushT-v0 --expert pusht_explore --n-episodes 150 --out data/pusht_explore --seed 500000 --workers $(JOBS)
	$(PY) -m uva_plan.data.collect --env uva_plan/BlockPush-v0 --expert blockpush_explore --n-episodes 300 --out data/blockpush_explore --seed 500000 --workers $(JOBS)
	for e in pusht blockpush; do $(TRAIN) train=uva_play "data.stores=[data/$$e]" "data.play_stores=[data/$${e}_explore]" $(VAE) init_from=outputs/train/uva_$$e/final out_dir=outputs/train/uva_play_$$e || exit 1; done
	for e in pusht blockpush; do $(PY) -m uva_plan.hub export $$e/uva outputs/train/uva_play_$$e/final || exit 1; done
	pids=; for e in pusht blockpush; do $(TRAIN) train=dpc "data.stores=[data/$$e]" $(VAE) threads=1 out_dir=outputs/train/dpc_$$e & pids="$$pids $$!"; done; for p in $$pids; do wait $$p || exit 1; done
	pids=; for e in pusht blockpush; do $(TRAIN) train=state_head "data.stores=[data/$$e]" model.env=$$e $(VAE) threads=1 out_dir=outputs/train/state_head_$$e & pids="$$pids $$!"; done; for p in $$pids; do wait $$p || exit 1; done
	pids=; for e in pusht blockpush; do $(TRAIN) train=state_head_imagined "data.stores=[data/$$e]" model.env=$$e $(VAE) data.imagined_uva=uva_plan/pretrained/$$e/uva threads=1 out_dir=outputs/train/state_head_imagined_$$e & pids="$$pids $$!"; done; for p in $$pids; do wait $$p || exit 1; done
	for e in pusht blockpush; do for m in dpc state_head state_head_imagined; do \
		$(PY) -m uva_plan.hub export $$e/$$m outputs/train/$${m}_$$e/final || exit 1; done; done

clean-venv:
	rm -rf $(VENV)
