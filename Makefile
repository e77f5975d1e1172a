# alseg: one-command install, demo, tests and benchmarks. Runtimes are for 2 CPU cores.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
ALSEG   := $(BIN)/alseg
ACDC_DIR ?= ../shared/data/acdc
HIPPO_DIR ?= ../shared/data/hippocampus
JOBS    ?= 2
TORCH_PKGS := torch==2.14.1 torchvision==0.29.1

.PHONY: install test test-all demo bench bench-select bench-pretrain bench-train bench-score bench-unet3d bench-stability bench-typiclust bench-related acdc-quick acdc-paper ablation figure2 acdc-semi hippocampus-quick campaign-acdc clean

install: $(BIN)/alseg  ## create .venv and install alseg (editable) with the test and Ray extras (~2.5 min on a clean clone, measured)

$(BIN)/alseg: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(BIN)/pip install -q $(TORCH_PKGS) || $(BIN)/pip install -q torch torchvision
	$(BIN)/pip install -q -e ".[test,ray]"
	touch $(BIN)/alseg

test: install  ## the default test suite (~6 min on 2 idle cores for 407 tests, measured; 414 took 32 min niced beside three loop processes, measured)
	PYTHONUTF8=1 $(BIN)/python -m pytest -q

test-all: install  ## every test, slow ones included
	PYTHONUTF8=1 $(BIN)/python -m pytest -q -m ""

demo: install  ## phantoms -> tiny AL loop (random vs coreset vs gcl-coreset) -> table (a few minutes)
	bash examples/demo.sh

bench: bench-select bench-pretrain bench-train bench-score bench-unet3d

bench-select: install  ## k-center greedy: pruned vs brute force vs a float64 cdist greedy, isotropic and clustered, 20k and 100k (~8 min est.: the two kernels now run twice each, alternated; 100k once took 4 min)
	$(BIN)/python benchmarks/bench_select.py --sizes 20000,100000 --threads 1

bench-pretrain: install  ## pretrain/embed slices/s vs a plain torchvision ResNet-18 loop (~1 min)
	$(BIN)/python benchmarks/bench_pretrain.py --threads 1

bench-train: install  ## train-seg it/s vs a minimal plain-torch UNet loop, NCHW and channels-last, best of 3 alternated (~1 min)
	$(BIN)/python benchmarks/bench_train.py --size 64 --iterations 100 --base-channels 8

bench-score: install  ## BALD with 10 MC passes at 128 px: alseg's prediction path vs the plain loop of passes (~2 min)
	$(BIN)/python benchmarks/bench_score.py --size 128 --samples 10 --slices 64 --threads 1

bench-unet3d: install  ## 3D U-Net training steps: alseg's 3x3x3 convolutions vs nn.Conv3d on one ACDC-sized volume (~1 min)
	$(BIN)/python benchmarks/bench_unet3d.py --depth 9 --size 128 --threads 1

bench-stability: install  ## collapsed round models per recipe: the demo's rounds, 3 methods x 5 seeds x 3 budgets x 2 recipes (90 models of ~11 CPU s measured: ~10 min on 2 cores, est.); ACDC's training-seed spread at 5 % per recipe when $(ACDC_DIR) exists (25 models of ~160 CPU s measured: ~35 min more, est.), then its rounds from scratch vs warm-started on a fixed chain of picks at 2-5 % (35 models: 33 min on 2 cores, measured)
	$(BIN)/python benchmarks/bench_stability.py --seeds 5 --recipes today,quick --jobs 2 --out runs/stability \
	  $$([ -d "$(ACDC_DIR)" ] && echo --acdc $(ACDC_DIR))
	if [ -d "$(ACDC_DIR)" ]; then $(BIN)/python benchmarks/bench_stability.py --acdc $(ACDC_DIR) --acdc-chain \
	  --seeds 5 --jobs 2 --out runs/stability; fi

bench-related: install  ## CPU cost of ARCO rounds, SP-Con epochs and k-NN propagation vs the quick round, one thread (ACDC 128 px when runs/acdc/acdc128.zarr exists, else phantoms; ~10 min est.)
	$(BIN)/python benchmarks/bench_related.py --iterations 30 $$([ -e runs/acdc/acdc128.zarr ] && echo --store runs/acdc/acdc128.zarr)

bench-typiclust: install  ## TypiClust picks vs a literal official-algorithm port on ACDC pixel vectors, k-means inertia vs scikit-learn (~2 min)
	$(BIN)/python benchmarks/bench_typiclust.py --acdc $(ACDC_DIR)

