"""``<model>.onnx.json``: what an exported ONNX file is, checked by every runtime when it loads the model.

Like Autoware's ``*.param.json`` shipped with a model (version-checked at load), the sidecar travels with the ONNX
file and states: the model config it was exported from, the input/output names, shapes and dtypes, the opset, the
ONNX precision (``fp32``, or ``int8`` for a quantised graph, which also records how it was quantised and calibrated
in ``quantization``), the measured parity with PyTorch, the ONNX file's sha256 and the dima version. At load a runtime
checks the format version and the hash (a re-exported ONNX with an old sidecar, or a file truncated by an
interrupted copy, is refused with the reason instead of producing wrong trajectories) and then compares the
runtime's own view of the graph against the recorded interface.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dima_core.export.io_spec import TensorSpec
from dima_core.export.precision import ONNX_PRECISIONS

FORMAT_NAME = "dima-onnx-sidecar"
FORMAT_VERSION = 1


class SidecarError(ValueError):
    """The sidecar is missing, unreadable, of another format version, or does not match its ONNX file/runtime."""


def sidecar_path(onnx_path: str | os.PathLike[str]) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    p = Path(onnx_path)
    return p.with_name(p.name + ".json")


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (ONNX files can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ModelSidecar:
    """Parsed sidecar; :meth:`to_dict` is the JSON written next to the ONNX file."""

    onnx_file: str
    onnx_sha256: str
    opset: int
    precision: str  # the precision *in the ONNX graph*: fp32, int8 (QDQ, quantised) or fp16 (TensorRT >= 11 reads it)
    with_beam: bool
    model_name: str
    model_config: dict[str, Any]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dima_version: str
    parity: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    # int8 only: quantiser, format, per-channel, activation/weight types, calibration data and frames, fp32 source
    quantization: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # tool versions, export time: informational only

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "dima_version": self.dima_version,
            "onnx_file": self.onnx_file,
            "onnx_sha256": self.onnx_sha256,
            "opset": self.opset,
            "precision": self.precision,
            "with_beam": self.with_beam,
            "model_name": self.model_name,
            "model_config": self.model_config,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "parity": self.parity,
            "source": self.source,
            **({"quantization": self.quantization} if self.quantization else {}),
            **self.extra,
        }

    def write(self, onnx_path: str | os.PathLike[str]) -> Path:
        """Write ``<onnx>.json`` atomically (a half-written sidecar would make the model unloadable)."""
        from dima_core.io.atomic import write_atomic

        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        return write_atomic(sidecar_path(onnx_path), lambda f: f.write(text.encode()))


_KNOWN = {
    "format",
    "format_version",
    "dima_version",
    "onnx_file",
    "onnx_sha256",
    "opset",
    "precision",
    "with_beam",
    "model_name",
    "model_config",
    "inputs",
    "outputs",
    "parity",
    "source",
}
# Optional entries: absent from fp32 sidecars (so every sidecar written before quantisation existed still loads).
_OPTIONAL = {"quantization"}


def load_sidecar(onnx_path: str | os.PathLike[str], verify_hash: bool = True) -> ModelSidecar:
    """Read and check the sidecar of ``onnx_path``; raise :class:`SidecarError` saying what is wrong."""
    onnx_path = Path(onnx_path)
    path = sidecar_path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model {onnx_path} does not exist")
    if not path.is_file():
        raise SidecarError(
            f"{path} is missing: every ONNX model needs the sidecar written by `dima export --format "
            "onnx` (it records the interface and hash the runtime checks)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SidecarError(f"{path} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise SidecarError(f"{path} is not a DiMA ONNX sidecar (format tag '{FORMAT_NAME}' missing)")
    if data.get("format_version") != FORMAT_VERSION:
        raise SidecarError(
            f"{path} has sidecar format version {data.get('format_version')}; this dima reads "
            f"version {FORMAT_VERSION}: re-export the model with this dima version"
        )
    missing = sorted(k for k in _KNOWN if k not in data)
    if missing:
        raise SidecarError(f"{path} lacks entries {missing}")
    sidecar = ModelSidecar(
        onnx_file=str(data["onnx_file"]),
        onnx_sha256=str(data["onnx_sha256"]),
        opset=int(data["opset"]),
        precision=str(data["precision"]),
        with_beam=bool(data["with_beam"]),
        model_name=str(data["model_name"]),
        model_config=dict(data["model_config"]),
        inputs=tuple(TensorSpec.from_dict(s) for s in data["inputs"]),
        outputs=tuple(TensorSpec.from_dict(s) for s in data["outputs"]),
        dima_version=str(data["dima_version"]),
        parity=dict(data["parity"]),
        source=dict(data["source"]),
        quantization=dict(data.get("quantization") or {}),
        extra={k: v for k, v in data.items() if k not in _KNOWN | _OPTIONAL},
    )
    if sidecar.precision not in ONNX_PRECISIONS:
        raise SidecarError(
            f"{path} records precision {sidecar.precision!r}; this dima reads ONNX models of precision "
            f"{list(ONNX_PRECISIONS)}: re-export the model with this dima version"
        )
    if (sidecar.precision == "int8") != bool(sidecar.quantization):
        raise SidecarError(
            f"{path} records precision {sidecar.precision!r} "
            + ("without its quantization entry" if sidecar.precision == "int8" else "with a quantization entry")
            + ": the sidecar was edited or mixed up; re-export the model"
        )
    if verify_hash:
        actual = file_sha256(onnx_path)
        if actual != sidecar.onnx_sha256:
            raise SidecarError(
                f"{onnx_path} has sha256 {actual[:16]}..., its sidecar {path.name} records "
                f"{sidecar.onnx_sha256[:16]}...: the ONNX file was replaced, modified or truncated "
                "after export; re-export it (or copy the matching pair)"
            )
    return sidecar


def check_interface(
    sidecar: ModelSidecar,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    runtime: str,
    compare_output_shapes: bool = True,
) -> None:
    """Raise :class:`SidecarError` when a runtime's view of the model differs from the sidecar's record."""
    problems = []
    if tuple(inputs) != sidecar.inputs:
        problems.append(f"inputs {[s.to_dict() for s in inputs]} != sidecar {[s.to_dict() for s in sidecar.inputs]}")
    got = tuple(outputs) if compare_output_shapes else tuple(s.name for s in outputs)
    want = sidecar.outputs if compare_output_shapes else sidecar.output_names
    if got != want:
        problems.append(f"outputs {got} != sidecar {want}")
    if problems:
        raise SidecarError(
            f"{runtime} sees a different model interface than the sidecar of {sidecar.onnx_file}: "
            + "; ".join(problems)
        )


__all__ = [
    "FORMAT_VERSION",
    "ModelSidecar",
    "SidecarError",
    "check_interface",
    "file_sha256",
    "load_sidecar",
    "sidecar_path",
]
