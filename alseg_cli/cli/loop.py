"""`alseg loop`: a thin layer over alseg_cli.experiment.loop.run_loop."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit, err_console, handle_errors, progress_mode


@handle_errors
def command(
    out: Path = typer.Option(..., "--out", "-o", help="RUN_DIR: <method>/seed<k>/round<pct>/ per round; "
                                                       "rerun the same command to resume."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", "-d", help="Dataset store from 'alseg prep'."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML or YAML file with these settings "
                                                                        "(flags override it)."),
    methods: Optional[str] = typer.Option(None, "--methods", "-m", help="Comma list, e.g. random,coreset,gcl-coreset "
                                          "(alseg select --list), spcon-coreset (trains its own SP-Con encoder per "
                                          "seed), or METHOD+knn-prop (k-NN label propagation, config "
                                          "[propagation_options]: k, metric, group_by, weight, passes) and/or "
                                          "METHOD+arco (ARCO semi-supervised rounds, [semi_options]), e.g. "
                                          "random+knn-prop,gcl-coreset+arco."),
    budgets: Optional[str] = typer.Option(None, "--budgets", help="Cumulative % of the pool, e.g. 2,3,4,5,10."),
    first_budget: Optional[str] = typer.Option(None, "--first-budget", help="A first round before "
                                               "--budgets, e.g. 1%: the reference code's start (1 % with "
                                               "the method, then 2 % adds 1 %); the paper preset uses it."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma list of seeds, e.g. 0,1,2."),
    models_per_round: Optional[int] = typer.Option(None, "--models-per-round",
                                                   help="Models trained per round (ensemble); the best on "
                                                        "validation is evaluated. Methods that score with "
                                                        "an ensemble (variance-ratio, ensemble-entropy, "
                                                        "stochastic-batches) get at least the config's "
                                                        "ensemble_models (default 3)."),
    supervision: Optional[str] = typer.Option(None, "--supervision", help="full (UNet on masks) or "
                                                                           "scribble (DMPLS)."),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="Encoder dir for embedding methods "
                                                                    "(instead of --pretrain); {seed} in the "
                                                                    "path picks one per seed, e.g. "
                                                                    "runs/a/encoders/seed{seed}."),
    pretrain: Optional[bool] = typer.Option(None, "--pretrain/--no-pretrain",
                                            help="Train a GCL encoder once per seed for gcl-* methods."),
    pretrain_epochs: Optional[int] = typer.Option(None, "--pretrain-epochs"),
    reuse_encoders: Optional[str] = typer.Option(None, "--reuse-encoders", help="Comma list of other run (or "
                                                 "encoder) dirs: an encoder this run would train (GCL, a "
                                                 "variant's, SP-Con's) is linked from there instead when "
                                                 "one was trained on the same dataset content with the same "
                                                 "settings and seed (the supervision and rounds do not "
                                                 "matter); its manifest says reused_from."),
    reuse_models: Optional[str] = typer.Option(None, "--reuse-models", help="Comma list of other run dirs: a "
                                               "round whose training call (dataset content, labelled "
                                               "slices, seed, schedule, recipe, warm start, device and "
                                               "threads) equals a finished round's there links that model instead "
                                               "of training it (rounds of this run are always looked "
                                               "at); its manifest says reused_from."),
    iterations: Optional[int] = typer.Option(None, "--iterations", help="Fixed training iterations per round "
                                                                         "(default: per-% schedule of the preset)."),
    base_channels: Optional[int] = typer.Option(None, "--base-channels", help="UNet width (paper 16)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="quick or paper: fills unset settings."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1, mps."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="(method, seed) chains run in parallel processes."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Torch CPU threads per process "
                                                                    "(default: cores / jobs)."),
    executor: Optional[str] = typer.Option(None, "--executor", help="local (this machine: --jobs processes) "
                                           "or ray (a local Ray instance, or the cluster of --ray-address). "
                                           "With ray the run directory and dataset must be on a filesystem "
                                           "every node sees."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join a running Ray cluster: auto, "
                                              "HOST:PORT or ray://HOST:PORT (default: start one for this run)."),
    cpus_per_task: Optional[float] = typer.Option(None, "--cpus-per-task", help="Ray: CPUs per task (its torch "
                                                  "threads follow; default 1)."),
    gpus_per_train: Optional[float] = typer.Option(None, "--gpus-per-train", help="Ray: GPUs per training "
                                                   "(0.25 packs four small trainings on a GPU; default 0: CPU)."),
    gpus_per_pretrain: Optional[float] = typer.Option(None, "--gpus-per-pretrain",
                                                      help="Ray: GPUs per encoder pretraining (default 0: CPU)."),
    gpus_per_select: Optional[float] = typer.Option(None, "--gpus-per-select",
                                                    help="Ray: GPUs per selection (model-based methods; default 0)."),
    gpus_per_evaluate: Optional[float] = typer.Option(None, "--gpus-per-evaluate",
                                                      help="Ray: GPUs per evaluation (default 0: CPU)."),
    unit: Optional[str] = typer.Option(None, "--unit", help="slice (default) or volume: every round takes whole "
                                       "volumes (random, coreset, gcl-coreset; figure 2's baseline, e.g. with "
                                       "--model unet3d)."),
    model: Optional[str] = typer.Option(None, "--model", help="Round network: any of train-seg's (default "
                                        "unet, or dmpls with --supervision scribble), e.g. unet-resnet50 "
                                        "with --backbone-weights; a pretrained one trains with its own "
                                        "recipe and GCL uses the patient group alone."),
    backbone_weights: Optional[Path] = typer.Option(None, "--backbone-weights", help="Local ResNet-50 state "
                                                    "dict for --model unet-resnet50 (train_options.backbone_weights)."),
    human: Optional[bool] = typer.Option(None, "--human/--simulated", help="A real annotation campaign (one "
                                         "method, one seed): each round selects, exports the picks and stops "
                                         "(exit code 75) until `alseg import-labels` writes the round's "
                                         "labelled.json; rerun the same command to train and go on."),
    warm_start: Optional[bool] = typer.Option(None, "--warm-start/--from-scratch", help="Start each round's "
                                              "model from the previous round's (train-seg --init; the quick "
                                              "preset's default) instead of from scratch (the paper's protocol)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No live summary on stderr."),
):
    """Run whole active-learning experiments: rounds x methods x seeds, resumable.

    Each round selects (the first round with the method itself where it can, else random),
    trains --models-per-round models, and evaluates the best-on-validation one on the test
    split. Every step is done-marked after its output is complete, so a killed run (even
    kill -9) resumes at the last complete step with identical selections.
    """
    from ..api import run_loop

    options = dict(dataset=str(dataset) if dataset else None, methods=methods, budgets=budgets,
                   first_budget=first_budget, seeds=seeds, model=model, unit=unit,
                   train_options={"backbone_weights": str(backbone_weights.resolve())} if backbone_weights else None,
                   models_per_round=models_per_round, supervision=supervision,
                   encoder=str(encoder) if encoder else None, pretrain=pretrain,
                   pretrain_epochs=pretrain_epochs, reuse_encoders=reuse_encoders,
                   reuse_models=reuse_models, iterations=iterations,
                   base_channels=base_channels,
                   preset=preset, device=device, jobs=jobs, threads=threads, executor=executor,
                   ray_address=ray_address, cpus_per_task=cpus_per_task, gpus_per_train=gpus_per_train,
                   gpus_per_pretrain=gpus_per_pretrain, gpus_per_select=gpus_per_select,
                   gpus_per_evaluate=gpus_per_evaluate, human=human, warm_start=warm_start)
    manifest = run_loop(out, config=str(config) if config else None,
                        progress=False if no_progress else progress_mode(), **options)
    err_console.print(f"loop: {manifest['steps_run']} steps run, {manifest['steps_skipped']} already done, "
                      f"{manifest['seconds']:.1f}s; next: alseg bootstrap {out}", highlight=False)
    emit(manifest)
