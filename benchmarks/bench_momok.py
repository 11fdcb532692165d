"""MoMoK training and evaluation speed at the paper's settings, fast path vs the straightforward reference.

    python benchmarks/bench_momok.py [--presets paper authors] [--threads 2] [--device cpu|cuda] [--tf32]

Prints, side by side and each measured in a fresh process (its own peak memory):

* the machine's float32 matmul rate (``torch.matmul`` of 2048² matrices, same thread count);
* one training step (loss, backward, Adam step, CLUB estimator step) of the fast path
  (``momok.models.momok.MoMoK``) and of the reference (``benchmarks/reference.py``, per-query Tucker
  cores, same parameters), median of ``--steps`` / ``--reference-steps`` timed steps after one warm-up
  step; the epoch time (42 steps on MKG-Y) extrapolated from the median step, or measured with
  ``--full-epoch``;
* a full filtered evaluation of MKG-Y's test split (5326 queries, both sides; model forward included)
  with :func:`momok.evaluation.evaluate`, against the reference forward with a per-query ranking loop
  over Python sets, run on the first ``--reference-queries`` queries and extrapolated linearly;
* with ``--parts valid``, the per-epoch validation's form of it: the selection key "joint" alone
  (``MoMoK.ranking_scores``; the reference computes its scores as for the evaluation and ranks "joint");
* peak memory (peak RSS of the process, model and data included; on CUDA the allocator's peak) and a
  baseline process that only builds the data and model;
* achieved GFLOP/s from analytic FLOP counts (:func:`step_flops`) and their fraction of the matmul rate.

The benchmark configuration ("the paper's settings"): MKG-Y's real split (15000 entities, 28 relations,
21310 training triples, inverse queries added: 42620 training queries), random image (383-d) and text
(384-d) features for every entity, modalities structure/image/text plus the joint modality (four
scores), K = 3 experts, dim 300, relation_dim 256, batch 1024, Adam lr 5e-4; everything else the
model's defaults (preset ``paper``: relation-guided candidates, MLP fusion, softmax cross-entropy,
exact per-query core dropout) or the authors' code (preset ``authors``: candidates encoded once per
step, BCE with label smoothing, candidate gate noise, one random CLUB pair, fine-tuned normalised
features, mean-of-sigmoids joint score).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import reference  # noqa: E402

from momok.data.datasets import load_dataset  # noqa: E402
from momok.evaluation import FilterIndex, collect_ranks, filtered_ranks  # noqa: E402
from momok.models.base import TrainBatch  # noqa: E402
from momok.models.momok import MoMoK, MoMoKOptions  # noqa: E402
from momok.training import adam  # noqa: E402
from momok.utils import reuse_freed_memory  # noqa: E402

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parents[1]
IMAGE_DIM, TEXT_DIM = 383, 384  # MKG-Y's Table 1 feature sizes

PAPER = MoMoKOptions(modalities=["structure", "image", "text"], dim=300, relation_dim=256, num_experts=3)
PRESETS = {
    "paper": PAPER,
    "authors": replace(
        PAPER, loss="bce", candidate_relation_guidance=False, candidate_gate_noise=True, club_pairs="random",
        club_logvar_term=False, joint_score="mean_sigmoid", finetune_features=True, normalize_features=True,
    ),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "../shared/datasets/MKG-Y",
                        help="dataset folder in the benchmark layout (default: the offline MKG-Y copy)")
    parser.add_argument("--presets", nargs="+", default=["paper", "authors"], choices=list(PRESETS))
    parser.add_argument("--parts", nargs="+", default=["train", "eval"], choices=["train", "eval", "valid"],
                        help="eval: every score key ranked (the final evaluation); valid: the selection key "
                             "\"joint\" alone (per-epoch validation: MoMoK.ranking_scores; the reference "
                             "computes its scores as for eval and ranks the joint one)")
    parser.add_argument("--impls", nargs="+", default=["fast", "reference"], choices=["fast", "reference"])
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch CPU threads (default: all cores)")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on CUDA")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast of the fast path's forward")
    parser.add_argument("--batch-size", type=int, default=1024, help="training queries per step")
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--relation-dim", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps of the fast path")
    parser.add_argument("--reference-steps", type=int, default=2, help="timed training steps of the reference")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps before the timed ones")
    parser.add_argument("--core-dropouts", nargs="+", default=["per_query"],
                        help="core_dropout modes of the fast path to time (the reference always drops out "
                             "its materialised [B, d, d] per-query cores with one F.dropout)")
    parser.add_argument("--full-epoch", action="store_true", help="time a whole epoch of the fast path too")
    parser.add_argument("--eval-batch-size", type=int, default=1024, help="queries per evaluation batch")
    parser.add_argument("--reference-queries", type=int, default=1024,
                        help="queries the reference evaluation ranks (extrapolated to the whole split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's malloc as it is (default: momok.utils.reuse_freed_memory(), as the "
                             "momok command does, in every child, fast and reference alike)")
    parser.add_argument("--child", choices=["matmul", "baseline", "train", "eval", "valid"], help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=["fast", "reference"], default="fast", help=argparse.SUPPRESS)
    parser.add_argument("--preset", choices=list(PRESETS), default="paper", help=argparse.SUPPRESS)
    parser.add_argument("--core-dropout", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------ FLOPs
def forward_flops(o: MoMoKOptions, impl: str, *, E: int, B: int, U: float, raw_dims: list[int],
                  training: bool = False) -> dict[str, float]:
    """Forward FLOPs (2 per multiply-add) of the matrix products and mixtures of one batch, by part.

    M modalities, S = M + 1 scores, K experts, d = dim, r = relation_dim, U distinct relations in the
    batch. The fast path contracts the Tucker core per distinct relation (``S·2·U·r·d²``), the reference
    per query (``S·2·B·r·d²``). Relation-guided candidates: the reference encodes all E candidates per
    distinct relation through the fusion MLP (``U·M·E·(2Kd + 4d²)``) and scores with one ``[n, d]@[d, E]``
    per key. The fast path scores each modality against every expert output while training
    (``M·2·B·E·K·d``) and mixes each relation's candidates without autograd (``U·M·E·2K·d`` +
    ``M·2·B·E·d``); the joint modality goes through the factorised MLP (first layer once: ``M·K·E·2d²``;
    per relation mixing and attention ``U·M·E·(2K+2)·d``; scoring ``M·2·B·E·d + M·2·B·d²``).
    Element-wise work (dropout masks, softmaxes, batch norm) is not counted.
    """
    M = len(o.modalities)
    S, K, d, r = M + 1, o.num_experts, o.dim, o.relation_dim
    mlp = o.fusion_projection == "mlp"
    fusion = (4 if mlp else 2) * d * d
    parts = {
        "inputs+experts": 2.0 * E * d * sum(raw_dims) + M * 2.0 * E * d * K * d + M * 2.0 * E * d * K * 2,
        "query fusion": M * B * float(fusion) + M * (U if impl == "fast" else B) * float(4 * r * r if mlp else 2 * r * r),
        "tucker cores": S * 2.0 * (U if impl == "fast" else B) * r * d * d,
        "tucker queries": S * 2.0 * B * d * d,
    }
    guided = o.candidate_relation_guidance and o.relation_temperature
    if not guided:
        parts["candidates once"] = M * E * float(fusion) + M * E * 2.0 * K * d
        parts["scores"] = S * 2.0 * B * E * d
    elif impl == "reference":
        parts["candidates per relation"] = U * M * E * (2.0 * K * d + fusion)
        parts["scores"] = S * 2.0 * B * E * d
    else:
        parts["candidates once"] = M * K * E * 2.0 * d * d  # first MLP layer (or affine P_m) of the experts
        parts["candidates per relation"] = U * M * E * (2.0 * K + 2) * d + (0 if training else U * M * E * 2.0 * K * d)
        modality_scores = M * 2.0 * B * E * d * (K if training else 1)
        parts["scores"] = modality_scores + M * 2.0 * B * E * d + M * 2.0 * B * d * d
    return parts


def step_flops(o: MoMoKOptions, impl: str, **sizes) -> float:
    """Training FLOPs of one step: 3× the forward (backward = 2× forward for products), plus what is
    recomputed in the backward pass: the relation-guided joint candidates (fast path: per chunk of
    candidates; reference: each relation group's candidates and scores, ``torch.utils.checkpoint``)."""
    parts = forward_flops(o, impl, training=True, **sizes)
    total = 3.0 * sum(parts.values())
    if "candidates per relation" in parts:
        total += parts["candidates per relation"] + (parts["scores"] if impl == "reference" else 0.0)
    return total


# ------------------------------------------------------------------------------------------ setup
def build(args, device: torch.device):
    """Dataset, random features of MKG-Y's sizes, the model of the preset, filter index and train queries."""
    data = load_dataset(args.data)
    E, R = data.num_entities, data.num_relations
    g = torch.Generator().manual_seed(args.seed)
    features = {
        name: SimpleNamespace(features=torch.randn(E, dim, generator=g), mask=torch.ones(E, dtype=torch.bool),
                              metadata={})
        for name, dim in (("image", IMAGE_DIM), ("text", TEXT_DIM))
    }
    options = replace(PRESETS[args.preset], dim=args.dim, relation_dim=args.relation_dim)
    if args.core_dropout:
        options = replace(options, core_dropout=args.core_dropout)
    model = MoMoK(options, E, R, features, torch.Generator().manual_seed(args.seed + 1)).to(device)
    return data, model


def train_batches(data, args, model: MoMoK, device: torch.device):
    """The epoch's batches: train triples plus inverses, shuffled; BCE labels from the training triples."""
    R = data.num_relations
    train = data.train
    heads = torch.cat([train[:, 0], train[:, 2]])
    relations = torch.cat([train[:, 1], train[:, 1] + R])
    tails = torch.cat([train[:, 2], train[:, 0]])
    order = torch.randperm(heads.numel(), generator=torch.Generator().manual_seed(args.seed + 2))
    labels_index = FilterIndex(train, data.num_entities, R) if model.needs_labels() else None
    for start in range(0, order.numel(), args.batch_size):
        rows = order[start : start + args.batch_size]
        labels = None if labels_index is None else labels_index.known_mask(heads[rows], relations[rows])
        yield TrainBatch(heads[rows], relations[rows], tails[rows], labels).to(device)


# ------------------------------------------------------------------------------------------ children
def child_train(args, device) -> dict:
    data, model = build(args, device)
    model.train()
    estimator_ids = {id(p) for p in model.estimator_parameters()}
    optimizer = adam([p for p in model.parameters() if id(p) not in estimator_ids], lr=5e-4)  # the trainer's Adam
    estimator_optimizer = adam(model.estimator_parameters(), lr=5e-4) if estimator_ids else None
    if args.impl == "fast":
        loss_fn = lambda batch: model.loss(batch)[0]  # noqa: E731
        estimator_fn = model.estimator_loss
    else:
        loss_fn = lambda batch: reference.reference_loss(model, batch)  # noqa: E731
        estimator_fn = lambda batch: reference.reference_estimator_loss(model, batch)  # noqa: E731
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16 and args.impl == "fast")

    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(batch)
        loss.backward()
        optimizer.step()
        if estimator_optimizer is not None:
            estimator_optimizer.zero_grad(set_to_none=True)
            estimator_fn(batch).backward()
            estimator_optimizer.step()
        return float(loss.detach())

    batches = train_batches(data, args, model, device)
    n_steps = args.steps if args.impl == "fast" else args.reference_steps
    times, distinct, losses = [], [], []
    for i in range(n_steps + args.warmup):
        batch = next(batches)
        distinct.append(int(torch.unique(batch.relations).numel()))
        seconds = common.timed(lambda: losses.append(step(batch)), device)
        if i >= args.warmup:
            times.append(seconds)
    steps_per_epoch = math.ceil(2 * data.train.shape[0] / args.batch_size)
    result = {
        "step_times_s": times, "step_median_s": statistics.median(times), "losses": losses,
        "distinct_relations": statistics.mean(distinct), "steps_per_epoch": steps_per_epoch,
        "epoch_extrapolated_s": statistics.median(times) * steps_per_epoch,
    }
    if args.full_epoch and args.impl == "fast":
        start = time.perf_counter()
        for batch in train_batches(data, args, model, device):
            step(batch)
        common.sync(device)
        result["epoch_measured_s"] = time.perf_counter() - start
    sizes = dict(E=data.num_entities, B=args.batch_size, U=result["distinct_relations"], raw_dims=[IMAGE_DIM, TEXT_DIM])
    result["step_gflop"] = step_flops(model.options, args.impl, **sizes) / 1e9
    result["peak_memory_mb"] = common.peak_memory_mb(device)
    return result


