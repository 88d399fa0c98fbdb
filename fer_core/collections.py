"""Collections: several imported datasets, each with its own recipe, merged onto one taxonomy into one dataset.

A collection is defined in ``cache/collections/<name>.yaml``::

    format: fer-collection/1
    name: fer-ck
    members:                       # in order of preference: a copy found in two members is kept from the first
      - {dataset: fer2013}                       # recipe: the member's data-derived default
      - {dataset: ckplus, recipe: strict}        # a saved recipe of the member, a recipe file, or "raw"
    contempt: drop                 # keep (its own class), drop (listed as rejected), or a label to map it to
    size: 48                       # the model's input: size × size …
    color: gray                    # … grayscale (what the compact models read)

and **built** (:func:`build`) into an ordinary dataset of the same name under ``cache/datasets/<name>/``: for each
member, ``Workspace(member).decide(recipe)`` (with the person's overrides, and the member's stored subject split)
gives the kept images per split; each is decoded once (the member's cached pixel array, ``train.data.pixels``,
decoded in parallel with progress and cancel) and written as a ``size``×``size`` gray PNG
``<member>/<split>/<label>/<member id>.png``, with an ``index.csv`` that the ``collection`` reader
(:mod:`fer_core.sources.collection`) turns into the catalog (``usage`` = the member, so counts per source × split ×
label come from the catalog). The import goes through :func:`fer_core.datasets.import_dataset`: atomic, locked,
and ``scan``, ``decide``, ``export``, ``train`` and ``ab`` take the collection like any dataset.

**Across members**, before anything is written: the same picture in two members (FER+ and FER2013) is kept once.
Where two members are linked (:mod:`fer_core.links`) the link's verified pairs say which; otherwise the members'
48×48 pixels are matched the link's way (nearest 16×16 thumbnails, verified: mean difference ≤ 3 grey levels). Of
two copies the one in the later split (test over val over train) is kept, so no training copy of any member's
test image is ever left; in the same split the copy of the member listed first. Every image left out is listed in
the collection's rejected table with the reason (contempt dropped, a copy of which image, a label outside the
taxonomy): nothing is lost silently. Copies *within* a member are its own recipe's business; near copies the pixels
test misses are then found by the ordinary duplicates scan of the collection.

The build record (``cache/collections/<name>.build.json``) names each member's catalog hash, recipe fingerprint,
signal tables, overrides and split assignment; :func:`status` compares them with today's and says what is stale
("member 'ckplus' was re-imported — rebuild"). A deleted member is a clear error naming it.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fer_core import datasets, locks
from fer_core.errors import DatasetError, InvalidInput
from fer_core.fsutil import atomic_write_json, atomic_write_text
from fer_core.progress import CancelToken, ProgressFn, check_cancel, emit
from fer_core.sources.labels import CANONICAL
from fer_core.store_paths import check_name, collections_root

FORMAT = "fer-collection/1"
SPEC = "collection"
INDEX = "index.csv"
INDEX_COLUMNS = ["path", "member", "member_id", "split", "label", "label_member", "problem"]
SPLIT_RANK = {"train": 0, "val": 1, "test": 2}
RECIPE_DEFAULT, RECIPE_RAW = "default", "raw"
MATCH_SIZE = 48      # copies are matched on 48×48 pixels (the links' threshold is measured there)


# ---- the definition ----------------------------------------------------------------------------------------

class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _MemberSchema(_Schema):
    dataset: str
    recipe: str | None = None


class _CollectionSchema(_Schema):
    format: str = FORMAT
    name: str
    members: list[_MemberSchema] = Field(min_length=1)
    contempt: str = "keep"
    size: int = Field(48, ge=16, le=256)
    color: Literal["gray"] = "gray"
    notes: str | None = None


def _path(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def _problem(e: dict) -> str:
    loc, t, v = tuple(e["loc"]), e["type"], e.get("input")
    path = _path(loc)
    if t == "extra_forbidden":
        allowed = list((_MemberSchema if len(loc) > 1 and loc[0] == "members" else _CollectionSchema).model_fields)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown key '{path}'{hint}; allowed there: {', '.join(allowed)}"
    if t == "missing":
        return f"{path} is missing"
    if t in ("string_type",):
        return f"{path} must be text, not {v!r}"
    if t in ("int_type", "int_from_float"):
        return f"{path} must be a whole number, not {v!r}"
    if t in ("greater_than_equal", "less_than_equal"):
        return f"{path} must be between 16 and 256, not {v!r}"
    if t == "literal_error":
        return f"{path} must be gray (the compact models read grayscale), not {v!r}"
    if t == "list_type":
        return f"{path} must be a list of members ({{dataset: NAME, recipe: R}}), not {v!r}"
    if t == "too_short":
        return f"{path} must name at least one member"
    if t in ("model_type", "dict_type"):
        return f"{path} must be a mapping such as {{dataset: fer2013, recipe: default}}, not {v!r}"
    return f"{path}: {e['msg']}, not {v!r}"


@dataclass(frozen=True)
class Member:
    dataset: str
    recipe: str | None = None     # None / "default": the data-derived default; "raw": every image; else a saved
                                  # recipe of the member (by name) or a recipe file (a path)

    @property
    def recipe_text(self) -> str:
        return self.recipe or RECIPE_DEFAULT


@dataclass(frozen=True)
class Collection:
    name: str
    members: tuple[Member, ...]
    contempt: str = "keep"
    size: int = 48
    color: str = "gray"
    notes: str = ""

    def to_dict(self) -> dict:
        d = {"format": FORMAT, "name": self.name,
             "members": [{"dataset": m.dataset, **({"recipe": m.recipe} if m.recipe else {})} for m in self.members],
             "contempt": self.contempt, "size": self.size, "color": self.color}
        if self.notes:
            d["notes"] = self.notes
        return d

    def fingerprint(self) -> str:
        return hashlib.blake2b(json.dumps(self.to_dict(), sort_keys=True).encode(), digest_size=8).hexdigest()

    @property
    def member_names(self) -> list[str]:
        return [m.dataset for m in self.members]

    @classmethod
    def from_dict(cls, d, source: str | None = None) -> "Collection":
        """Validated: one sentence per problem, naming the key, what is allowed and the closest valid key."""
        where = f"Collection '{source}'" if source else "The collection"
        hint = ("Fix the file, or write it again: `python -m fer_core collection create NAME --members a,b "
                "[--recipe MEMBER=R.yaml] [--contempt keep|drop|LABEL]`.")
        if not isinstance(d, dict):
            raise InvalidInput(f"{where} must be a mapping (name, members, contempt, size, color), not {d!r}.", hint)
        if d.get("format", FORMAT) != FORMAT:
            raise InvalidInput(f"{where}: format {d.get('format')!r} is unknown.", f"This version reads {FORMAT}.")
        problems = []
        try:
            s = _CollectionSchema.model_validate(d)
        except ValidationError as exc:
            problems = [_problem(e) for e in exc.errors(include_url=False)]
            s = None
        if s is not None:
            for k, (label, value) in enumerate([("name", s.name)] + [(f"members[{i}].dataset", m.dataset)
                                                                     for i, m in enumerate(s.members)]):
                try:
                    check_name(value, "collection" if k == 0 else "dataset")
                except InvalidInput:
                    problems.append(f"{label} {value!r} is not a valid name (1–64 lower-case letters, digits, "
                                    "'-', '_' or '.')")
            names = [m.dataset for m in s.members]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                problems.append(f"members name {', '.join(twice)} twice (each dataset once, with one recipe)")
            if s.name in names:
                problems.append(f"the collection '{s.name}' cannot be its own member")
            choices = ["keep", "drop"] + [lab for lab in CANONICAL if lab != "contempt"]
            if s.contempt not in choices:
                close = difflib.get_close_matches(s.contempt, choices, n=1, cutoff=0.6)
                problems.append(f"contempt must be keep, drop or a label to map it to ({', '.join(choices[2:])}), "
                                f"not {s.contempt!r}" + (f" (did you mean '{close[0]}'?)" if close else ""))
        if problems:
            raise InvalidInput(f"{where}: " + "; ".join(problems[:6])
                               + (f" (and {len(problems) - 6} more)" if len(problems) > 6 else "") + ".", hint)
        return cls(s.name, tuple(Member(m.dataset, m.recipe if m.recipe not in (None, "", RECIPE_DEFAULT) else None)
                                 for m in s.members), s.contempt, s.size, s.color, s.notes or "")

    @classmethod
    def load(cls, path: str | Path) -> "Collection":
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise InvalidInput(f"Cannot read collection '{path}' ({exc.strerror}).", "Check the path.") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            raise InvalidInput(f"'{path.name}' is not valid YAML{where}.", "Fix the file at that line.") from None
        return cls.from_dict(data, path.name)

    def save(self, path: str | Path) -> Path:
        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))
        return Path(path)


def definition_path(name: str, cache=None) -> Path:
    return collections_root(cache) / f"{check_name(name, 'collection')}.yaml"


def record_path(name: str, cache=None) -> Path:
    return collections_root(cache) / f"{check_name(name, 'collection')}.build.json"


def list_collections(cache=None) -> list[str]:
    return sorted(p.stem for p in collections_root(cache).glob("*.yaml") if not p.name.startswith("."))


def load_definition(name: str, cache=None) -> Collection:
    p = definition_path(name, cache)
    if not p.exists():
        have = list_collections(cache)
        raise DatasetError(f"No collection named '{name}'.",
                           ("Known: " + ", ".join(have) + ". " if have else "")
                           + "Create one: `python -m fer_core collection create NAME --members a,b` (or the Datasets "
                           "page).")
    col = Collection.load(p)
    if col.name != name:
        raise InvalidInput(f"Collection file '{p.name}' names itself '{col.name}'.",
                           f"Set `name: {name}` in it (the file name is the collection's name).")
    return col


def check_target(name: str, cache=None) -> None:
    """A collection is built into the dataset of its name: never over an imported dataset that is no collection."""
    if datasets.exists(name, cache):
        spec = datasets.load(name, cache).meta.get("spec")
        if spec != SPEC:
            raise InvalidInput(f"'{name}' is an imported dataset ({spec}), not a collection: building would replace "
                               "its images.", "Choose another name for the collection.")


def save_definition(col: Collection, cache=None) -> Path:
    check_target(col.name, cache)
    return col.save(definition_path(col.name, cache))


def define(name: str, members: list[str] | str, recipes: dict[str, str] | None = None, contempt: str = "keep",
           size: int = 48, cache=None) -> Collection:
    """A validated collection from the CLI's or the page's values (``recipes``: member → saved recipe name, recipe
    file or "raw"; a relative file path is made absolute, so the definition does not depend on the working folder)."""
    if isinstance(members, str):
        members = [m.strip() for m in members.split(",") if m.strip()]
    recipes = dict(recipes or {})
    unknown = sorted(set(recipes) - set(members))
    if unknown:
        raise InvalidInput(f"--recipe names {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'} not "
                           f"among the members ({', '.join(members)}).",
                           "Write --recipe MEMBER=R.yaml for a member listed in --members.")
    out = []
    for m in members:
        r = recipes.get(m)
        if r and _is_file(r):
            r = str(Path(r).expanduser().resolve())
        out.append({"dataset": m, **({"recipe": r} if r else {})})
    return Collection.from_dict({"name": name, "members": out, "contempt": contempt, "size": size})


def parse_recipe_args(items: list[str] | None) -> dict[str, str]:
    """``["ckplus=strict.yaml", …]`` → {"ckplus": "strict.yaml"}."""
    out = {}
    for it in items or []:
        member, sep, rec = it.partition("=")
        if not sep or not member.strip() or not rec.strip():
            raise InvalidInput(f"--recipe {it!r} is not MEMBER=RECIPE.",
                               "For example --recipe ckplus=strict.yaml (a file), --recipe ckplus=strict (a saved "
                               "recipe of ckplus) or --recipe ckplus=raw (every image).")
        out[member.strip()] = rec.strip()
    return out


def _is_file(r: str) -> bool:
    p = Path(r)
    return p.suffix in (".yaml", ".yml", ".json") or len(p.parts) > 1


# ---- one member's share --------------------------------------------------------------------------------------

def _stamp(name: str, cache=None) -> dict:
    from fer_core import store

    return {f: s.get("finished") for f, s in store.family_status(name, cache).items() if s["complete"]}


def _split_created(ds) -> str | None:
    from fer_core import splits

    doc = splits.load(ds)
    return None if doc is None or doc["stale"] else doc.get("created")


def _member_recipe(ds, m: Member, inputs, cache=None):
    from fer_core import recipe as recipe_mod

    r = m.recipe
    if r is None:
        return recipe_mod.default_recipe(inputs.signals, name=f"{m.dataset}-default")
    if _is_file(r):
        if not Path(r).exists():
            raise DatasetError(f"The recipe file of member '{m.dataset}' is gone: {r}.",
                               f"Put it back, or give another: `python -m fer_core collection create ... --recipe "
                               f"{m.dataset}=R.yaml` (or `{m.dataset}=default`).")
        return recipe_mod.Recipe.load(r)
    p = ds.paths.recipes / f"{check_name(r, 'recipe')}.yaml"
    if not p.exists():
        from fer_core import drafts

        saved = drafts.list_recipes(m.dataset, cache)
        raise DatasetError(f"Member '{m.dataset}' has no saved recipe '{r}'.",
                           (f"Its saved recipes: {', '.join(saved)}. " if saved else "It has no saved recipe. ")
                           + "Use one of them, a recipe file (R.yaml), default or raw.")
    return recipe_mod.Recipe.load(p)


def member_share(m: Member, cache=None, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None) -> tuple[pd.DataFrame, dict]:
    """What member ``m`` brings: one row per image (id, path, split, label = its final label, keep) sorted by id, and
    what it was decided with (catalog hash, recipe and its fingerprint, signal tables, overrides, split). The
    member's quality and duplicate signals are computed first when its recipe needs them and they are missing."""
    from fer_core import decisions, review, splits, staleness, store

    ds = datasets.load(m.dataset, cache)
    info = {"dataset": m.dataset, "recipe": m.recipe_text, "catalog_hash": ds.meta.get("catalog_hash"),
            "split_assignment": _split_created(ds), "scanned_now": False}
    if m.recipe == RECIPE_RAW:
        cat = splits.apply(ds, ds.catalog.sort_values("id").reset_index(drop=True))
        frame = pd.DataFrame({"id": cat["id"].to_numpy(), "path": cat["path"].to_numpy(),
                              "split": cat["split"].to_numpy(), "label": cat["label"].to_numpy(), "keep": True})
        info.update(recipe_name="raw (every image)", recipe_fingerprint=RECIPE_RAW, recipe_dict=None, signals={},
                    overrides_seq=0)
        return frame, info
    st = store.family_status(m.dataset, cache)
    if not (st["quality"]["complete"] and st["duplicates"]["complete"]):
        emit(progress, "collection", 0, None, "", message=f"scanning {m.dataset} (quality + duplicates)")
        store.scan(m.dataset, cache=cache, progress=progress, cancel=cancel)
        info["scanned_now"] = True
    inputs = decisions.load_inputs(m.dataset, cache)
    rec = _member_recipe(ds, m, inputs, cache)
    dec = decisions.run(inputs, rec, review.store_for(ds).overrides())   # what Workspace.decide does
    s = inputs.signals
    frame = pd.DataFrame({"id": s["id"].to_numpy(), "path": s["path"].to_numpy(), "split": s["split"].to_numpy(),
                          "label": dec["label_final"].to_numpy(), "keep": dec["keep"].to_numpy(bool)})
    info.update(recipe_name=rec.name, recipe_fingerprint=rec.fingerprint(), recipe_dict=rec.to_dict(),
                signals=dict(s.attrs.get("signal_stamp") or _stamp(m.dataset, cache)),
                overrides_seq=staleness.last_override_event(ds))
    return frame, info


