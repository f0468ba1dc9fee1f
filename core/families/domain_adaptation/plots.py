"""Report plots for the domain_adaptation family (declared in the family's FamilySpec)."""

from __future__ import annotations

import re
from typing import Iterator

import numpy as np

from ...report.colors import NEUTRAL
from ...report.drawing import (small_multiples, Plot, TaskData, add_backend_legend, grid, grouped_bars, heatmap, legend_height,
                    missing_note, new_figure, ordered, short)


DA_PROTOCOLS = ("zero_shot", "source_only", "adapt")
_DA = re.compile(r"^(?P<s>[^/]+)->(?P<t>[^/]+)/(?P<proto>[^/]+)/(?P<m>[^/]+)$")


def _da_structure(data: TaskData):
    pairs, protos, domains = [], set(), []
    for name in data.metric_names():
        m = _DA.match(name)
        if not m:
            continue
        pair = (m.group("s"), m.group("t"))
        if pair not in pairs:
            pairs.append(pair)
        protos.add(m.group("proto"))
        domains += [d for d in pair if d not in domains]
    return pairs, ordered(protos, DA_PROTOCOLS), domains


def domain_adaptation_plots(data: TaskData) -> Iterator[Plot]:
    pairs, protos, domains = _da_structure(data)
    backends = data.backends()
    if not pairs:
        yield Plot.skip("Source x target accuracy", "no metric named <source>-><target>/<protocol>/top1")
        return
    sources = list(dict.fromkeys(s for s, _ in pairs))
    shown, cap, cols, rows = small_multiples(backends)
    # one protocol's matrices (source_only shows the shift itself; zero_shot does not
    # depend on the source); every protocol is in the drop plot and the tables
    for proto in [next(p for p in ("source_only", "adapt", *protos) if p in protos)]:
        title = f"Source x target top-1 accuracy ({proto})"
        side = 0.45 * len(domains) + 1.4
        fig = new_figure(max(side, 2.6) * cols + 1.2, max(side, 2.4) * rows + 0.3)
        axes = grid(fig, len(shown), cols)
        for ax, b in zip(axes, shown):
            mat = np.full((len(sources), len(domains)), np.nan)
            for i, s in enumerate(sources):
                for j, t in enumerate(domains):
                    if s == t:
                        if proto == "adapt":
                            continue
                        # one control model per pair: the source's first pair that has one
                        v = next((data.value(b, f"{s}->{t2}/{proto}/source_top1") for s2, t2 in pairs
                                  if s2 == s and data.value(b, f"{s}->{t2}/{proto}/source_top1") is not None),
                                 None)
                    else:
                        v = data.value(b, f"{s}->{t}/{proto}/top1")
                    if v is not None:
                        mat[i, j] = 100 * v
            im = heatmap(fig, ax, mat, sources, domains, vmin=0, vmax=100, cmap="viridis", label="",
                         annotate=len(domains) <= 8, colorbar=False)
            ax.set_title(short(b, 34))
            ax.set_xlabel("target domain (test)")
            ax.set_ylabel("source domain (train)")
        fig.colorbar(im, ax=list(axes), label="top-1 accuracy (%)", shrink=0.8)
        diag = ("the diagonal is left empty (the adapted model depends on the pair)" if proto == "adapt"
                else "the diagonal is the in-domain accuracy on the source's own test split (source_only: "
                "the control run of the source's first pair; each pair has its own)")
        others = [p for p in protos if p != proto]
        yield Plot(title, fig, f"Top-1 accuracy (%) on the target test split of the {proto} model "
                   f"trained on each source; {diag}; grey: pair not evaluated."
                   + (f" Protocols {', '.join(others)}: see the drop plot and the tables." if others else "")
                   + cap)

    title = "Accuracy drop per pair (source - target)"
    drop_protos = [p for p in protos if any(data.metric(b, f"{s}->{t}/{p}/drop") for b in backends
                                            for s, t in pairs)]
    if not drop_protos:
        yield Plot.skip(title, "no <source>-><target>/<protocol>/drop metric in the results")
        return
    labels = [f"{s}→{t}" for s, t in pairs]
    fig = new_figure(max(7.0, 0.06 * len(pairs) * len(backends) + 0.5 * len(pairs) + 3.5),
                     max(2.5 * len(drop_protos) + 0.3, legend_height(len(backends))))
    missing = []
    for ax, proto in zip(grid(fig, len(drop_protos), 1), drop_protos):
        missing += [(b, f"{proto} {g}") for b, g in grouped_bars(
            ax, data, backends, [f"{s}->{t}" for s, t in pairs],
            lambda b, g, p=proto: data.metric(b, f"{g}/{p}/drop"), scale=100, group_labels=labels)]
        ax.axhline(0, color=NEUTRAL, linewidth=0.8)
        ax.set_title(f"protocol: {proto}")
        ax.set_ylabel("drop (percentage points)")
        ax.set_xlabel("source → target pair")
        if len(pairs) > 3:
            ax.tick_params(axis="x", labelrotation=25)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
    add_backend_legend(fig, data, backends)
    yield Plot(title, fig, "Source-test top-1 minus target-test top-1 of the same model, in "
               "percentage points, with 95% bootstrap CIs; above zero the model loses accuracy "
               "under the shift." + missing_note(missing, "these backend/pairs"))


PLOTS = (domain_adaptation_plots,)