def child_eval(args, device) -> dict:
    """The test split's filtered evaluation; ``args.child == "valid"``: the selection key alone."""
    selection = args.child == "valid"
    data, model = build(args, device)
    model.eval()
    E, R = data.num_entities, data.num_relations
    everything = torch.cat([data.train, data.valid, data.test])
    test = data.test
    queries = 2 * test.shape[0]
    result = {"queries": queries}
    # warm-up (first-call costs of the matmul library and the allocator), not timed, for both
    with torch.no_grad():
        warm = (test[:64, 0].to(device), test[:64, 1].to(device))
        if args.impl == "fast":
            model.scores(*warm)
        else:
            reference.reference_joint_scores(model, *warm)
    model.clear_cache()  # the timed evaluation builds the fast path's entity-side tables itself
    if args.impl == "fast":
        start = time.perf_counter()
        index = FilterIndex(everything, E, R)
        result["filter_index_s"] = time.perf_counter() - start
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            seconds = common.timed(
                lambda: result.update(ranks=collect_ranks(
                    (lambda e, r: {"joint": model.ranking_scores(e, r)}) if selection else model.scores,
                    test.to(device), num_entities=E, num_relations=R, filter_index=index,
                    batch_size=args.eval_batch_size)), device)
        ranks = result.pop("ranks")
        result["eval_s"] = seconds + result["filter_index_s"]
        result["mrr_joint"] = float(ranks["joint"].realistic.reciprocal().mean())
        distinct = []
        relations = torch.cat([test[:, 1], test[:, 1] + R]).sort(stable=True).values  # collect_ranks' order
        for start in range(0, queries, args.eval_batch_size):
            distinct.append(int(torch.unique(relations[start : start + args.eval_batch_size]).numel()))
        result["batches"] = len(distinct)
        result["distinct_relations"] = statistics.mean(distinct)
        # the entity-side tables and the cores of all 2R relation ids are computed once per evaluation
        # (MoMoK caches them in eval mode)
        once = ("inputs+experts", "candidates once", "tucker cores")
        sizes = dict(E=E, raw_dims=[IMAGE_DIM, TEXT_DIM])
        flops = sum(v for k, v in forward_flops(model.options, "fast", B=0, U=2 * R, **sizes).items() if k in once)
        for i, u in enumerate(distinct):
            batch = min(args.eval_batch_size, queries - i * args.eval_batch_size)
            parts = forward_flops(model.options, "fast", B=batch, U=u, **sizes)
            flops += sum(v for k, v in parts.items() if k not in once)
    else:
        n = min(args.reference_queries, queries)
        start = time.perf_counter()
        known = reference.known_answers(everything, R)
        result["filter_index_s"] = time.perf_counter() - start
        entities = torch.cat([test[:, 0], test[:, 2]])[:n]
        relations = torch.cat([test[:, 1], test[:, 1] + R])[:n]
        targets = torch.cat([test[:, 2], test[:, 0]])[:n]
        forward_s = rank_s = 0.0
        flops = 0.0
        ranks = []
        with torch.no_grad():
            for s in range(0, n, args.eval_batch_size):
                e, r, t = (x[s : s + args.eval_batch_size] for x in (entities, relations, targets))
                holder = {}
                forward_s += common.timed(
                    lambda: holder.update(scores=reference.reference_joint_scores(model, e.to(device), r.to(device))),
                    device)
                begin = time.perf_counter()
                ranks.append({k: reference.reference_ranks(v, e, r, t, known) for k, v in holder["scores"].items()
                              if k == "joint" or not selection})
                rank_s += time.perf_counter() - begin
                flops += sum(forward_flops(model.options, "reference", E=E, B=e.numel(),
                                           U=int(torch.unique(r).numel()), raw_dims=[IMAGE_DIM, TEXT_DIM]).values())
                # agreement with the fast path on the same queries (not timed)
                fast_scores = model.scores(e.to(device), r.to(device))
                if selection:
                    fast_scores = {"joint": model.ranking_scores(e.to(device), r.to(device))}
                mask = FilterIndex(everything, E, R).known_mask(e, r).to(device)
                fast_joint = filtered_ranks(fast_scores["joint"], t.to(device), mask).realistic.cpu()
                result["rank_mismatches"] = result.get("rank_mismatches", 0) + int(
                    (fast_joint != ranks[-1]["joint"]).sum())
                result["max_score_diff"] = max(result.get("max_score_diff", 0.0), max(
                    float((fast_scores[k] - holder["scores"][k]).abs().max()) for k in fast_scores))
        scale = queries / n
        result.update(reference_queries=n, forward_s=forward_s, rank_s=rank_s,
                      eval_s=result["filter_index_s"] + (forward_s + rank_s) * scale)
        flops *= scale
    result["gflop"] = flops / 1e9
    result["peak_memory_mb"] = common.peak_memory_mb(device)
    return result