acdc-quick: install  ## ACDC at 128 px, quick preset, 8 methods (random, coreset, gcl-coreset, typiclust, bald, stochastic-batches, spcon-coreset, gcl-coreset+knn-prop) x 3 seeds x budgets 2-10 %, full then weak supervision on 2 CPU cores: the six first methods cost ~165 CPU-min per seed (91 min wall for seed 0 with JOBS=2 beside other work, measured), the two others ~65 more: ~6 h per supervision, est.; SEEDS=0 (or 1, 2) runs one seed, METHODS=a,b a subset
	PRESET=quick SUPERVISION=full ACDC_DIR=$(ACDC_DIR) JOBS=$(JOBS) bash examples/acdc.sh
	PRESET=quick SUPERVISION=scribble ACDC_DIR=$(ACDC_DIR) JOBS=$(JOBS) bash examples/acdc.sh

acdc-paper: install  ## the paper's protocol (256 px, 100 pretraining epochs, 5 models/round, 5 seeds, all methods): a GPU machine, days
	PRESET=paper SUPERVISION=full ACDC_DIR=$(ACDC_DIR) DEVICE=auto bash examples/acdc.sh
	PRESET=paper SUPERVISION=scribble ACDC_DIR=$(ACDC_DIR) DEVICE=auto bash examples/acdc.sh

figure2: install  ## the paper's figure 2 on ACDC: Dice vs annotation cost, gcl-coreset on masks and on scribbles vs random whole volumes with a 3D U-Net, 3 seeds (one seed's volume chain, 2,700 3D iterations: 91-95 min of steps on one thread beside a 2-job loop, seeds 0 and 1 measured; ~1.9-2 s per iteration there; the slice runs are acdc-quick's gcl-coreset chains)
	ACDC_DIR=$(ACDC_DIR) JOBS=$(JOBS) bash examples/figure2.sh

acdc-semi: install  ## ACDC: random vs gcl-coreset at 2 and 5 %, each plain and with ARCO, full masks, quick preset, 3 seeds, paired differences (seed 2: 47 min wall with JOBS=2 beside another 2-job run and acdc-quick's encoder, measured; ARCO rounds 8-16 min, plain 6; ~2.5 h for 3 seeds, est.)
	ACDC_DIR=$(ACDC_DIR) JOBS=$(JOBS) bash examples/acdc_semi.sh

hippocampus-quick: install  ## MSD Hippocampus, 64 px, full masks: random, coreset, gcl-coreset, typiclust, spcon-coreset x 3 seeds x 2-10 %, then paired differences against gcl-coreset (1 h 55 min on 2 cores, measured: six encoders of 3 epochs at 32 px, 15-28 min each, then 75 rounds of ~75 s); SEEDS=0 runs one seed
	HIPPO_DIR=$(HIPPO_DIR) JOBS=$(JOBS) bash examples/hippocampus.sh

campaign-acdc: install  ## an annotation campaign on ACDC images through files (prep, pretrain, embed, select, export, simulated annotator, import-labels, train-seg, select, predict), each step timed into runs/campaign/times.txt (~15 min measured on a shared 2-core machine)
	ACDC_DIR=$(ACDC_DIR) bash examples/acdc_campaign.sh

ablation: install  ## the paper's table 4 on ACDC: 11 loss combinations x 3 seeds, weak supervision, 2-5 % (30 GCL encoders of 5 epochs at 128 px; the NT-Xent + patient + volume row's are acdc-quick's GCL encoders, and its rounds and the pixel Coreset row's are acdc-quick weak's gcl-coreset and coreset rounds, linked where those are done (--reuse-encoders, --reuse-models); seed 0's took 35 min (NT-Xent only), 49 (volume), 61 (patient), 97 (patient + volume), 92 (volume + slice), 52 (NT-Xent + volume; these three beside three other processes) and 142 (NT-Xent + patient + volume + slice, beside three loop processes and the test suite), measured 2 at a time; slice and NT-Xent + patient + volume, resumed across sessions, 26 and 49 min in the session that finished them; plus 132 DMPLS rounds of ~3.5 min: roughly a day on 2 CPU cores, est.; seed 0 under way, 9 of its 10 encoders done)
	ACDC_DIR=$(ACDC_DIR) JOBS=$(JOBS) bash examples/ablation.sh

clean:
	rm -rf demo out .pytest_cache
