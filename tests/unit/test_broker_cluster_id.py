"""The local broker's KRaft cluster id is one the storage tool accepts."""

from __future__ import annotations

import base64
import re

from services.broker.local import kafka_cluster_id


def test_cluster_ids_are_16_bytes_of_url_safe_base64_and_never_look_like_an_option() -> None:
    # 1 random id in 64 starts with "-": 5,000 draws miss that case with odds of ~1e-34.
    ids = {kafka_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    for cluster_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id), cluster_id
        assert not cluster_id.startswith("-"), cluster_id
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