def child(args) -> None:
    if not args.system_malloc:
        reuse_freed_memory()
    device = common.setup_device(args.device, args.threads, args.tf32)
    if args.child == "matmul":
        result = common.matmul_rate(device)
    elif args.child == "baseline":
        build(args, device)
        result = {"peak_memory_mb": common.peak_memory_mb(device)}
    elif args.child == "train":
        result = child_train(args, device)
    else:
        result = child_eval(args, device)  # eval or valid
    common.emit(result)


# ------------------------------------------------------------------------------------------ parent
def passthrough(args) -> list[str]:
    out = ["--data", str(args.data), "--device", args.device, "--threads", str(args.threads),
           "--batch-size", str(args.batch_size), "--dim", str(args.dim), "--relation-dim", str(args.relation_dim),
           "--steps", str(args.steps), "--reference-steps", str(args.reference_steps), "--warmup", str(args.warmup),
           "--eval-batch-size", str(args.eval_batch_size), "--reference-queries", str(args.reference_queries),
           "--seed", str(args.seed)]
    return out + [flag for flag, on in (("--tf32", args.tf32), ("--bf16", args.bf16),
                                        ("--full-epoch", args.full_epoch),
                                        ("--system-malloc", args.system_malloc)) if on]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    base = passthrough(args)
    malloc = "system malloc" if args.system_malloc else "malloc keeps freed memory (momok.utils.reuse_freed_memory)"
    print(f"# bench_momok on {args.device}, {args.threads} threads, torch {torch.__version__}, {malloc}; "
          f"{common.load_average()}")
    rate = common.run_child(SCRIPT, base + ["--child", "matmul"])
    peak = rate["best_gflops"]  # the machine's rate: the best of 20 (the median moves with other load)
    print(f"matmul float32 {rate['size']}^2: best {peak:.1f} GFLOP/s of {len(rate['times_s'])} (median "
          f"{rate['median_gflops']:.1f}); the fractions below refer to the best")
    baseline = common.run_child(SCRIPT, base + ["--child", "baseline"])
    print(f"baseline process (data + model only): peak memory {baseline['peak_memory_mb']:.0f} MiB")
    for preset in args.presets:
        results = {}
        runs = [(part, impl, mode) for part in args.parts for impl in args.impls
                for mode in (args.core_dropouts if (part, impl) == ("train", "fast") else [None])]
        for part, impl, mode in runs:
            extra = ["--core-dropout", mode] if mode else []
            r = common.run_child(SCRIPT, base + ["--child", part, "--impl", impl, "--preset", preset] + extra)
            results[part, impl, mode] = r
            if mode:
                impl = f"fast/{mode}"
            if part == "train":
                rate_g = r["step_gflop"] / r["step_median_s"]
                line = (f"[{preset}] train {impl}: step median {r['step_median_s']:.2f} s "
                        f"(steps {', '.join(f'{t:.2f}' for t in r['step_times_s'])}; "
                        f"{r['distinct_relations']:.1f} distinct relations/batch), "
                        f"epoch ≈ {r['epoch_extrapolated_s']:.0f} s ({r['steps_per_epoch']} steps, extrapolated)")
                if "epoch_measured_s" in r:
                    line += f", epoch measured {r['epoch_measured_s']:.0f} s"
                line += (f"; {r['step_gflop']:.0f} GFLOP/step, {rate_g:.1f} GFLOP/s = {rate_g / peak:.0%} of "
                         f"matmul; peak memory {r['peak_memory_mb']:.0f} MiB; losses "
                         f"{', '.join(f'{x:.4f}' for x in r['losses'])}")
            else:
                rate_g = r["gflop"] / r["eval_s"]
                line = f"[{preset}] {part} {impl}: {r['eval_s']:.1f} s for {r['queries']} queries"
                if impl == "reference":
                    line += (f" (extrapolated from {r['reference_queries']}: forward {r['forward_s']:.1f} s, "
                             f"per-query ranking {r['rank_s']:.1f} s; vs fast: {r['rank_mismatches']} joint "
                             f"rank mismatches, max score diff {r['max_score_diff']:.2e})")
                else:
                    line += (f" (queries in relation order, {r['distinct_relations']:.1f} distinct relations/batch; "
                             f"MRR joint {r['mrr_joint']:.4f}, filter index {r['filter_index_s']:.2f} s)")
                line += (f"; {r['gflop']:.0f} GFLOP, {rate_g:.1f} GFLOP/s = {rate_g / peak:.0%} of matmul; "
                         f"peak memory {r['peak_memory_mb']:.0f} MiB")
            print(line, flush=True)
        for mode in args.core_dropouts:
            if ("train", "fast", mode) in results and ("train", "reference", None) in results:
                f, s = results["train", "fast", mode], results["train", "reference", None]
                print(f"[{preset}] train speed-up (fast/{mode}) {s['step_median_s'] / f['step_median_s']:.2f}x, "
                      f"peak memory fast/reference {f['peak_memory_mb'] / s['peak_memory_mb']:.2f}")
        for part in ("eval", "valid"):
            if (part, "fast", None) in results and (part, "reference", None) in results:
                f, s = results[part, "fast", None], results[part, "reference", None]
                print(f"[{preset}] {part} speed-up {s['eval_s'] / f['eval_s']:.1f}x, "
                      f"peak memory fast/reference {f['peak_memory_mb'] / s['peak_memory_mb']:.2f}")
    print(f"# finished; {common.load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
