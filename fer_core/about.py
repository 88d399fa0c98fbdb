"""What a person should know about an imported dataset before training on it (the Datasets page's "About this
dataset"): licence, how well its layout is checked, splits, subjects, image size and colour, labels, crowd votes."""

from __future__ import annotations

from fer_core import datasets


def about(ds: datasets.Dataset) -> list[tuple[str, str]]:
    """What a person should know about an imported dataset before training on it, as (topic, text) rows:
    licence, how well the layout is checked, splits (official, assigned or none), subjects, image size and colour,
    labels and how they map onto the taxonomy, crowd votes."""
    from fer_core import splits
    from fer_core.sources.labels import CANONICAL

    spec, cat, meta = ds.spec, ds.catalog, ds.meta
    rows = [("licence", spec.licence or "see the dataset's own page"),
            ("layout", "checked on the real archive" if spec.verified == "archive"
             else "from public loaders, checked on fixtures only (not yet tried on a real copy)")]
    assigned = splits.load(ds)
    if meta.get("has_official_split"):
        sp = "official: " + ", ".join(f"{k} {v:,}" for k, v in meta.get("splits", {}).items())
    elif assigned:
        sp = f"none of its own; an assignment is stored (by {assigned.get('by')}, seed {assigned.get('seed')})"
    else:
        by = "subject" if spec.name in splits.PATTERNS else "none"
        sp = f"none: every image is 'train' — assign one before training (`split {ds.name} --by {by}`)"
    rows.append(("splits", sp))
    if spec.name in splits.PATTERNS:
        try:
            subj = splits.parse_subjects(spec.name, cat["path"])[0]
            rows.append(("subjects", f"known from the file names: {len(set(subj) - {None, ''}):,} subjects"))
        except Exception:  # noqa: BLE001  (a name that breaks the pattern: the split command lists it)
            rows.append(("subjects", "the file names should carry them, but some break the pattern (see `split`)"))
    else:
        rows.append(("subjects", "not known (no subject ids in this layout); a split cannot keep people apart"))
    sizes = (cat["width"].astype(str) + "×" + cat["height"].astype(str)).value_counts()
    size = sizes.index[0] if len(sizes) == 1 else f"{len(sizes):,} sizes, most often {sizes.index[0]}"
    colour = {1: "grey", 3: "colour", 4: "colour + alpha"}
    ch = cat["channels"].value_counts()
    rows.append(("images", f"{size}, " + ", ".join(f"{colour.get(int(c), c)} {n:,}" for c, n in ch.items())))
    labs = sorted(set(cat["label"].dropna()), key=lambda x: CANONICAL.index(x) if x in CANONICAL else 99)
    orig = cat.groupby("label")["label_orig"].agg(lambda s: ", ".join(sorted(set(map(str, s)))[:3]))
    rows.append(("labels", "; ".join(f"{lab} ← {orig.get(lab, '?')}" for lab in labs)
                 + ("" if "contempt" not in labs else " (contempt: not in FER2013's seven)")))
    if (ds.paths.signals / "votes").exists():
        rows.append(("crowd votes", "stored (votes signals): labels from the crowd majority" if spec.name == "ferplus"
                     else "stored (votes signals, e.g. through a link to FER+)"))
    return rows
