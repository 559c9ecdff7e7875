"""The one YAML reader of every CLI ``-f FILE``: safe, and bounded in size and shape.

``load_yaml_file(path)`` reads at most ``MAX_YAML_BYTES`` and parses with PyYAML's safe
loader (plain data only), refusing:

- anchors and aliases (``&a`` / ``*a``): a few lines of nested aliases expand to gigabytes
  (the "billion laughs"), and a definition never needs them;
- documents nested deeper than ``MAX_YAML_DEPTH``;
- a key repeated in one mapping (PyYAML would keep the last one silently);
- files larger than ``MAX_YAML_BYTES`` (a definition is sent as one request body, whose
  limit this is).

Every refusal is an ``InvalidInputError`` naming the file and the reason.
``load_model_file`` (one definition) and ``load_model_files`` (one or a list) validate what
the file holds against a model of ``schemas``, with one wording for every kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from liftstream.errors import InvalidInputError
from schemas.errors import FieldError
from schemas.limits import MAX_YAML_BYTES, MAX_YAML_DEPTH

Model = TypeVar("Model", bound=BaseModel)


class _Refused(Exception):
    pass


def _where(mark: Any) -> str:
    return "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, refusing anchors, aliases and deep nesting while it composes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(
                f"uses an alias (*{event.anchor}){_where(event.start_mark)}; aliases and "
                "anchors are refused (they can expand a small file into gigabytes)"
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise _Refused(
                f"defines an anchor (&{anchor}){_where(event.start_mark)}; aliases and "
                "anchors are refused (they can expand a small file into gigabytes)"
            )
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(
                    f"is nested deeper than {MAX_YAML_DEPTH} levels{_where(event.start_mark)}"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # PyYAML keeps the last of repeated keys; a second ``variants:`` is a mistake.
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):
                continue  # the safe constructor refuses keys that cannot be keys
            if key in seen:
                raise _Refused(f"repeats the key '{key}'{_where(key_node.start_mark)}")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _refuse(subject: str, reason: str) -> InvalidInputError:
    return InvalidInputError(subject, [FieldError(field="", reason=reason)])


def load_yaml_file(path: str | Path, subject: str | None = None) -> Any:
    """The data in the YAML file at ``path`` (None for an empty file); a refusal's
    subject is ``subject`` (e.g. "FILE is not a valid flag"), else "cannot read FILE"."""
    path = Path(path)
    unreadable = f"cannot read {path}"
    subject = subject or unreadable
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_YAML_BYTES + 1)
    except OSError as error:
        raise _refuse(unreadable, error.strerror or str(error)) from None
    if len(raw) > MAX_YAML_BYTES:
        raise _refuse(unreadable, f"the file is larger than {MAX_YAML_BYTES} bytes (the limit)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _refuse(subject, f"not UTF-8 text (byte {error.start}: {error.reason})") from None
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except _Refused as refused:
        raise _refuse(subject, f"the YAML {refused}") from None
    except yaml.YAMLError as error:
        raise _refuse(subject, _yaml_reason(error)) from None
    finally:
        loader.dispose()


def _yaml_reason(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    return f"not valid YAML{_where(mark)}: {problem}"


def load_model_file(path: str | Path, model: type[Model], what: str) -> Model:
    """The ``model`` the YAML file at ``path`` defines (one mapping of its fields).

    Every problem, the file's or the definition's, is an ``InvalidInputError`` worded
    ``"<path> is not a valid <what>"`` and listing each field and reason.
    """
    subject = f"{path} is not a valid {what}"
    return _validate(load_yaml_file(path, subject), model, what, subject)


def load_model_files(path: str | Path, model: type[Model], what: str) -> list[Model]:
    """The ``model``s the YAML file at ``path`` defines: one mapping, or a list of them."""
    subject = f"{path} is not a valid {what} file"
    loaded = load_yaml_file(path, subject)
    if not isinstance(loaded, list):
        return [_validate(loaded, model, what, f"{path} is not a valid {what}")]
    return [
        _validate(document, model, what, f"{path} ({what} {index + 1}) is not a valid {what}")
        for index, document in enumerate(loaded)
    ]


def _validate(document: Any, model: type[Model], what: str, subject: str) -> Model:
    if not isinstance(document, dict):
        found = "an empty file" if document is None else f"a {type(document).__name__}"
        raise _refuse(subject, f"expected a mapping of {what} fields, found {found}")
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise InvalidInputError.from_validation(subject, error) from None
