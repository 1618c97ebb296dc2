"""The markdown report and the plot of a run's JSON (`summary` derives the numbers)."""

from __future__ import annotations

import math
import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common  # noqa: E402

from quality.summary import (  # noqa: E402
    COLORS,
    CONVERGED,
    accuracies,
    deployed_params,
    diffs,
    done_when,
    family,
    front,
    matched_method,
    methods_of,
    name,
    parameter_matched,
    runs,
    seed_std,
    select,
    short,
    summary,
)


def _per_task_table(tasks: list[str], methods: list[str],
                    values: Callable[[str, str | None], list[float]]) -> list[str]:
    """Markdown rows: one per task and a mean row (task None), mean ± CI per method."""
    lines = ["| task | " + " | ".join(short(m) for m in methods) + " |",
             "|---|" + "---:|" * len(methods)]
    for task in [*tasks, None]:
        cells = [common.fmt_ci(values(m, task)) for m in methods]
        lines.append(f"| {task or '**mean**'} | " + " | ".join(cells) + " |")
    return lines


def _intro(data: dict[str, Any]) -> list[str]:
    seeds, tasks = data["seeds"], data["tasks"]
    root, search, base = data["root"], data["search"], data["baselines"]
    overrides = {k: v for k, v in data["overrides"].items() if v}
    labels = {"opt_lr_default": "hparams.opt_lr.default"}
    changed = (" with " + ", ".join(f"{labels.get(k, 'search.' + k)}={v}"
                                    for k, v in overrides.items())
               + " overridden on the command line") if overrides else ""
    root_acc = root["test_accuracy"]
    root_text = (f"`{root['source']}`"
                 + (f", test accuracy {root_acc * 100:.1f} %" if root_acc is not None else "")
                 + (f", {root['examples']:,} training examples" if root.get("examples") else "")
                 + (f", loaded from the cache (`{root['cache_file']}`, pretrained in "
                    f"{root['train_seconds'] or 0:.0f} s when cached)" if root["cached"] else
                    f", built in this run in {root['seconds']:.0f} s"))
    epoch = (f"{base['ft_epoch_examples']:,} examples" if base["ft_epoch_examples"]
             else "one pass over the train split")
    pm_lrs = base.get("pm_lrs") or base["ft_lrs"]
    schedule = (f"Fine-tuning (whole model, top-k blocks, adapters) warms the lr up over one "
                f"epoch, divides it by 10 after each plateau of {base['ft_patience']} epochs "
                f"without a better validation accuracy ({base.get('ft_decays')} times) and "
                f"stops on the next plateau (`quality/plateau.py`). "
                if base.get("ft_schedule") == "plateau" else "")
    return [
        f"Config `{data['config']}`{changed} (method version `{data['method_version']}`: "
        f"{data['cycles']} search cycle(s) per task, each {search['children_per_generation']} "
        f"x {search['generations_per_cycle']} children trained "
        f"{search['validations_per_child']} x <= {search['examples_between_validations']:,} "
        f"examples); tasks {', '.join(f'`{t}`' for t in tasks)} onboarded in this order; seeds "
        f"{seeds} (paired: one seed seeds every method). Root: {root_text}; shared by all "
        f"methods and seeds, its cost charged to none. {schedule}Fine-tuning (whole model, "
        f"top-k blocks, adapters), scratch and probe validate every epoch ({epoch}); "
        f"{'scratch and probe' if schedule else 'they'} train with warmup + cosine over the "
        f"cap and stop after {base['ft_patience']} epochs without a better validation "
        f"accuracy (caps: fine-tuning / scratch / probe "
        f"{base['ft_max_epochs']} / {base['scratch_max_epochs']} / {base['probe_max_epochs']} "
        f"epochs), keep the best validation checkpoint, and sweep the learning rate "
        f"(fine-tuning {base['ft_lrs']}, top-k and adapters {pm_lrs}, scratch "
        f"{base['scratch_lrs']}, probe {base['probe_lrs']}; best by validation); data "
        f"augmentation: {'the root path ds_* hparams' if base['ft_augment'] else 'none'}. "
        f"Matched fine-tuning: one run at fine-tuning's chosen lr on the search's training "
        f"examples. Equal-compute fine-tuning: the fine-tuning lr sweep on the search's "
        f"examples in all (an equal share per lr, no early stop), best lr by validation. "
        f"Logistic regression: lbfgs on raw pixels in [0, 1], C in {base['logreg_cs']} by "
        f"validation, max_iter {base['logreg_max_iter']}. Whole run: "
        f"{data['total_seconds'] / 60:.1f} min.", "",
        "Accuracy: mean test accuracy (%) over seeds ± the half-width of its 95 % "
        "confidence interval (t-distribution, n = number of seeds); differences are "
        "paired by seed. Parameters of the deployed set (all tasks), shared components counted "
        "once: mu2Net+ = every distinct component of every task's path "
        "(`SystemView.total_params`, the root's head excluded); fine-tuning / matched / equal "
        "/ scratch = one whole model per task; top-k = the root's cls, embedding, position "
        "embeddings and blocks below the top k once + per task its k blocks, encoder_norm "
        "and head; adapters = the root's backbone once + per task its adapters, encoder_norm "
        "and head; probe = the root backbone + one head per task; logreg = (pixels + 1) x "
        "classes per task. FLOPs: one forward pass at batch 1 (`scoring.forward_flops`, 2 x "
        "MACs; logreg 2 x pixels x classes). Examples and seconds: training incl. the whole "
        "sweep, summed over tasks (mean over seeds); probe seconds include computing the "
        "frozen features; logreg examples = train split x lbfgs iterations.", ""]


