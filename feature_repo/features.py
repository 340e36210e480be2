"""Feast definitions of fashionrec, applied by `feast apply` in this folder (or by the pipeline's features step).

The objects are built by the fashionrec package so that the pipeline, serving and this repo use the same names:
- entity ``item`` (join key ``item_id``: the catalogue's product id);
- entity ``model`` (join key ``model_version``: the encoder version that produced a vector);
- feature view ``item_embedding``, keyed by (item_id, model_version): the 256-d embedding, so the vectors of two
  model versions coexist in one online store during a rollout;
- feature view ``item_attributes``, keyed by item_id: the catalogue attributes shown with every recommendation;
- both read ``data/item_embeddings.parquet`` (written by the embed stage), with ``event_timestamp`` as the event time.
"""

from fashionrec.retrieval.feast_store import feast_objects

item, model, item_source, item_embedding, item_attributes = feast_objects()