# ---- copies across members -----------------------------------------------------------------------------------

def copy_pairs(a: str, b: str, ids_a: np.ndarray, px_a: np.ndarray, ids_b: np.ndarray, px_b: np.ndarray,
               cache=None, cancel: CancelToken | None = None) -> tuple[pd.DataFrame, str]:
    """Rows ``a_id, b_id`` of the pictures ``a`` and ``b`` both hold (among the images given), and how they were
    found: "link" (the stored link between them, when it is current) or "pixels" (matched here the link's way)."""
    from fer_core import links

    if links.status(a, b, cache)["state"] == "ok":
        t = links.load(a, b, cache)
        t = t[t[f"{a}_id"].isin(ids_a) & t[f"{b}_id"].isin(ids_b)]
        return pd.DataFrame({"a_id": t[f"{a}_id"].to_numpy(), "b_id": t[f"{b}_id"].to_numpy()}), "link"
    if len(ids_a) == 0 or len(ids_b) == 0:
        return pd.DataFrame({"a_id": [], "b_id": []}, dtype=object), "pixels"
    m = links.match(px_b, px_a, cancel=cancel)            # each later image looks for its copies in the earlier
    return pd.DataFrame({"a_id": ids_a[m["b"].to_numpy()], "b_id": ids_b[m["a"].to_numpy()]}), "pixels"


