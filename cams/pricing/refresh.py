"""Read a new price snapshot from installed litellm, a local LiteLLM JSON file, or a URL.

The result becomes a dated version in the warehouse (`cams pricing refresh`), or a file with
`--out` (how a maintainer updates the committed snapshot); nothing is written into the package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cams.pricing.snapshot import slim


class RefreshError(RuntimeError):
    """The source could not be read or is not a LiteLLM price map."""


def _from_litellm() -> tuple[dict[str, Any], str, str]:
    try:
        from importlib.metadata import version

        import litellm
    except ImportError as exc:
        raise RefreshError("litellm is not installed; pass --source FILE or URL") from exc
    path = Path(litellm.__file__).with_name("model_prices_and_context_window_backup.json")
    ver = version("litellm")
    return json.loads(path.read_text()), f"litellm {ver} package: {path.name}", f"litellm=={ver}"


def _from_url(url: str) -> tuple[dict[str, Any], str, str]:
    import httpx

    try:
        response = httpx.get(url, timeout=30.0, follow_redirects=True)
        response.raise_for_status()
        return response.json(), url, "url"
    except (httpx.HTTPError, ValueError) as exc:
        raise RefreshError(f"could not fetch a price map from {url}: {exc}") from exc


def read_snapshot(source: str = "litellm") -> dict[str, Any]:
    """The slimmed snapshot of a LiteLLM price map from `source`; RefreshError when it is not one."""
    if source == "litellm":
        raw, origin, ver = _from_litellm()
    elif source.startswith(("http://", "https://")):
        raw, origin, ver = _from_url(source)
    else:
        try:
            raw, origin, ver = json.loads(Path(source).read_text()), str(source), "file"
        except (OSError, ValueError) as exc:
            raise RefreshError(f"could not read {source}: {exc}") from exc
    if isinstance(raw, dict) and "_meta" in raw and isinstance(raw.get("models"), dict):
        return raw  # already a CAMS snapshot (a file written by --out)
    if not isinstance(raw, dict) or not any(isinstance(v, dict) and "mode" in v for v in raw.values()):
        raise RefreshError(f"{source} is not a LiteLLM model price map")
    return slim(raw, source=origin, version=ver)


def write_snapshot(snap: dict[str, Any], out: Path) -> None:
    out.write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n")
