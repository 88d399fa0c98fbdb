"""Train/val/test splits where a dataset has none: stratified by label, grouped by subject, stored, changeable.

CK+ and JAFFE ship no split, and their images come from few people (CK+: 118 subjects, several sequences each,
three frames per sequence; JAFFE: 10 subjects). A random split puts one person on both sides and rewards a model
for recognising people. An assignment here keeps each *subject* on one side:

- ``by="subject"``: the subject is read from the file name (CK+ ``S<subject>_<sequence>_<frame>.png``, JAFFE
  the two initials of ``KA.AN1.39.tiff``); a name that breaks the pattern is listed in a clear error;
- ``by="none"``: no grouping (each image on its own; the person is told that people may then straddle splits);
- ``by="identity"``: identity clusters from the face embeddings (SFace; the aligned embedding where YuNet found
  landmarks, else the whole crop), for datasets that name no subjects (ExpW): average-linkage clustering of the
  cosine similarities, cut where the *average* similarity between two clusters falls below ``threshold``
  (default :data:`IDENTITY_THRESHOLD` = 0.363, SFace's published same-person threshold; shown to the person and
  changeable). Measured on the real CK+ where the subjects are known (118 subjects, 981 images): at 0.363, 92
  clusters, 98.5% of same-subject pairs in one cluster, 65% of the pairs a cluster joins are one subject, and a
  split by these clusters puts **0–2 of 118 subjects in two splits** (mean 1.4 over seeds 0–9; ungrouped: 94). Single linkage (connected
  components of the pairs above the threshold) chains all 981 images into one cluster at 0.363, and scikit-learn's
  kNN-connectivity-constrained average linkage (k = 10 or 30) into clusters of 312–912 images, so neither is used.
  Average linkage holds every pairwise distance (n²/2 doubles), so it runs on up to :data:`IDENTITY_MAX` images;
  an image without an embedding is its own group (counted and said).

The assignment is a deterministic greedy (for a seed): subjects, largest first with ties in a seeded random
order, each go to the split whose per-label target counts (``ratios`` × the label's images) it fits best (the
least squared shortfall, each label weighted by 1/its size so a small class counts as much as a large one).
scikit-learn's ``StratifiedGroupKFold`` runs the same kind of greedy but only for *equal* folds, so 0.8/0.1/0.1
would need ten folds and 0.7/0.2/0.1 another count, with no more folds than subjects; a direct greedy on the
target counts takes any ratios and is as deterministic.

It is stored beside the person's work (``DatasetPaths.split_assignment``), tied to the import it was made for,
and applied wherever the split is read for deciding and training (:func:`apply`: ``decisions.load_inputs``,
``train.data.assemble``). The catalog is never changed, so its hash, and every signal table, stay valid. A
dataset with an official split (FER2013's PublicTest/PrivateTest) is never re-split.

The subject parser also gives each image its *recording* (CK+: the sequence ``S010_004``; JAFFE: the photo
itself): two images of different recordings are never copies of one photograph unless pixel-identical
(:func:`recordings`, used by ``decisions.load_inputs``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from fer_core import datasets, locks
from fer_core.errors import DatasetError, InvalidInput
from fer_core.fsutil import atomic_write_json

SPLITS = ("train", "val", "test")
BY = ("subject", "identity", "none")
DEFAULT_RATIOS = (0.8, 0.1, 0.1)
IDENTITY_THRESHOLD = 0.363   # SFace's same-person cosine threshold (OpenCV's face recognizer documentation)
IDENTITY_MAX = 12_000        # average linkage keeps n²/2 float64 distances: 12,000 images ≈ 0.58 GB


@dataclass(frozen=True)
class NamePattern:
    regex: re.Pattern
    example: str
    subject: str      # format of the subject from the match groups
    recording: str    # format of the recording (one sequence / one photograph)


PATTERNS = {
    "ckplus": NamePattern(re.compile(r"^S(\d+)_(\d+)_(\d+)\.\w+$"), "S010_004_00000017.png", "S{0}", "S{0}_{1}"),
    "jaffe": NamePattern(re.compile(r"^([A-Z]{2})\.([A-Z]{2})(\d*)\.(\d+)(?:\.\w+)?$", re.IGNORECASE),
                         "KA.AN1.39.tiff", "{0}", "{0}.{1}{2}.{3}"),
}


def _spec(ds: datasets.Dataset) -> str:
    return ds.meta.get("spec", "")


def parse_subjects(spec: str, paths) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(subject, recording, bad names) per path for a dataset kind with a known file-name pattern; subject and
    recording are None where the name breaks it. Raises InvalidInput for a kind with no known pattern."""
    pat = PATTERNS.get(spec)
    if pat is None:
        raise InvalidInput(f"Subjects are not known for this kind of dataset ('{spec or 'folders'}').",
                           "Known: " + ", ".join(f"{k} ({p.example})" for k, p in PATTERNS.items())
                           + ". Split with --by none (people may then straddle splits).")
    subj = np.full(len(paths), None, dtype=object)
    rec = np.full(len(paths), None, dtype=object)
    bad = []
    for i, p in enumerate(paths):
        name = PurePosixPath(str(p)).name
        m = pat.regex.match(name)
        if m is None:
            bad.append(str(p))
            continue
        g = [x.upper() if x.isalpha() else x for x in m.groups()]
        subj[i], rec[i] = pat.subject.format(*g), pat.recording.format(*g)
    return subj, rec, bad