def resolve_copies(split_a: np.ndarray, split_b: np.ndarray) -> np.ndarray:
    """For pairs of copies (``a`` from the member listed first): True where ``a``'s copy is dropped. The copy in the
    later split (test > val > train) stays, so no training copy of a test image is left; same split: ``a``'s."""
    ra = np.array([SPLIT_RANK.get(s, 0) for s in split_a], int)
    rb = np.array([SPLIT_RANK.get(s, 0) for s in split_b], int)
    return rb > ra


# ---- the build ------------------------------------------------------------------------------------------------

@dataclass
class BuildResult:
    name: str
    record: dict
    changed: bool
    seconds: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        r = self.record
        per = ", ".join(f"{m['dataset']} {m['included']:,} of {m['images']:,}" for m in r["members"])
        cp = r["copies"]
        out = (f"{self.name}: {r['images']:,} images from {len(r['members'])} members ({per}); "
               f"{cp['dropped']:,} cross-member copies left out ({cp['through_link']:,} through a link, "
               f"{cp['by_pixels']:,} by pixels); {self.seconds:.1f} s"
               + ("" if self.changed else " (unchanged: identical rebuild)"))
        return out


def _label_in(label: str, contempt: str) -> tuple[str | None, str]:
    """(collection label, problem) of a member's final label."""
    if label not in CANONICAL:
        return None, f"label '{label}' is outside the taxonomy ({', '.join(CANONICAL)})"
    if label == "contempt":
        if contempt == "drop":
            return None, "contempt dropped (the collection's choice: contempt: drop)"
        if contempt != "keep":
            return contempt, ""
    return label, ""


