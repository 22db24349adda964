"""Object keys of audience files: ``imports/<app_id>/<audience name>.csv``."""

from dataclasses import dataclass
from urllib.parse import unquote_plus

from steward.audiences.models import CSV_SUFFIX, IMPORTS_PREFIX, MAX_NAME_CHARS
from steward.types import no_control_characters

# S3 sequencers are hex; 64 characters cover any S3 has sent, and padding makes them compare as strings.
SEQUENCER_WIDTH = 64


@dataclass(frozen=True)
class ImportKey:
    app_id: str
    name: str
    key: str


def event_key(raw: str) -> str:
    """S3 event records carry keys URL-encoded, a space as ``+``."""
    return unquote_plus(raw)


def parse_key(key: str) -> ImportKey | None:
    """The app and audience a key names, or None for a key outside the contract."""
    if not key.startswith(IMPORTS_PREFIX) or not key.endswith(CSV_SUFFIX):
        return None
    app_id, slash, file_name = key[len(IMPORTS_PREFIX) :].partition("/")
    name = file_name[: -len(CSV_SUFFIX)]
    if not slash or not app_id or not valid_name(name):
        return None
    return ImportKey(app_id, name, key)


def app_of_csv(key: str) -> tuple[str, str] | None:
    """The app folder and the rest of a ``.csv`` key under ``imports/<app_id>/``, whatever the name is."""
    if not key.startswith(IMPORTS_PREFIX) or not key.endswith(CSV_SUFFIX):
        return None
    app_id, slash, rest = key[len(IMPORTS_PREFIX) :].partition("/")
    return (app_id, rest[: -len(CSV_SUFFIX)]) if slash and app_id else None


def valid_name(name: str) -> bool:
    if not 1 <= len(name) <= MAX_NAME_CHARS or "/" in name:
        return False
    try:
        no_control_characters(name)
    except ValueError:
        return False
    return True


def import_key(app_id: str, name: str) -> str:
    return f"{IMPORTS_PREFIX}{app_id}/{name}{CSV_SUFFIX}"


def padded_sequencer(sequencer: str) -> str:
    """S3's rule: compare sequencers as strings after right-padding the shorter with zeros."""
    return sequencer.strip().upper().ljust(SEQUENCER_WIDTH, "0")
