"""Synthetic CODE-like 12-lead ECGs from a cardiac-dipole model, with sites for distribution shift.

The project's embedded default dataset. Each beat is the projection of a moving heart vector
(a vectorcardiogram): every wave (a two-part P, septal q, R, terminal s, T, and the components
that conditions add, such as the RBBB terminal R', the notched LBBB R, pathological Q waves or
ST deviation) is a Gaussian bump in time that carries a 3-D direction, with axes x = patient's
left, y = inferior, z = anterior. The dipole is projected on the lead vectors of I, II and
V1-V6 (V-lead positions jittered per record, like electrode placement); III, aVR, aVL and aVF
are then derived from I and II with the Einthoven and Goldberger identities, so these hold to
float32 rounding. Noise is added per electrode (RA, LA, LL, C1-C6) before the leads are formed.

What the labels change, as in real ECGs. Every label is the clinical threshold applied to a
continuous quantity that is drawn with real density on both sides of it, so that borderline
records exist and morphology alone does not give the label away:

* ``1dAVb``: PR interval > 200 ms (and not AF). PR is 200-280 ms in AV block, mostly 200-230;
  otherwise 120-200 ms with a tail up to 199 ms.
* ``RBBB`` / ``LBBB``: QRS >= 120 ms with the block's morphology (120-165 / 120-170 ms, mostly
  near 120-135). RBBB: slurred terminal rightward-anterior force (rsR' in V1-V2, wide S in I and
  V6, secondary T inversion in V1-V3). LBBB: no septal q, broad notched R in I, aVL, V5-V6,
  deep QS in V1, discordant ST-T. A fraction ``SiteProfile.incomplete_bbb`` of the other
  patients has an incomplete block: the same terminal forces, weaker in proportion to the
  conduction delay, with QRS 100-120 ms (mostly close to 120). Normal QRS is 74-116 ms.
* ``SB`` / ``ST``: sinus rhythm with a mean rate (``heart_rate``, measured over the beats of the
  record) below 60 / above 100 bpm. Rates are drawn per record within the rhythm class but
  concentrated toward the threshold (SB 45-60, mostly 52-60; ST 100-145, mostly 100-112; normal
  sinus 60-100 from the patient's resting rate, with clear mass within 5 bpm of each edge); the
  label then follows the measured rate, so records near 60 or 100 bpm may cross over.
* ``AF``: no P waves, 4-9 Hz fibrillatory waves of amplitude from tiny (0.008 mV) to coarse
  (0.08 mV), irregular RR (lognormal, coefficient of variation 0.06-0.30: some AF is almost
  regular) at 60-150 bpm; AF excludes SB, ST and 1dAVb. Sinus records are not all regular
  either: respiratory sinus arrhythmia is marked in some patients (RR CV up to ~0.08), and a
  fraction ``SiteProfile.ectopy`` of sinus records has premature atrial beats (early beat, then
  a less than compensatory pause).
* Two extra conditions for unseen-task evaluation: ``LVH`` (QRS voltage x1.8-2.5, tall R in
  V5-V6 and deep S in V1-V2, lateral ST depression and T inversion) and ``MI`` (an old inferior
  or anterior infarct: pathological Q waves and T inversion in II/III/aVF or V1-V4).

The label columns are the annotator's, not the truth: after the physiology is drawn, each
condition's label is flipped with the site's ``label_noise`` (a false-negative rate among true
positives and a false-positive rate among true negatives, per condition); a false positive that
would break a mutual exclusion below is dropped. The signal follows the true condition, kept in
the ``true_<condition>`` columns.

RBBB and LBBB are mutually exclusive, and so are the rhythms AF, SB and ST. Conduction disease
and AF grow more frequent with age, RBBB and MI with male sex; the risk factors are rescaled so
that the expected prevalence over a generated set equals the site's configured prevalence.
Conduction disease, LVH, MI and morphology (axis, amplitudes, T-wave shape, intervals) belong to
the patient, so records of one patient resemble each other; rhythm is drawn per record, and so
is annotation noise. ``prevalence`` sets the true conditions; the labels' observed prevalence is
``p * (1 - fnr) + (1 - p) * fpr``, within 0.7 percentage points of ``p`` for the built-in sites.

The in-distribution site ``"code"`` uses CODE-like but enriched prevalences (4-8 % per label,
against ~1.5-2.6 % in CODE) so that small demo sets hold enough positives; the OOD sites shift
noise, baseline wander, amplitude, filtering, population, prevalence, ectopy and annotation
noise (each OOD site's annotators are less reliable than CODE's).
"""

import functools
from pathlib import Path

from ecgscale import __version__
from ecgscale.data.synthetic.generator import EXTRA_COLUMNS, generate
from ecgscale.data.synthetic.sites import CONDITIONS, SITES, SiteProfile
from ecgscale.digest import files_digest

__all__ = ["CONDITIONS", "EXTRA_COLUMNS", "SITES", "SiteProfile", "generate", "generator_code"]


@functools.cache
def generator_code() -> str:
    """This generator's code, ``<ecgscale version>+<digest of its modules>``: a store records
    it beside the synthetic records it holds (:meth:`ecgscale.data.store.Store.made_by`)."""
    folder = Path(__file__).parent
    return f"{__version__}+{files_digest(folder, folder.glob('*.py'))}"