def _counts(cat: pd.DataFrame) -> dict:
    """{source: {split: {label: n}}} of a collection's catalog (``usage`` = the member)."""
    out: dict = {}
    for (src, sp, lab), n in cat.groupby(["usage", "split", "label"]).size().items():
        out.setdefault(src, {}).setdefault(sp, {})[lab] = int(n)
    return out


def build(name: str, cache=None, progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> BuildResult:
    """Build (or rebuild) collection ``name`` into the dataset of that name; atomic (an earlier build stays until the
    new one is complete), under the collection's writer lock."""
    t0 = time.time()
    col = load_definition(name, cache)
    check_target(name, cache)
    gone = [m for m in col.member_names if not datasets.exists(m, cache)]
    if gone:
        raise DatasetError(f"Collection '{name}': member{'s' if len(gone) > 1 else ''} {', '.join(repr(g) for g in gone)}"
                           f" {'are' if len(gone) > 1 else 'is'} not imported (deleted or never imported).",
                           "Import it again under the same name, or remove it from the collection: `python -m fer_core "
                           f"collection create {name} --members {','.join(m for m in col.member_names if m not in gone)}`.")
    from fer_core.train.data import pixels

    with locks.dataset_lock(name, "collection build", cache, progress=progress, cancel=cancel):
        home = datasets.dataset_dir(name, cache)
        for old in home.glob(".collection-build-*"):      # left by a killed build; we hold the lock
            shutil.rmtree(old, ignore_errors=True)
        n_steps = 2 * len(col.members) + 2
        shares, infos, px = [], [], {}
        for i, m in enumerate(col.members):
            check_cancel(cancel)
            emit(progress, "collection", i, n_steps, "steps", message=f"deciding {m.dataset} ({m.recipe_text})")
            frame, info = member_share(m, cache, progress, cancel)
            lab, prob = zip(*(_label_in(x, col.contempt) for x in frame["label"])) if len(frame) else ((), ())
            frame["label_member"] = frame["label"]
            frame["label"] = list(lab)
            frame["problem"] = list(prob)
            frame["in"] = frame["keep"].to_numpy() & (frame["problem"] == "").to_numpy()
            shares.append(frame)
            infos.append(info)
            emit(progress, "collection", len(col.members) + i, n_steps, "steps", message=f"decoding {m.dataset}")
            ds = datasets.load(m.dataset, cache)
            ids, arr = pixels(ds, col.size, progress, cancel)
            px[m.dataset] = (ids, arr, pixels(ds, MATCH_SIZE, progress, cancel)[1] if col.size != MATCH_SIZE else arr)
        # copies across members, first listed first
        emit(progress, "collection", 2 * len(col.members), n_steps, "steps", message="copies across members")
        pairs_report = []
        for i in range(len(col.members)):
            for j in range(i + 1, len(col.members)):
                check_cancel(cancel)
                a, b = col.member_names[i], col.member_names[j]
                fa, fb = shares[i], shares[j]
                ia, ib = np.flatnonzero(fa["in"].to_numpy()), np.flatnonzero(fb["in"].to_numpy())
                ida, idb = fa["id"].to_numpy()[ia], fb["id"].to_numpy()[ib]
                pa = px[a][2][np.searchsorted(px[a][0], ida)]
                pb = px[b][2][np.searchsorted(px[b][0], idb)]
                pairs, how = copy_pairs(a, b, ida, pa, idb, pb, cache, cancel)
                pos_a = pd.Series(np.arange(len(fa)), index=fa["id"].to_numpy())
                pos_b = pd.Series(np.arange(len(fb)), index=fb["id"].to_numpy())
                dropped = disagree = 0
                for x, y in zip(pos_a.reindex(pairs["a_id"]).to_numpy(), pos_b.reindex(pairs["b_id"]).to_numpy()):
                    if not (fa.at[x, "in"] and fb.at[y, "in"]):
                        continue          # one of the two is already out: no longer two copies
                    drop_a = bool(resolve_copies(np.array([fa.at[x, "split"]]), np.array([fb.at[y, "split"]]))[0])
                    (kf, kx, kname), (df, dx, dname) = (((fb, y, b), (fa, x, a)) if drop_a else ((fa, x, a), (fb, y, b)))
                    df.at[dx, "in"] = False
                    df.at[dx, "problem"] = (f"copy of {kname} image {kf.at[kx, 'id']} ({kf.at[kx, 'split']}, "
                                            f"{kf.at[kx, 'label']}), which the collection keeps (found "
                                            f"{'through the link' if how == 'link' else 'by pixels'})")
                    dropped += 1
                    disagree += kf.at[kx, "label"] != df.at[dx, "label"]
                pairs_report.append({"a": a, "b": b, "how": how, "pairs": int(len(pairs)), "dropped": dropped,
                                     "label_disagreements": int(disagree)})
        # write the PNGs and the index, then import them as the collection dataset
        emit(progress, "collection", 2 * len(col.members) + 1, n_steps, "steps", message="writing images")
        tmp = home / f".collection-build-{uuid.uuid4().hex[:8]}"
        try:
            rows = []
            total = int(sum(int(f["in"].sum()) for f in shares))
            done = 0
            made: set[Path] = set()
            emit(progress, "write", 0, total, "images")
            for m, frame in zip(col.members, shares):
                ids, arr, _ = px[m.dataset]
                pos = np.searchsorted(ids, frame["id"].to_numpy())
                for k, r in enumerate(frame.itertuples(index=False)):
                    lab_dir = r.label if r.label else r.label_member
                    rel = f"{m.dataset}/{r.split}/{lab_dir}/{r.id}.png"
                    if r.keep and not r.problem:
                        out = tmp / rel
                        if out.parent not in made:
                            out.parent.mkdir(parents=True, exist_ok=True)
                            made.add(out.parent)
                        ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr[pos[k]]))
                        with open(out, "wb") as fh:
                            fh.write(buf.tobytes())
                        done += 1
                        if done % 1000 == 0:
                            check_cancel(cancel)
                            emit(progress, "write", done, total, "images")
                    elif not r.keep:
                        continue  # the member's recipe rejected it: that decision lives with the member
                    rows.append((rel, m.dataset, r.id, r.split, r.label or "", r.label_member,
                                 r.problem if not (r.keep and not r.problem) else ""))
            emit(progress, "write", total, total, "images")
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(INDEX_COLUMNS)
            w.writerows(rows)
            (tmp / INDEX).write_text(buf.getvalue())
            info_src = {"kind": "collection", "path": str(definition_path(name, cache)), "collection": name,
                        "definition_fingerprint": col.fingerprint(), "contempt": col.contempt, "size": col.size,
                        "color": col.color,
                        "members": [{k: inf[k] for k in ("dataset", "recipe", "recipe_fingerprint", "catalog_hash")}
                                    for inf in infos]}
            res = datasets.import_dataset(tmp, name, spec=SPEC, progress=progress, cancel=cancel,
                                          source_info=info_src, cache=cache)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        cat = res.dataset.catalog
        _link_members(name, cat, cache)
        notes = _notes(col, shares, infos)
        members = []
        for m, frame, inf in zip(col.members, shares, infos):
            prob = frame["problem"].to_numpy()[frame["keep"].to_numpy(bool)]   # of the images the recipe kept
            members.append({**inf, "images": int(len(frame)), "kept_by_recipe": int(frame["keep"].sum()),
                            "included": int((cat["usage"] == m.dataset).sum()),
                            "contempt_dropped": int(sum(str(p).startswith("contempt dropped") for p in prob)),
                            "outside_taxonomy": int(sum(str(p).startswith("label '") for p in prob)),
                            "copies_dropped": int(sum(str(p).startswith("copy of") for p in prob))})
        record = {"format": FORMAT, "name": name, "definition": col.to_dict(),
                  "definition_fingerprint": col.fingerprint(), "catalog_hash": res.dataset.meta["catalog_hash"],
                  "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(time.time() - t0, 2),
                  "images": int(len(cat)), "rejected": int(len(res.dataset.rejected)), "members": members,
                  "copies": {"pairs": pairs_report, "dropped": int(sum(p["dropped"] for p in pairs_report)),
                             "through_link": int(sum(p["dropped"] for p in pairs_report if p["how"] == "link")),
                             "by_pixels": int(sum(p["dropped"] for p in pairs_report if p["how"] == "pixels"))},
                  "counts": _counts(cat), "notes": notes}
        atomic_write_json(record_path(name, cache), record)
        emit(progress, "collection", n_steps, n_steps, "steps", message="done")
        return BuildResult(name, record, res.changed, time.time() - t0, notes)


