"""The secrets a run used (the caption API key, the Hub token, credentials in caption.base_url, secret-named env vars):
find and redact their values in tables and in a dataset folder's files before anything is published or pushed.

It never prints, logs or returns a secret's value; callers get where it came from (e.g. "$OPENAI_API_KEY") instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.compute as pc

REDACTED = "[REDACTED]"
MIN_LENGTH = 8  # shorter values would match ordinary words; no real key or token is this short
SECRET_NAME_RE = re.compile(r"token|secret|password|passwd|api[_-]?key|credential", re.IGNORECASE)
TEXT_SUFFIXES = (".md", ".json", ".yaml", ".yml", ".txt", ".csv")


def known_secrets() -> dict[str, str]:
    """Values that must never be published: the Hub token and env vars whose names look secret (values >= 8 chars)."""
    secrets = {f"${name}": v for name, v in os.environ.items()
               if SECRET_NAME_RE.search(name) and not name.endswith("_ENV") and len(v) >= MIN_LENGTH}
    try:
        from huggingface_hub import get_token

        if (token := get_token()) and len(token) >= MIN_LENGTH:
            secrets["the Hugging Face token"] = token
    except Exception:  # noqa: BLE001 - no token store is fine here
        pass
    return secrets


def run_secrets(recipe=None) -> dict[str, str]:
    """known_secrets() plus what the recipe points at: the value of caption.api_key_env and the credentials written
    into caption.base_url. {where it came from: value}."""
    secrets = known_secrets()
    caption = getattr(recipe, "caption", None)
    if caption is not None:
        name = getattr(caption, "api_key_env", None)
        if name and len(os.environ.get(name, "")) >= MIN_LENGTH:
            secrets[f"${name} (caption.api_key_env)"] = os.environ[name]
        parts = urlsplit(getattr(caption, "base_url", "") or "")
        for label, value in (("password", parts.password), ("user", parts.username)):
            if value and len(value) >= MIN_LENGTH:
                secrets[f"the {label} in caption.base_url"] = value
    return secrets


def strip_credentials(url: str) -> str:
    """`http://user:key@host/v1` -> `http://host/v1`; other URLs unchanged."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def redact_text(text: str, secrets: dict[str, str]) -> tuple[str, int]:
    """(text with every secret value replaced by [REDACTED], number of replacements)."""
    count = 0
    for value in _longest_first(secrets):
        count += text.count(value)
        text = text.replace(value, REDACTED)
    return text, count


def redact_table(table: pa.Table, secrets: dict[str, str]) -> tuple[pa.Table, int]:
    """(table with secret values redacted in every string column, number of values changed)."""
    changed = 0
    for i, field in enumerate(table.schema):
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        column = table.column(i)
        hit = None
        for value in _longest_first(secrets):
            found = pc.fill_null(pc.match_substring(column, value), False)
            hit = found if hit is None else pc.or_(hit, found)
            column = pc.replace_substring(column, value, REDACTED)
        if hit is not None and (n := pc.sum(hit).as_py() or 0):
            changed += n
            table = table.set_column(i, field, column)
    return table, changed


def find_in_folder(folder: Path, secrets: dict[str, str]) -> list[str]:
    """'file: where the secret came from' for every file under `folder` holding a secret value (parquet files are also
    read column by column, since compression hides strings from a byte search)."""
    hits = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        data = path.read_bytes()
        found = {name for name, value in secrets.items() if value.encode() in data}
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            found |= {name for name, value in secrets.items() if redact_table(table, {name: value})[1]}
        hits += [f"{path.relative_to(folder)}: {name}" for name in sorted(found)]
    return hits


def redact_folder(folder: Path, secrets: dict[str, str]) -> list[str]:
    """Redact secret values in place in the text and parquet files under `folder`; the files changed (relative)."""
    import pyarrow.parquet as pq

    changed = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        if path.suffix in TEXT_SUFFIXES:
            text, n = redact_text(path.read_text(encoding="utf-8", errors="surrogateescape"), secrets)
            if n:
                _write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8", errors="surrogateescape"))
        elif path.suffix == ".parquet":
            parquet = pq.ParquetFile(path)
            row_group = parquet.metadata.row_group(0).num_rows if parquet.metadata.num_row_groups else None
            table, n = redact_table(parquet.read(), secrets)
            if n:
                _write_atomic(path, lambda tmp: pq.write_table(table, tmp, row_group_size=row_group))
        else:
            continue
        if n:
            changed.append(str(path.relative_to(folder)))
    return changed


def _longest_first(secrets: dict[str, str]) -> list[str]:
    return sorted({v for v in secrets.values() if v}, key=len, reverse=True)


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    tmp.replace(path)
