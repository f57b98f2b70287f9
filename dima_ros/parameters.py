"""ROS 2 parameters from a typed dima_core config dataclass: declare, load, validate at start and on change.

Generic: any dataclass of the :mod:`dima_core.config` system works (the planner node's ``PlannerNodeConfig``, the
MLLM and evaluator nodes' configs). One ROS parameter per leaf field, named by the dotted field path
(``sync.tolerance_ms``), so the ``/**: ros__parameters:`` YAML nests exactly like the dataclass::

    from dima_ros.parameters import ConfigParameters
    params = ConfigParameters(node, PlannerNodeConfig, on_change=self._apply)  # raises ParameterConfigError
    cfg = params.config                                                         # validated PlannerNodeConfig

Per field:

- type: bool -> BOOL, int -> INTEGER, float -> DOUBLE, str / Literal / Optional[str] -> STRING (an empty string is
  None), list/tuple of bool/int/float/str -> the matching *_ARRAY; ``dict`` fields are not representable as ROS
  parameters and raise ``TypeError`` at declaration.
- descriptor: ``description`` from the field's ``help`` metadata (:func:`dima_core.config.ranged`; Literal choices
  appended), ``integer_range`` / ``floating_point_range`` from ``lo`` / ``hi`` (scalars only: ROS has no array
  ranges, the typed config checks those), ``read_only`` from ``read_only`` metadata
  (:func:`dima_core.runtime.config.param`): settings a running node cannot apply, so ROS refuses to set them.
- values: from the node's parameter overrides (``--ros-args --params-file f.yaml`` or ``parameter_overrides=``,
  see :func:`parameter_overrides_from_yaml` for in-process bringup), else the dataclass default.

Validation: the whole parameter set is converted with :func:`dima_core.config.config_from_dict`, so types, ranges,
Literal choices and each dataclass's ``validate()`` run exactly as for a YAML config file. At start a problem raises
:class:`ParameterConfigError` naming the parameter (also for an override that names no declared parameter: a typo
in the YAML must not silently leave a default in force). On ``set_parameters`` a bad value is refused with
``SetParametersResult(successful=False, reason=...)`` and the node keeps its previous configuration.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from dima_core.config import ConfigError, config_from_dict

C = TypeVar("C")

# Parameters rclpy/rcl declare or accept on every node; never reported as unknown overrides.
ROS_BUILTIN_PARAMETERS = ("use_sim_time", "start_type_description_service")
ROS_BUILTIN_PREFIXES = ("qos_overrides.",)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class ParameterConfigError(ValueError):
    """Parameters that do not form a valid configuration (raised at node start)."""


@dataclass(frozen=True)
class ParameterSpec:
    """One leaf field as a ROS parameter."""

    name: str  # dotted path, without the prefix
    ros_type: Parameter.Type
    default: Any  # the ROS-side default (None for an empty array: declared by type only)
    optional_str: bool  # Optional[str]: "" <-> None
    descriptor: ParameterDescriptor


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(args) != len(get_args(tp)):
            return args[0], True
    return tp, False


_SCALAR = {
    bool: Parameter.Type.BOOL,
    int: Parameter.Type.INTEGER,
    float: Parameter.Type.DOUBLE,
    str: Parameter.Type.STRING,
}
_ARRAY = {
    bool: Parameter.Type.BOOL_ARRAY,
    int: Parameter.Type.INTEGER_ARRAY,
    float: Parameter.Type.DOUBLE_ARRAY,
    str: Parameter.Type.STRING_ARRAY,
}


def _ros_type(tp: Any, where: str) -> Parameter.Type:
    if tp in _SCALAR:
        return _SCALAR[tp]
    origin = get_origin(tp)
    if origin is Literal:
        kinds = {type(c) for c in get_args(tp)}
        if len(kinds) == 1 and next(iter(kinds)) in _SCALAR:
            return _SCALAR[next(iter(kinds))]
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        if args and len(set(args)) == 1 and args[0] in _ARRAY:
            return _ARRAY[args[0]]
    raise TypeError(
        f"config field {where} of type {tp!r} cannot be a ROS parameter (scalars, Literal, Optional[str] "
        "and homogeneous lists/tuples of bool/int/float/str only)"
    )


def _descriptor(name: str, ros_type: Parameter.Type, tp: Any, meta: typing.Mapping[str, Any]) -> ParameterDescriptor:
    desc = ParameterDescriptor(
        name=name,
        type=ros_type.value,
        description=str(meta.get("help", "")),
        read_only=bool(meta.get("read_only", False)),
    )
    if get_origin(tp) is Literal:
        choices = list(get_args(tp))
        desc.additional_constraints = f"one of {choices}"
        desc.description = f"{desc.description} (one of {choices})".strip()
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None or hi is not None:
        if ros_type == Parameter.Type.INTEGER:
            desc.integer_range = [
                IntegerRange(
                    from_value=int(lo) if lo is not None else _INT64_MIN,
                    to_value=int(hi) if hi is not None else _INT64_MAX,
                    step=0,
                )
            ]
        elif ros_type == Parameter.Type.DOUBLE:
            desc.floating_point_range = [
                FloatingPointRange(
                    from_value=float(lo) if lo is not None else -sys.float_info.max,
                    to_value=float(hi) if hi is not None else sys.float_info.max,
                    step=0.0,
                )
            ]
        else:
            desc.additional_constraints = (
                desc.additional_constraints + " " if desc.additional_constraints else ""
            ) + f"each value in [{lo}, {hi}]"
    return desc


def _ros_default(value: Any, ros_type: Parameter.Type, optional_str: bool) -> Any:
    if value is None and optional_str:
        return ""
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, list) and not value:
        return None  # rclpy infers BYTE_ARRAY from []: declare these by type instead
    if ros_type == Parameter.Type.DOUBLE_ARRAY:
        return [float(v) for v in value]
    if ros_type == Parameter.Type.DOUBLE:
        return float(value)
    return value


def parameter_specs(cls: type, prefix: str = "") -> list[ParameterSpec]:
    """The ROS parameters of config dataclass ``cls`` (defaults from a default-constructed instance)."""
    specs: list[ParameterSpec] = []

    def walk(obj_cls: type, default_obj: Any, path: str) -> None:
        hints = get_type_hints(obj_cls)
        for f in dataclasses.fields(obj_cls):
            if not f.init:
                continue
            dotted = f"{path}{f.name}"
            tp, optional = _unwrap_optional(hints[f.name])
            value = getattr(default_obj, f.name)
            if dataclasses.is_dataclass(tp):
                walk(tp, value if value is not None else tp(), dotted + ".")
                continue
            ros_type = _ros_type(tp, f"{obj_cls.__name__}.{f.name}")
            optional_str = optional and ros_type == Parameter.Type.STRING
            if optional and not optional_str:
                raise TypeError(
                    f"config field {obj_cls.__name__}.{f.name}: Optional is only supported for str "
                    "(ROS parameters have no null)"
                )
            name = prefix + dotted
            specs.append(
                ParameterSpec(
                    dotted,
                    ros_type,
                    _ros_default(value, ros_type, optional_str),
                    optional_str,
                    _descriptor(name, ros_type, tp, f.metadata),
                )
            )

    walk(cls, cls(), "")
    return specs


def nest_parameters(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"sync.tolerance_ms": 60.0}`` -> ``{"sync": {"tolerance_ms": 60.0}}`` (the inverse of flatten_parameters)."""
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = out
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def flatten_parameters(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"sync": {"tolerance_ms": 60.0}}`` -> ``{"sync.tolerance_ms": 60.0}`` (ROS parameter names)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_parameters(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


class ConfigParameters(Generic[C]):
    """Declares ``cls``'s parameters on ``node``, validates them, and keeps ``config`` valid on every change.

    Args:
        node: the rclpy node.
        cls: the config dataclass.
        prefix: prepended to every parameter name (e.g. ``"planner."`` when one node hosts several configs).
        on_change: called with the new validated config after an accepted ``set_parameters`` (on the executor
            thread, before ROS stores the values; read the new values from its argument, not from the node).
        check_unknown: refuse overrides (from the YAML / command line) that name no declared parameter.
    """

    def __init__(
        self,
        node: Node,
        cls: type[C],
        prefix: str = "",
        on_change: Callable[[C], None] | None = None,
        check_unknown: bool = True,
    ) -> None:
        self.node = node
        self.cls = cls
        self.prefix = prefix
        self.specs = {s.name: s for s in parameter_specs(cls, prefix)}
        self._on_change = on_change
        self._lock = threading.Lock()
        if check_unknown:
            self._check_unknown_overrides()
        values: dict[str, Any] = {}
        for spec in self.specs.values():
            name = prefix + spec.name
            try:
                if spec.default is None:
                    param = node.declare_parameter(name, spec.ros_type, spec.descriptor)
                else:
                    param = node.declare_parameter(name, spec.default, spec.descriptor)
            except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
                raise ParameterConfigError(f"{node.get_fully_qualified_name()}: parameter '{name}': {exc}") from None
            values[spec.name] = param.value
        self._values = values
        try:
            self._config: C = self._build(values)
        except ConfigError as exc:
            raise ParameterConfigError(str(exc)) from None
        node.add_on_set_parameters_callback(self._on_set)

    @property
    def config(self) -> C:
        with self._lock:
            return self._config

    def _check_unknown_overrides(self) -> None:
        overrides = getattr(self.node, "_parameter_overrides", {})  # rclpy keeps no public accessor for them
        known = {self.prefix + n for n in self.specs}
        unknown = sorted(
            n
            for n in overrides
            if n not in known
            and n not in ROS_BUILTIN_PARAMETERS
            and not n.startswith(ROS_BUILTIN_PREFIXES)
            and (not self.prefix or n.startswith(self.prefix))
        )
        if unknown:
            raise ParameterConfigError(
                f"{self.node.get_fully_qualified_name()}: unknown parameter(s) {unknown} in the parameter file or "
                f"command line (typo?); known parameters: {sorted(known)}"
            )

    def _to_python(self, spec: ParameterSpec, value: Any) -> Any:
        if value is None:
            return [] if spec.ros_type.name.endswith("_ARRAY") else value
        if spec.optional_str and value == "":
            return None
        if hasattr(value, "tolist"):  # rclpy returns array.array for numeric arrays
            return value.tolist()
        if isinstance(value, tuple):
            return list(value)
        return value

    def _build(self, values: dict[str, Any]) -> C:
        data = nest_parameters({n: self._to_python(self.specs[n], v) for n, v in values.items()})
        return config_from_dict(data, self.cls, source=f"parameters of {self.node.get_fully_qualified_name()}")

    def _on_set(self, params: list[Parameter]) -> SetParametersResult:
        with self._lock:
            candidate = dict(self._values)
            for p in params:
                if not p.name.startswith(self.prefix):
                    continue
                name = p.name[len(self.prefix) :]
                if name in self.specs:
                    candidate[name] = p.value
            try:
                config = self._build(candidate)
            except ConfigError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            self._values = candidate
            self._config = config
        if self._on_change is not None:
            try:
                self._on_change(config)
            except Exception as exc:  # noqa: BLE001 - the node refused to apply it: say why, keep running
                return SetParametersResult(successful=False, reason=f"could not apply: {exc}")
        return SetParametersResult(successful=True)


def load_parameter_file(path: str | Path, node_name: str, namespace: str = "/") -> dict[str, Any]:
    """Flat ``{name: value}`` for ``node_name`` from a ``ros__parameters`` YAML (``/**`` first, then the node's own
    entries ``node_name`` / ``/ns/node_name``, which win), as ``ros2 run --params-file`` applies them."""
    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ParameterConfigError(f"{path}: top level must be a mapping of node names")
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    keys = ["/**", node_name, f"{ns}/{node_name}", f"{ns.lstrip('/')}/{node_name}" if ns else node_name]
    out: dict[str, Any] = {}
    for key in dict.fromkeys(keys):
        entry = data.get(key)
        if entry is None:
            continue
        if not isinstance(entry, dict) or "ros__parameters" not in entry:
            raise ParameterConfigError(f"{path}: entry '{key}' needs a 'ros__parameters:' mapping")
        params = entry["ros__parameters"] or {}
        if not isinstance(params, dict):
            raise ParameterConfigError(f"{path}: '{key}.ros__parameters' must be a mapping")
        out.update(flatten_parameters(params))
    return out


def parameter_overrides_from_yaml(
    path: str | Path, node_name: str, namespace: str = "/", extra: dict[str, Any] | None = None
) -> list[Parameter]:
    """``parameter_overrides=`` for an in-process node (bringup): the YAML's values, then ``extra`` on top."""
    values = load_parameter_file(path, node_name, namespace)
    values.update(flatten_parameters(extra or {}))
    return [Parameter(name, value=value) for name, value in values.items()]


def write_parameter_file(path: str | Path, parameters: dict[str, Any], node: str = "/**") -> Path:
    """Write nested ``parameters`` as a ``{node: {ros__parameters: ...}}`` YAML (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    path = Path(path)
    path.write_text(yaml.safe_dump({node: {"ros__parameters": plain(parameters)}}, sort_keys=False))
    return path


__all__ = [
    "ConfigParameters",
    "ParameterConfigError",
    "ParameterSpec",
    "flatten_parameters",
    "load_parameter_file",
    "nest_parameters",
    "parameter_overrides_from_yaml",
    "parameter_specs",
    "write_parameter_file",
]