def _link_members(name: str, cat: pd.DataFrame, cache=None) -> None:
    """Each member linked to the collection image by image (from the index: the build knows which member image
    each collection image is), so a model trained on the collection is evaluated on a member's test split with
    the leakage-aware figure (fer_core.train.yardstick, through links)."""
    from fer_core import links

    ds = datasets.load(name, cache)
    idx = pd.read_csv(ds.images / INDEX, dtype=str, keep_default_na=False)
    idx = idx[idx["problem"] == ""].merge(cat[["id", "path"]], on="path", how="inner")
    for member, rows in idx.groupby("member"):
        links.write_pairs(name, member, pd.DataFrame({f"{name}_id": rows["id"].to_numpy(),
                                                      f"{member}_id": rows["member_id"].to_numpy()}),
                          how="collection index", cache=cache)


def _notes(col: Collection, shares: list[pd.DataFrame], infos: list[dict]) -> list[str]:
    """What the person should know about the merged taxonomy and the members' splits."""
    notes = []
    have = {m.dataset: set(f.loc[f["in"], "label"]) for m, f in zip(col.members, shares) if f["in"].any()}
    every = set.union(*have.values()) if have else set()
    for lab in sorted(every):
        missing = [n for n, s in have.items() if lab not in s]
        if missing and len(have) > 1:
            notes.append(f"label '{lab}' is not in {', '.join(missing)} (it comes from "
                         f"{', '.join(n for n in have if n not in missing)} only)")
    for m, f in zip(col.members, shares):
        if not f["in"].any():
            notes.append(f"{m.dataset} brings no image: its recipe, the contempt choice or copies of earlier "
                         "members' images left every one out (list it first to keep its copies instead)")
        elif not (f["split"] == "test").any():
            notes.append(f"{m.dataset} has no test split (every image is in train): split it first "
                         f"(`python -m fer_core split {m.dataset} --by subject`) to be evaluated on it")
    for inf in infos:
        if inf.get("scanned_now"):
            notes.append(f"{inf['dataset']} was scanned first (quality + duplicates) for its recipe")
    return notes