def recordings(ds: datasets.Dataset, ids: np.ndarray) -> np.ndarray | None:
    """The recording of each image ``ids`` (catalog ids), None where unknown; None when the dataset's kind
    names none (then only the pixels say which images are copies)."""
    if _spec(ds) not in PATTERNS:
        return None
    cat = ds.catalog.set_index("id")["path"]
    _, rec, _ = parse_subjects(_spec(ds), cat.reindex(ids).fillna("").to_numpy())
    return rec


# ---- the assignment ------------------------------------------------------------------------------------

def parse_ratios(text: str | tuple | list) -> tuple[float, float, float]:
    """"0.8,0.1,0.1" → (0.8, 0.1, 0.1): three shares for train, val, test; train > 0; they sum to 1."""
    try:
        vals = [float(x) for x in (text.split(",") if isinstance(text, str) else text)]
    except ValueError:
        vals = []
    if len(vals) != 3 or any(not np.isfinite(v) or v < 0 for v in vals) or vals[0] <= 0 \
            or abs(sum(vals) - 1) > 1e-6:
        raise InvalidInput(f"Split ratios {text!r} are not three shares (train, val, test) that sum to 1.",
                           "For example --ratios 0.8,0.1,0.1 (train must be above 0).")
    return tuple(vals)


def greedy_assign(groups: np.ndarray, labels: np.ndarray, ratios, seed: int) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) per image: whole groups, per-label counts near ``ratios``."""
    g_codes, g_uni = pd.factorize(pd.Series(groups, dtype=object), sort=True)
    l_codes, l_uni = pd.factorize(pd.Series(labels, dtype=object), sort=True)
    n_g, n_l = len(g_uni), len(l_uni)
    cnt = np.zeros((n_g, n_l))
    np.add.at(cnt, (g_codes, l_codes), 1)
    total = cnt.sum(0)
    ratios = np.asarray(ratios, float)
    target = ratios[:, None] * total[None, :]
    w = 1.0 / np.maximum(total, 1)
    cur = np.zeros((3, n_l))
    rng = np.random.default_rng(seed)
    tie = rng.permutation(n_g)
    order = np.lexsort((tie, -cnt.sum(1)))          # largest first; equal sizes in a seeded order
    out_g = np.zeros(n_g, np.int64)
    open_ = np.flatnonzero(ratios > 0)
    for g in order:
        c = cnt[g]
        # change of sum_l w_l (cur - target)^2 if the group joins each split
        delta = ((c * c + 2 * c * (cur[open_] - target[open_])) * w).sum(1)
        s = open_[int(np.argmin(delta))]
        cur[s] += c
        out_g[g] = s
    return out_g[g_codes]


def parse_threshold(value) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = float("nan")
    if not np.isfinite(t) or not 0 < t < 1:
        raise InvalidInput(f"The same-person threshold {value!r} is not a cosine similarity between 0 and 1.",
                           f"SFace's published threshold is {IDENTITY_THRESHOLD}; higher splits people more finely "
                           "(more risk that one person straddles two splits), lower joins more people.")
    return t


def cluster_identities(vectors: np.ndarray, threshold: float = IDENTITY_THRESHOLD) -> np.ndarray:
    """Cluster index per row of ``vectors`` (L2-normalised face embeddings; a row that is not finite or is zero is
    its own cluster): average linkage on cosine distance, cut at ``1 - threshold``."""
    from scipy.cluster.hierarchy import fcluster, linkage

    threshold = parse_threshold(threshold)
    v = np.asarray(vectors, np.float64)
    norm = np.linalg.norm(np.nan_to_num(v), axis=1)
    ok = np.all(np.isfinite(v), axis=1) & (norm > 0)
    out = np.empty(len(v), np.int64)
    idx = np.flatnonzero(ok)
    if len(idx) > IDENTITY_MAX:
        raise InvalidInput(f"Identity clusters are computed for up to {IDENTITY_MAX:,} faces (average linkage holds "
                           f"every pairwise distance); this dataset has {len(idx):,}.",
                           "Split with --by none (people may then straddle splits), or import a smaller part.")
    if len(idx) >= 2:
        x = v[idx] / norm[idx, None]
        z = linkage(x, method="average", metric="cosine")
        out[idx] = fcluster(z, t=1.0 - threshold, criterion="distance") - 1
    elif len(idx) == 1:
        out[idx] = 0
    start = int(out[idx].max()) + 1 if len(idx) else 0
    out[~ok] = start + np.arange(int((~ok).sum()))
    return out


def identity_groups(ds: datasets.Dataset, ids: np.ndarray, threshold: float = IDENTITY_THRESHOLD, cache=None
                    ) -> tuple[np.ndarray, dict]:
    """An identity cluster name per id (``ids`` sorted catalog ids) from the stored face embeddings, and what was
    found (threshold, clusters, largest, images without an embedding). Refused when the embeddings are missing
    or out of date."""
    from fer_core import embedmap, store

    st = store.family_status(ds.name, cache).get("embeddings", {})
    if not st.get("complete"):
        raise DatasetError(f"Splitting '{ds.name}' by identity needs its face embeddings, which are "
                           + ("out of date." if st.get("stale") else "not computed yet."),
                           f"Compute them first: `python -m fer_core scan {ds.name} --signals faces,embeddings` "
                           "(or the Embedding map page), then split again.")
    e_ids, e_vec = embedmap.vectors(ds.name, cache)      # aligned where YuNet found landmarks, else the crop; 0 = none
    v = e_vec[np.searchsorted(e_ids, ids)]
    threshold = parse_threshold(threshold)
    cl = cluster_identities(v, threshold)
    none = ~np.any(v != 0, axis=1)
    sizes = np.bincount(cl)
    info = {"threshold": threshold, "method": "average linkage of SFace face embeddings (cosine)",
            "clusters": int(len(np.unique(cl[~none]))), "largest": int(sizes.max()) if len(sizes) else 0,
            "single": int((sizes[cl[~none]] == 1).sum()), "without_embedding": int(none.sum())}
    names = np.array([f"identity-{c}" if not n else f"unembedded-{c}" for c, n in zip(cl, none)], dtype=object)
    return names, info


def assign(catalog: pd.DataFrame, spec: str, by: str = "subject", seed: int = 0,
           ratios=DEFAULT_RATIOS, identities: np.ndarray | None = None) -> pd.DataFrame:
    """The assignment of ``catalog``: id, split, subject (the identity cluster under ``by="identity"``, given as
    ``identities`` in the order of the catalog's sorted ids; None under ``by="none"``), sorted by id."""
    if by not in BY:
        raise InvalidInput(f"Unknown grouping '{by}'.", "Use --by subject, identity or none.")
    ratios = parse_ratios(ratios)
    cat = catalog.sort_values("id").reset_index(drop=True)
    if by == "identity":
        if identities is None or len(identities) != len(cat):
            raise InvalidInput("Grouping by identity needs an identity cluster for every image.",
                               "Use splits.make(..., by='identity'), which computes them from the face embeddings.")
        subj = groups = np.asarray(identities, dtype=object)
    elif by == "subject":
        subj, _, bad = parse_subjects(spec, cat["path"].to_numpy())
        if bad:
            show = ", ".join(bad[:10]) + (f" … ({len(bad) - 10} more)" if len(bad) > 10 else "")
            raise InvalidInput(f"{len(bad)} file name(s) do not follow {PATTERNS[spec].example}, so their subject "
                               f"is unknown: {show}.",
                               "Rename or remove them and import again, or split with --by none (people may then "
                               "straddle splits).")
        groups = subj
    else:
        subj = np.full(len(cat), None, dtype=object)
        groups = cat["id"].to_numpy()
    split = np.array(SPLITS, dtype=object)[greedy_assign(groups, cat["label"].to_numpy(), ratios, int(seed))]
    return pd.DataFrame({"id": cat["id"].to_numpy(), "split": split, "subject": subj})


def _check_splittable(ds: datasets.Dataset) -> None:
    official = ds.meta.get("has_official_split")
    splits = set(ds.catalog["split"].unique())
    if official or splits - {"train"}:
        have = ", ".join(f"{s} {int(n):,}" for s, n in ds.catalog["split"].value_counts().items())
        raise InvalidInput(f"'{ds.name}' has an official split ({have}); it is never overridden.",
                           "Official splits are what results are compared on. Split only datasets without one "
                           "(CK+, JAFFE, ExpW).")


@locks.writes_dataset("split assignment")
def make(name: str, by: str = "subject", seed: int = 0, ratios=DEFAULT_RATIOS, cache=None,
         progress=None, cancel=None, threshold: float | None = None) -> dict:
    """Assign, store (replacing an earlier assignment) and return :func:`describe` of it. ``threshold``: the
    same-person cosine of ``by="identity"`` (default :data:`IDENTITY_THRESHOLD`)."""
    ds = datasets.load(name, cache)
    _check_splittable(ds)
    if threshold is not None and by != "identity":
        raise InvalidInput("A same-person threshold only applies to --by identity.",
                           "Leave --threshold out, or split with --by identity.")
    ratios = parse_ratios(ratios)
    identities, info = None, None
    if by == "identity":
        identities, info = identity_groups(ds, np.sort(ds.catalog["id"].to_numpy()),
                                           IDENTITY_THRESHOLD if threshold is None else threshold, cache)
    a = assign(ds.catalog, _spec(ds), by, seed, ratios, identities)
    doc = {"by": by, "seed": int(seed), "ratios": list(ratios),
           "catalog_hash": ds.meta.get("catalog_hash"), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "split": dict(zip(a["id"], a["split"])),
           "subject": {} if by == "none" else dict(zip(a["id"], a["subject"]))}
    if info is not None:
        doc["identity"] = info
    atomic_write_json(ds.paths.split_assignment, doc)
    return describe(name, cache)


@locks.writes_dataset("split assignment")
def clear(name: str, cache=None, progress=None, cancel=None) -> bool:
    """Remove the stored assignment (every image back to the import's split); True if there was one."""
    p = datasets.load(name, cache).paths.split_assignment
    existed = p.exists()
    p.unlink(missing_ok=True)
    return existed


def load(ds: datasets.Dataset) -> dict | None:
    """The stored assignment (``stale``: made for another import, so not applied), or None."""
    p = ds.paths.split_assignment
    if not p.exists():
        return None
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"The split assignment of '{ds.name}' cannot be read ({exc}).",
                           f"Make it again: `python -m fer_core split {ds.name} --by subject`.") from exc
    doc["stale"] = doc.get("catalog_hash") != ds.meta.get("catalog_hash")
    return doc


