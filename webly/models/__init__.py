"""The model zoo: a registry of video-level, frame-level and GBDT models."""

from webly.models._registry import list_models, model_entry, register_model
from webly.models.network import Network, create_model, load_network, save_network

__all__ = [
    "Network",
    "create_model",
    "list_models",
    "load_network",
    "model_entry",
    "register_model",
    "save_network",
]
