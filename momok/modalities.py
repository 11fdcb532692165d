"""The modalities of an entity: one definition for the package, its config and the workflow.

``structure`` is a learned embedding of every model; ``image`` and ``text`` come from feature files
(``features/<dataset>/<modality>.safetensors``). MoMoK names each modality's score in ``metrics.json`` by
a one-letter key, and adds the joint modality ``j`` of its MuJoD fusion.
"""

from __future__ import annotations

from typing import Literal, get_args

Modality = Literal["structure", "image", "text"]
#: every modality, in the fixed order s, v, t (the order of MoMoK's attention weights α)
MODALITIES: tuple[str, ...] = get_args(Modality)
#: the modalities read from feature files
FILE_MODALITIES: tuple[str, ...] = ("image", "text")
#: modality -> its score key in MoMoK's scores and metrics.json
SCORE_KEYS: dict[str, str] = {"structure": "s", "image": "v", "text": "t"}
#: score key of MuJoD's joint modality
JOINT = "j"