def apply(ds: datasets.Dataset, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (with ``id`` and ``split``) with the stored assignment's split, when there is a current one;
    otherwise ``frame`` itself. The catalog on disk is never changed."""
    doc = load(ds)
    if doc is None or doc["stale"]:
        return frame
    new = frame["id"].map(doc["split"])
    if new.isna().any():          # an image the assignment does not know: the import changed under it
        return frame
    out = frame.copy()
    out["split"] = new.to_numpy(dtype=object)
    out.attrs.update(frame.attrs)
    out.attrs["split_assignment"] = {k: doc[k] for k in ("by", "seed", "ratios", "created")}
    return out


def describe(name: str, cache=None) -> dict | None:
    """What the stored assignment is: by, seed, ratios, stale, counts per split × label, subjects per split,
    subjects in two splits (0 by construction when grouped). None when there is none."""
    ds = datasets.load(name, cache)
    doc = load(ds)
    if doc is None:
        return None
    cat = ds.catalog
    sp = cat["id"].map(doc["split"])
    counts = pd.crosstab(sp, cat["label"]).reindex([s for s in SPLITS if s in set(sp.dropna())])
    out = {k: doc[k] for k in ("by", "seed", "ratios", "created", "stale")}
    out["identity"] = doc.get("identity")
    out["counts"] = {s: {str(k): int(v) for k, v in row.items()} for s, row in counts.iterrows()}
    subj = cat["id"].map(doc.get("subject") or {})
    if subj.notna().any():
        per = pd.DataFrame({"split": sp, "subject": subj}).dropna()
        out["subjects"] = {s: int(per.loc[per["split"] == s, "subject"].nunique()) for s in out["counts"]}
        out["subjects_in_two_splits"] = int((per.groupby("subject")["split"].nunique() > 1).sum())
    else:
        out["subjects"] = None
        out["subjects_in_two_splits"] = None
    return out


def format_description(name: str, d: dict | None) -> str:
    if d is None:
        return f"{name}: no split assignment (the import's own splits are used)."
    lines = [f"{name}: split by {d['by']}, seed {d['seed']}, ratios {'/'.join(f'{r:g}' for r in d['ratios'])}"
             + (" — STALE (made for another import; not applied: run split again)" if d["stale"] else "")]
    idn = d.get("identity")
    if idn:
        lines.append(f"  identity clusters: {idn['clusters']:,} at cosine ≥ {idn['threshold']:g} (average linkage of "
                     f"SFace embeddings; SFace's same-person threshold is {IDENTITY_THRESHOLD}), largest "
                     f"{idn['largest']:,} images, {idn['single']:,} images alone"
                     + (f", {idn['without_embedding']:,} without an embedding (each on its own)"
                        if idn["without_embedding"] else ""))
    labels = sorted({k for row in d["counts"].values() for k in row})
    lines.append("  split    " + " ".join(f"{k[:8]:>8s}" for k in labels) + "    total  "
                 + ("identities" if idn else "subjects"))
    for s, row in d["counts"].items():
        subj = "" if not d["subjects"] else f"{d['subjects'][s]:9,d}"
        lines.append(f"  {s:7s}  " + " ".join(f"{row.get(k, 0):8,d}" for k in labels)
                     + f" {sum(row.values()):8,d} {subj}")
    if d["subjects_in_two_splits"] is not None:
        lines.append(f"  {'identity clusters' if idn else 'subjects'} in two splits: {d['subjects_in_two_splits']}"
                     + (" (clusters are an estimate of who is who: one person split into two clusters can still "
                        "straddle)" if idn else ""))
    else:
        lines.append("  not grouped: the same person may appear in two splits")
    return "\n".join(lines)