def _summary_table(data: dict[str, Any], methods: list[str]) -> list[str]:
    summ = summary(data)
    lines = ["| method | mean test accuracy % | mu2Net+ − method (paired) | params of deployed "
             "set | x fine-tuning | FLOPs / inference (mean) | training examples | "
             "training s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    ft_params = summ.get("finetune", summ["mu2net"])["params"]
    for method in methods:
        s = summ[method]
        diff = "" if method == "mu2net" else common.fmt_ci(diffs(data, method))
        flops = (f"{s['flops'] / 1e6:.1f} M" if s["flops"] >= 1e5
                 else f"{s['flops'] / 1e3:.1f} k")
        lines.append(f"| {name(method)} | {common.fmt_ci(s['acc'])} | {diff} | "
                     f"{s['params']:,.0f} | {s['params'] / ft_params:.2f} | {flops} | "
                     f"{s['examples']:,.0f} | {s['seconds']:,.0f} |")
    return lines


def _matched_table(data: dict[str, Any], methods: list[str]) -> list[str]:
    summ = summary(data)
    pm = [m for m in methods if parameter_matched(m)]
    if not pm:
        return []
    mu = summ["mu2net"]["params"]
    matched = matched_method(data)
    points = [(summ[m]["params"], statistics.fmean(summ[m]["acc"]), m) for m in methods]
    on_front = {m for _, _, m in front(points)}
    lines = ["## Parameter-matched baselines: accuracy against deployed size", "",
             f"mu2Net+ deploys {mu:,.0f} parameters for the whole suite (mean over seeds). "
             "Each baseline below deploys only what it trains per task beside the frozen root "
             f"components every task shares (counted once). `(matched)`: the top-k nearest "
             "mu2Net+'s size. Front: no method reaches a higher mean accuracy with as few "
             "parameters or fewer.", "",
             "| method | params of deployed set | x mu2Net+ | trained per task | mean test "
             "accuracy % | mu2Net+ − method (paired) | on the front |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for m in ["mu2net", *pm]:
        own = [r.get("own_params", r.get("new_params", 0))
               for r in select(data["rows"], method=m)]
        tag = " (matched)" if m == matched else ""
        lines.append(f"| {short(m)}{tag} | {summ[m]['params']:,.0f} | "
                     f"{summ[m]['params'] / mu:.2f} | {statistics.fmean(own):,.0f} | "
                     f"{common.fmt_ci(summ[m]['acc'])} | "
                     f"{'' if m == 'mu2net' else common.fmt_ci(diffs(data, m))} | "
                     f"{'yes' if m in on_front else 'no'} |")
    lines += ["", "Trained per task: mu2Net+ = the new parameters its search created (the "
              "path's components of its own lineage); a baseline = its own components.", ""]
    return lines


def _convergence_tables(data: dict[str, Any], methods: list[str]) -> list[str]:
    lines = ["## Convergence: every training run of every sweep", "",
             "Epochs trained, the best (kept) epoch and the cap per run; a run converged when "
             "early stopping ended it (the patience ran out), not the cap.", "",
             "| method | runs | ended by early stopping | at the cap | best epoch min / median "
             "/ max | epochs trained max | cap |", "|---|---:|---:|---:|---:|---:|---:|"]
    for m in methods:
        if family(m) in ("mu2net", "finetune_equal", "finetune_matched", "logreg"):
            continue
        done = runs(data, m)
        if not done:
            continue
        best = [r["best_epoch"] for r in done if r["best_epoch"] is not None]
        spread = (f"{min(best)} / {statistics.median(best):g} / {max(best)}" if best
                  else "not recorded")
        early = sum(r["stopped_early"] for r in done)
        lines.append(f"| {short(m)} | {len(done)} | {early} | {len(done) - early} | {spread} | "
                     f"{max(r['epochs'] for r in done)} | {done[0]['cap']} |")
    lines += ["", "Fine-tuning runs per task and seed: `best epoch / epochs trained` per "
              "learning rate, `cap` where the run reached the cap, `*` the lr kept.", ""]
    for m in [m for m in methods if family(m) in CONVERGED]:
        rows = select(data["rows"], method=m)
        lrs = sorted({lr for r in rows for lr in r.get("sweep", {})}, key=float)
        lines += [f"{name(m)}:", "", "| task | seed | " + " | ".join(f"lr {lr}" for lr in lrs)
                  + " |", "|---|---:|" + "---:|" * len(lrs)]
        for r in sorted(rows, key=lambda r: (data["tasks"].index(r["task"]), r["seed"])):
            cells = []
            for lr in lrs:
                run = r["sweep"].get(lr)
                if run is None:
                    cells.append("")
                    continue
                cap = r.get("max_epochs", data["baselines"]["ft_max_epochs"])
                early = run.get("stopped_early", run["epochs"] < cap)
                kept = float(lr) == r["lr"]
                best = run.get("best_epoch", r["best_validation"] if kept else "?")
                cells.append(f"{best} / {run['epochs']}"
                             + ("" if early else " cap") + (" *" if kept else ""))
            lines.append(f"| {r['task']} | {r['seed']} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _cycles_table(data: dict[str, Any], tasks: list[str]) -> list[str]:
    cycles = data["cycles"]
    lines = ["## mu2Net+ per search cycle (mean over seeds)", "",
             "Test accuracy % of the task's committed path after each cycle (validation "
             "accuracy, cumulative training examples and seconds in brackets).", "",
             "| task | " + " | ".join(f"cycle {c}" for c in range(1, cycles + 1)) + " |",
             "|---|" + "---:|" * cycles]
    for task in tasks:
        per = [r["cycles"] for r in select(data["rows"], method="mu2net", task=task)]
        cells = []
        for c in range(cycles):
            recs = [p[c] for p in per if len(p) > c]

            def avg(key, recs=recs):
                return statistics.fmean(r[key] for r in recs)

            cells.append(f"{avg('test_accuracy') * 100:.1f} ({avg('validation_accuracy') * 100:.1f}"
                         f"; {avg('examples'):,.0f}; {avg('seconds'):,.0f} s)")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines + [""]


def _size_table(data: dict[str, Any], tasks: list[str]) -> list[str]:
    lines = ["## Per task: size and compute (mean over seeds)", "",
             "Accounted params (docs/method.md §2.5): each component's size divided by the "
             "number of tasks using it, summed over the task's path (mu2Net+: read from the "
             "final system; probe, top-k, adapters: the frozen root components shared by all "
             "tasks + its own; fine-tuning: the whole model). New params: parameters of the "
             "components the task's search created. Layers / image size: of the mu2Net+ path. "
             "Epochs: `best / trained` of the run each sweep kept (early stopping).", "",
             "| task | accounted params mu2Net+ | new params mu2Net+ | probe | fine-tuning | "
             "FLOPs mu2Net+ | FLOPs FT | layers | image size | reused components | "
             "examples mu2Net+ | examples FT | FT epochs | scratch epochs | lr FT | "
             "lr scratch |", "|---|" + "---:|" * 15]
    for task in tasks:
        mu, ft, pr, sc = (select(data["rows"], method=m, task=task)
                          for m in ("mu2net", "finetune", "probe", "scratch"))

        def avg(rows, key):
            return statistics.fmean(r[key] for r in rows) if rows else math.nan

        def epochs(rows):
            return "/".join(f"{r['best_validation']}:{r['validations']}" for r in rows)

        lines.append(
            f"| {task} | {avg(mu, 'accounted_params'):,.0f} | {avg(mu, 'new_params'):,.0f} | "
            f"{avg(pr, 'accounted_params'):,.0f} | {avg(ft, 'accounted_params'):,.0f} | "
            f"{avg(mu, 'flops') / 1e6:.1f} M | {avg(ft, 'flops') / 1e6:.1f} M | "
            + "/".join(str(r["num_layers"]) for r in mu) + " | "
            + "/".join(str(r["image_size"]) for r in mu) + " | "
            + "/".join(f"{r['reused']} of {r['components']}" for r in mu) + " | "
            f"{avg(mu, 'examples'):,.0f} | {avg(ft, 'examples'):,.0f} | {epochs(ft)} | "
            f"{epochs(sc)} | " + "/".join(str(r["lr"]) for r in ft) + " | "
            + "/".join(str(r["lr"]) for r in sc) + " |")
    return lines + ["", "Per-seed values are separated by `/`. The raw per-seed, per-task rows "
                    "(incl. the sweeps' validation accuracies and every cycle) are in the "
                    "`.json` file next to this one.", ""]


def report(data: dict[str, Any], png_name: str) -> str:
    tasks = data["tasks"]
    methods = methods_of(data)
    lines = [common.header("Quality versus size and compute: mu2Net+ vs fine-tuning, "
                           "parameter-matched fine-tuning, linear probe, training from scratch "
                           "and logistic regression", data.get("header")), ""]
    lines += _intro(data)
    lines += ["## Summary (all tasks)", ""] + _summary_table(data, methods)
    lines += ["", f"![accuracy vs parameters]({png_name})", "", "## Done when", "", "```"]
    checks = done_when(data)
    for what, ok, numbers in checks:
        lines.append(f"{'PASS' if ok else 'FAIL'}  {what}: {numbers}")
    lines.append(f"{'PASS' if all(ok for _, ok, _ in checks) else 'FAIL'}  all")
    lines += ["```", "", "## Per task: test accuracy %", ""]
    lines += _per_task_table(tasks, methods, lambda m, task: accuracies(data, m, task))
    lines += ["", "## Per task: mu2Net+ − baseline (paired, points)", ""]
    lines += _per_task_table(tasks, methods[1:], lambda m, task: diffs(data, m, task))
    lines += [""] + _matched_table(data, methods) + _convergence_tables(data, methods)
    lines += _cycles_table(data, tasks)
    lines += ["## Per task: standard deviation of test accuracy across seeds (points)", "",
              "| task | mu2Net+ | fine-tuning |", "|---|---:|---:|"]
    for task in tasks:  # fine-tuning: "not run" in a run of other baselines (--baselines)
        ft = (f"{seed_std(accuracies(data, 'finetune', task)) * 100:.1f}"
              if "finetune" in methods else "not run")
        lines.append(f"| {task} | {seed_std(accuracies(data, 'mu2net', task)) * 100:.1f} | "
                     f"{ft} |")
    lines += [""] + _size_table(data, tasks)
    workers = len(data.get("worker_seconds", {})) or 1
    lines += ["## Time per method (whole run, all seeds)", "",
              f"Minutes spent in each method, summed over the {workers} worker process(es) "
              f"that ran the seeds side by side ({data.get('threads', 'default')} "
              f"thread(s) each); the whole run took {data['total_seconds'] / 60:.1f} "
              "minutes of wall time.", "", "| method | minutes (summed over workers) | share |",
              "|---|---:|---:|"]
    spent = {**data["method_seconds"], "root": data["root"]["seconds"]}
    total = sum(spent.values())
    for method, seconds in spent.items():
        label = short(method) if method != "root" else "root"
        lines.append(f"| {label} | {seconds / 60:.1f} | {seconds / total * 100:.0f} % |")
    lines.append(f"| **total** | {total / 60:.1f} | 100 % |")
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: str) -> None:
    """Left: mean test accuracy against the deployed set's parameters, every method's point
    (per-seed points faint), the top-k and adapter points joined as curves, and the front of
    all methods. Right: against training examples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    summ = summary(data)
    methods = methods_of(data)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for method in methods:
        s = summ[method]
        mean, half = common.mean_ci(s["acc"])
        color = COLORS[family(method)]
        for ax, x in ((axes[0], s["params"]), (axes[1], s["examples"])):
            ax.errorbar([x], [mean * 100], yerr=None if math.isnan(half) else [half * 100],
                        fmt="s" if parameter_matched(method) else "o", color=color, capsize=4,
                        label=short(method))
        if parameter_matched(method):  # one colour per family: name each point
            axes[0].annotate(short(method), (s["params"], mean * 100), fontsize=7,
                             xytext=(4, 4), textcoords="offset points", color=color)
        per_seed = [deployed_params(data, method, seed) for seed in data["seeds"]]
        axes[0].scatter(per_seed, [a * 100 for a in s["acc"]], s=10, color=color, alpha=0.4)
    for fam in ("topk", "adapters"):
        curve = sorted((summ[m]["params"], statistics.fmean(summ[m]["acc"]) * 100)
                       for m in methods if family(m) == fam)
        if len(curve) > 1:
            axes[0].plot(*zip(*curve), color=COLORS[fam], alpha=0.6)
    edge = front([(summ[m]["params"], statistics.fmean(summ[m]["acc"]) * 100, m)
                  for m in methods])
    right = max(summ[m]["params"] for m in methods)  # the front holds on to the largest
    xs, ys = [p[0] for p in edge] + [right], [p[1] for p in edge] + [edge[-1][1]]
    axes[0].step(xs, ys, where="post", color="black", linestyle="--", alpha=0.5,
                 label="front (all methods)")
    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no overlapping labels
        ax.set_ylabel("mean test accuracy % (95 % CI over seeds)")
        ax.grid(alpha=0.3)
    axes[0].set_xlabel(f"parameters of the deployed set ({len(data['tasks'])} tasks)")
    axes[1].set_xlabel("training examples (all tasks, incl. sweeps)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{data['config']}: {len(data['tasks'])} tasks, {len(data['seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}", flush=True)