# ---- state ---------------------------------------------------------------------------------------------------

def _member_changes(inf: dict, cache=None) -> list[str]:
    name = inf["dataset"]
    if not datasets.exists(name, cache):
        return [f"member '{name}' was deleted (import it again, or remove it from the collection)"]
    ds = datasets.load(name, cache)
    if ds.meta.get("catalog_hash") != inf.get("catalog_hash"):
        return [f"member '{name}' was re-imported"]
    out = []
    r = inf.get("recipe")
    if r not in (RECIPE_DEFAULT, RECIPE_RAW, None):
        p = Path(r) if _is_file(r) else ds.paths.recipes / f"{r}.yaml"
        if not p.exists():
            out.append(f"the recipe of '{name}' ({r}) is gone")
        else:
            from fer_core import recipe as recipe_mod
            try:
                if recipe_mod.Recipe.load(p).fingerprint() != inf.get("recipe_fingerprint"):
                    out.append(f"the recipe of '{name}' ({r}) changed")
            except InvalidInput:
                out.append(f"the recipe of '{name}' ({r}) is no longer valid")
    if r != RECIPE_RAW:
        from fer_core import staleness

        if _stamp(name, cache) != inf.get("signals"):
            out.append(f"the signals of '{name}' were recomputed")
        if staleness.last_override_event(ds) != inf.get("overrides_seq"):
            out.append(f"the overrides of '{name}' changed")
    if _split_created(ds) != inf.get("split_assignment"):
        out.append(f"the split assignment of '{name}' changed")
    return out


