"""Effective data transferred by pre-training (Hernandez et al. 2021, "Scaling laws for transfer").

**Curves.** For each (task, family, target_params) the from-scratch runs give a curve
``L_scratch(D) = E + B·D^−β``, fitted with the project's Huber-in-log-space fitter to the
seed-averaged losses at each D_F. The fit needs at least one degree of freedom, so 4 distinct
D_F for its 3 parameters: with fewer it interpolates, E is unconstrained, and the curve is kept
for the record but flagged (:attr:`Curve.reason`) and never inverted. ``curve="piecewise"``
asks instead for straight lines in log-log space through the monotone fit of the points: an
interpolation, honest between the measured D only, which is the only place it is inverted.

**Censored effective data.** A pre-trained model reaching loss L at D_F labelled records has
*effective data* ``D_E = L_scratch⁻¹(L)``. D_E is exact only when L lies within the losses the
curve reaches over the measured range [d_min, d_max] of its points. A lower L gives a
right-censored ``D_E ≥ d_max`` (bounds [d_max, ∞]), a higher one a left-censored
``D_E ≤ d_min`` (bounds [0, d_min]): beyond its points a power law's inverse is no evidence,
so it is kept (``d_e``) for information only. ``D_T = D_E − D_F`` is the data transferred, its
bounds shifted by D_F; ``D_T = k·D_F^α·N^β`` is the transfer law, fitted on the exact rows.

**Ratios.** SSL and SL compare at matched task, family, size, pre-training data, D_F, method
and seed. A pair's ratio D_E(SSL) / D_E(SL) has bounds [lower_SSL / upper_SL, upper_SSL /
lower_SL], undefined ([0, ∞]) when both sides are censored the same way. Per task and method
no pair is dropped: the summary is the median ratio's bounds (the median of the lower bounds
and of the upper bounds; finite while fewer than half the pairs are open on that side), the
minimum, maximum and geometric mean's bounds. D_T(SSL) / D_T(SL) is summarised beside it with
D_T clipped at 0 from below: a model that transfers nothing (D_T ≤ 0, negative transfer
included) transferred 0 records, so x / 0 is ∞ and 0 / 0 undefined.

**Intervals.** A hierarchical bootstrap over runs, not pairs: resample b (a) takes draw b of
every from-scratch curve (a Bayesian bootstrap of its power fit, :func:`ecgscale.laws.bootstrap`;
Exp(1) weights on its runs at each D_F for the piecewise curve) and censors every row against
it, and (b) draws the matched coordinates (family, N, pre-training D, seed: an SSL and an SL
run with all their D_F rows) with replacement. The 95% interval of a summary is [2.5% quantile
of its lower bound, 97.5% quantile of its upper bound] over the resamples; its verdict
(:func:`ecgscale.laws.verdicts.ratio_verdict`) says whether the interval excludes 1.

**Modules.** :mod:`~.curves` (from-scratch curves, their inverse and draws),
:mod:`~.effective` (censored D_E and D_T of task results), :mod:`~.law` (the transfer law),
:mod:`~.ratios` (SSL/SL ratios, their summary and bootstrap) and :mod:`~.analysis` (all of
it for a study); the names below are importable from here.
"""

from ecgscale.laws.transfer.analysis import transfer_analysis
from ecgscale.laws.transfer.curves import Curve, CurveKey, scratch_curves
from ecgscale.laws.transfer.effective import effective_data
from ecgscale.laws.transfer.law import fit_transfer_law
from ecgscale.laws.transfer.ratios import (
    _ratio_bounds,
    _weighted_median,
    transfer_ratios,
    transfer_summary,
)

__all__ = [
    "Curve",
    "CurveKey",
    "_ratio_bounds",
    "_weighted_median",
    "effective_data",
    "fit_transfer_law",
    "scratch_curves",
    "transfer_analysis",
    "transfer_ratios",
    "transfer_summary",
]
