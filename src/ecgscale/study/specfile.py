"""Reading a study spec: a YAML file or tree, ``key=value`` overrides, one-line errors, and
the names of source readers, model families and synthetic sites checked against their
registries (the spec types in :mod:`ecgscale.spec` import none)."""

from __future__ import annotations

import json
import re
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ecgscale.spec import Registries, SpecError, StudySpec, TrainSpec


def _format_error(err: ValidationError, origin: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in first["loc"])
    loc = loc.replace(".[", "[") or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    index = re.match(r"^(\[\d+\]): (.*)$", msg)
    if index:  # a list validator named the offending item
        loc, msg = loc + index.group(1), index.group(2)
    if first["type"] == "missing":
        msg = "missing required field"
    elif first["type"] == "extra_forbidden":
        msg = "unknown field"
    return f"{origin}: {loc}: {msg}"


def _apply_override(tree: dict[str, Any], assignment: str, origin: str) -> None:
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise SpecError(f"override {assignment!r}: expected key=value")
    node = tree
    parts = key.split(".")
    path = ""
    for part in parts[:-1]:
        path = f"{path}.{part}" if path else part
        if part not in _known_fields(path):
            raise SpecError(f"override {assignment!r}: unknown key {path!r}")
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"override {assignment!r}: {path!r} is not a section")
    if parts[-1] not in _known_fields(key):
        raise SpecError(f"override {assignment!r}: unknown key {key!r}")
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise SpecError(f"override {assignment!r}: {raw!r} is not a valid YAML value") from None


TRAIN_OVERRIDES = {"transfer.train": 0, "train.families": 1}
"""Mappings that hold overrides of the train section, and how many free keys (a family's name)
come before the train fields."""


def _known_fields(dotted: str) -> set[str]:
    """Names allowed at the last component of ``dotted`` (walks the model classes)."""
    model: type[BaseModel] | None = StudySpec
    parts = dotted.split(".")
    i = 0
    while i < len(parts) - 1:
        free = TRAIN_OVERRIDES.get(".".join(parts[: i + 1]))
        if free is not None:
            if len(parts) - 1 - (i + 1) < free:
                return {parts[-1]}  # a family's name: checked when the spec is validated
            model, i = TrainSpec, i + 1 + free
            continue
        ann = model.model_fields[parts[i]].annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if model is None:
            return set()
        i += 1
    return set(model.model_fields)


def registries() -> Registries:
    """What :func:`parse_spec` checks a spec's names against: the source readers, the model
    families and the synthetic sites (each imported only when a spec names one)."""
    return {"sources": _source_kinds, "families": _families, "sites": _sites}


def _source_kinds() -> list[str]:
    from ecgscale.data.sources import list_sources

    return list_sources()


def _families() -> list[str]:
    from ecgscale.models import list_families

    return list_families()


def _sites() -> list[str]:
    from ecgscale.data.synthetic import SITES

    return list(SITES)


def parse_spec(tree: Any, *, origin: str = "spec", overrides: list[str] = ()) -> StudySpec:
    """Validate a spec tree (plus ``key=value`` overrides) into a ``StudySpec``."""
    if not isinstance(tree, dict):
        raise SpecError(f"{origin}: expected a mapping at the top level")
    tree = json.loads(json.dumps(tree))
    for assignment in overrides:
        _apply_override(tree, assignment, origin)
    for assignment in overrides:
        _warn_family_keeps(tree, assignment)
    try:
        return StudySpec.model_validate(tree, context=registries())
    except ValidationError as err:
        message = _format_error(err, origin)
        field = message.removeprefix(f"{origin}: ").split(":")[0]
        for assignment in overrides:  # the value came from an override: name it, not the file
            key = assignment.partition("=")[0].strip()
            if field == key or field.startswith((f"{key}.", f"{key}[")):
                message = f"{message} (set by --set {assignment})"
        raise SpecError(message) from None


def _warn_family_keeps(tree: dict[str, Any], assignment: str) -> None:
    """Warn when ``--set train.X=…`` leaves a family with its own ``train.families`` X."""
    parts = assignment.partition("=")[0].strip().split(".")
    if parts[0] != "train" or len(parts) != 2 or not isinstance(tree.get("train"), dict):
        return
    for family, own in (tree["train"].get("families") or {}).items():
        if isinstance(own, dict) and parts[1] in own:
            warnings.warn(
                f"--set {assignment}: {family} keeps its own train.families.{family}."
                f"{parts[1]} = {own[parts[1]]} (set that too, or train.families={{}})",
                stacklevel=3,
            )


def load_spec(path: str | Path | None = None, overrides: list[str] = ()) -> StudySpec:
    """Read a YAML spec file (default: the embedded demo) and apply overrides."""
    if path is None:
        text = resources.files("ecgscale.configs").joinpath("demo.yaml").read_text()
        origin = "demo.yaml (embedded)"
    else:
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"{path}: no such spec file")
        try:
            text, origin = path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError:
            raise SpecError(f"{path}: not a YAML spec (not UTF-8 text)") from None
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SpecError(f"{origin}:{where} not valid YAML") from None
    return parse_spec(tree, origin=origin, overrides=overrides)


def load_study_spec(study_dir: str | Path) -> StudySpec:
    """The resolved spec a study folder holds (its ``spec.yaml``); FileNotFoundError, one line,
    when ``study_dir`` is not a study folder."""
    path = Path(study_dir) / "spec.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"{study_dir}: not a study folder (no spec.yaml; `ecgscale study SPEC --out DIR` "
            "makes one)"
        )
    return load_spec(path)
