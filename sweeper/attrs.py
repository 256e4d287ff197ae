"""The names of what sweeper stores on trials and studies: one owner, every reader imports.

The ground floor: it imports nothing. Searched parameter names (``trial.params``), study
user attributes, and trial user attributes (written by ``sweeper.work``; read by the CLI,
the views and the notebook). A re-queued copy of a trial inherits its original's user
attributes, so the copy reads its seed and batch order from them.
"""

from __future__ import annotations

# -- searched parameters (trial.params) -----------------------------------------------------
LR = "lr"  # log-uniform; the learning rate
WD = "weight_decay"  # log-uniform; AdamW's decoupled decay, or Adam's L2 coefficient
# OPTIMIZER (below) is a parameter too when a study compares optimizers.

# -- study user attributes -------------------------------------------------------------------
SPEC = "spec"  # the study spec as a dict (sweeper.spec.spec_to_dict)
METRIC = "metric"  # what the trials' values measure

# -- what a trial is -------------------------------------------------------------------------
SEED = "seed"  # training seed: [training] seed + the number of the first trial of its series
OPTIMIZER = "optimizer"  # adamw | adam (also a param when the study compares both)
REPLICATE_OF = "replicate_of"  # a seed replicate: the number of the trial it repeats

# -- how it was trained ----------------------------------------------------------------------
# Trials trained together when this one joined its trainer, itself included (1: alone).
PACK_SIZE = "pack_size"
# Its epoch e (after RESUMED_FROM_EPOCH, if any) used epoch_order(ORDER_SEED, OFFSET + e).
ORDER_SEED = "order_seed"
ORDER_EPOCH_OFFSET = "order_epoch_offset"
EPOCHS_RUN = "epochs_run"  # the last epoch it reported, counting epochs before a resume
# Optimizer steps in one of its epochs: ceil(training images / batch size). The decay's
# memory in epochs needs it; a study made without a stored spec still has it here.
STEPS_PER_EPOCH = "steps_per_epoch"
RESUMED_FROM_EPOCH = "resumed_from_epoch"  # the epochs its checkpoint held when it resumed

# -- provenance (sweeper.work.provenance) ----------------------------------------------------
SWEEPER_VERSION = "sweeper_version"
GIT_REV = "git_rev"
TORCH_VERSION = "torch_version"
DEVICE = "device"
OPTIMIZER_IMPL = "optimizer_impl"  # which code computed the optimizer step, e.g. FusedAdamW/triton
EXECUTION = "execution"  # how steps ran, e.g. fp32+cuda_graph
WORKER = "worker"  # host:pid
# The scheduler's task that ran the worker, e.g. "slurm 812_3" (job 812, array task 3): its
# log is sweeper-812_3.log. Absent outside a scheduler.
CLUSTER_TASK = "cluster_task"
PROVENANCE = (
    SWEEPER_VERSION, GIT_REV, TORCH_VERSION, DEVICE, OPTIMIZER_IMPL, EXECUTION, WORKER,
    CLUSTER_TASK,
)  # fmt: skip

# -- how it ended ----------------------------------------------------------------------------
# Why a trial failed. A failed trial with a reason uses up the budget, unless REQUEUED_AS
# names the copy that runs in its place (sweeper.study's budget query reads both).
FAIL_REASON = "fail_reason"
REQUEUED_AS = "requeued_as"
# A trial the curve pruner stopped: the forecast that decided (sweeper.pruners.CurvePruner):
# epoch, later epochs with mean / 95% low / high, the best, the target and the chance.
FORECAST = "forecast"
