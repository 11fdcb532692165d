"""Modality features of entities: one file format (:mod:`.store`), image and text encoders
(:mod:`.image`, :mod:`.text`), the authors' bundles (:mod:`.official`) and noisy modalities (:mod:`.noise`).
The command is ``momok features image|text|import|noise`` (:mod:`.cli`)."""

from momok.features.store import FeatureTable, entity_list_digest, load_features, save_features

__all__ = ["FeatureTable", "entity_list_digest", "load_features", "save_features"]
