"""Decode a ParticipantObjectQuery: base64 of C-FIND keys (a DICOM dataset) or of plain text."""

from __future__ import annotations

import base64
import binascii
import warnings
from dataclasses import dataclass
from io import BytesIO

from pydicom.datadict import dictionary_has_tag, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence


@dataclass(frozen=True, slots=True)
class Query:
    """What was asked: the decoded octets, and the C-FIND keys or the text they hold."""

    data: bytes
    dataset: bool
    keys: tuple[tuple[str, str], ...]
    text: str | None

    def key(self, keyword: str) -> str | None:
        """The value of one C-FIND key (``PatientID``), None when it was not asked for."""
        for name, value in self.keys:
            if name == keyword:
                return value
        return None


def read_query(encoded: str) -> Query:
    """Decode the element's base64 text; its C-FIND keys when it is a DICOM dataset, else its text."""
    compact = "".join(encoded.split())
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return Query(data=encoded.encode("utf-8"), dataset=False, keys=(), text=encoded.strip())
    keys = dicom_keys(data)
    if keys is not None:
        return Query(data=data, dataset=True, keys=keys, text=None)
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return Query(data=data, dataset=False, keys=(), text=text)


def dicom_keys(data: bytes) -> tuple[tuple[str, str], ...] | None:
    """The (keyword, value) pairs of a little endian dataset (explicit or implicit VR), or None.

    A byte string counts as a dataset only when it reads to its end and every public tag is in
    the DICOM dictionary, so text that happens to decode is not mistaken for one.
    """
    if len(data) < 8:
        return None
    explicit = data[4:6].isalpha() and data[4:6].isupper()  # a VR such as b"PN" after the first tag
    return _try_read(data, implicit=not explicit)


def _try_read(data: bytes, implicit: bool) -> tuple[tuple[str, str], ...] | None:
    """The dataset's keys in one transfer syntax, or None when the bytes are not one."""
    stream = BytesIO(data)
    keys: list[tuple[str, str]] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warnings quote values: patient data
            dataset = read_dataset(stream, is_implicit_VR=implicit, is_little_endian=True)
            if stream.tell() != len(data) or len(dataset) == 0:
                return None
            previous = -1
            for element in dataset:
                tag = int(element.tag)
                if tag <= previous or (not element.tag.is_private and not dictionary_has_tag(tag)):
                    return None
                previous = tag
                keys.append((keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
                             _value_text(element)))
    except Exception:  # any bytes can come in; a reading error only means "not a dataset"
        return None
    return tuple(keys)


def _value_text(element: DataElement) -> str:
    """A C-FIND key's value as text; several values joined by a backslash."""
    value = element.value
    if value is None:
        return ""
    if isinstance(value, Sequence):
        return f"({len(value)} item{'s' if len(value) != 1 else ''})"
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)