def status(name: str, cache=None) -> dict:
    """The definition, whether it is built and up to date (``stale``: the reasons), the members as built, the counts
    per source × split × label, the notes. Reads no image and no signal table."""
    col = load_definition(name, cache)
    rec_p = record_path(name, cache)
    record = json.loads(rec_p.read_text()) if rec_p.exists() else None
    out = {"name": name, "definition": col.to_dict(), "built": False, "stale": [], "record": record}
    if record is None or not datasets.exists(name, cache):
        out["stale"] = ["not built yet"] if record is None else ["the collection's dataset was deleted"]
        return out
    out["built"] = True
    if datasets.load(name, cache).meta.get("catalog_hash") != record.get("catalog_hash"):
        out["stale"].append("the collection's dataset was replaced outside a build")
    if record.get("definition_fingerprint") != col.fingerprint():
        out["stale"].append("the definition changed")
    for inf in record["members"]:
        out["stale"] += _member_changes(inf, cache)
    return out


def format_status(st: dict) -> str:
    d = st["definition"]
    rec = st["record"]
    lines = [f"{st['name']}: members " + ", ".join(f"{m['dataset']} (recipe: {m.get('recipe', RECIPE_DEFAULT)})"
                                                   for m in d["members"])
             + f"; contempt: {d['contempt']}; {d['size']}×{d['size']} {d['color']}"]
    if st["stale"]:
        lines.append("STALE: " + "; ".join(st["stale"]) + f" — rebuild: python -m fer_core collection build {st['name']}")
    if rec is None:
        return "\n".join(lines)
    lines.append(f"built {rec['built']} in {rec['seconds']:.1f} s: {rec['images']:,} images"
                 + ("" if st["stale"] else " (up to date)") + f", {rec['rejected']:,} listed as left out")
    for m in rec["members"]:
        lines.append(f"  {m['dataset']:14s} recipe {m['recipe_name']} [{m['recipe_fingerprint']}]: {m['images']:,} "
                     f"images, {m['kept_by_recipe']:,} kept by the recipe, {m['included']:,} in the collection "
                     f"({m['copies_dropped']:,} cross-member copies, {m['contempt_dropped']:,} contempt, "
                     f"{m['outside_taxonomy']:,} outside the taxonomy left out)")
    for p in rec["copies"]["pairs"]:
        lines.append(f"  copies {p['a']} ↔ {p['b']} ({'through the link' if p['how'] == 'link' else 'by pixels'}): "
                     f"{p['pairs']:,} pairs, {p['dropped']:,} left out, {p['label_disagreements']:,} with another label")
    labels = [lab for lab in CANONICAL if any(lab in row for s in rec["counts"].values() for row in s.values())]
    lines.append("  source         split  " + " ".join(f"{lab[:8]:>8s}" for lab in labels) + "    total")
    for src, by_split in rec["counts"].items():
        for sp in ("train", "val", "test"):
            if sp in by_split:
                row = by_split[sp]
                lines.append(f"  {src:14s} {sp:6s} " + " ".join(f"{row.get(lab, 0):8,d}" for lab in labels)
                             + f" {sum(row.values()):8,d}")
    for n in rec.get("notes", []):
        lines.append(f"  note: {n}")
    return "\n".join(lines)


