"""A saved network's weights in compressed form, and opening a network folder of either form.

`webly.compress.compress_network` writes a *compressed* network folder: the network's
``model.json`` and its weights as a `QuantizedState` in ``weights.quantized.safetensors``
(no pickle): every tensor under its own name (float32 / float16 values, or uint8 codes of the
tensor's shape), each code table (``(n_codes,)`` float32, the value of each code) under
``<name>#table``, and the compression method in the file's metadata. Dequantizing is one
lookup, ``table[codes]``. `open_network` opens such a folder, or a plain one
(`webly.models.save_network`), as a float32 `Network`; `webly.deploy.export_onnx` keeps the
stored form in its graph.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from webly._fs import fsync_path
from webly.errors import ConfigError, DataError
from webly.models.gbdt import CONFIG_FILE as LGBM_FILE
from webly.models.network import CONFIG_FILE, Network, load_network, network_from_state

Method = Literal["int8_partial", "fp16", "kmeans"]
METHODS: tuple[str, ...] = get_args(Method)
QUANTIZED_FILE = "weights.quantized.safetensors"
FORMAT, FORMAT_VERSION = "webly-quantized-state", 1
_TABLE = "#table"


@dataclass(frozen=True)
class QuantizedState:
    """A compressed state dict.

    Attributes
    ----------
    method : the compression method of its big tensors.
    min_elements : tensors of more elements than this were compressed.
    values : name -> stored tensor: the original (float32 or integer), float16 values, or uint8
        codes of the original's shape.
    tables : name -> ``(n_codes,)`` float32 value of each code, for the coded tensors only.
    """

    method: Method
    min_elements: int
    values: dict[str, torch.Tensor]
    tables: dict[str, torch.Tensor]

    def dequantize(self) -> dict[str, torch.Tensor]:
        """The state dict back: float32 tensors (integer buffers as they are), original shapes."""
        state = {}
        for name, value in self.values.items():
            if name in self.tables:
                state[name] = self.tables[name][value.long()]
            elif value.dtype == torch.float16:
                state[name] = value.float()
            else:
                state[name] = value
        return state

    @property
    def nbytes(self) -> int:
        """Bytes of the stored tensors and tables."""
        tensors = [*self.values.values(), *self.tables.values()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def save(self, path: str | Path) -> None:
        """Write the state as one safetensors file at ``path`` (fsynced)."""
        tensors = {name: value.contiguous() for name, value in self.values.items()}
        tensors |= {name + _TABLE: table.contiguous() for name, table in self.tables.items()}
        metadata = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "method": self.method,
            "min_elements": str(self.min_elements),
        }
        save_file(tensors, str(path), metadata=metadata)
        fsync_path(Path(path))

    @classmethod
    def load(cls, path: str | Path) -> QuantizedState:
        """Read a state written by `save`; a damaged or foreign file is a one-line `DataError`."""
        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(path))
        except (OSError, SafetensorError) as err:
            raise DataError(
                f"{path}: unreadable quantized weights ({err}); the file is damaged, compress "
                "the network again"
            ) from None
        if metadata.get("format") != FORMAT or metadata.get("format_version") != str(
            FORMAT_VERSION
        ):
            raise DataError(
                f"{path}: format {metadata.get('format')!r} version "
                f"{metadata.get('format_version')!r}; this webly reads {FORMAT} v{FORMAT_VERSION}"
            )
        if metadata.get("method") not in METHODS:
            raise DataError(f"{path}: unknown method {metadata.get('method')!r}; re-compress")
        tables = {name[: -len(_TABLE)]: t for name, t in tensors.items() if name.endswith(_TABLE)}
        values = {name: t for name, t in tensors.items() if not name.endswith(_TABLE)}
        for name, codes in values.items():
            table = tables.get(name)
            if table is not None and (codes.dtype != torch.uint8 or int(codes.max()) >= len(table)):
                raise DataError(
                    f"{path}: codes of {name!r} do not index its {len(table)}-entry table; "
                    "the file is damaged, compress the network again"
                )
        return cls(metadata["method"], int(metadata["min_elements"]), values, tables)


def refuse_lightgbm(folder: Path, what: str) -> None:
    """Raise a one-line `ConfigError` when ``folder`` holds a LightGBM model: ``what`` (e.g.
    ``ONNX export``) takes networks."""
    if (folder / LGBM_FILE).is_file():
        raise ConfigError(
            f"{folder} is a LightGBM model: lgbm members are exported as LightGBM text models "
            f"({LGBM_FILE} + booster text files, LgbmModel.load); {what} takes networks"
        )


def is_compressed(folder: str | Path) -> bool:
    """Whether ``folder`` holds a compressed network (`webly.compress.compress_network`)."""
    return (Path(folder) / QUANTIZED_FILE).is_file()


def open_network(folder: str | Path) -> Network:
    """A saved network folder, plain (`webly.models.save_network`) or compressed
    (`webly.compress.compress_network`), as a float32 `Network` in eval mode; a compressed one
    is dequantized."""
    folder = Path(folder)
    if not is_compressed(folder):
        return load_network(folder).eval()
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{folder}: unreadable {CONFIG_FILE} ({err}); compress again") from None
    state = QuantizedState.load(folder / QUANTIZED_FILE).dequantize()
    return network_from_state(config, state, folder).eval()