def counts_frame(record: dict) -> pd.DataFrame:
    """The record's counts as a table: one row per source × split, one column per label, and the total."""
    rows = []
    for src, by_split in record["counts"].items():
        for sp in ("train", "val", "test"):
            if sp in by_split:
                rows.append({"source": src, "split": sp, **by_split[sp]})
    t = pd.DataFrame(rows)
    if t.empty:
        return t
    labels = [lab for lab in CANONICAL if lab in t.columns]
    t = t[["source", "split"] + labels].fillna(0)
    t[labels] = t[labels].astype(int)
    t["total"] = t[labels].sum(axis=1)
    return t


def manifest_block(ds) -> dict | None:
    """For an export of a collection: its members, their recipes and the counts per source × split × label."""
    if ds.meta.get("spec") != SPEC:
        return None
    p = record_path(ds.name, ds.home.parent.parent)
    if not p.exists():
        return None
    rec = json.loads(p.read_text())
    if rec.get("catalog_hash") != ds.meta.get("catalog_hash"):
        return None
    return {"definition": rec["definition"], "counts": rec["counts"], "copies": rec["copies"],
            "members": [{k: m.get(k) for k in ("dataset", "recipe", "recipe_name", "recipe_fingerprint", "recipe_dict",
                                               "catalog_hash", "images", "kept_by_recipe", "included")}
                        for m in rec["members"]]}


def create(name: str, members, recipes: dict[str, str] | None = None, contempt: str = "keep", size: int = 48,
           cache=None, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
           build_now: bool = True) -> tuple[Collection, BuildResult | None]:
    """Write the definition (validated) and build it."""
    col = define(name, members, recipes, contempt, size, cache)
    save_definition(col, cache)
    return col, (build(name, cache, progress, cancel) if build_now else None)


def originals(ds, cache=None) -> dict[str, Path] | None:
    """For an export of a collection: each collection image's original file in its member (the export keeps the
    originals; the collection itself holds the model's 48×48 input). None for an ordinary dataset. A stale
    collection is refused: a re-imported member's files may no longer be the images that were decided on."""
    if ds.meta.get("spec") != SPEC:
        return None
    st = status(ds.name, cache)
    if st["stale"]:
        raise DatasetError(f"Collection '{ds.name}' is stale ({'; '.join(st['stale'])}): its members' original "
                           "images cannot be exported as decided.",
                           f"Rebuild it first: `python -m fer_core collection build {ds.name}`.")
    idx = pd.read_csv(ds.images / INDEX, dtype=str, keep_default_na=False)
    idx = idx[idx["problem"] == ""]
    out: dict[str, Path] = {}
    for member, rows in idx.groupby("member"):
        mds = datasets.load(member, cache)
        paths = mds.catalog.set_index("id")["path"]
        for cpath, mid in zip(rows["path"], rows["member_id"]):
            if mid in paths.index:
                out[cpath] = mds.image_path(paths.at[mid])
    return out
